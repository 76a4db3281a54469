"""Token authentication with IEM 6.1's failed-login throttling and IP ban.

IEM 6.1 sleeps 5 seconds after every failed authentication (the sleep is done by the
caller, see `XmlApi.handle`). After 5 failures within 300 seconds it bans the caller's IP
address for 300 seconds, and while the ban lasts even a correct token fails. The ban uses
the monotonic clock, so changing the simulator's frozen `now` does not lift it.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from edm_tui.interspire.simulator.state import SimulatorState

BAN_THRESHOLD_COUNT = 5
BAN_THRESHOLD_SECONDS = 300.0
BAN_DURATION_SECONDS = 300.0
MASQUERADE_SEPARATOR = "::"

_WHITESPACE_RE = re.compile(r"\s+")


class Authenticator:
    """Checks XML usernames and tokens and tracks failures per client address."""

    def __init__(self, state: SimulatorState, clock: Callable[[], float] = time.monotonic) -> None:
        self._state = state
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    def authenticate(self, username: str, token: str, address: str) -> dict[str, Any] | None:
        """Return the authenticated user, or None after recording a failure.

        The username's whitespace is collapsed and the token trimmed before comparing.
        `admin::other` with an admin's token authenticates as `other` (IEM's masquerade,
        enabled by default).
        """
        now = self._clock()
        with self._lock:
            if self._banned_until.get(address, 0.0) > now:
                return None
        user = self._check_credentials(username, token)
        if user is not None:
            return user
        self._record_failure(address, now)
        return None

    def is_banned(self, address: str) -> bool:
        """Return whether the address is banned right now."""
        with self._lock:
            return self._banned_until.get(address, 0.0) > self._clock()

    def reset(self) -> None:
        """Forget all failures and bans."""
        with self._lock:
            self._failures.clear()
            self._banned_until.clear()

    def _check_credentials(self, username: str, token: str) -> dict[str, Any] | None:
        name = _WHITESPACE_RE.sub(" ", username).strip()
        masquerade_as = None
        if MASQUERADE_SEPARATOR in name:
            name, masquerade_as = name.split(MASQUERADE_SEPARATOR, 1)
        with self._state.lock:
            user = self._state.find_user(name)
            if user is None or not _is_active(user) or str(user.get("token", "")) != token.strip():
                return None
            if masquerade_as is None:
                return dict(user)
            if not user.get("admin"):
                return None
            other = self._state.find_user(masquerade_as)
            return dict(other) if other is not None and _is_active(other) else None

    def _record_failure(self, address: str, now: float) -> None:
        with self._lock:
            failures = self._failures.setdefault(address, deque())
            failures.append(now)
            while failures and failures[0] <= now - BAN_THRESHOLD_SECONDS:
                failures.popleft()
            if len(failures) >= BAN_THRESHOLD_COUNT:
                self._banned_until[address] = now + BAN_DURATION_SECONDS
                failures.clear()


def _is_active(user: dict[str, Any]) -> bool:
    status = user.get("status", 1)
    if isinstance(status, bool):
        return status
    return str(status) == "1"
