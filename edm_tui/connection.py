"""The dashboard's link to the daemon: connects, reconnects, and hands events on.

The dashboard never gives up on the daemon: when it is not running, stopped or restarting,
the connection reports "unavailable" and tries again with a growing pause (up to a few
seconds). Every event is handed to `on_event`; a gap in the event numbers, or a new
connection, is reported as the topic "resync" so the screen reloads its state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edm_tui.client import DaemonClient, DaemonError, DaemonUnavailable

log = logging.getLogger("edm_sync.tui")

TOPICS = ("progress", "run_started", "run_finished", "log", "status")
FIRST_RETRY = 0.5  # seconds
LAST_RETRY = 5.0

CONNECTING, CONNECTED, UNAVAILABLE = "connecting", "connected", "unavailable"


class DaemonConnection:
    def __init__(
        self,
        socket_path: Path,
        *,
        on_event: Callable[[str, dict[str, Any]], None],
        on_state: Callable[[str, str | None], None],
        client_name: str = "edm-tui",
    ) -> None:
        self.socket_path = socket_path
        self.on_event = on_event
        self.on_state = on_state
        self.client_name = client_name
        self.state = CONNECTING
        self.error: str | None = None
        self.hello: dict[str, Any] = {}
        self._client: DaemonClient | None = None
        self._closed = False

    @property
    def connected(self) -> bool:
        return self.state == CONNECTED and self._client is not None

    @property
    def can_write(self) -> bool:
        return bool(self.hello.get("can_write"))

    def _set_state(self, state: str, error: str | None = None) -> None:
        if (state, error) != (self.state, self.error):
            self.state, self.error = state, error
            self.on_state(state, error)

    async def run(self) -> None:
        """Keeps a connection open until close(); meant to run as a long-lived worker."""
        pause = FIRST_RETRY
        while not self._closed:
            try:
                self._client = await DaemonClient.connect(self.socket_path, client_name=self.client_name)
            except (DaemonUnavailable, DaemonError, OSError) as error:
                self._set_state(UNAVAILABLE, str(error))
                await asyncio.sleep(pause)
                pause = min(LAST_RETRY, pause * 2)
                continue

            pause = FIRST_RETRY
            self.hello = self._client.hello
            try:
                subscribed = await self._client.subscribe(*TOPICS)
                self._set_state(CONNECTED)
                self.on_event("resync", {})
                await self._pump(subscribed.get("seq", 0))
            except (DaemonUnavailable, DaemonError, OSError) as error:
                log.debug("daemon connection lost: %s", error)
            finally:
                client, self._client = self._client, None
                if client is not None:
                    await client.close()
            if not self._closed:
                self._set_state(UNAVAILABLE, f"the daemon at {self.socket_path} went away")

    async def _pump(self, seq: int) -> None:
        assert self._client is not None
        async for event in self._client.events():
            number = event.get("seq", seq + 1)
            if number != seq + 1:
                self.on_event("resync", {"missed": number - seq - 1})
            seq = number
            self.on_event(event.get("topic", ""), event.get("data") or {})

    async def call(self, method: str, /, **params: Any) -> Any:
        client = self._client
        if client is None or self.state != CONNECTED:
            raise DaemonUnavailable(self.error or f"not connected to the daemon at {self.socket_path}")
        return await client.call(method, **params)

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()
