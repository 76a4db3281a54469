"""App-wide messages: what the daemon connection reports to every screen.

The App receives these from its `DaemonConnection` and posts a copy to each screen of the
active stack, so a screen reacts by defining `on_daemon_event` and `on_connection_changed`.
Neither message bubbles: a screen's copy never returns to the App.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

# Topics whose newest event makes an older, still unprocessed one of the same topic useless.
COALESCED_TOPICS = frozenset({"progress", "status"})


class DaemonEvent(Message, bubble=False):
    """An event from the daemon, or a request to reload.

    `topic` is one of the daemon's topics (progress, run_started, run_finished, log, status;
    docs/protocol.md lists their `data`) or "resync". On "resync" the receiver reloads
    everything it shows from the daemon. The connection sends it after each (re)connect and
    after a gap in the event numbers (`data` is {} or {"missed": n}), and the App sends it
    when the user asks for a refresh (`data` is {"reason": "refresh"}).
    """

    def __init__(self, topic: str, data: dict[str, Any]) -> None:
        super().__init__()
        self.topic = topic
        self.data = data

    def can_replace(self, message: Message) -> bool:
        return (isinstance(message, DaemonEvent) and message.topic == self.topic
                and self.topic in COALESCED_TOPICS)

    def __repr__(self) -> str:
        return f"DaemonEvent({self.topic!r}, {self.data!r})"


class ConnectionChanged(Message, bubble=False):
    """The connection to the daemon changed state.

    `state` is "connecting", "connected" or "unavailable" (the constants in
    edm_tui.connection). `error` is the reason for "unavailable": short English text from
    the client, which contains the socket path.
    """

    def __init__(self, state: str, error: str | None) -> None:
        super().__init__()
        self.state = state
        self.error = error

    def __repr__(self) -> str:
        return f"ConnectionChanged({self.state!r}, {self.error!r})"
