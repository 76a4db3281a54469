"""The settings screen: edit the configuration file through the daemon, which checks and saves it.

Everything goes through the socket. `config.get` fills the form, and `config.validate`
checks it while the user types, with each problem beside its field. `config.set` saves it:
the daemon writes the file with mode 0600, keeps its comments and loads it. `check` tests the
saved settings, and `iem.lists` and `iem.fields` fill the list and custom field choices.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import Button, Label, Static, Switch
from textual.worker import Worker, WorkerState

from edm_tui.client import DaemonError, DaemonUnavailable
from edm_tui.connection import DaemonConnection
from edm_tui.i18n import N_, _, ngettext, translate_message
from edm_tui.messages import DaemonEvent
from edm_tui.widgets.config_form import CheckResults, ConfigForm, SwitchField
from edm_tui.widgets.footer import DASHBOARD_ACTIONS, Footer
from edm_tui.widgets.lifecycle import is_closing

log = logging.getLogger("edm_sync.tui")

VALIDATE_DELAY = 0.4  # seconds of no typing before the form is sent to config.validate

INVALID_CONFIG = -32006
PERMISSION_DENIED = -32001

SAVE, DISCARD, STAY = "save", "discard", "stay"


def translated_problems(data: Any) -> list[str]:
    """Return the configuration problems of a daemon reply in the dashboard's language.

    The daemon sends English `problems` and, in the same order, `messages` to translate.
    """
    if not isinstance(data, dict) or not isinstance(data.get("problems"), list):
        return []
    problems = [str(problem) for problem in data["problems"]]
    messages = data.get("messages")
    if not isinstance(messages, list) or len(messages) != len(problems):
        return problems
    return [translate_message(message, english) for message, english in zip(messages, problems)]


def _problems_of(error: DaemonError) -> list[str]:
    return translated_problems(error.data)


def _describe(error: DaemonError | DaemonUnavailable) -> str:
    """Describe a failed call in one line for the user."""
    if isinstance(error, DaemonUnavailable):
        return _("The daemon cannot be reached: {error}").format(error=error)
    problems = _problems_of(error)
    if problems:
        return "; ".join(problems)
    if error.code == PERMISSION_DENIED:
        return _permission_text(error)
    return _("The daemon reported an error: {message} ({code})").format(message=error.message, code=error.code)


def _permission_text(error: DaemonError | None) -> str:
    reason = error.data.get("reason") if error is not None and isinstance(error.data, dict) else None
    if reason:
        return _("Read only: saving needs write access, which {reason} have.").format(reason=reason)
    return _("Read only: saving needs write access (root, the service user or a member of "
             "[daemon] admin_group).")


class UnsavedChangesScreen(ModalScreen[str]):
    """A question about unsaved changes: save, discard or stay. Dismisses with SAVE, DISCARD or STAY."""

    DEFAULT_CSS = """
    UnsavedChangesScreen {
        align: center middle;
        & > Vertical {
            width: 60;
            max-width: 100%;
            height: auto;
            border: thick $warning;
            background: $surface;
            padding: 1 2;
        }
        & .question { width: 1fr; }
        & .keys { width: 1fr; color: $text-muted; margin: 0 0 1 0; }
        & Grid { grid-size: 3; grid-gutter: 0 1; height: auto; }
        & Button { width: 1fr; min-width: 8; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "choose('save')", N_("Save"), id="unsaved.save"),
        Binding("d", "choose('discard')", N_("Discard"), id="unsaved.discard"),
        Binding("escape", "choose('stay')", N_("Stay"), id="unsaved.stay"),
    ]

    def __init__(self, question: str, *, can_save: bool = True) -> None:
        super().__init__()
        self.question = question
        self.can_save = can_save

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, classes="question", markup=False)
            yield Label(_("s: save, d: discard, esc: stay"), classes="keys", markup=False)
            with Grid():
                yield Button(_("Save"), id=SAVE, variant="primary", disabled=not self.can_save)
                yield Button(_("Discard"), id=DISCARD, variant="error")
                yield Button(_("Stay"), id=STAY)

    def on_mount(self) -> None:
        self.query_one(f"#{STAY}", Button).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "choose" and parameters == (SAVE,) and not self.can_save:
            return None
        return True

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id or STAY)


class ConfigScreen(Screen[None]):
    """Edit, check, test and save the daemon's configuration file."""

    # q types into the fields here, so the footer does not offer it; ctrl+q still quits.
    FOOTER_HIDDEN_ACTIONS: ClassVar[frozenset[str]] = DASHBOARD_ACTIONS | {"request_quit"}

    DEFAULT_CSS = """
    ConfigScreen {
        & > #config-title { height: 1; padding: 0 1; background: $panel; text-style: bold; }
        & > #config-banner {
            height: auto; padding: 0 1; color: $text-error; display: none;
            border-left: thick $error;
        }
        & > #config-banner.-shown { display: block; }
        & > #config-actions {
            height: 1; padding: 0 1; background: $panel;
            & > Button { margin: 0 2 0 0; min-width: 8; }
            & > #config-state { width: 1fr; color: $text-muted; }
        }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", N_("Save"), id="config.save", tooltip=N_("Check and save the settings")),
        Binding("ctrl+t", "test_connection", N_("Test connection"), id="config.test",
                tooltip=N_("Test the saved settings against IEM and Magento")),
        Binding("ctrl+r", "reload", N_("Reload"), id="config.reload",
                tooltip=N_("Load the settings from the daemon again")),
        Binding("escape", "back", N_("Back"), id="config.back", tooltip=N_("Leave the settings")),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.config_path: str | None = None
        self.loaded = False
        self._validate_timer: Timer | None = None
        self._fields_list: int | None = None  # the list whose custom fields the form offers
        self._notices: dict[str, str] = {}  # banner lines by source: "load", "file", "problems"
        self._shown_state: tuple[Any, ...] = ()  # what _update_state last showed

    @property
    def daemon(self) -> DaemonConnection:
        return self.app.daemon  # type: ignore[attr-defined]

    @property
    def form(self) -> ConfigForm:
        return self.query_one(ConfigForm)

    async def _call(self, method: str, **params: Any) -> Any:
        """Call the daemon; cancel the calling worker if the screen was closed while it waited."""
        try:
            return await self.daemon.call(method, **params)
        finally:
            if is_closing(self):
                raise asyncio.CancelledError

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Log a worker that failed, and tell the user if the screen is still open."""
        if event.state != WorkerState.ERROR:
            return
        log.error("settings worker %s failed: %r", event.worker.name, event.worker.error)
        if not is_closing(self):
            self.notify(_("The settings screen failed: {error}").format(error=event.worker.error),
                        severity="error")

    def compose(self) -> ComposeResult:
        yield Static(_("Settings"), id="config-title", markup=False)
        yield Static("", id="config-banner", markup=False)
        yield ConfigForm(id="config-form")
        with Horizontal(id="config-actions"):
            yield Button(_("Test connection"), id="test-connection", compact=True)
            yield Button(_("Save"), id="save", variant="primary", disabled=True, compact=True)
            yield Static("", id="config-state", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.load_settings()

    # --- loading ---

    @work(exclusive=True, group="config-load", exit_on_error=False)
    async def load_settings(self) -> None:
        """Fill the form from config.get, check it, then fetch IEM's lists and custom fields."""
        form = self.form
        form.loading = True
        self._notices.clear()
        self._show_notice("load", None)
        try:
            result = await self._call("config.get")
        except (DaemonError, DaemonUnavailable) as error:
            log.warning("config.get failed: %s", error)
            form.loading = False
            self.loaded = False
            self._show_notice("load", _("The settings could not be loaded. {reason} Press ctrl+r to try "
                                        "again.").format(reason=_describe(error)))
            self._update_state()
            return

        self.config_path = str(result.get("path") or "")
        config = result.get("config") if isinstance(result.get("config"), dict) else {}
        await form.load(config)
        if is_closing(self):
            return
        self._show_tls_note()
        form.loading = False
        first_load = not self.loaded
        self.loaded = True
        if first_load and self.focused is form:
            # Nothing is focused at first, so keys such as ? and q act instead of typing into a
            # field; Tab moves into the form.
            self.set_focus(None)
        self._fields_list = None
        self._update_state()
        if result.get("error"):
            self._show_notice("file", _("The daemon could not load this file and uses its previous settings, "
                                        "or none. Correct the marked fields and save."))
        self._validate_now()
        self._load_lists()
        self._load_custom_fields(form.selected_list())

    @work(exclusive=True, group="config-lists", exit_on_error=False)
    async def _load_lists(self) -> None:
        try:
            result = await self._call("iem.lists")
        except (DaemonError, DaemonUnavailable) as error:
            log.warning("iem.lists failed: %s", error)
            self.form.set_lists(None, _describe(error))
            return
        lists = result.get("lists") if isinstance(result, dict) else None
        self.form.set_lists(lists if isinstance(lists, list) else [], None)

    @work(exclusive=True, group="config-fields", exit_on_error=False)
    async def _load_custom_fields(self, list_id: int | None) -> None:
        if list_id is None:
            return
        self._fields_list = list_id
        try:
            result = await self._call("iem.fields", list_id=list_id)
        except (DaemonError, DaemonUnavailable) as error:
            log.warning("iem.fields for list %s failed: %s", list_id, error)
            self.form.set_custom_fields(None, _describe(error))
            return
        fields = result.get("fields") if isinstance(result, dict) else None
        self.form.set_custom_fields(fields if isinstance(fields, list) else [], None)

    def on_daemon_event(self, event: DaemonEvent) -> None:
        """Reload after a reconnect, unless that would throw away the user's changes."""
        if event.topic != "resync":
            return
        if not self.loaded or not self.form.is_dirty:
            self.load_settings()
        else:
            self._validate_now()

    # --- validation while editing ---

    @on(ConfigForm.Edited)
    def _edited(self, event: ConfigForm.Edited) -> None:
        self._update_state()
        if self._validate_timer is not None:
            self._validate_timer.stop()
            self._validate_timer = None
        if event.immediate:
            self._validate_now()
        else:
            self._validate_timer = self.set_timer(VALIDATE_DELAY, self._validate_now)

    @on(Switch.Changed)
    def _switch_changed(self, event: Switch.Changed) -> None:
        if event.switch.parent is not None and event.switch.parent.id == "field-interspire-verify_tls":
            self._show_tls_note()

    def _show_tls_note(self) -> None:
        """Warn beside interspire.verify_tls while it is off."""
        field = self.form.query_one("#field-interspire-verify_tls", SwitchField)
        note = None if field.switch.value else _(
            "Off: the IEM server's certificate is not checked, so a machine on the network path can "
            "pose as IEM and read the XML token. edm-sync warns about this at every start.")
        self.form.row("interspire.verify_tls").show_note(note)

    @on(ConfigForm.ListChosen)
    def _list_chosen(self, event: ConfigForm.ListChosen) -> None:
        if event.list_id is not None and event.list_id != self._fields_list:
            self._load_custom_fields(event.list_id)

    def _validate_now(self) -> None:
        if self.loaded:
            self._validate()

    @work(exclusive=True, group="config-validate", exit_on_error=False)
    async def _validate(self) -> None:
        """Send the changes to config.validate and show every problem beside its field."""
        changes, local = self.form.changes()
        try:
            result = await self._call("config.validate", config=changes)
        except (DaemonError, DaemonUnavailable) as error:
            log.warning("config.validate failed: %s", error)
            self.form.show_problems([], local)
            self._show_notice("problems", _("The settings could not be checked. {reason}").format(
                reason=_describe(error)))
            return
        self._show_problems(translated_problems(result), local, changes)

    def _show_problems(self, problems: list[str], local: dict[str, str], sent: dict[str, dict[str, Any]]) -> None:
        unmatched = self.form.show_problems([str(problem) for problem in problems], local, sent)
        self._show_notice("problems", "\n".join(f"✗ {problem}" for problem in unmatched) if unmatched else None)

    # --- saving ---

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "save" and not (self.loaded and self.daemon.can_write):
            return None  # shown disabled in the footer
        if action == "test_connection" and not self.loaded:
            return None
        return True

    def action_save(self) -> None:
        self.save_settings()

    @work(exclusive=True, group="config-save", exit_on_error=False)
    async def save_settings(self, leave_after: bool = False) -> bool:
        """Send the changes to config.set; return whether the file now has them."""
        if not self.daemon.can_write:
            self.notify(_permission_text(None), severity="error")
            return False
        changes, local = self.form.changes()
        if local:
            self.form.show_problems([], local)
            self.notify(_("Not saved: correct the marked fields first."), severity="error")
            return False
        if not changes:
            self.notify(_("Nothing to save: no setting was changed."))
            if leave_after:
                self._leave()
            return True

        try:
            result = await self._call("config.set", config=changes)
        except DaemonError as error:
            log.warning("config.set rejected: %s", error)
            problems = _problems_of(error)
            if error.code == INVALID_CONFIG and problems:
                self._show_problems(problems, {}, changes)
                self.notify(ngettext("Not saved: {count} problem; see the marked field.",
                                     "Not saved: {count} problems; see the marked fields.",
                                     len(problems)).format(count=len(problems)), severity="error")
            else:
                self.notify(_("Not saved. {reason}").format(reason=_describe(error)), severity="error")
            return False
        except DaemonUnavailable as error:
            log.warning("config.set failed: %s", error)
            self.notify(_("Not saved. {reason}").format(reason=_describe(error)), severity="error")
            return False

        path = result.get("path") if isinstance(result, dict) else None
        self.notify(_("Saved to {path}. The daemon uses the new settings now.").format(
            path=path or self.config_path))
        if leave_after:
            self._leave()
        else:
            self.load_settings()
        return True

    def _update_state(self) -> None:
        """Show whether the form may be saved and has changes; only redraws what changed."""
        dirty = self.form.is_dirty
        shown = (self.loaded, self.daemon.can_write, dirty, self.config_path)
        if shown == self._shown_state:
            return
        self._shown_state = shown

        can_write = self.loaded and self.daemon.can_write
        self.query_one("#save", Button).disabled = not can_write
        self.query_one("#test-connection", Button).disabled = not self.loaded
        if self.loaded and not self.daemon.can_write:
            state = _permission_text(None)
        elif dirty:
            state = _("Unsaved changes")
        else:
            state = ""
        self.query_one("#config-state", Static).update(state)
        title = _("Settings: {path}").format(path=self.config_path) if self.config_path else _("Settings")
        self.query_one("#config-title", Static).update(title + (" ●" if dirty else ""))
        self.refresh_bindings()

    # --- test connection ---

    def action_test_connection(self) -> None:
        self.test_connection()

    @work(exclusive=True, group="config-check", exit_on_error=False)
    async def test_connection(self) -> None:
        """Run the daemon's check and show one line per result."""
        panel = self.query_one(CheckResults)
        note = _("Unsaved changes are not tested: save first to test them.") if self.form.is_dirty else None
        panel.show_running(note)
        self.form.scroll_home(animate=False)
        try:
            result = await self._call("check")
        except (DaemonError, DaemonUnavailable) as error:
            log.warning("check failed: %s", error)
            panel.show_failure(_("The test could not run. {reason}").format(reason=_describe(error)))
            return
        results = result.get("results") if isinstance(result, dict) else None
        panel.show_results(results if isinstance(results, list) else [], note)
        self.form.scroll_home(animate=False)

    # --- buttons and leaving ---

    @on(Button.Pressed, "#save")
    def _save_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.save_settings()

    @on(Button.Pressed, "#test-connection")
    def _test_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.test_connection()

    def action_back(self) -> None:
        if not self.form.is_dirty:
            self._leave()
            return

        def decided(choice: str | None) -> None:
            if choice == SAVE:
                self.save_settings(leave_after=True)
            elif choice == DISCARD:
                self._leave()

        self.app.push_screen(UnsavedChangesScreen(_("You have unsaved changes."), can_save=self.daemon.can_write),
                             decided)

    def action_reload(self) -> None:
        if not self.form.is_dirty:
            self.load_settings()
            return

        def decided(choice: str | None) -> None:
            if choice == SAVE:
                self.save_settings()
            elif choice == DISCARD:
                self.load_settings()

        self.app.push_screen(UnsavedChangesScreen(_("Reloading discards your unsaved changes."),
                                                  can_save=self.daemon.can_write), decided)

    def _leave(self) -> None:
        self.dismiss()

    def _show_notice(self, source: str, text: str | None) -> None:
        """Show or clear one part of the banner above the form."""
        if text:
            self._notices[source] = text
        else:
            self._notices.pop(source, None)
        banner = self.query_one("#config-banner", Static)
        banner.update("\n".join(self._notices.values()))
        banner.set_class(bool(self._notices), "-shown")
