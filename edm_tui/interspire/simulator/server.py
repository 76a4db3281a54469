"""HTTP server for the simulator: `POST /xml.php` plus the `/_sim/` control endpoints.

Control endpoints (not part of IEM):

* `GET /_sim/state`: the state JSON plus `"stats"` ({"requests", "by_method",
  "faults_injected"}) and `"log"` (the write calls IEM ran, newest last).
* `GET /_sim/stats`: only the `"stats"` object plus `"subscribers"` (the row count), cheap
  enough to poll while a large state is served.
* `PUT /_sim/state`: replace the state with a state JSON object.
* `POST /_sim/reset-stats`: clear the statistics and the log.
* `POST /_sim/reset-auth`: forget failed logins and IP bans.
* `GET /_sim/config` and `POST /_sim/config`: read or change behaviour (any subset of the
  keys of `SimulatorConfig.to_json`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edm_tui.interspire.simulator.config import ConfigError, FaultRule, SimulatorConfig
from edm_tui.interspire.simulator.core import Simulator, build_simulator
from edm_tui.interspire.simulator.faults import (
    BOM,
    HTML_ERROR_PAGE,
    NOTICE_PREFIX,
    PRE_RUN_FAULTS,
    UPGRADE_LOCATION,
)
from edm_tui.interspire.simulator.methods import canonical_method_name
from edm_tui.interspire.simulator.render import ApiResponse
from edm_tui.interspire.simulator.request import Envelope
from edm_tui.interspire.simulator.state import (
    SimulatorState,
    StateError,
    decode_state_object,
)

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
API_PATH = "/xml.php"
HTML_CONTENT_TYPE = "text/html; charset=UTF-8"
JSON_CONTENT_TYPE = "application/json"
# How often serve_forever checks for a shutdown request; it bounds how long stop() takes.
SHUTDOWN_POLL_SECONDS = 0.01


class SimulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to 127.0.0.1 that serves one Simulator.

    With `tls_cert` and `tls_key` (PEM files) it serves HTTPS instead of HTTP.
    """

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog of 5 overflows when a client opens a pool of
    # connections at once, and some of those connections then fail with a reset. Apache uses 511.
    request_queue_size = 128

    def __init__(self, port: int, simulator: Simulator, *, tls_cert: Path | None = None,
                 tls_key: Path | None = None) -> None:
        self.simulator = simulator
        super().__init__((HOST, port), SimulatorRequestHandler)
        self.scheme = "http"
        if tls_cert is not None or tls_key is not None:
            if tls_cert is None or tls_key is None:
                self.server_close()
                raise ValueError("serving HTTPS needs both a certificate and a key file")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(tls_cert, tls_key)
            except (OSError, ssl.SSLError):
                self.server_close()
                raise
            # The handshake runs on the first read in the request's own thread, so a client
            # that rejects the certificate does not hold up the accept loop.
            self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
            self.scheme = "https"

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a failed TLS handshake or a client that went away in one line, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ssl.SSLError):
            logger.debug("TLS handshake with %s failed: %s", client_address[0], error)
            return
        if isinstance(error, (ConnectionResetError, BrokenPipeError)):
            logger.debug("client %s closed the connection: %s", client_address[0], error)
            return
        super().handle_error(request, client_address)


class SimulatorRequestHandler(BaseHTTPRequestHandler):
    """Routes one HTTP request to xml.php or to a control endpoint."""

    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add tens of milliseconds to every keep-alive request.
    disable_nagle_algorithm = True
    server_version = "Apache"
    sys_version = ""
    server: SimulatorHTTPServer

    # ----- routing ------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        """Serve GET requests."""
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        """Serve POST requests."""
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        """Serve PUT requests."""
        self._route("PUT")

    def _route(self, verb: str) -> None:
        path = urlsplit(self.path).path
        body = self._read_body()
        simulator = self.server.simulator
        try:
            if path == API_PATH:
                self._serve_api(simulator, body)
            elif (verb, path) == ("GET", "/_sim/state"):
                self._send_chunked(200, JSON_CONTENT_TYPE, (chunk.encode("utf-8") for chunk in simulator.state_chunks()))
            elif (verb, path) == ("GET", "/_sim/stats"):
                self._send_json(200, {**simulator.recorder.stats(), "subscribers": simulator.state.subscriber_count()})
            elif (verb, path) == ("PUT", "/_sim/state"):
                self._replace_state(simulator, body)
            elif (verb, path) == ("POST", "/_sim/reset-stats"):
                simulator.recorder.reset()
                self._send_json(200, {"ok": True})
            elif (verb, path) == ("POST", "/_sim/reset-auth"):
                simulator.authenticator.reset()
                self._send_json(200, {"ok": True})
            elif (verb, path) == ("GET", "/_sim/config"):
                self._send_json(200, simulator.config_json())
            elif (verb, path) == ("POST", "/_sim/config"):
                self._update_config(simulator, body)
            else:
                self._send_bytes(404, HTML_CONTENT_TYPE, b"<h1>Not Found</h1>\n")
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("Client closed the connection during %s %s", verb, path)
            self.close_connection = True
        except Exception:
            # A simulator bug: log it and fail like a PHP fatal error with display_errors off.
            logger.exception("Failed to handle %s %s", verb, path)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send_bytes(500, HTML_CONTENT_TYPE, b"")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # ----- xml.php ------------------------------------------------------------------------

    def _serve_api(self, simulator: Simulator, body: bytes) -> None:
        with simulator.gate.slot():
            # A request holds its slot for latency_ms in all, its handling included, as on a
            # server whose answers take that long; a slower handling is not padded further.
            answer_at = time.monotonic() + simulator.config.latency_ms / 1000
            parsed = simulator.api.parse(self.headers.get("Content-Type"), body)
            method = parsed.requestmethod if isinstance(parsed, Envelope) else None
            simulator.recorder.count_request(canonical_method_name(method) if method is not None else None)
            fault = simulator.faults.pick(method)
            if fault is not None:
                simulator.recorder.count_fault()
                logger.debug("Injecting fault %s into %s", fault.kind, method)
                if fault.kind in PRE_RUN_FAULTS:
                    _wait_until(simulator, answer_at)
                    self._send_pre_run_fault(fault)
                    return
            response = simulator.api.handle(parsed, self.client_address[0], fault.kind if fault else None)
            if fault is not None and fault.kind == "slow":
                simulator.stopping.wait(fault.slow_seconds)
            _wait_until(simulator, answer_at)
            self._send_api_response(simulator, response, fault)

    def _send_pre_run_fault(self, fault: FaultRule) -> None:
        if fault.kind == "html":
            self._send_bytes(200, HTML_CONTENT_TYPE, HTML_ERROR_PAGE.encode("utf-8"))
        elif fault.kind == "redirect":
            self._send_bytes(302, HTML_CONTENT_TYPE, b"", {"Location": UPGRADE_LOCATION})
        elif fault.kind == "empty":
            self._send_bytes(200, "text/xml", b"")
        elif fault.kind == "http500":
            self._send_bytes(500, HTML_CONTENT_TYPE, b"")
        elif fault.kind == "reset":
            self._reset_connection()

    def _reset_connection(self) -> None:
        """Drop the connection without a response; linger 0 makes the close send a TCP reset."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _send_api_response(self, simulator: Simulator, response: ApiResponse, fault: FaultRule | None) -> None:
        kind = fault.kind if fault is not None else None
        prefix = {"notice": NOTICE_PREFIX, "bom": BOM, "newline": "\n"}.get(kind or "", "")
        if prefix:
            response.prefix = prefix + response.prefix
        if kind == "truncated":
            self._send_truncated(simulator, response)
        elif response.is_small():
            self._send_bytes(response.status, response.content_type, response.to_bytes())
        else:
            self._send_chunked(response.status, response.content_type, response.byte_chunks())

    def _send_truncated(self, simulator: Simulator, response: ApiResponse) -> None:
        """Send the response cut past its middle and close the connection, with no length announced."""
        total = sum(len(chunk) for chunk in response.byte_chunks())
        remaining = simulator.faults.truncation_point(total)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in response.byte_chunks():
            if remaining <= 0:
                break
            self.wfile.write(chunk[:remaining])
            remaining -= len(chunk)
        self.wfile.flush()
        self.close_connection = True

    # ----- control endpoints --------------------------------------------------------------

    def _replace_state(self, simulator: Simulator, body: bytes) -> None:
        try:
            data = json.loads(body.decode("utf-8"), object_hook=decode_state_object)
            if not isinstance(data, dict):
                raise StateError("state must be a JSON object")
            data = {key: value for key, value in data.items() if key not in ("stats", "log")}
            simulator.state.replace_from(data)
        except (UnicodeDecodeError, json.JSONDecodeError, StateError) as error:
            logger.warning("Rejected state document: %s", error)
            self._send_json(400, {"error": f"invalid state: {error}"})
            return
        logger.info("Replaced simulator state: %d subscribers", simulator.state.subscriber_count())
        self._send_json(200, {"ok": True, "subscribers": simulator.state.subscriber_count()})

    def _update_config(self, simulator: Simulator, body: bytes) -> None:
        try:
            data = json.loads(body.decode("utf-8") or "{}")
            result = simulator.update_config(data)
        except (UnicodeDecodeError, json.JSONDecodeError, ConfigError) as error:
            logger.warning("Rejected configuration change: %s", error)
            self._send_json(400, {"error": f"invalid configuration: {error}"})
            return
        logger.info("Changed simulator configuration: %s", ", ".join(sorted(data)) or "nothing")
        self._send_json(200, result)

    # ----- writing ------------------------------------------------------------------------

    def _send_json(self, status: int, data: Any) -> None:
        self._send_bytes(status, JSON_CONTENT_TYPE, json.dumps(data).encode("utf-8"))

    def _send_bytes(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_chunked(self, status: int, content_type: str, chunks: Iterator[bytes]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        buffer: list[bytes] = []
        buffered = 0
        for chunk in chunks:
            buffer.append(chunk)
            buffered += len(chunk)
            if buffered >= 65536:
                self._write_chunk(b"".join(buffer))
                buffer, buffered = [], 0
        if buffer:
            self._write_chunk(b"".join(buffer))
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Send the access log to the debug logger instead of stderr."""
        logger.debug("%s - %s", self.address_string(), format % args)


# ----- starting a simulator ---------------------------------------------------------------


class SimulatorHandle:
    """A simulator running in a background thread.

    `url` is the xml.php URL, `base` the server root (http://127.0.0.1:PORT) and `state`
    the live state; hold `state.lock` while reading it. Use as a context manager or call
    `stop()`.
    """

    def __init__(self, server: SimulatorHTTPServer, thread: threading.Thread) -> None:
        self.server = server
        self.simulator = server.simulator
        self._thread = thread
        self.base = f"{server.scheme}://{HOST}:{server.port}"
        self.url = self.base + API_PATH

    @property
    def state(self) -> SimulatorState:
        """The live state."""
        return self.simulator.state

    @property
    def config(self) -> SimulatorConfig:
        """The live configuration; change it with `configure` so that dependent parts follow."""
        return self.simulator.config

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change behaviour like `POST /_sim/config`; fault rules may be given as FaultRule objects."""
        if "faults" in changes:
            changes["faults"] = [rule.to_json() if isinstance(rule, FaultRule) else rule for rule in changes["faults"]]
        return self.simulator.update_config(changes)

    def stop(self) -> None:
        """Stop serving, wake sleeping requests and save the state file."""
        self.simulator.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
        self.simulator.stop()

    def __enter__(self) -> SimulatorHandle:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()


def start_simulator(state_path: Path | None = None, *, port: int = 0, tls_cert: Path | None = None,
                    tls_key: Path | None = None, **options: Any) -> SimulatorHandle:
    """Start a simulator on 127.0.0.1 in a background thread and return its handle.

    `options` are those of `build_simulator`, for example `auth_delay=0`, `dialect="modern"`
    or `faults=[{"kind": "html", "count": 1}]`. `tls_cert` and `tls_key` (PEM files) make it
    serve HTTPS.
    """
    simulator = build_simulator(state_path, **options)
    server = SimulatorHTTPServer(port, simulator, tls_cert=tls_cert, tls_key=tls_key)
    simulator.start()
    thread = threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), name="iem-simulator", daemon=True)
    thread.start()
    logger.info("IEM simulator listening on %s://%s:%d%s", server.scheme, HOST, server.port, API_PATH)
    return SimulatorHandle(server, thread)


def _wait_until(simulator: Simulator, moment: float) -> None:
    """Wait until the monotonic time `moment`, or until the simulator stops."""
    remaining = moment - time.monotonic()
    if remaining > 0:
        simulator.stopping.wait(remaining)
