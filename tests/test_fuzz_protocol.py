"""Bad input on the daemon's socket: one real `edm-sync daemon` process serves every case.

Each case checks the exact JSON-RPC error that docs/protocol.md promises, or that the daemon
closes the connection where that document promises it. Then another client's `status` must
still work and the daemon process must still run.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon_support import DaemonProcess
from tests.fuzz_support import RawClient, running_daemon

MAX_LINE = 1024 * 1024


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("protocol")) as process:
        yield process


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[RawClient]:
    connection = RawClient(daemon.socket_path)
    yield connection
    connection.close()
    _assert_daemon_serves(daemon)


def _assert_daemon_serves(daemon: DaemonProcess) -> None:
    other = RawClient(daemon.socket_path)
    try:
        reply = other.call("after", "status")
    finally:
        other.close()
    assert daemon.process is not None
    assert daemon.process.poll() is None
    assert reply["id"] == "after"
    assert reply["result"]["state"] == "idle"


def _error(code: int, message: str, request_id: Any = None, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


INVALID_JSON = _error(-32700, "parse error: invalid JSON")
INVALID_UTF8 = _error(-32700, "parse error: invalid UTF-8")
NOT_OBJECT = _error(-32600, "a request must be a JSON object")
BATCH = _error(-32600, "batches are not supported")
BAD_ID = _error(-32600, "id must be a string, a number or null")
NOT_REQUEST = 'a request needs "jsonrpc": "2.0" and a "method" string'
PARAMS_NOT_OBJECT = "params must be a JSON object"


# Lines that are not requests --------------------------------------------------------------------

BAD_LINES = [
    pytest.param(b"hello world\n", INVALID_JSON, id="text"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"status"\n', INVALID_JSON, id="partial-object"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"meth\n', INVALID_JSON, id="partial-key"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"status"}}\n', INVALID_JSON, id="extra-brace"),
    pytest.param(b"\x00\x01\x02\x03binary\x7f\n", INVALID_JSON, id="binary-ascii"),
    pytest.param(b"\xff\xfe\x00\x80\x81\n", INVALID_UTF8, id="binary-not-utf8"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"st\xc3\x28atus"}\n', INVALID_UTF8, id="invalid-utf8-in-string"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"status","params":{"x":"\xed\xa0\x80"}}\n', INVALID_UTF8,
                 id="utf8-encoded-surrogate"),
    pytest.param(b"\xef\xbb\xbf" + b'{"jsonrpc":"2.0","id":1,"method":"status"}\n', INVALID_JSON, id="bom"),
    pytest.param(b'{"jsonrpc":"2.0","id":NaN,"method":"status"}\n', INVALID_JSON, id="nan-id"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"runs","params":{"since":-Infinity}}\n', INVALID_JSON,
                 id="infinity-param"),
    pytest.param(b"[" * 100_000 + b"\n", INVALID_JSON, id="deep-nesting"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"runs","params":{"email":"\\ud800"}}\n',
                 _error(-32700, "parse error: a string contains the lone surrogate \\ud800, which is not valid "
                        "Unicode"), id="lone-surrogate-escape"),
    pytest.param(b"42\n", NOT_OBJECT, id="number"),
    pytest.param(b'"status"\n', NOT_OBJECT, id="string"),
    pytest.param(b"null\n", NOT_OBJECT, id="null"),
    pytest.param(b"true\n", NOT_OBJECT, id="true"),
    pytest.param(b"[]\n", BATCH, id="empty-batch"),
    pytest.param(b'[{"jsonrpc":"2.0","id":1,"method":"status"}]\n', BATCH, id="batch"),
    pytest.param(b'{"jsonrpc":"2.0","id":{"a":1},"method":"status"}\n', BAD_ID, id="object-id"),
    pytest.param(b'{"jsonrpc":"2.0","id":[1],"method":"status"}\n', BAD_ID, id="list-id"),
    pytest.param(b'{"jsonrpc":"2.0","id":true,"method":"status"}\n', BAD_ID, id="bool-id"),
    pytest.param(b'{"jsonrpc":"2.0","id":1e400,"method":"status"}\n', BAD_ID, id="overflowing-id"),
    pytest.param(b'{"id":7,"method":"status"}\n', _error(-32600, NOT_REQUEST, 7), id="no-jsonrpc"),
    pytest.param(b'{"jsonrpc":"1.0","id":7,"method":"status"}\n', _error(-32600, NOT_REQUEST, 7), id="jsonrpc-1"),
    pytest.param(b'{"jsonrpc":2.0,"id":7,"method":"status"}\n', _error(-32600, NOT_REQUEST, 7),
                 id="jsonrpc-number"),
    pytest.param(b'{"jsonrpc":"2.0","id":7}\n', _error(-32600, NOT_REQUEST, 7), id="no-method"),
    pytest.param(b'{"jsonrpc":"2.0","id":7,"method":["status"]}\n', _error(-32600, NOT_REQUEST, 7),
                 id="method-list"),
    pytest.param(b'{"jsonrpc":"2.0","id":"x","method":"no.such"}\n',
                 _error(-32601, "method not found", "x", {"method": "no.such"}), id="unknown-method"),
    pytest.param(b'{"jsonrpc":"2.0","id":"x","method":""}\n',
                 _error(-32601, "method not found", "x", {"method": ""}), id="empty-method"),
]


@pytest.mark.parametrize(("line", "expected"), BAD_LINES)
def test_bad_line_gets_documented_error(client: RawClient, line: bytes, expected: dict[str, Any]):
    client.send(line)

    assert client.reply() == expected
    assert client.call(1, "status")["result"]["state"] == "idle"


def test_blank_lines_are_ignored(client: RawClient):
    client.send(b"\n \r\n\t\n")

    assert client.call("after-blank", "status")["id"] == "after-blank"


def test_crlf_line_is_accepted(client: RawClient):
    client.send(b'{"jsonrpc":"2.0","id":"crlf","method":"status"}\r\n')

    assert client.reply()["id"] == "crlf"


def test_call_before_hello_is_rejected(daemon: DaemonProcess):
    fresh = RawClient(daemon.socket_path, hello=False)
    try:
        before = fresh.call(1, "status")
        hello = fresh.call(2, "hello", {"protocol": 1})
    finally:
        fresh.close()

    assert before == _error(-32005, "hello required", 1)
    assert hello["result"]["protocol"] == 1
    _assert_daemon_serves(daemon)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({}, _error(-32602, 'hello needs "protocol", an integer', 3, {"supported": [1]}), id="missing"),
        pytest.param({"protocol": "1"}, _error(-32602, 'hello needs "protocol", an integer', 3, {"supported": [1]}),
                     id="string"),
        pytest.param({"protocol": True}, _error(-32602, 'hello needs "protocol", an integer', 3, {"supported": [1]}),
                     id="bool"),
        pytest.param({"protocol": 1.5}, _error(-32602, 'hello needs "protocol", an integer', 3, {"supported": [1]}),
                     id="float"),
        pytest.param({"protocol": 2}, _error(-32004, "unsupported protocol version", 3, {"supported": [1]}),
                     id="unsupported"),
        pytest.param({"protocol": 10**40}, _error(-32004, "unsupported protocol version", 3, {"supported": [1]}),
                     id="huge"),
        pytest.param({"protocol": 1, "client": 5}, _error(-32602, '"client" must be a string', 3), id="client-number"),
        pytest.param([1], _error(-32602, PARAMS_NOT_OBJECT, 3), id="params-list"),
    ],
)
def test_bad_hello_keeps_connection_open(daemon: DaemonProcess, params: Any, expected: dict[str, Any]):
    fresh = RawClient(daemon.socket_path, hello=False)
    try:
        reply = fresh.call(3, "hello", params)
        retry = fresh.call(4, "hello", {"protocol": 1})
    finally:
        fresh.close()

    assert reply == expected
    assert retry["result"]["protocol"] == 1
    _assert_daemon_serves(daemon)


# Wrong parameter types, per method --------------------------------------------------------------

TOPICS = ["progress", "run_started", "run_finished", "log", "status"]


def _whole_number(name: str, low: int, high: int = 2**63 - 1) -> str:
    return f"{name} must be a whole number of at least {low} and at most {high}"


WRONG_PARAMS = [
    ("subscribe", {"topics": "progress"}, '"topics" must be a list of strings', {"topics": TOPICS}),
    ("subscribe", {"topics": [1]}, '"topics" must be a list of strings', {"topics": TOPICS}),
    ("subscribe", {"topics": ["nope"]}, "unknown topic 'nope'", {"topics": TOPICS}),
    ("unsubscribe", {"topics": {"a": 1}}, '"topics" must be a list of strings', {"topics": TOPICS}),
    ("run", {"allow_mass_changes": "yes"}, "allow_mass_changes must be true or false", None),
    ("run", {"allow_mass_changes": 1}, "allow_mass_changes must be true or false", None),
    ("plan", {"limit": "5"}, _whole_number("limit", 1, 1000), None),
    ("plan", {"limit": 0}, _whole_number("limit", 1, 1000), None),
    ("plan", {"limit": 1001}, _whole_number("limit", 1, 1000), None),
    ("plan", {"limit": 2.5}, _whole_number("limit", 1, 1000), None),
    ("plan", {"limit": True}, _whole_number("limit", 1, 1000), None),
    ("runs", {"limit": "x"}, _whole_number("limit", 1, 500), None),
    ("runs", {"limit": 501}, _whole_number("limit", 1, 500), None),
    ("runs", {"before_id": -1}, _whole_number("before_id", 0), None),
    ("runs", {"since": "yesterday"}, _whole_number("since", 0), None),
    ("runs", {"until": [1]}, _whole_number("until", 0), None),
    ("runs", {"status": 5}, "status must be a list of strings", None),
    ("runs", {"trigger": [None]}, "trigger must be a list of strings", None),
    ("runs", {"email": 5}, "email must be a string", None),
    ("run_items", {}, "run_id is required", None),
    ("run_items", {"run_id": "1"}, _whole_number("run_id", 1), None),
    ("run_items", {"run_id": 0}, _whole_number("run_id", 1), None),
    ("run_items", {"run_id": 99_999}, "there is no run 99999", None),
    ("config.validate", {"config": "x"}, "config must be an object of sections, each an object of keys", None),
    ("config.validate", {"config": {"schedule": 5}},
     "config must be an object of sections, each an object of keys", None),
    ("config.validate", {"config": [1]}, "config must be an object of sections, each an object of keys", None),
    ("config.set", {}, "config must be an object of sections, each an object of keys", None),
    ("config.set", {"config": "x"}, "config must be an object of sections, each an object of keys", None),
    ("iem.fields", {"list_id": "1"}, _whole_number("list_id", 1), None),
    ("iem.fields", {"list_id": 0}, _whole_number("list_id", 1), None),
]
ALL_METHODS = ["hello", "subscribe", "unsubscribe", "status", "run", "cancel", "plan", "runs", "run_items",
               "config.get", "config.validate", "config.set", "check", "iem.lists", "iem.fields"]


@pytest.mark.parametrize(("method", "params", "message", "data"), WRONG_PARAMS,
                         ids=[f"{case[0]}-{json.dumps(case[1])}" for case in WRONG_PARAMS])
def test_wrong_param_gets_invalid_params(daemon: DaemonProcess, client: RawClient, method: str, params: Any,
                                         message: str, data: Any):
    config_before = daemon.config_path.read_bytes()

    reply = client.call(5, method, params)

    assert reply == _error(-32602, message, 5, data)
    assert daemon.config_path.read_bytes() == config_before
    assert client.call(6, "status")["result"]["state"] == "idle"


@pytest.mark.parametrize("params", [[], "x", 5, None], ids=["list", "string", "number", "null"])
def test_params_not_object_for_every_method(client: RawClient, params: Any):
    for index, method in enumerate(ALL_METHODS):
        request = {"jsonrpc": "2.0", "id": index, "method": method, "params": params}
        client.send(json.dumps(request).encode() + b"\n")
        assert client.reply() == _error(-32602, PARAMS_NOT_OBJECT, index), method


# Length limit and broken connections ----------------------------------------------------------


def test_line_at_limit_is_read(client: RawClient):
    request = b'{"jsonrpc":"2.0","id":"big","method":"status"}'
    client.send(request + b" " * (MAX_LINE - len(request)) + b"\n")

    assert client.reply()["id"] == "big"


def test_line_over_limit_closes_connection(client: RawClient):
    client.send(b"x" * (MAX_LINE + 1) + b"\n")

    assert client.reply() == _error(-32011, "line too long", None, {"max_line": MAX_LINE})
    assert client.at_eof()


def test_endless_line_is_cut_off(daemon: DaemonProcess, client: RawClient):
    """A client that keeps a huge line open gets the error and is closed after the discard limit."""
    client.send(b"{" * (MAX_LINE + 10))
    started = time.monotonic()

    reply = client.reply()
    closed = client.at_eof()

    assert reply == _error(-32011, "line too long", None, {"max_line": MAX_LINE})
    assert closed
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize(
    "partial",
    [b'{"jsonrpc":"2.0","id":1,"method":"sta', b"\xff\xfe", b"", b'{"jsonrpc":"2.0","id":1,"method":"status"}'],
    ids=["half-request", "binary", "nothing", "no-newline"],
)
def test_close_mid_line_gets_nothing(daemon: DaemonProcess, partial: bytes):
    fresh = RawClient(daemon.socket_path)
    fresh.send(partial)
    fresh.sock.shutdown(socket.SHUT_WR)

    # docs/protocol.md: a last line without "\n" is ignored, and the daemon then closes.
    assert fresh.at_eof()
    fresh.close()
    _assert_daemon_serves(daemon)


def test_abort_mid_line_and_mid_reply(daemon: DaemonProcess):
    for _ in range(20):
        fresh = RawClient(daemon.socket_path)
        fresh.send(b'{"jsonrpc":"2.0","id":1,"method":"config.get"}\n{"jsonrpc":"2.0","id":2,"meth')
        fresh.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        fresh.close()  # SO_LINGER 0: the kernel resets the connection

    _assert_daemon_serves(daemon)


# Random lines ----------------------------------------------------------------------------------

# Integers stay within 64 bits and config.validate is left out, because UNCHECKED_PARAMS below
# covers the -32603 replies that larger integers and nulls in config values still get.
_JSON_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
                 | st.floats(allow_nan=False, allow_infinity=False) | st.text())
_JSON = st.recursive(_JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
# Read-only methods, so random params cannot start a run or change the configuration. The
# slow methods that contact Magento or IEM are left out too.
_EXCLUDED_METHODS = {"run", "cancel", "config.set", "config.validate", "plan", "check", "iem.lists", "iem.fields"}
_METHODS = st.sampled_from(["status", "runs", "run_items", "config.get", "subscribe",
                            "unsubscribe", "hello", "no.such"]) | st.text(max_size=12).filter(
                                lambda name: name not in _EXCLUDED_METHODS)
_REQUESTS = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0") | _JSON_SCALARS, "id": st.integers() | st.text(max_size=8), "method": _METHODS},
    optional={"params": _JSON},
)
DOCUMENTED_CODES = {-32700, -32600, -32601, -32602, -32004, -32005, -32006}


@pytest.fixture(scope="module")
def random_client(daemon: DaemonProcess) -> Iterator[RawClient]:
    connection = RawClient(daemon.socket_path)
    yield connection
    connection.close()


def _send_and_probe(client: RawClient, line: bytes) -> list[dict[str, Any]]:
    """Send a line, then a status probe; return every reply up to and including the probe's."""
    client.send(line.replace(b"\n", b" ") + b"\n")
    client.send(b'{"jsonrpc":"2.0","id":"probe-0f3c","method":"status"}\n')
    replies = []
    while True:
        reply = client.reply()
        replies.append(reply)
        if reply.get("id") == "probe-0f3c":
            return replies


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(line=st.binary(max_size=200) | st.text(max_size=80).map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_random_lines_keep_connection(random_client: RawClient, line: bytes):
    replies = _send_and_probe(random_client, line)

    assert replies[-1]["result"]["state"] == "idle"
    assert len(replies) <= 2
    for reply in replies[:-1]:
        assert reply["error"]["code"] in DOCUMENTED_CODES


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(request=_REQUESTS)
def test_random_requests_get_one_reply_each(random_client: RawClient, request: dict[str, Any]):
    replies = _send_and_probe(random_client, json.dumps(request).encode())
    if request["method"] not in ("status", "runs", "run_items", "config.get"):
        answered = replies[:-1]
    else:
        # A handler task may answer after the probe does.
        answered = replies[:-1] or [random_client.reply()]

    assert replies[-1]["result"]["state"] == "idle"
    assert len(answered) == 1
    assert answered[0]["id"] in (request["id"], None)
    assert "result" in answered[0] or answered[0]["error"]["code"] in DOCUMENTED_CODES


# Values SQLite or TOML cannot hold: the daemon must check them instead of failing with -32603.
UNCHECKED_PARAMS = [
    pytest.param("runs", {"since": 2**63}, id="runs-since-2-pow-63"),
    pytest.param("runs", {"before_id": 10**30}, id="runs-before-id-10-pow-30"),
    pytest.param("run_items", {"run_id": 2**63}, id="run-items-run-id-2-pow-63"),
    pytest.param("config.validate", {"config": {"schedule": {"interval": [1, None]}}}, id="validate-null-in-list"),
]


@pytest.mark.parametrize(("method", "params"), UNCHECKED_PARAMS)
def test_unchecked_param_gets_invalid_params(client: RawClient, method: str, params: Any):
    reply = client.call(8, method, params)

    assert reply["error"]["code"] == -32602
