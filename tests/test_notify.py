"""The systemd notification protocol against real AF_UNIX datagram sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edm_tui.daemon.notify import Notifier, watchdog_loop


def _receive_all(receiver: socket.socket) -> list[str]:
    """Return every datagram waiting on `receiver`, oldest first."""
    messages = []
    receiver.setblocking(False)
    try:
        while True:
            messages.append(receiver.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        receiver.setblocking(True)
    return messages


def _receive_one(receiver: socket.socket) -> str:
    receiver.settimeout(2.0)
    return receiver.recv(4096).decode()


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    path = tmp_path / "notify.sock"
    # sockaddr_un has room for 107 path bytes, so a very deep tmp_path would not fit.
    if len(os.fsencode(path)) > 100:
        pytest.skip(f"temporary path too long for an AF_UNIX address: {path}")
    return path


@pytest.fixture
def receiver(socket_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(socket_path))
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def abstract_receiver() -> Iterator[tuple[socket.socket, str]]:
    name = f"edm-sync-test-{os.getpid()}-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


def test_path_socket_receives_each_message(receiver: socket.socket, socket_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(socket_path), "WATCHDOG_USEC": "4000000"})
    assert notifier.enabled

    assert notifier.ready()
    assert _receive_one(receiver) == "READY=1"
    assert notifier.status("idle; next run 12:00")
    assert _receive_one(receiver) == "STATUS=idle; next run 12:00"
    assert notifier.watchdog()
    assert _receive_one(receiver) == "WATCHDOG=1"
    assert notifier.stopping()
    assert _receive_one(receiver) == "STOPPING=1"
    notifier.close()


def test_abstract_socket_receives_messages(abstract_receiver: tuple[socket.socket, str]) -> None:
    receiver, name = abstract_receiver
    notifier = Notifier({"NOTIFY_SOCKET": name})
    assert notifier.enabled

    assert notifier.ready()
    assert _receive_one(receiver) == "READY=1"
    assert notifier.status("running 42%")
    assert _receive_one(receiver) == "STATUS=running 42%"
    assert notifier.stopping()
    assert _receive_one(receiver) == "STOPPING=1"
    notifier.close()


def test_ready_with_status_is_one_datagram(receiver: socket.socket, socket_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(socket_path)})

    notifier.ready("idle")

    assert _receive_one(receiver) == "READY=1\nSTATUS=idle"
    assert _receive_all(receiver) == []


def test_status_keeps_one_line(receiver: socket.socket, socket_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(socket_path)})

    notifier.status("run 3 failed:\nIEM timed out\r\nretrying\0later")

    assert _receive_one(receiver) == "STATUS=run 3 failed: IEM timed out retrying later"


def test_reloading_sends_monotonic_time(receiver: socket.socket, socket_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(socket_path)})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    notifier.reloading()

    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = _receive_one(receiver).split("\n")
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_extend_timeout_in_microseconds(receiver: socket.socket, socket_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(socket_path)})

    notifier.extend_timeout(2.5)

    assert _receive_one(receiver) == "EXTEND_TIMEOUT_USEC=2500000"


def test_unset_socket_disables_everything() -> None:
    notifier = Notifier({})

    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.ready() is False
    assert notifier.status("idle") is False
    assert notifier.watchdog() is False


@pytest.mark.parametrize("value", ["relative/notify.sock", "@", "vsock:2:1234"])
def test_unusable_socket_name_disables(value: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edm_sync.notify")

    notifier = Notifier({"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "1000000"})

    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.ready() is False
    assert value in caplog.text


def test_missing_socket_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edm_sync.notify")
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})

    assert notifier.ready() is False
    assert notifier.status("idle") is False
    assert notifier.stopping() is False

    records = [record for record in caplog.records if record.name == "edm_sync.notify"]
    assert len(records) == 1
    assert records[0].levelno == logging.DEBUG
    assert notifier.failed_sends == 3


def test_socket_gone_after_start(receiver: socket.socket, socket_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(socket_path)})
    assert notifier.ready()

    receiver.close()
    socket_path.unlink()

    assert notifier.status("still here") is False
    assert notifier.stopping() is False


OUR_PID = 4242


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(OUR_PID)}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(OUR_PID + 1)}, None),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
    ids=["unset", "no-pid", "our-pid", "other-pid", "bad-pid", "zero", "bad-usec"],
)
def test_watchdog_pid_rules(
    environ: dict[str, str], interval: float | None, receiver: socket.socket, socket_path: Path
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(socket_path), **environ}, pid=OUR_PID)

    assert notifier.watchdog_interval == interval
    sent = notifier.watchdog()

    assert sent is (interval is not None)
    expected = ["WATCHDOG=1"] if interval is not None else []
    assert _receive_all(receiver) == expected


def test_watchdog_defaults_to_own_pid(receiver: socket.socket, socket_path: Path) -> None:
    environ = {"NOTIFY_SOCKET": str(socket_path), "WATCHDOG_USEC": "1000000",
               "WATCHDOG_PID": str(os.getpid())}

    assert Notifier(environ).watchdog_interval == 0.5


async def test_watchdog_loop_pings_at_interval(receiver: socket.socket, socket_path: Path) -> None:
    # WATCHDOG_USEC of 0.1 s gives a ping every 0.05 s.
    notifier = Notifier({"NOTIFY_SOCKET": str(socket_path), "WATCHDOG_USEC": "100000"})
    checks: list[float] = []

    def healthy() -> bool:
        checks.append(time.monotonic())
        return len(checks) <= 5

    await asyncio.wait_for(watchdog_loop(notifier, healthy), timeout=5)

    assert _receive_all(receiver) == ["WATCHDOG=1"] * 5
    gaps = [later - earlier for earlier, later in zip(checks, checks[1:])]
    assert len(gaps) == 5
    assert min(gaps) >= 0.045
    assert max(gaps) < 0.5


async def test_watchdog_loop_stops_when_unhealthy(
    receiver: socket.socket, socket_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(socket_path), "WATCHDOG_USEC": "100000"})
    caplog.set_level(logging.ERROR, logger="edm_sync.notify")

    await asyncio.wait_for(watchdog_loop(notifier, lambda: False), timeout=5)

    assert _receive_all(receiver) == []
    assert "health check failed" in caplog.text


async def test_watchdog_loop_stops_when_check_raises(
    receiver: socket.socket, socket_path: Path
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(socket_path), "WATCHDOG_USEC": "100000"})
    calls = 0

    def broken() -> bool:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise RuntimeError("status unknown")
        return True

    await asyncio.wait_for(watchdog_loop(notifier, broken), timeout=5)

    assert _receive_all(receiver) == ["WATCHDOG=1"] * 2


async def test_watchdog_loop_silent_while_loop_blocked(
    receiver: socket.socket, socket_path: Path
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(socket_path), "WATCHDOG_USEC": "100000"})
    pings: list[float] = []

    def healthy() -> bool:
        pings.append(time.monotonic())
        return True

    task = asyncio.create_task(watchdog_loop(notifier, healthy))
    await asyncio.sleep(0.12)
    time.sleep(0.4)  # a blocking call wedges the event loop
    await asyncio.sleep(0.12)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    gaps = [later - earlier for earlier, later in zip(pings, pings[1:])]
    assert max(gaps) >= 0.4
    assert len(_receive_all(receiver)) == len(pings)


async def test_watchdog_loop_returns_without_watchdog() -> None:
    calls: list[int] = []

    await asyncio.wait_for(watchdog_loop(Notifier({}), lambda: calls.append(1) or True), timeout=1)

    assert calls == []
