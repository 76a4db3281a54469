"""Modal dialogs the App shows before it acts: override the safety brake, quit during a run."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from edm_tui.i18n import N_, _

# Results of BrakeOverrideDialog.
OVERRIDE_ONCE = "override"
RUN_WITH_BRAKE = "run"


class BrakeOverrideDialog(ModalScreen[str | None]):
    """A choice of how to sync after a run that the safety brake blocked.

    Dismisses with OVERRIDE_ONCE (run once with allow_mass_changes), RUN_WITH_BRAKE (a normal
    run, for when the cause has been fixed) or None (do nothing).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", N_("Cancel"), id="dialog_cancel"),
    ]

    def __init__(self, run_id: int | None, reason: str) -> None:
        super().__init__(classes="dialog-screen")
        self.run_id = run_id
        self.reason = reason

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="brake-dialog") as dialog:
            dialog.border_title = _("The safety brake stopped the last run")
            yield Static(_("Run {run_id} wrote nothing because:").format(run_id=self.run_id or "?"))
            yield Static(self.reason, id="brake-reason", classes="dialog-detail", markup=False)
            yield Static(_("If this change is intended, let one sync through. The brake stays on "
                           "for every later run."))
            with Horizontal(classes="dialog-buttons"):
                yield Button(_("Sync once without the brake"), variant="warning", id="override-once")
                yield Button(_("Sync with the brake"), id="run-with-brake")
                yield Button(_("Cancel"), variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        results = {"override-once": OVERRIDE_ONCE, "run-with-brake": RUN_WITH_BRAKE}
        self.dismiss(results.get(event.button.id or ""))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class QuitDialog(ModalScreen[bool]):
    """A confirmation to quit while a run is in progress, which goes on in the daemon."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stay", N_("Stay"), id="dialog_stay"),
        Binding("q", "quit_now", N_("Quit"), id="dialog_quit"),
    ]

    def __init__(self, run_id: int | None) -> None:
        super().__init__(classes="dialog-screen")
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="quit-dialog") as dialog:
            dialog.border_title = _("Quit the dashboard?")
            yield Static(_("Run {run_id} is in progress. The sync goes on in the daemon after you "
                           "quit; `edm-sync status` shows how it ends.").format(run_id=self.run_id or "?"))
            with Horizontal(classes="dialog-buttons"):
                yield Button(_("Quit"), variant="primary", id="quit")
                yield Button(_("Stay"), id="stay")

    def on_mount(self) -> None:
        self.query_one("#quit", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "quit")

    def action_stay(self) -> None:
        self.dismiss(False)

    def action_quit_now(self) -> None:
        self.dismiss(True)
