"""`edm-tui`: the terminal dashboard of the edm-sync daemon.

The dashboard is only a client of the daemon's socket (docs/protocol.md). The App owns one
`DaemonConnection` as `app.daemon` and turns its callbacks into `DaemonEvent` and
`ConnectionChanged` messages (edm_tui.messages), which every screen of the active stack
receives. Screens call the daemon with `await self.app.daemon.call(method, **params)` from
async workers.

While the daemon cannot be reached, the App shows `UnavailableScreen` in a mode of its own
and returns to the screens the user had open when the connection comes back.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, ScreenError, SystemCommand
from textual.binding import Binding, BindingType
from textual.markup import escape
from textual.screen import Screen
from textual.theme import ThemeProvider
from textual.worker import Worker, WorkerState

from edm_tui.client import DaemonError, DaemonUnavailable, default_socket_path
from edm_tui.commands import CommandPalette, DashboardCommands
from edm_tui.connection import CONNECTED, UNAVAILABLE, DaemonConnection
from edm_tui.i18n import N_, _, set_language, translate_argparse
from edm_tui.messages import ConnectionChanged, DaemonEvent
from edm_tui.screens.dashboard import DashboardScreen
from edm_tui.screens.help import HelpScreen, HelpSection, KeyHelp
from edm_tui.screens.unavailable import UnavailableScreen
from edm_tui.summary import run_error_text, status_label
from edm_tui.widgets.dialogs import OVERRIDE_ONCE, BrakeOverrideDialog, QuitDialog

UNAVAILABLE_MODE = "unavailable"

# Error codes of the daemon (docs/protocol.md).
PERMISSION_DENIED = -32001
ALREADY_RUNNING = -32002
INVALID_CONFIGURATION = -32006

# App actions that need the daemon, so check_action disables them while it is unreachable.
DAEMON_ACTIONS = frozenset({"sync_now", "plan", "history", "config", "refresh"})
# App actions hidden while a modal screen (a dialog, help, the command palette) is on top.
SCREEN_ACTIONS = DAEMON_ACTIONS | {"back", "help", "request_quit", "explain_disabled"}

FINISHED_SEVERITY = {"succeeded": "information", "failed": "error"}

# Worker groups of the App and the dashboard. A failure in one of them is a bug, which the
# App reports instead of letting the worker end silently.
REPORTED_WORKER_GROUPS = frozenset({"run-state", "sync-now", "dashboard-reload"})


def _key_binding(key: str, action: str, description: str, binding_id: str) -> list[Binding]:
    """Return a binding plus a hidden one that explains why the key does nothing while disabled.

    Textual tries the bindings of a key in order and skips one whose action check_action
    disables, so the second binding only runs when the first is disabled.
    """
    return [
        Binding(key, action, description, id=binding_id),
        Binding(key, f"explain_disabled('{action}')", show=False),
    ]


class EdmTuiApp(App[None]):
    """The dashboard application; `app.daemon` is its connection to the daemon."""

    CSS_PATH = "app.tcss"
    TITLE = "edm-sync"
    COMMANDS = App.COMMANDS | {DashboardCommands}
    MODES: ClassVar[dict[str, str | Callable[[], Screen]]] = {"dashboard": DashboardScreen}
    DEFAULT_MODE = "dashboard"

    BINDINGS: ClassVar[list[BindingType]] = [
        *_key_binding("s", "sync_now", N_("Sync now"), "sync_now"),
        *_key_binding("p", "plan", N_("Plan"), "plan"),
        *_key_binding("h", "history", N_("History"), "history"),
        *_key_binding("c", "config", N_("Config"), "config"),
        Binding("ctrl+r", "refresh", N_("Refresh"), show=False, id="refresh"),
        Binding("escape", "back", N_("Back"), id="back"),
        Binding("question_mark", "help", N_("Help"), id="help", key_display="?"),
        Binding("q", "request_quit", N_("Quit"), id="quit"),
        Binding("ctrl+q", "quit", N_("Quit at once"), show=False, priority=True, id="quit_now"),
        Binding("ctrl+p", "command_palette", N_("Commands"), show=False, priority=True, id="command_palette"),
        Binding("ctrl+c", "help_quit", show=False, system=True),
    ]

    def __init__(
        self,
        socket_path: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.clock = clock
        """The wall clock in Unix seconds. Tests pass a fixed one so that countdowns stay put."""
        self.daemon = DaemonConnection(socket_path, on_event=self._daemon_event, on_state=self._daemon_state)
        self.was_connected = False
        """Whether a connection to the daemon succeeded at least once since start-up."""
        self.active_run_id: int | None = None
        """The id of the daemon's run in progress according to the latest event or status, else None."""

    # --- start-up and the connection ---

    def on_mount(self) -> None:
        self._keep_connected()

    @work(exclusive=True, group="daemon-connection")
    async def _keep_connected(self) -> None:
        try:
            await self.daemon.run()
        finally:
            await self.daemon.close()

    def _daemon_event(self, topic: str, data: dict[str, Any]) -> None:
        self.post_message(DaemonEvent(topic, data))

    def _daemon_state(self, state: str, error: str | None) -> None:
        self.post_message(ConnectionChanged(state, error))

    async def on_connection_changed(self, message: ConnectionChanged) -> None:
        if message.state == CONNECTED:
            self.was_connected = True
            await self._leave_unavailable_mode()
            self._forward(lambda: ConnectionChanged(message.state, message.error))
        elif message.state == UNAVAILABLE:
            self.active_run_id = None
            self._forward(lambda: ConnectionChanged(message.state, message.error))
            await self._enter_unavailable_mode(message.error)
        self.refresh_bindings()

    async def _enter_unavailable_mode(self, error: str | None) -> None:
        if self.current_mode == UNAVAILABLE_MODE:
            return
        was_connected = self.was_connected
        self.add_mode(UNAVAILABLE_MODE, lambda: UnavailableScreen(
            self.socket_path, error, was_connected=was_connected))
        await self.switch_mode(UNAVAILABLE_MODE)

    async def _leave_unavailable_mode(self) -> None:
        if self.current_mode != UNAVAILABLE_MODE:
            return
        await self.switch_mode(self.DEFAULT_MODE)
        # A fresh screen next time, without a help screen the user may have left open on it.
        await self.remove_mode(UNAVAILABLE_MODE)

    def on_daemon_event(self, event: DaemonEvent) -> None:
        data = event.data
        if event.topic == "resync":
            self._load_run_state()
        elif event.topic in ("run_started", "progress") and data.get("run_id") is not None:
            self.active_run_id = data["run_id"]
        elif event.topic == "run_finished":
            self.active_run_id = None
            self._notify_run_finished(data)
        elif event.topic == "status":
            run = data.get("run") or {}
            self.active_run_id = run.get("id")
        self._forward(lambda: DaemonEvent(event.topic, data))

    def _forward(self, make_message: Callable[[], DaemonEvent | ConnectionChanged]) -> None:
        """Post a fresh copy of a message to every screen of the active stack."""
        for screen in self.screen_stack:
            screen.post_message(make_message())

    @work(exclusive=True, group="run-state", exit_on_error=False)
    async def _load_run_state(self) -> None:
        try:
            status = await self.daemon.call("status")
        except (DaemonUnavailable, DaemonError) as error:
            # The connection reports a lost daemon itself, and the next resync tries again.
            self.log.warning(f"status for the run in progress failed: {error}")
            return
        self.active_run_id = (status.get("run") or {}).get("id")

    def _notify_run_finished(self, data: dict[str, Any]) -> None:
        status = data.get("status", "")
        message = _("Run {run_id}: {status}").format(run_id=data.get("run_id"), status=status_label(status))
        if data.get("error"):
            message += "\n" + _("Reason: {error}").format(error=run_error_text(data))
        self.notify(escape(message), severity=FINISHED_SEVERITY.get(status, "warning"))

    # --- which keys work now ---

    def disabled_reason(self, action: str) -> str | None:
        """Return why `action` cannot be used now, or None when it can."""
        if action in DAEMON_ACTIONS and not self.daemon.connected:
            return _("Not connected to the daemon.")
        if action == "sync_now" and not self.daemon.can_write:
            return _("Only root, the service user or members of the admin group may start a sync.")
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        try:
            screen = self.screen
        except ScreenError:  # no screen yet during start-up
            return True
        if action in SCREEN_ACTIONS and screen.is_modal:
            return False
        if action == "back":
            return len(self.screen_stack) > 1
        if action == "refresh" and not self.daemon.connected:
            return False
        if action in DAEMON_ACTIONS and self.disabled_reason(action) is not None:
            return None
        return True

    def action_explain_disabled(self, action: str) -> None:
        reason = self.disabled_reason(action)
        if reason is not None:
            self.notify(escape(reason), severity="warning")

    async def run_command(self, action: str) -> None:
        """Run an App action for the command palette, or explain why it is disabled."""
        reason = self.disabled_reason(action)
        if reason is not None:
            self.notify(escape(reason), severity="warning")
            return
        await self.run_action(action)

    # --- sync now ---

    def action_sync_now(self) -> None:
        self._sync_now()

    @work(exclusive=True, group="sync-now", exit_on_error=False)
    async def _sync_now(self) -> None:
        try:
            status = await self.daemon.call("status")
        except DaemonUnavailable as error:
            self.notify(escape(str(error)), title=_("Not connected to the daemon"), severity="error")
            return
        except DaemonError as error:
            self._report_daemon_error(error)
            return

        run = status.get("run")
        if status.get("state") == "running" and run:
            self.notify(_("A sync is already running: run {run_id}.").format(run_id=run.get("id")),
                        severity="warning")
            return

        allow_mass_changes = False
        last = status.get("last_run") or {}
        if last.get("status") == "blocked":
            reason = run_error_text(last) or _("no reason was recorded")
            choice = await self.push_screen_wait(BrakeOverrideDialog(last.get("id"), reason))
            if choice is None:
                return
            allow_mass_changes = choice == OVERRIDE_ONCE

        try:
            started = await self.daemon.call("run", allow_mass_changes=allow_mass_changes)
        except DaemonUnavailable as error:
            self.notify(escape(str(error)), title=_("Not connected to the daemon"), severity="error")
            return
        except DaemonError as error:
            self._report_daemon_error(error)
            return
        self.active_run_id = started.get("run_id")
        if allow_mass_changes:
            text = _("Run {run_id} started without the safety brake.")
        else:
            text = _("Run {run_id} started.")
        self.notify(text.format(run_id=started.get("run_id")))

    def _report_daemon_error(self, error: DaemonError) -> None:
        data = error.data if isinstance(error.data, dict) else {}
        if error.code == ALREADY_RUNNING:
            self.notify(_("A sync is already running: run {run_id}.").format(run_id=data.get("run_id")),
                        severity="warning")
        elif error.code == PERMISSION_DENIED:
            reason = data.get("reason") or _("the daemon did not say who may")
            self.notify(escape(_("Permission denied: only {who} may start a sync.").format(who=reason)),
                        severity="error")
        elif error.code == INVALID_CONFIGURATION:
            problems = "; ".join(str(p) for p in data.get("problems") or []) or error.message
            self.notify(escape(_("The sync could not start: {problems}").format(problems=problems)),
                        severity="error")
        else:
            self.notify(escape(_("The daemon returned an error: {message} ({code})").format(
                message=error.message, code=error.code)), severity="error")

    # --- other screens ---

    # The screens are imported when first opened, so the dashboard starts quickly.

    def action_plan(self) -> None:
        from edm_tui.screens.plan import PlanScreen

        self._push_once(PlanScreen)

    def action_history(self) -> None:
        from edm_tui.screens.history import HistoryScreen

        self._push_once(HistoryScreen)

    def action_config(self) -> None:
        from edm_tui.screens.config import ConfigScreen

        self._push_once(ConfigScreen)

    def open_run(self, run_id: int) -> None:
        """Push the detail screen of run `run_id`."""
        try:
            from edm_tui.screens.run_detail import RunDetailScreen
        except ModuleNotFoundError as error:
            self._screen_missing(error, "edm_tui.screens.run_detail", _("Run detail"))
            return
        self.push_screen(RunDetailScreen(run_id))

    def _push_once(self, screen_class: type[Screen]) -> None:
        """Show a `screen_class` screen: go back to the one in the stack, else push a new one.

        Going back keeps the stack from growing when the user jumps between screens.
        """
        for depth, screen in enumerate(reversed(self.screen_stack)):
            if isinstance(screen, screen_class):
                for _ in range(depth):
                    self.pop_screen()
                return
        self.push_screen(screen_class())

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state is not WorkerState.ERROR or worker.group not in REPORTED_WORKER_GROUPS:
            return
        self.log.error(f"worker {worker.name!r} ({worker.group}) failed: {worker.error!r}")
        self.notify(escape(_("Internal error in {task}: {error}").format(task=worker.name, error=worker.error)),
                    severity="error")

    def action_back(self) -> None:
        if len(self.screen_stack) > 1:
            self.pop_screen()

    def action_refresh(self) -> None:
        self._load_run_state()
        self.screen.post_message(DaemonEvent("resync", {"reason": "refresh"}))

    # --- help, palette, quitting ---

    def action_help(self) -> None:
        notes = [
            _("Quitting the dashboard never stops a sync: the daemon finishes it."),
        ]
        self.push_screen(HelpScreen(self.help_sections(self.screen), notes))

    def help_sections(self, screen: Screen) -> list[HelpSection]:
        """Return the keys of `screen` (with its focused widget) and of the App, from their bindings."""
        screen_keys: list[KeyHelp] = []
        app_keys: list[KeyHelp] = []
        for namespace, binding, enabled, _tooltip in screen.active_bindings.values():
            if binding.system or not binding.description or binding.action.startswith("explain_disabled"):
                continue
            if namespace is not self and not binding.show and not binding.id:
                continue  # Textual's hidden keys, such as the cursor keys of a table and tab
            reason = ""
            if namespace is self:
                reason = self.disabled_reason(binding.action) or ""
                target = app_keys
            else:
                target = screen_keys
            target.append(KeyHelp(self.get_key_display(binding), _(binding.description), binding.action,
                                  enabled, reason))
        order = [binding.action for binding in self.BINDINGS if isinstance(binding, Binding)]
        app_keys.sort(key=lambda item: order.index(item.action) if item.action in order else len(order))
        return [HelpSection(_("This screen"), tuple(screen_keys)), HelpSection(_("Everywhere"), tuple(app_keys))]

    def action_command_palette(self) -> None:
        if self.use_command_palette and not CommandPalette.is_open(self):
            self.push_screen(CommandPalette(id="--command-palette", placeholder=_("Search for commands…")))

    def search_themes(self) -> None:
        self.push_screen(CommandPalette(providers=[ThemeProvider], placeholder=_("Search for themes…")))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield SystemCommand(_("Theme"), _("Change the colour theme"), self.action_change_theme)

    def action_help_quit(self) -> None:
        self.notify(_("Press q to quit the dashboard."))

    def action_request_quit(self) -> None:
        if self.active_run_id is None:
            self.exit()
            return

        def quit_if_confirmed(confirmed: bool | None) -> None:
            if confirmed:
                self.exit()

        self.push_screen(QuitDialog(self.active_run_id), callback=quit_if_confirmed)


# --- command line ---


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edm-tui", description=_("Terminal dashboard of the edm-sync daemon."))
    parser.add_argument("--socket", metavar="PATH",
                        help=_("the daemon's socket (default: [daemon] socket of the configuration, "
                               "else $EDM_SYNC_SOCKET or the standard locations)"))
    parser.add_argument("--config", metavar="PATH",
                        help=_("configuration file to read [daemon] socket from (default: "
                               "$EDM_SYNC_CONFIG, /etc/edm-sync/config.toml, or the user's config directory)"))
    return parser


def resolve_socket_path(socket: str | None, config: str | None) -> Path:
    """Return the socket from --socket, else the configuration's [daemon] socket, else the default.

    Only [daemon] socket is read, so a configuration that fails validation elsewhere, or that
    the dashboard's user may not read, still lets the dashboard start. A --config file that
    cannot be read is reported on stderr.
    """
    if socket:
        return Path(socket).expanduser()

    from edm_tui.config import find_config_path

    path = find_config_path(config)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        if config:
            print(_("warning: cannot read [daemon] socket from {path}: {error}; using the default socket").format(
                path=path, error=error), file=sys.stderr)
        return default_socket_path()

    daemon = data.get("daemon")
    value = daemon.get("socket") if isinstance(daemon, dict) else None
    if isinstance(value, str) and value:
        return Path(value).expanduser()
    return default_socket_path()


def _configured_language(config: str | None) -> str | None:
    """Return the configuration's top-level `language`, read alone so that no other key can fail."""
    from edm_tui.config import find_config_path

    try:
        data = tomllib.loads(find_config_path(config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    value = data.get("language")
    return value if value in ("en", "hu") else None


def main(argv: Sequence[str] | None = None) -> int:
    set_language()
    translate_argparse()
    args = build_parser().parse_args(argv)
    set_language(_configured_language(args.config))
    app = EdmTuiApp(resolve_socket_path(args.socket, args.config))
    app.run()
    if app.active_run_id is not None:
        print(_("Run {run_id} goes on in the daemon; `edm-sync status` shows its progress.").format(
            run_id=app.active_run_id))
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
