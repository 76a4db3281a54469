"""JSON-RPC 2.0 server on a Unix stream socket, for the dashboard and the command line.

Framing: one compact JSON object per line (UTF-8, ending in "\\n") in both directions.
Requests, responses and the server's event notifications share one connection.
Batches are not supported. The first call must be `hello`. docs/protocol.md describes
the protocol for operators and script writers.

The daemon registers its methods with `add_method()` or the `method()` decorator.
A handler is `async def handler(params: dict, peer: Peer) -> Any` and may raise RpcError.
Requests of one connection run concurrently, and their responses are written as they
finish. `hello`, `subscribe` and `unsubscribe` are built in and processed in the order
received, so a client may send `hello` and its first call without waiting in between.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edm_tui import __version__
from edm_tui.daemon.peers import AccessPolicy, Peer, read_peer
from edm_tui.daemon.rpc_connection import Connection, Response
from edm_tui.daemon.rpc_socket import SocketSetupError, bind_socket, remove_socket_file, socket_identity

__all__ = [
    "ALREADY_RUNNING", "EVENT_TOPICS", "HELLO_REQUIRED", "INTERNAL_ERROR", "INVALID_CONFIG",
    "INVALID_PARAMS", "INVALID_REQUEST", "LINE_TOO_LONG", "METHOD_NOT_FOUND", "NOT_RUNNING",
    "PARSE_ERROR", "PERMISSION_DENIED", "PROTOCOL_VERSIONS", "TOO_MANY_CLIENTS",
    "UNSUPPORTED_PROTOCOL", "Handler", "RpcError", "RpcServer", "SocketSetupError", "encode_json",
]

log = logging.getLogger("edm_sync.rpc")

# Error codes defined by JSON-RPC 2.0.
PARSE_ERROR = -32700  # invalid JSON or invalid UTF-8
INVALID_REQUEST = -32600  # not a request object, or a batch
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603  # the handler failed; the daemon's log has the traceback

# Application error codes (JSON-RPC reserves -32000 to -32099 for servers).
PERMISSION_DENIED = -32001  # data: {"method", "reason"}, reason names who may call it
ALREADY_RUNNING = -32002  # data: {"run_id"}
NOT_RUNNING = -32003
UNSUPPORTED_PROTOCOL = -32004  # data: {"supported": [versions]}
HELLO_REQUIRED = -32005
INVALID_CONFIG = -32006  # data: {"problems": [...]}
TOO_MANY_CLIENTS = -32010  # sent once, then the server closes the connection
LINE_TOO_LONG = -32011  # sent once, then the server closes the connection

PROTOCOL_VERSIONS = (1,)
EVENT_TOPICS = ("progress", "run_started", "run_finished", "log", "status")
BUILTIN_METHODS = ("hello", "subscribe", "unsubscribe")

MAX_LINE = 1024 * 1024  # bytes per request line, not counting the "\n"
MAX_CLIENTS = 64
STALL_TIMEOUT = 30.0  # seconds a client may leave its socket unwritable before it is dropped
EVENT_QUEUE_SIZE = 1000  # pending events per connection before the oldest are dropped
MAX_PENDING = 16  # requests per connection read but without a response written yet
# After a line longer than max_line, the rest of it is read and discarded before the
# connection closes, so a client still sending it can read the error instead of getting
# EPIPE. These bound that discarding.
DISCARD_MAX_BYTES = 64 * 1024 * 1024
DISCARD_TIMEOUT = 2.0  # seconds

Handler = Callable[[dict[str, Any], Peer], Awaitable[Any]]

_NO_ID = object()  # the "id" of a notification, which gets no response
_SURROGATE = re.compile("[\ud800-\udfff]")


class RpcError(Exception):
    """JSON-RPC error that a handler raises; the client receives its `code`, `message` and `data`."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


@dataclass(frozen=True, slots=True)
class _Method:
    handler: Handler
    write: bool


def encode_json(value: Any) -> bytes:
    """Encode `value` as compact UTF-8 JSON. Raises TypeError or ValueError (NaN) when it cannot."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (e.g. from a surrogateescape-decoded name) is not valid UTF-8;
        # as a \\u escape it is still valid JSON.
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")


def result_line(request_id: Any, result: Any) -> bytes:
    return b'{"jsonrpc":"2.0","id":%s,"result":%s}\n' % (encode_json(request_id), encode_json(result))


def error_line(request_id: Any, code: int, message: str, data: Any = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return encode_json({"jsonrpc": "2.0", "id": request_id, "error": error}) + b"\n"


class RpcServer:
    """Accepts clients on a Unix socket, dispatches their calls and publishes events to them."""

    def __init__(
        self,
        policy: AccessPolicy | None = None,
        *,
        server_name: str = f"edm-sync {__version__}",
        topics: Iterable[str] = EVENT_TOPICS,
        max_clients: int = MAX_CLIENTS,
        max_line: int = MAX_LINE,
        stall_timeout: float = STALL_TIMEOUT,
        event_queue_size: int = EVENT_QUEUE_SIZE,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.policy = policy or AccessPolicy(service_uid=os.getuid())
        self.server_name = server_name
        self.topics = tuple(topics)
        self.max_clients = max_clients
        self.max_line = max_line
        self.stall_timeout = stall_timeout
        self.event_queue_size = event_queue_size
        self.max_pending = max_pending

        self._methods: dict[str, _Method] = {}
        self._connections: set[Connection] = set()
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._path: Path | None = None
        self._socket_identity: tuple[int, int] | None = None
        self._closing = False

    @property
    def clients(self) -> int:
        """Number of connected clients."""
        return len(self._connections)

    @property
    def path(self) -> Path | None:
        """The socket path while the server listens."""
        return self._path

    def method(self, name: str, *, write: bool = False) -> Callable[[Handler], Handler]:
        """Register the decorated handler as method `name`; see add_method()."""

        def register(handler: Handler) -> Handler:
            self.add_method(name, handler, write=write)
            return handler

        return register

    def add_method(self, name: str, handler: Handler, *, write: bool = False) -> None:
        """Register `handler` as method `name`.

        With write=True only peers allowed by the AccessPolicy may call it, and others get
        PERMISSION_DENIED. Raises ValueError for a built-in or already registered name.
        """
        if name in BUILTIN_METHODS:
            raise ValueError(f"'{name}' is a built-in method and cannot be registered")
        if name in self._methods:
            raise ValueError(f"method '{name}' is already registered")
        self._methods[name] = _Method(handler, write)

    async def start(self, path: Path | str, mode: int = 0o660, group: str | None = None) -> None:
        """Listen on the Unix socket `path` with file mode `mode`, owned by `group` when given.

        Raises SocketSetupError when another server listens there or a step fails.
        """
        if self._server is not None:
            raise RuntimeError(f"the server already listens on {self._path}")
        path = Path(path)
        sock = bind_socket(path, mode, group)
        try:
            self._server = await asyncio.start_unix_server(self._serve_client, sock=sock, limit=self.max_line)
        except BaseException:
            sock.close()
            remove_socket_file(path, socket_identity(path))
            raise
        self._path = path
        self._socket_identity = socket_identity(path)
        self._closing = False
        log.info("listening on %s (mode %04o, group %s)", path, mode, group or "unchanged")

    async def close(self) -> None:
        """Disconnect every client, cancel running handlers and remove the socket file."""
        if self._server is None:
            return
        self._closing = True
        self._server.close()

        current = asyncio.current_task()
        waits: list[Awaitable[Any]] = []
        for connection in list(self._connections):
            connection.abort()
            waits.append(connection.wait_closed())
            if connection.reader_task is not None and connection.reader_task is not current:
                connection.reader_task.cancel()
                waits.append(connection.reader_task)
        for task in list(self._handler_tasks):
            if task is not current:
                task.cancel()
                waits.append(task)
        await asyncio.gather(*waits, return_exceptions=True)
        await self._server.wait_closed()

        if self._path is not None:
            remove_socket_file(self._path, self._socket_identity)
            log.info("stopped listening on %s", self._path)
        self._server = None
        self._path = None

    def publish(self, topic: str, data: Any, *, coalesce: bool = False) -> None:
        """Queue an event for every client subscribed to `topic`, without waiting for any client.

        With coalesce=True a client keeps only the newest unsent event of this topic.
        Call it from the event loop's thread. Raises ValueError for a topic not in
        `topics`. Data that cannot be encoded as JSON is logged and not sent.
        """
        if topic not in self.topics:
            raise ValueError(f"unknown event topic '{topic}'; known topics: {', '.join(self.topics)}")
        receivers = [connection for connection in self._connections if topic in connection.topics]
        if not receivers:
            return
        try:
            encoded = encode_json(data)
        except (TypeError, ValueError) as exc:
            log.error("event '%s' not sent: its data cannot be encoded as JSON (%s: %s)",
                      topic, type(exc).__name__, exc)
            return
        encoded_topic = encode_json(topic)
        for connection in receivers:
            connection.send_event(encoded_topic, encoded, coalesce=coalesce)

    # Connections

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = read_peer(writer.get_extra_info("socket"))
        if self._closing:
            writer.transport.abort()
            return
        if len(self._connections) >= self.max_clients:
            log.warning("rejected client %s: too many clients (max_clients %d); "
                        "raise [daemon] max_clients if that many are expected",
                        peer.describe(), self.max_clients)
            writer.write(error_line(None, TOO_MANY_CLIENTS, "too many clients",
                                    {"max_clients": self.max_clients}))
            writer.close()  # after the error line is written
            return

        connection = Connection(writer, peer, stall_timeout=self.stall_timeout,
                                event_queue_size=self.event_queue_size, max_pending=self.max_pending)
        connection.reader_task = asyncio.current_task()
        self._connections.add(connection)
        log.debug("client connected: %s", peer.describe())
        reason = "connection lost"
        try:
            reason = await self._read_requests(connection, reader)
        except asyncio.CancelledError:
            reason = "server closed the connection"
        except Exception:
            log.exception("client %s: unexpected error; closing the connection", peer.describe())
            connection.abort()
            reason = "unexpected error"
        finally:
            self._connections.discard(connection)
            log.debug("client disconnected: %s (%s)", peer.describe(), reason)
            connection.log_suppressed_warnings()

    async def _read_requests(self, connection: Connection, reader: asyncio.StreamReader) -> str:
        """Read and dispatch request lines until the client stops sending; return why it ended."""
        while True:
            await connection.request_slots.acquire()
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                break  # end of stream; a last line without "\n" is ignored
            except asyncio.LimitOverrunError as exc:  # the stream's limit is max_line
                connection.warn("sent a line longer than %d bytes; closing the connection", self.max_line)
                connection.send_response(error_line(None, LINE_TOO_LONG, "line too long",
                                                    {"max_line": self.max_line}))
                await _discard_rest_of_line(reader, exc.consumed)
                connection.close_after_flush()
                await connection.wait_closed()
                return "line too long"
            except OSError:
                connection.abort()
                return "connection lost"
            self._handle_line(connection, line)

        # The client sends nothing more, so respond to the requests in progress, then close.
        if connection.handler_tasks:
            await asyncio.wait(set(connection.handler_tasks))
        connection.close_after_flush()
        await connection.wait_closed()
        return "closed by the client"

    # Requests

    def _handle_line(self, connection: Connection, line: bytes) -> None:
        """Dispatch one request line; every path sends one response or frees the request slot."""
        if not line.strip():
            connection.request_slots.release()  # blank lines are allowed between requests
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            connection.send_response(error_line(None, PARSE_ERROR, "parse error: invalid UTF-8"))
            return
        try:
            message = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            connection.send_response(error_line(None, PARSE_ERROR, "parse error: invalid JSON"))
            return
        surrogate = _find_lone_surrogate(message)
        if surrogate is not None:
            connection.send_response(error_line(
                None, PARSE_ERROR, f"parse error: a string contains the lone surrogate \\u{surrogate:04x}, "
                "which is not valid Unicode"))
            return

        if isinstance(message, list):
            connection.send_response(error_line(None, INVALID_REQUEST, "batches are not supported"))
            return
        if not isinstance(message, dict):
            connection.send_response(error_line(None, INVALID_REQUEST, "a request must be a JSON object"))
            return
        request_id = message.get("id", _NO_ID)
        if request_id is not _NO_ID and not _is_valid_id(request_id):
            connection.send_response(error_line(None, INVALID_REQUEST, "id must be a string, a number or null"))
            return
        reply_id = None if request_id is _NO_ID else request_id
        method = message.get("method")
        if message.get("jsonrpc") != "2.0" or not isinstance(method, str):
            connection.send_response(error_line(
                reply_id, INVALID_REQUEST, 'a request needs "jsonrpc": "2.0" and a "method" string'))
            return

        try:
            response = self._dispatch(connection, request_id, method, message.get("params", {}))
        except RpcError as exc:
            response = error_line(reply_id, exc.code, exc.message, exc.data)
        if response is None or request_id is _NO_ID:
            connection.request_slots.release()
        else:
            connection.send_response(response)

    def _dispatch(self, connection: Connection, request_id: Any, method: str, params: Any) -> Response | None:
        """Respond to a built-in method, or start a handler task that sends the response later.

        Returns the response for built-in methods, None when a task was started.
        Raises RpcError to reject the call.
        """
        if not connection.hello_done and method != "hello":
            connection.warn("called '%s' before hello", method)
            raise RpcError(HELLO_REQUIRED, "hello required")
        if not isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, "params must be a JSON object")

        reply_id = None if request_id is _NO_ID else request_id
        if method == "hello":
            return result_line(reply_id, self._hello(connection, params))
        if method == "subscribe":
            connection.topics.update(self._topics_param(params))
            topics = [topic for topic in self.topics if topic in connection.topics]
            return lambda: result_line(reply_id, {"topics": topics, "seq": connection.current_seq})
        if method == "unsubscribe":
            connection.topics.difference_update(self._topics_param(params))
            return result_line(reply_id, {"topics": [topic for topic in self.topics if topic in connection.topics]})

        registered = self._methods.get(method)
        if registered is None:
            raise RpcError(METHOD_NOT_FOUND, "method not found", {"method": method})
        if registered.write and not self.policy.can_write(connection.peer):
            connection.warn("permission denied for '%s'", method)
            raise RpcError(PERMISSION_DENIED, "permission denied",
                           {"method": method, "reason": self.policy.describe_writers()})

        task = asyncio.create_task(self._run_handler(connection, request_id, method, registered, params),
                                   name=f"rpc-{method}")
        for tasks in (connection.handler_tasks, self._handler_tasks):
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return None

    async def _run_handler(self, connection: Connection, request_id: Any, method: str,
                           registered: _Method, params: dict[str, Any]) -> None:
        reply_id = None if request_id is _NO_ID else request_id
        try:
            result = await registered.handler(params, connection.peer)
        except RpcError as exc:
            log.debug("client %s: '%s' returned error %d (%s)",
                      connection.peer.describe(), method, exc.code, exc.message)
            response = self._encode_error(reply_id, method, exc)
        except Exception as exc:
            # The reply names only the exception class: its message may contain secrets.
            log.exception("method '%s' failed for client %s", method, connection.peer.describe())
            response = error_line(reply_id, INTERNAL_ERROR, "internal error", {"exception": type(exc).__name__})
        else:
            try:
                response = result_line(reply_id, result)
            except (TypeError, ValueError) as exc:
                log.error("method '%s' returned a result that cannot be encoded as JSON (%s: %s)",
                          method, type(exc).__name__, exc)
                response = error_line(reply_id, INTERNAL_ERROR, "internal error",
                                      {"exception": type(exc).__name__})

        if request_id is _NO_ID:
            connection.request_slots.release()
        else:
            connection.send_response(response)

    def _encode_error(self, reply_id: Any, method: str, error: RpcError) -> bytes:
        try:
            return error_line(reply_id, error.code, error.message, error.data)
        except (TypeError, ValueError):
            log.exception("method '%s' raised an RpcError whose data cannot be encoded as JSON", method)
            return error_line(reply_id, INTERNAL_ERROR, "internal error", {"exception": "TypeError"})

    def _hello(self, connection: Connection, params: dict[str, Any]) -> dict[str, Any]:
        protocol = params.get("protocol")
        if isinstance(protocol, bool) or not isinstance(protocol, int):
            raise RpcError(INVALID_PARAMS, 'hello needs "protocol", an integer',
                           {"supported": list(PROTOCOL_VERSIONS)})
        if protocol not in PROTOCOL_VERSIONS:
            connection.warn("asked for protocol %d, which is not supported", protocol)
            raise RpcError(UNSUPPORTED_PROTOCOL, "unsupported protocol version",
                           {"supported": list(PROTOCOL_VERSIONS)})
        client = params.get("client", "")
        if not isinstance(client, str):
            raise RpcError(INVALID_PARAMS, '"client" must be a string')

        connection.hello_done = True
        connection.client_name = client[:200]
        log.debug("client %s is %r (protocol %d)", connection.peer.describe(), connection.client_name, protocol)
        return {
            "protocol": protocol,
            "server": self.server_name,
            "pid": os.getpid(),
            "user": connection.peer.user,
            "can_write": self.policy.can_write(connection.peer),
            "topics": list(self.topics),
        }

    def _topics_param(self, params: dict[str, Any]) -> set[str]:
        """Return the topics named in params["topics"]; all topics when it is omitted."""
        if "topics" not in params:
            return set(self.topics)
        topics = params["topics"]
        if not isinstance(topics, list) or not all(isinstance(topic, str) for topic in topics):
            raise RpcError(INVALID_PARAMS, '"topics" must be a list of strings', {"topics": list(self.topics)})
        unknown = [topic for topic in topics if topic not in self.topics]
        if unknown:
            raise RpcError(INVALID_PARAMS, f"unknown topic '{unknown[0]}'", {"topics": list(self.topics)})
        return set(topics)


async def _discard_rest_of_line(reader: asyncio.StreamReader, scanned: int) -> None:
    """Read and drop a line that overran the stream's limit, up to and including its "\n".

    `scanned` is LimitOverrunError.consumed: the bytes at the start of the buffer that
    contain no newline. Stops at the end of the stream, after DISCARD_MAX_BYTES or
    after DISCARD_TIMEOUT seconds.
    """
    discarded = 0
    try:
        async with asyncio.timeout(DISCARD_TIMEOUT):
            while discarded < DISCARD_MAX_BYTES:
                await reader.readexactly(scanned)
                discarded += scanned
                try:
                    await reader.readuntil(b"\n")
                    return
                except asyncio.LimitOverrunError as exc:
                    scanned = exc.consumed
    except (TimeoutError, asyncio.IncompleteReadError, OSError):
        pass  # the connection is closed next in every case


def _is_valid_id(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)  # 1e400 parses as inf, which cannot be sent back as JSON
    return value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _reject_constant(name: str) -> Any:
    """Reject NaN, Infinity and -Infinity, which Python's json accepts but JSON does not."""
    raise ValueError(f"{name} is not valid JSON")


def _find_lone_surrogate(message: Any) -> int | None:
    """Return the code point of the first lone surrogate in any key or string of `message`.

    json.loads joins escaped surrogate pairs, so a surrogate left in a string had no partner.
    Such a string cannot be encoded as UTF-8 for the history database or a reply.
    """
    pending = [message]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            match = _SURROGATE.search(value)
            if match:
                return ord(match.group())
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return None
