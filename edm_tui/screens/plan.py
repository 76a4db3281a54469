"""The plan screen: what a sync run would change now, from the daemon's dry run (`plan`).

The daemon reads Magento and IEM and plans without writing anything. The screen shows one
row per action with its direction and count, the first items of the selected action, the
items a run would fail without trying, and the safety brake's warning when it would stop
the run.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Label, LoadingIndicator, Static
from textual.worker import Worker, WorkerState

from edm_tui.client import DaemonError, DaemonUnavailable
from edm_tui.connection import DaemonConnection
from edm_tui.i18n import N_, _, ngettext
from edm_tui.messages import DaemonEvent
from edm_tui.summary import action_label, reason_word
from edm_tui.sync.model import Action
from edm_tui.widgets.footer import DASHBOARD_ACTIONS, Footer
from edm_tui.widgets.lifecycle import is_closing

log = logging.getLogger("edm_sync.tui")

PLAN_LIMIT = 50  # items listed per action; the counts are always complete

ACTION_ORDER = [action.value for action in Action]


def direction_label(direction: str) -> str:
    if direction == "to_iem":
        return _("Magento → IEM")
    if direction == "to_magento":
        return _("IEM → Magento")
    return direction


def _cell(value: Any) -> Text:
    """Wrap a value as a table cell shown as it is; DataTable reads a plain str as markup."""
    return Text(str(value))


def _number(value: Any) -> Text:
    """Wrap a number as a table cell aligned to the right."""
    return Text(str(value), justify="right")


def ordered_actions(actions: dict[str, Any]) -> list[str]:
    """Return the plan's actions in the engine's order; unknown ones come last."""
    return sorted(actions, key=lambda a: ACTION_ORDER.index(a) if a in ACTION_ORDER else len(ACTION_ORDER))


class PlanScreen(Screen[None]):
    """The daemon's dry run as a table of actions, with the first items of the selected one."""

    FOOTER_HIDDEN_ACTIONS: ClassVar[frozenset[str]] = DASHBOARD_ACTIONS

    DEFAULT_CSS = """
    PlanScreen {
        & > #plan-title { height: 1; padding: 0 1; background: $panel; text-style: bold; }
        & > #plan-blocked {
            height: auto; padding: 0 1; margin: 1 1 0 1; display: none;
            border-left: thick $warning; color: $text-warning;
        }
        & > #plan-blocked.-shown { display: block; }
        & > #plan-stale { height: auto; padding: 0 1; color: $text-muted; display: none; }
        & > #plan-stale.-shown { display: block; }
        & > #plan-loading {
            height: 1fr; display: none;
            & > LoadingIndicator { height: 3; }
            & > Label { width: 1fr; content-align: center middle; }
        }
        & > #plan-loading.-shown { display: block; }
        & > #plan-message { height: auto; padding: 1 2; display: none; }
        & > #plan-message.-shown { display: block; }
        & > #plan-message.-error { color: $text-error; }
        & > #plan-body { height: 1fr; padding: 0 1; }
        & > #plan-body.-hidden { display: none; }
        & .plan-heading { text-style: bold; margin: 1 0 0 0; }
        & #plan-actions { height: auto; max-height: 11; }
        & #plan-items { height: 1fr; min-height: 4; }
        & #plan-more { color: $text-muted; }
        & #plan-failed { height: auto; max-height: 6; }
        & #plan-failed-lines { height: auto; }
        & .-none { display: none; }
        & #plan-summary { color: $text-muted; margin: 1 0 0 0; }
        & Label { width: 1fr; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "replan", N_("Plan again"), id="plan.refresh",
                tooltip=N_("Read Magento and IEM again and show what a run would change")),
        Binding("escape", "back", N_("Back"), id="plan.back", tooltip=N_("Leave the plan")),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.result: dict[str, Any] | None = None
        self.selected_action: str | None = None
        self.failed = False  # the last plan could not be made

    @property
    def daemon(self) -> DaemonConnection:
        return self.app.daemon  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static(_("Plan: what a sync run would change now (nothing is written)"), id="plan-title",
                     markup=False)
        yield Static("", id="plan-stale", markup=False)
        yield Static("", id="plan-blocked", markup=False)
        with Vertical(id="plan-loading"):
            yield LoadingIndicator()
            yield Label(_("Reading Magento and IEM…"))
        yield Static("", id="plan-message", markup=False)
        with Vertical(id="plan-body"):
            yield DataTable(id="plan-actions", cursor_type="row", zebra_stripes=True)
            yield Label("", id="plan-items-heading", classes="plan-heading", markup=False)
            yield DataTable(id="plan-items", cursor_type="row", zebra_stripes=True)
            yield Label("", id="plan-more", markup=False)
            yield Label("", id="plan-failed-heading", classes="plan-heading", markup=False)
            with VerticalScroll(id="plan-failed"):
                yield Static("", id="plan-failed-lines", markup=False)
            yield Label("", id="plan-summary", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#plan-actions", DataTable).add_columns(_("Action"), _("Direction"), _number(_("Count")))
        self.query_one("#plan-items", DataTable).add_columns(_("Email"), _number(_("Website")), _number(_("List")),
                                                             _("Reason"))
        self.make_plan()

    def action_replan(self) -> None:
        self.make_plan()

    def action_back(self) -> None:
        self.dismiss()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "replan" and self.is_planning:
            return None
        return True

    @property
    def is_planning(self) -> bool:
        return self.query_one("#plan-loading").has_class("-shown")

    def on_daemon_event(self, event: DaemonEvent) -> None:
        """Plan again after a reconnect if the last plan failed; mark the plan stale after a run."""
        if event.topic == "resync" and self.failed and not self.is_planning:
            self.make_plan()
        elif event.topic == "run_finished" and self.result is not None:
            stale = self.query_one("#plan-stale", Static)
            stale.update(_("A run has finished since this plan was made. Press ctrl+r to plan again."))
            stale.add_class("-shown")

    # --- asking the daemon ---

    @work(exclusive=True, group="plan", exit_on_error=False)
    async def make_plan(self) -> None:
        """Ask the daemon for a dry run and show it, with a loading indicator while it runs."""
        self._show_loading(True)
        self.query_one("#plan-stale").remove_class("-shown")
        try:
            result = await self.daemon.call("plan", limit=PLAN_LIMIT)
        except (DaemonError, DaemonUnavailable) as error:
            log.warning("plan failed: %s", error)
            if not is_closing(self):
                self._show_loading(False)
                self._show_failure(error)
            return
        if is_closing(self):
            return
        self._show_loading(False)
        self.result = result if isinstance(result, dict) else {}
        self._show_result(self.result)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Log a worker that failed, and tell the user if the screen is still open."""
        if event.state != WorkerState.ERROR:
            return
        log.error("plan worker %s failed: %r", event.worker.name, event.worker.error)
        if not is_closing(self):
            self._show_loading(False)
            self._show_message(_("The plan could not be shown: {error}").format(error=event.worker.error),
                               error=True)

    def _show_loading(self, loading: bool) -> None:
        self.query_one("#plan-loading").set_class(loading, "-shown")
        if loading:
            self.query_one("#plan-body").add_class("-hidden")
            self._show_blocked(None)
            self._show_message(None)
        self.refresh_bindings()

    def _show_failure(self, error: DaemonError | DaemonUnavailable) -> None:
        self.failed = True
        self.query_one("#plan-body").add_class("-hidden")
        self._show_blocked(None)
        if isinstance(error, DaemonUnavailable):
            text = _("The daemon cannot be reached: {error}").format(error=error)
        else:
            data = error.data if isinstance(error.data, dict) else {}
            problems = data.get("problems") if isinstance(data.get("problems"), list) else []
            reasons = "\n".join(f"✗ {problem}" for problem in problems) or f"✗ {error.message} ({error.code})"
            text = _("The plan could not be made:") + "\n" + reasons
        self._show_message(text + "\n\n" + _("Press ctrl+r to try again."), error=True)

    # --- showing a plan ---

    def _show_result(self, result: dict[str, Any]) -> None:
        self.failed = False
        actions = result.get("actions") if isinstance(result.get("actions"), dict) else {}
        self._show_blocked(result.get("blocked"))

        table = self.query_one("#plan-actions", DataTable)
        table.clear()
        order = ordered_actions(actions)
        for action in order:
            entry = actions[action]
            table.add_row(_cell(action_label(action)), _cell(direction_label(str(entry.get("direction", "")))),
                          _number(entry.get("count", 0)), key=action)

        failed = result.get("failed_up_front") if isinstance(result.get("failed_up_front"), list) else []
        self._show_failed(failed)
        self._show_summary(result.get("summary") if isinstance(result.get("summary"), dict) else {})

        if not order and not failed:
            self.query_one("#plan-body").add_class("-hidden")
            self._show_message(_("Nothing to change: both sides already agree."))
            return
        self.query_one("#plan-body").remove_class("-hidden")
        self._show_message(None)
        table.set_class(not order, "-none")
        if self.selected_action not in order:
            self.selected_action = order[0] if order else None
        if self.selected_action is not None:
            table.move_cursor(row=order.index(self.selected_action))
        self._show_items(self.selected_action)
        if order and self.focused is None:
            table.focus()

    def _show_blocked(self, blocked: Any) -> None:
        banner = self.query_one("#plan-blocked", Static)
        if blocked:
            banner.update("⚠ " + _("A sync would be blocked by the safety brake: {reason}").format(reason=blocked)
                          + "\n" + _("Nothing would be written. If the change is intended, let one run through "
                                     "with edm-sync run-now --allow-mass-changes."))
        banner.set_class(bool(blocked), "-shown")

    def _show_items(self, action: str | None) -> None:
        items_table = self.query_one("#plan-items", DataTable)
        items_table.clear()
        heading = self.query_one("#plan-items-heading", Label)
        more = self.query_one("#plan-more", Label)
        actions = (self.result or {}).get("actions") or {}
        entry = actions.get(action) if action is not None else None
        for widget in (heading, items_table, more):
            widget.set_class(entry is None, "-none")
        if entry is None:
            return

        first = entry.get("first") if isinstance(entry.get("first"), list) else []
        count = int(entry.get("count", 0))
        heading.update(ngettext("First item: {action}", "First {shown} items: {action}", len(first)).format(
            shown=len(first), action=action_label(action or "")))
        for item in first:
            website = item.get("website_id")
            items_table.add_row(_cell(item.get("email", "")), _number("-" if website is None else website),
                                _number(item.get("list_id", "")), _cell(reason_word(item.get("reason", ""))))
        more.update(_("… and {n} more").format(n=count - len(first)) if count > len(first) else "")
        more.set_class(count <= len(first), "-none")

    def _show_failed(self, failed: list[dict[str, Any]]) -> None:
        heading = self.query_one("#plan-failed-heading", Label)
        lines = [_("{email} ({action}): {reason}").format(
            email=item.get("email", ""), action=action_label(str(item.get("action", ""))),
            reason=item.get("reason", "")) for item in failed]
        self.query_one("#plan-failed-lines", Static).update("\n".join(lines))
        heading.update(ngettext("✗ {count} item would fail without being tried",
                                "✗ {count} items would fail without being tried", len(failed)).format(
            count=len(failed)))
        heading.set_class(not failed, "-none")
        self.query_one("#plan-failed").set_class(not failed, "-none")

    def _show_summary(self, summary: dict[str, Any]) -> None:
        label = self.query_one("#plan-summary", Label)
        if summary.get("identities") is None:
            label.update("")
            return
        label.update(_("Subscribers seen: {identities} ({subscribed} subscribed), {pending} pending, "
                       "{duplicates} with duplicate rows").format(
            identities=summary.get("identities", 0), subscribed=summary.get("subscribed_identities", 0),
            pending=summary.get("pending", 0), duplicates=summary.get("duplicates", 0)))

    def _show_message(self, text: str | None, *, error: bool = False) -> None:
        message = self.query_one("#plan-message", Static)
        message.update(text or "")
        message.set_class(bool(text), "-shown")
        message.set_class(error, "-error")

    @on(DataTable.RowHighlighted, "#plan-actions")
    def _action_highlighted(self, event: DataTable.RowHighlighted) -> None:
        action = event.row_key.value
        if action != self.selected_action:
            self.selected_action = action
            self._show_items(action)
