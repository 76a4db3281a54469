"""The screen shown while the dashboard cannot reach the daemon, with how to start it.

The App shows this screen in a mode of its own, so the screens the user had open stay as
they were, and switches back by itself as soon as the connection returns.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static

from edm_tui.client import PERMISSION_DENIED
from edm_tui.connection import UNAVAILABLE
from edm_tui.i18n import _
from edm_tui.messages import ConnectionChanged
from edm_tui.widgets.footer import Footer


def start_commands() -> list[tuple[str, str]]:
    """Return the commands that start the daemon, each with when to use it."""
    return [
        ("systemctl start edm-sync", _("as a systemd service")),
        ("edm-sync --config PATH daemon", _("in a terminal, for a test")),
    ]


def is_permission_problem(error: str | None) -> bool:
    """Tell whether the client could not open the socket for lack of permission.

    edm_tui.client starts that reason with PERMISSION_DENIED in the active language. Starting
    the daemon would not help there, because the user needs access to the socket.
    """
    return bool(error) and (error or "").lower().startswith(_(PERMISSION_DENIED).lower())


class UnavailableScreen(Screen[None]):
    """The socket, the reason it cannot be reached, and the commands that start the daemon."""

    def __init__(self, socket_path: Path, error: str | None, *, was_connected: bool) -> None:
        super().__init__(id="unavailable")
        self.socket_path = socket_path
        self.error = error
        self.was_connected = was_connected

    def compose(self) -> ComposeResult:
        with Vertical(id="unavailable-panel") as panel:
            panel.border_title = _("edm-sync dashboard")
            yield Static(self._title(), id="unavailable-title")
            yield Static(_("Socket: {path}").format(path=self.socket_path), id="unavailable-socket", markup=False)
            yield Static(self._reason(), id="unavailable-reason", markup=False)
            yield Static(self._help_content(is_permission_problem(self.error)), id="unavailable-help")
            yield Static(_("Trying again every few seconds: the dashboard comes back by itself once "
                           "the daemon answers."), id="unavailable-retry")
        yield Footer(show_command_palette=False)

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        if message.state == UNAVAILABLE:
            self.error = message.error
            self.query_one("#unavailable-title", Static).update(self._title())
            self.query_one("#unavailable-reason", Static).update(self._reason())
            self.query_one("#unavailable-help", Static).update(
                self._help_content(is_permission_problem(self.error)))

    def _title(self) -> Content:
        if is_permission_problem(self.error):
            title = _("No access to the daemon's socket")
        elif self.was_connected:
            title = _("Lost the connection to the daemon: it stopped or is restarting")
        else:
            title = _("The edm-sync daemon is not running")
        return Content.assemble(("✗ ", "$text-error"), (title, "bold"))

    def _reason(self) -> str:
        return _("Reason: {error}").format(error=self.error or _("not known yet"))

    @staticmethod
    def _help_content(permission: bool) -> Content:
        if permission:
            return Content(_("Ask an administrator to add your user to the socket's group, then log "
                             "in again. The reason above names the group."))
        lines = [Content(_("Start the daemon with one of:"))]
        commands = start_commands()
        width = max(len(command) for command, _when in commands)
        for command, when in commands:
            lines.append(Content.assemble("  ", (command.ljust(width), "bold $text-accent"), "  ", when))
        return Content("\n").join(lines)
