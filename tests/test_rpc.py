"""The daemon's socket protocol: a real RpcServer on a Unix socket, real clients.

Each test starts its own server in a temporary directory, with handlers defined here.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import pwd
import socket
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edm_tui import client as client_module
from edm_tui.client import DaemonClient, DaemonError, DaemonUnavailable, default_socket_path
from edm_tui.daemon import rpc
from edm_tui.daemon.peers import AccessPolicy, Peer, read_peer
from edm_tui.daemon.rpc import RpcError, RpcServer, SocketSetupError

HELLO = {"jsonrpc": "2.0", "id": 1, "method": "hello", "params": {"protocol": 1, "client": "test"}}
STATUS = {"state": "idle", "run": None}
IS_ROOT = os.getuid() == 0


# Helpers


def build_server(**options: Any) -> RpcServer:
    """Return a server with `status`, a `slow` call that waits for `release`, and a write method `run`."""
    server = RpcServer(**options)
    server.release = asyncio.Event()  # type: ignore[attr-defined]

    @server.method("status")
    async def status(params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        return STATUS

    @server.method("slow")
    async def slow(params: dict[str, Any], peer: Peer) -> str:
        await server.release.wait()  # type: ignore[attr-defined]
        return "done"

    @server.method("run", write=True)
    async def run(params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        return {"run_id": 7}

    @server.method("busy", write=True)
    async def busy(params: dict[str, Any], peer: Peer) -> None:
        raise RpcError(rpc.ALREADY_RUNNING, "a run is already in progress", {"run_id": 3})

    @server.method("broken")
    async def broken(params: dict[str, Any], peer: Peer) -> None:
        raise ValueError("password=hunter2 rejected")

    @server.method("echo")
    async def echo(params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        return params

    return server


@contextlib.asynccontextmanager
async def running_server(path: Path, **options: Any) -> AsyncIterator[RpcServer]:
    start_options = {key: options.pop(key) for key in ("mode", "group") if key in options}
    server = build_server(**options)
    await server.start(path, **start_options)
    try:
        yield server
    finally:
        server.release.set()  # type: ignore[attr-defined]
        await server.close()


class RawClient:
    """A client that sends and reads raw protocol lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, path: Path, *, hello: bool = True) -> RawClient:
        reader, writer = await asyncio.open_unix_connection(path, limit=16 * 1024 * 1024)
        raw = cls(reader, writer)
        if hello:
            await raw.send(HELLO)
            assert "result" in await raw.receive()
        return raw

    async def send(self, message: dict[str, Any] | list[Any] | bytes) -> None:
        if isinstance(message, bytes):
            self.writer.write(message)
        else:
            self.writer.write(json.dumps(message).encode() + b"\n")
        await self.writer.drain()

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        assert line.endswith(b"\n"), f"connection closed, got {line!r}"
        return json.loads(line)

    async def call(self, method: str, request_id: int = 2, **params: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params:
            message["params"] = params
        await self.send(message)
        return await self.receive()

    async def at_eof(self, timeout: float = 5.0) -> bool:
        return await asyncio.wait_for(self.reader.read(), timeout) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def take_events(client: DaemonClient, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    async def collect() -> None:
        async for event in client.events():
            events.append(event)
            if len(events) == count:
                return

    await asyncio.wait_for(collect(), timeout)
    return events


async def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "edm-sync.sock"


# Hello


async def test_hello_returns_server_identity(socket_path: Path) -> None:
    async with running_server(socket_path):
        raw = await RawClient.open(socket_path, hello=False)
        await raw.send(HELLO)
        response = await raw.receive()
        await raw.close()

    assert response["id"] == 1
    result = response["result"]
    assert result["protocol"] == 1
    assert result["server"].startswith("edm-sync ")
    assert result["pid"] == os.getpid()
    assert result["user"] == pwd.getpwuid(os.getuid()).pw_name
    assert result["can_write"] is True  # the default policy's service uid is ours
    assert result["topics"] == ["progress", "run_started", "run_finished", "log", "status"]


async def test_hello_unsupported_protocol(socket_path: Path) -> None:
    async with running_server(socket_path):
        raw = await RawClient.open(socket_path, hello=False)
        wrong = await raw.call("hello", request_id=1, protocol=2, client="future")
        retried = await raw.call("hello", request_id=2, protocol=1, client="test")
        await raw.close()

    assert wrong["error"]["code"] == rpc.UNSUPPORTED_PROTOCOL == -32004
    assert wrong["error"]["data"] == {"supported": [1]}
    assert retried["result"]["protocol"] == 1


async def test_call_before_hello_rejected(socket_path: Path) -> None:
    async with running_server(socket_path):
        raw = await RawClient.open(socket_path, hello=False)
        early = await raw.call("status", request_id=1)
        await raw.send(HELLO)
        await raw.receive()
        later = await raw.call("status", request_id=3)
        await raw.close()

    assert early["error"]["code"] == rpc.HELLO_REQUIRED == -32005
    assert early["error"]["message"] == "hello required"
    assert later["result"] == STATUS


async def test_hello_and_call_sent_together(socket_path: Path) -> None:
    async with running_server(socket_path):
        raw = await RawClient.open(socket_path, hello=False)
        status = {"jsonrpc": "2.0", "id": 2, "method": "status"}
        await raw.send(json.dumps(HELLO).encode() + b"\n" + json.dumps(status).encode() + b"\n")
        responses = {message["id"]: message for message in [await raw.receive(), await raw.receive()]}
        await raw.close()

    assert "result" in responses[1]
    assert responses[2]["result"] == STATUS


# Standard errors


@pytest.mark.parametrize(
    ("line", "code", "reply_id"),
    [
        (b'{"jsonrpc":"2.0","id":5,"method":', rpc.PARSE_ERROR, None),
        (b'\xff\xfe{"jsonrpc":"2.0","id":5,"method":"status"}', rpc.PARSE_ERROR, None),
        (b'[{"jsonrpc":"2.0","id":5,"method":"status"}]', rpc.INVALID_REQUEST, None),
        (b"[]", rpc.INVALID_REQUEST, None),
        (b"42", rpc.INVALID_REQUEST, None),
        (b'{"id":5,"method":"status"}', rpc.INVALID_REQUEST, 5),
        (b'{"jsonrpc":"2.0","id":5,"method":7}', rpc.INVALID_REQUEST, 5),
        (b'{"jsonrpc":"2.0","id":{"a":1},"method":"status"}', rpc.INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":5,"method":"status","params":[1,2]}', rpc.INVALID_PARAMS, 5),
        (b'{"jsonrpc":"2.0","id":5,"method":"status","params":"x"}', rpc.INVALID_PARAMS, 5),
        (b'{"jsonrpc":"2.0","id":5,"method":"status","params":null}', rpc.INVALID_PARAMS, 5),
        (b'{"jsonrpc":"2.0","id":5,"method":"no.such.method"}', rpc.METHOD_NOT_FOUND, 5),
    ],
    ids=["malformed-json", "non-utf8", "batch", "empty-batch", "not-object", "no-jsonrpc",
         "method-not-string", "id-object", "params-list", "params-string", "params-null", "unknown-method"],
)
async def test_standard_errors_keep_connection(socket_path: Path, line: bytes, code: int, reply_id: Any) -> None:
    async with running_server(socket_path):
        raw = await RawClient.open(socket_path)
        await raw.send(line + b"\n")
        error = await raw.receive()
        after = await raw.call("status", request_id=6)
        await raw.close()

    assert error["id"] == reply_id
    assert error["error"]["code"] == code
    assert after["result"] == STATUS


async def test_notification_gets_no_reply(socket_path: Path) -> None:
    async with running_server(socket_path):
        raw = await RawClient.open(socket_path)
        await raw.send({"jsonrpc": "2.0", "method": "status"})
        await raw.send({"jsonrpc": "2.0", "method": "no.such.method"})
        await raw.send(b"\n")  # blank lines are skipped
        response = await raw.call("status", request_id=9)
        await raw.close()

    assert response["id"] == 9


async def test_handler_errors(socket_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="edm_sync.rpc")
    async with running_server(socket_path):
        raw = await RawClient.open(socket_path)
        busy = await raw.call("busy", request_id=2)
        await raw.send({"jsonrpc": "2.0", "id": 3, "method": "broken"})
        broken_line = await asyncio.wait_for(raw.reader.readline(), 5)
        await raw.close()

    assert busy["error"] == {"code": -32002, "message": "a run is already in progress", "data": {"run_id": 3}}
    broken = json.loads(broken_line)
    assert broken["error"]["code"] == rpc.INTERNAL_ERROR
    assert broken["error"]["data"] == {"exception": "ValueError"}
    assert b"hunter2" not in broken_line
    assert "Traceback" in caplog.text
    assert "'broken' failed" in caplog.text


async def test_slow_call_does_not_block_others(socket_path: Path) -> None:
    async with running_server(socket_path) as server:
        raw = await RawClient.open(socket_path)
        await raw.send({"jsonrpc": "2.0", "id": 2, "method": "slow"})
        status = await raw.call("status", request_id=3)
        server.release.set()  # type: ignore[attr-defined]
        slow = await raw.receive()
        await raw.close()

    assert status["id"] == 3
    assert slow == {"jsonrpc": "2.0", "id": 2, "result": "done"}


async def test_eof_still_responds_to_calls(socket_path: Path) -> None:
    async with running_server(socket_path) as server:
        raw = await RawClient.open(socket_path)
        await raw.send({"jsonrpc": "2.0", "id": 2, "method": "slow"})
        await raw.send(b'{"jsonrpc":"2.0","id":3,"method":"status"')  # no newline: ignored
        raw.writer.write_eof()
        await asyncio.sleep(0.05)
        server.release.set()  # type: ignore[attr-defined]
        slow = await raw.receive()
        closed = await raw.at_eof()
        await raw.close()

    assert slow["result"] == "done"
    assert closed


# Limits


async def test_oversize_line_closes_only_that_connection(socket_path: Path) -> None:
    async with running_server(socket_path, max_line=1000) as server:
        other = await RawClient.open(socket_path)
        raw = await RawClient.open(socket_path)

        request = b'{"jsonrpc":"2.0","id":2,"method":"status"}'
        at_limit = request + b" " * (1000 - len(request))
        await raw.send(at_limit + b"\n")
        response = await raw.receive()
        await raw.send(at_limit + b" \n")
        rejected = await raw.receive()
        closed = await raw.at_eof()
        await wait_until(lambda: server.clients == 1)
        still_served = await other.call("status", request_id=4)
        await other.close()
        await raw.close()

    assert response["result"] == STATUS
    assert rejected["id"] is None
    assert rejected["error"]["code"] == rpc.LINE_TOO_LONG == -32011
    assert rejected["error"]["data"] == {"max_line": 1000}
    assert closed
    assert still_served["result"] == STATUS


def _send_blocking(path: Path, payload: bytes) -> tuple[bytes, bytes]:
    """Send hello and `payload` with a blocking socket, as a simple script would; return two lines."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        lines = sock.makefile("rb")
        sock.sendall(json.dumps(HELLO).encode() + b"\n" + payload)
        return lines.readline(), lines.readline()


async def test_oversize_line_fully_sent_gets_error(socket_path: Path) -> None:
    async with running_server(socket_path, max_line=1000):
        hello_line, error_line = await asyncio.to_thread(_send_blocking, socket_path, b"x" * (2 << 20) + b"\n")

    assert json.loads(hello_line)["result"]["protocol"] == 1
    assert json.loads(error_line)["error"]["code"] == rpc.LINE_TOO_LONG


async def test_oversize_line_discard_is_bounded(socket_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rpc, "DISCARD_TIMEOUT", 0.2)
    async with running_server(socket_path, max_line=1000) as server:
        raw = await RawClient.open(socket_path)
        await raw.send(b"x" * 5000)  # a line that never ends
        rejected = await raw.receive()
        started = time.monotonic()
        closed = await raw.at_eof()
        waited = time.monotonic() - started
        await wait_until(lambda: server.clients == 0)
        await raw.close()

    assert rejected["error"]["code"] == rpc.LINE_TOO_LONG
    assert closed
    assert waited < 2.0


async def test_max_clients(socket_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edm_sync.rpc")
    async with running_server(socket_path, max_clients=3) as server:
        clients = [await RawClient.open(socket_path) for _ in range(3)]
        extra = await RawClient.open(socket_path, hello=False)
        rejected = await extra.receive()
        extra_closed = await extra.at_eof()
        await extra.close()
        with pytest.raises(DaemonError) as client_rejected:
            await DaemonClient.connect(socket_path)

        await clients[0].close()
        await wait_until(lambda: server.clients == 2)
        replacement = await RawClient.open(socket_path)
        status = await replacement.call("status")
        for raw in [*clients[1:], replacement]:
            await raw.close()

    assert rejected["error"]["code"] == rpc.TOO_MANY_CLIENTS == -32010
    assert rejected["error"]["data"] == {"max_clients": 3}
    assert extra_closed
    assert client_rejected.value.code == rpc.TOO_MANY_CLIENTS
    assert status["result"] == STATUS
    assert "too many clients" in caplog.text


# Events


async def test_fifty_subscribers_get_events_in_order(socket_path: Path) -> None:
    async with running_server(socket_path) as server:
        clients = [await DaemonClient.connect(socket_path, client_name=f"c{n}") for n in range(50)]
        for client in clients:
            subscribed = await client.subscribe("log")
            assert subscribed == {"topics": ["log"], "seq": 0}

        for n in range(100):
            server.publish("log", {"level": "info", "message": f"line {n}", "run_id": 1})
            if n % 10 == 0:
                await asyncio.sleep(0)
        received = await asyncio.gather(*(take_events(client, 100) for client in clients))
        for client in clients:
            await client.close()

    for events in received:
        assert [event["seq"] for event in events] == list(range(1, 101))
        assert [event["data"]["message"] for event in events] == [f"line {n}" for n in range(100)]
        assert {event["topic"] for event in events} == {"log"}


async def test_only_subscribed_topics_arrive(socket_path: Path) -> None:
    async with running_server(socket_path) as server:
        client = await DaemonClient.connect(socket_path)
        everything = await client.subscribe()
        remaining = await client.call("unsubscribe", topics=["log", "progress"])
        server.publish("log", {"message": "not for this client"})
        server.publish("run_started", {"run_id": 1, "trigger": "manual"})
        events = await take_events(client, 1)
        with pytest.raises(DaemonError) as unknown:
            await client.subscribe("nonsense")
        await client.close()

    assert everything["topics"] == list(rpc.EVENT_TOPICS)
    assert remaining == {"topics": ["run_started", "run_finished", "status"]}
    assert events == [{"seq": 1, "topic": "run_started", "data": {"run_id": 1, "trigger": "manual"}}]
    assert unknown.value.code == rpc.INVALID_PARAMS


async def test_progress_events_coalesce(socket_path: Path) -> None:
    async with running_server(socket_path) as server:
        client = await DaemonClient.connect(socket_path)
        await client.subscribe("progress", "log")
        # No await between the publishes, so all of them wait in the queue together.
        for done in range(1, 11):
            server.publish("progress", {"run_id": 1, "phase": "write", "done": done, "total": 15}, coalesce=True)
        server.publish("log", {"message": "first"})
        server.publish("log", {"message": "second"})
        for done in range(11, 16):
            server.publish("progress", {"run_id": 1, "phase": "write", "done": done, "total": 15}, coalesce=True)
        events = await take_events(client, 3)
        await client.close()

    assert [event["topic"] for event in events] == ["log", "log", "progress"]
    assert [event["seq"] for event in events] == [1, 2, 3]
    assert events[2]["data"]["done"] == 15


async def test_seq_gap_after_dropped_events(socket_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edm_sync.rpc")
    async with running_server(socket_path, event_queue_size=5) as server:
        client = await DaemonClient.connect(socket_path)
        await client.subscribe("log")
        for n in range(1, 21):
            server.publish("log", {"message": f"line {n}"})
        first = await take_events(client, 5)
        server.publish("log", {"message": "line 21"})
        later = await take_events(client, 1)
        await client.close()

    assert [event["seq"] for event in first] == [16, 17, 18, 19, 20]
    assert [event["data"]["message"] for event in first] == [f"line {n}" for n in range(16, 21)]
    assert later[0]["seq"] == 21
    assert "dropped 15 events" in caplog.text


async def test_stuck_client_does_not_slow_publisher(socket_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edm_sync.rpc")
    payload = "x" * 1000
    async with running_server(socket_path, stall_timeout=0.5) as server:
        readers = [await DaemonClient.connect(socket_path) for _ in range(3)]
        for reader in readers:
            await reader.subscribe("log")

        stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stuck.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(stuck, str(socket_path))
        subscribe = {"jsonrpc": "2.0", "id": 2, "method": "subscribe", "params": {"topics": ["log"]}}
        await loop.sock_sendall(stuck, json.dumps(HELLO).encode() + b"\n" + json.dumps(subscribe).encode() + b"\n")
        responses = b""
        while responses.count(b"\n") < 2:
            responses += await loop.sock_recv(stuck, 4096)
        # From here on the stuck client reads nothing.
        assert server.clients == 4

        spent_publishing = 0.0
        for n in range(2000):
            started = time.perf_counter()
            server.publish("log", {"message": payload, "n": n})
            spent_publishing += time.perf_counter() - started
            if n % 50 == 0:
                await asyncio.sleep(0)
        stuck_existed = server.clients == 4

        await wait_until(lambda: server.clients == 3)
        server.publish("log", {"message": "after", "n": 2000})
        received = await asyncio.gather(*(take_events(reader, 2001) for reader in readers))
        for reader in readers:
            await reader.close()
        stuck.close()

    assert stuck_existed
    assert spent_publishing < 0.5, f"2000 publishes took {spent_publishing:.3f} s"
    assert "socket stayed full for 0.5 s (stall timeout); disconnecting it" in caplog.text
    for events in received:
        assert [event["data"]["n"] for event in events] == list(range(2001))
        assert [event["seq"] for event in events] == list(range(1, 2002))


async def test_publish_rejects_unknown_topic(socket_path: Path) -> None:
    async with running_server(socket_path) as server:
        with pytest.raises(ValueError, match="unknown event topic 'progres'"):
            server.publish("progres", {})


# Access


def _other_identity() -> tuple[int | None, int | None, list[int]]:
    """Return (uid, gid, groups) for a client other than the test: user 'nobody' when the test runs as root."""
    if IS_ROOT:
        return 65534, grp.getgrnam("nogroup").gr_gid, [grp.getgrnam("users").gr_gid]
    return None, None, []


def _socket_group() -> str:
    """Return a group that the client of _other_identity() has as its primary group."""
    return "nogroup" if IS_ROOT else grp.getgrgid(os.getgid()).gr_name


def _exchange_in_child(path: Path, messages: list[dict[str, Any]], uid: int | None, gid: int | None,
                       groups: list[int]) -> bytes:
    """Send `messages` from a forked process, running as `uid` when given; return the bytes it read.

    The child enters the socket's directory before it drops root, because the test's
    temporary directories are closed to other users.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: only system calls, then _exit
        exit_code = 1
        try:
            os.close(read_end)
            os.chdir(path.parent)
            if uid is not None and gid is not None:
                os.setgroups(groups)
                os.setgid(gid)
                os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(path.name)
                sock.sendall(b"".join(json.dumps(message).encode() + b"\n" for message in messages))
                received = b""
                while received.count(b"\n") < len(messages):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received += chunk
            os.write(write_end, received)
            exit_code = 0
        finally:
            os._exit(exit_code)

    os.close(write_end)
    try:
        output = b""
        while chunk := os.read(read_end, 65536):
            output += chunk
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    return output


async def exchange_as_other_user(path: Path, *methods: str) -> list[dict[str, Any]]:
    """Call hello and then `methods` as a user other than the test's; return the responses in call order."""
    messages = [HELLO] + [{"jsonrpc": "2.0", "id": n, "method": name} for n, name in enumerate(methods, 2)]
    uid, gid, groups = _other_identity()
    output = await asyncio.to_thread(_exchange_in_child, path, messages, uid, gid, groups)
    responses = {response["id"]: response for response in map(json.loads, output.splitlines())}
    return [responses[n] for n in range(1, len(messages) + 1)]


def _client_uid() -> int:
    return 65534 if IS_ROOT else os.getuid()


async def test_write_method_rejected_for_others(socket_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edm_sync.rpc")
    service_uid = _client_uid() + 1
    policy = AccessPolicy(service_uid=service_uid, admin_group=None)
    async with running_server(socket_path, policy=policy, group=_socket_group()):
        hello, status, run = await exchange_as_other_user(socket_path, "status", "run")

    assert hello["result"]["user"] == pwd.getpwuid(_client_uid()).pw_name
    assert hello["result"]["can_write"] is False
    assert status["result"] == STATUS
    assert run["error"]["code"] == rpc.PERMISSION_DENIED == -32001
    assert run["error"]["data"]["method"] == "run"
    service_user = policy.describe_writers().split("'")[1]
    assert run["error"]["data"]["reason"] == f"root or the service user '{service_user}'"
    assert "permission denied for 'run'" in caplog.text


@pytest.mark.parametrize("membership", ["primary", "supplementary"])
async def test_write_method_allowed_for_admin_group(socket_path: Path, membership: str) -> None:
    _, gid, groups = _other_identity()
    if membership == "primary":
        admin_group = grp.getgrgid(gid if gid is not None else os.getgid()).gr_name
    else:
        supplementary = groups if IS_ROOT else [g for g in os.getgroups() if g != os.getgid()]
        if not supplementary:
            pytest.skip("the test user has no supplementary group")
        admin_group = grp.getgrgid(supplementary[0]).gr_name
    policy = AccessPolicy(service_uid=_client_uid() + 1, admin_group=admin_group)
    async with running_server(socket_path, policy=policy, group=_socket_group()):
        hello, run = await exchange_as_other_user(socket_path, "run")

    assert hello["result"]["can_write"] is True
    assert run["result"] == {"run_id": 7}


def test_access_policy_decisions() -> None:
    admins = grp.getgrnam("users").gr_gid
    policy = AccessPolicy(service_uid=4242, admin_group="users")
    cases = {
        "root": (Peer(1, 0, 0, frozenset(), "root"), True),
        "service user": (Peer(1, 4242, 4242, frozenset(), "edm-sync"), True),
        "primary admin group": (Peer(1, 5000, admins, frozenset(), "alice"), True),
        "supplementary admin group": (Peer(1, 5000, 5000, frozenset({admins}), "alice"), True),
        "other user": (Peer(1, 5000, 5000, frozenset({5001}), "bob"), False),
        "unknown credentials": (Peer(0, -1, -1, frozenset(), "unknown"), False),
    }
    for name, (peer, allowed) in cases.items():
        assert policy.can_write(peer) is allowed, name

    assert AccessPolicy(4242, "no-such-group-here").can_write(cases["primary admin group"][0]) is False


def test_access_policy_describes_writers() -> None:
    nobody = pwd.getpwuid(65534).pw_name
    assert AccessPolicy(65534, "edm-admins").describe_writers() == (
        f"root, the service user '{nobody}' or members of group 'edm-admins'")
    assert AccessPolicy(0, "edm-admins").describe_writers() == "root or members of group 'edm-admins'"
    assert AccessPolicy(0, None).describe_writers() == "root"


def test_read_peer_on_socketpair() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        peer = read_peer(left)

    assert peer.pid == os.getpid()
    assert peer.uid == os.getuid()
    assert peer.gid == os.getgid()
    assert peer.user == pwd.getpwuid(os.getuid()).pw_name
    assert set(os.getgroups()) <= peer.groups


# Socket file


async def test_socket_mode_and_parent_directory(socket_path: Path) -> None:
    async with running_server(socket_path) as server:
        socket_mode = stat.S_IMODE(os.stat(socket_path).st_mode)
        directory_mode = stat.S_IMODE(os.stat(socket_path.parent).st_mode)
        is_socket = stat.S_ISSOCK(os.stat(socket_path).st_mode)
        assert server.path == socket_path

    assert is_socket
    assert socket_mode == 0o660
    assert directory_mode == 0o755
    assert not socket_path.exists()  # close() removes it


async def test_socket_group_set(socket_path: Path) -> None:
    group = _socket_group()
    async with running_server(socket_path, group=group):
        owner_group = grp.getgrgid(os.stat(socket_path).st_gid).gr_name

    assert owner_group == group


async def test_missing_socket_group_named(socket_path: Path) -> None:
    server = build_server()
    with pytest.raises(SocketSetupError, match="socket group 'no-such-group-here' does not exist"):
        await server.start(socket_path, group="no-such-group-here")

    assert not socket_path.exists()


async def test_stale_socket_replaced(socket_path: Path) -> None:
    socket_path.parent.mkdir()
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(socket_path))
    leftover.close()  # the file stays, and no process listens on it

    async with running_server(socket_path):
        raw = await RawClient.open(socket_path)
        status = await raw.call("status")
        await raw.close()

    assert status["result"] == STATUS


async def test_live_server_not_replaced(socket_path: Path) -> None:
    async with running_server(socket_path):
        second = build_server()
        with pytest.raises(SocketSetupError, match="another server is already listening"):
            await second.start(socket_path)
        raw = await RawClient.open(socket_path)
        status = await raw.call("status")
        await raw.close()

    assert status["result"] == STATUS


async def test_regular_file_not_replaced(socket_path: Path) -> None:
    socket_path.parent.mkdir()
    socket_path.write_text("not a socket")
    server = build_server()
    with pytest.raises(SocketSetupError, match="is not a socket"):
        await server.start(socket_path)

    assert socket_path.read_text() == "not a socket"


# Client


async def test_client_calls_and_errors(socket_path: Path) -> None:
    async with running_server(socket_path), await DaemonClient.connect(socket_path, client_name="edm-tui") as client:
        hello = client.hello
        status = await client.call("status")
        echoed = await client.call("echo", method="value of a param named method", limit=3)
        with pytest.raises(DaemonError) as busy:
            await client.call("busy")
        with pytest.raises(DaemonError) as missing:
            await client.call("no.such.method")

    assert hello["protocol"] == 1
    assert status == STATUS
    assert echoed == {"method": "value of a param named method", "limit": 3}
    assert (busy.value.code, busy.value.message, busy.value.data) == (-32002, "a run is already in progress",
                                                                      {"run_id": 3})
    assert missing.value.code == rpc.METHOD_NOT_FOUND


async def test_client_unsupported_protocol(socket_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "PROTOCOL_VERSION", 2)
    async with running_server(socket_path):
        with pytest.raises(DaemonError) as rejected:
            await DaemonClient.connect(socket_path)

    assert rejected.value.code == rpc.UNSUPPORTED_PROTOCOL
    assert rejected.value.data == {"supported": [1]}


async def test_client_sees_unavailable_when_server_closes(socket_path: Path) -> None:
    server = build_server()
    await server.start(socket_path)
    client = await DaemonClient.connect(socket_path)
    await client.subscribe("log")
    slow_call = asyncio.create_task(client.call("slow"))

    async def wait_for_events() -> None:
        async for _ in client.events():
            pass

    watching = asyncio.create_task(wait_for_events())
    await asyncio.sleep(0.05)
    await server.close()

    with pytest.raises(DaemonUnavailable) as lost_call:
        await asyncio.wait_for(slow_call, 5)
    with pytest.raises(DaemonUnavailable):
        await asyncio.wait_for(watching, 5)
    with pytest.raises(DaemonUnavailable):
        await client.call("status")
    await client.close()

    assert str(socket_path) in str(lost_call.value)


async def test_client_close_ends_events(socket_path: Path) -> None:
    async with running_server(socket_path):
        client = await DaemonClient.connect(socket_path)
        await client.subscribe()

        async def drain() -> int:
            return len([event async for event in client.events()])

        counting = asyncio.create_task(drain())
        await asyncio.sleep(0.05)
        await client.close()
        count = await asyncio.wait_for(counting, 5)

    assert count == 0


async def test_connect_without_daemon(socket_path: Path) -> None:
    with pytest.raises(DaemonUnavailable) as missing:
        await DaemonClient.connect(socket_path)

    socket_path.parent.mkdir()
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(socket_path))
    leftover.close()
    with pytest.raises(DaemonUnavailable) as refused:
        await DaemonClient.connect(socket_path)

    for error in (missing.value, refused.value):
        assert str(socket_path) in str(error)
        assert error.not_running
    assert str(missing.value) == f"the daemon is not running: no socket at {socket_path}"
    assert str(refused.value) == f"the daemon is not running: connection to {socket_path} refused"


def test_default_socket_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system_path = tmp_path / "system" / "edm-sync.sock"
    monkeypatch.setattr(client_module, "SYSTEM_SOCKET_PATH", system_path)
    monkeypatch.setattr(client_module.platformdirs, "user_runtime_dir", lambda name: f"/run/user/1000/{name}")
    monkeypatch.delenv("EDM_SYNC_SOCKET", raising=False)
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)

    assert default_socket_path() == Path("/run/user/1000/edm-sync/edm-sync.sock")

    system_path.parent.mkdir()
    system_path.touch()
    assert default_socket_path() == system_path

    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/edm-sync-test:/run/other")
    assert default_socket_path() == Path("/run/edm-sync-test/edm-sync.sock")

    monkeypatch.setenv("EDM_SYNC_SOCKET", str(tmp_path / "explicit.sock"))
    assert default_socket_path() == tmp_path / "explicit.sock"
