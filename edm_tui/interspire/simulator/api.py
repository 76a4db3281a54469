"""The xml.php request pipeline: parse, authenticate, dispatch and render one request."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from typing import Any

from edm_tui.interspire.simulator.auth import Authenticator
from edm_tui.interspire.simulator.config import SimulatorConfig
from edm_tui.interspire.simulator.context import XML_PHP, CallContext, PhpFatalError, Success
from edm_tui.interspire.simulator.methods import WRITE_METHODS, dispatch
from edm_tui.interspire.simulator.render import (
    XML_DECLARATION,
    ApiResponse,
    RenderFatal,
    failure_envelope,
    outcome_response,
)
from edm_tui.interspire.simulator.request import Envelope, RequestError, parse_envelope
from edm_tui.interspire.simulator.state import SimulatorState

AUTH_FAILED_MESSAGE = "Unable to check user details."
LOG_LIMIT = 200_000


class Recorder:
    """Request statistics and the log of write calls that `/_sim/state` reports."""

    def __init__(self, log_limit: int = LOG_LIMIT) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._by_method: Counter[str] = Counter()
        self._faults_injected = 0
        self._log: deque[dict[str, Any]] = deque(maxlen=log_limit)

    def count_request(self, method: str | None) -> None:
        """Count one xml.php request; `method` is None when the envelope could not be read."""
        with self._lock:
            self._requests += 1
            if method is not None:
                self._by_method[method] += 1

    def count_fault(self) -> None:
        """Count one injected fault."""
        with self._lock:
            self._faults_injected += 1

    def log_write(self, method: str, details: dict[str, object], status: str, fault: str | None) -> None:
        """Record a write call that IEM ran, with its parsed details and outcome."""
        with self._lock:
            self._log.append({"method": method, "details": details, "status": status, "fault": fault})

    def stats(self) -> dict[str, Any]:
        """Return {"requests", "by_method", "faults_injected"}."""
        with self._lock:
            return {
                "requests": self._requests,
                "by_method": dict(self._by_method),
                "faults_injected": self._faults_injected,
            }

    def log(self) -> list[dict[str, Any]]:
        """Return the logged write calls, oldest first."""
        with self._lock:
            return list(self._log)

    def reset(self) -> None:
        """Clear the statistics and the log."""
        with self._lock:
            self._requests = 0
            self._by_method.clear()
            self._faults_injected = 0
            self._log.clear()


class XmlApi:
    """Handles xml.php requests against the shared state."""

    def __init__(
        self,
        state: SimulatorState,
        config: SimulatorConfig,
        authenticator: Authenticator,
        recorder: Recorder,
        stopping: threading.Event,
    ) -> None:
        self.state = state
        self.config = config
        self.authenticator = authenticator
        self.recorder = recorder
        self.stopping = stopping
        self.random = random.Random(config.seed)

    def reseed(self, seed: int | None) -> None:
        """Restart the generator behind confirm codes."""
        with self.state.lock:
            self.random = random.Random(seed)

    def now(self) -> int:
        """Return the simulator clock: the frozen `now` when set, else the current Unix time."""
        frozen = self.config.now
        return frozen if frozen is not None else int(time.time())

    @staticmethod
    def parse(content_type: str | None, body: bytes) -> Envelope | RequestError:
        """Parse the envelope; return the RequestError IEM would report instead of raising it."""
        try:
            return parse_envelope(content_type, body)
        except RequestError as error:
            return error

    def handle(self, parsed: Envelope | RequestError, client_address: str, fault: str | None = None) -> ApiResponse:
        """Handle one request and return the response. `fault` names a post-run fault, for the write log."""
        if isinstance(parsed, RequestError):
            return ApiResponse(body=failure_envelope(parsed.message))

        user = self.authenticator.authenticate(parsed.username, parsed.usertoken, client_address)
        if user is None:
            if self.config.auth_delay > 0:
                self.stopping.wait(self.config.auth_delay)
            return ApiResponse(body=failure_envelope(AUTH_FAILED_MESSAGE))

        dialect = self.config.dialect
        if parsed.requesttype == "authentication" and parsed.requestmethod == "xmlapitest":
            data: dict[str, Any] = {"userid": str(user["userid"]), "username": str(user["username"])}
            return outcome_response(True, {"user": data} if dialect == "modern" else data, dialect)

        with self.state.lock:
            ctx = CallContext(
                state=self.state,
                now=self.now(),
                user=user,
                client_ip=client_address,
                duplicate_style=self.config.duplicate_style,
                random=self.random,
            )
            try:
                result = dispatch(ctx, parsed.requesttype, parsed.requestmethod, parsed.details)
            except PhpFatalError as fatal:
                return self._fatal_response(self._notices(ctx), fatal.html())

        outcome = result.outcome
        if parsed.requesttype == "subscribers" and result.method in WRITE_METHODS:
            status = "SUCCESS" if isinstance(outcome, Success) else "FAILED"
            self.recorder.log_write(result.method, result.details, status, fault)

        prefix = self._notices(ctx)
        success = isinstance(outcome, Success)
        payload = outcome.data if isinstance(outcome, Success) else outcome.message
        try:
            return outcome_response(success, payload, dialect, prefix)
        except RenderFatal:
            printed = prefix + XML_DECLARATION + "\n<response>\n<status>SUCCESS</status>\n"
            fatal = PhpFatalError(
                "Uncaught exception 'Exception' with message 'String could not be parsed as XML'",
                XML_PHP,
                231,
            )
            return self._fatal_response(printed, fatal.html())

    def _notices(self, ctx: CallContext) -> str:
        return "".join(ctx.notices) if self.config.display_errors else ""

    def _fatal_response(self, printed: str, error_html: str) -> ApiResponse:
        """Return the response to a PHP fatal error: printed with `display_errors`, else an HTTP 500."""
        if self.config.display_errors:
            return ApiResponse(status=200, body=printed + error_html)
        return ApiResponse(status=500, body=printed)

