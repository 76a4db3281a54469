"""One run: its header (status, times, error, counts per action) and its items, paged.

Items are fetched from the daemon's `run_items` method, oldest first, filtered there by
outcome, action and email. The panel under the grid shows the highlighted item in full,
including the complete error message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Select, Static

from edm_tui.client import DaemonError, DaemonUnavailable
from edm_tui.export import export_items
from edm_tui.i18n import _, ngettext
from edm_tui.messages import DaemonEvent
from edm_tui.screens.paged import PagedGridScreen, email_input, grid_bindings
from edm_tui.summary import action_label, outcome_label, reason_word, run_error_text, trigger_label
from edm_tui.sync.model import Action
from edm_tui.widgets.filter_bar import FilterBar
from edm_tui.widgets.footer import Footer
from edm_tui.widgets.labels import format_number, status_text
from edm_tui.widgets.record_grid import Record, RecordGrid
from edm_tui.widgets.run_table import (
    OUTCOME_GLYPHS,
    RunTable,
    direction_word,
    format_duration,
    item_columns,
    local_time,
    outcome_cell,
    run_duration,
)

ITEMS_PAGE = 500
ITEMS_PREFETCH = 200
ACTIONS = tuple(action.value for action in Action)
OUTCOMES = ("succeeded", "failed", "skipped", "pending", "interrupted")


@dataclass(frozen=True)
class ItemFilter:
    """The filter of the items grid, as the `run_items` method's params."""

    outcomes: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    email: str = ""

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.outcomes:
            params["outcome"] = list(self.outcomes)
        if self.actions:
            params["action"] = list(self.actions)
        if self.email:
            params["email"] = self.email
        return params

    @property
    def active(self) -> bool:
        return bool(self.outcomes or self.actions or self.email)

    def describe(self) -> str:
        """Return the filter in words, e.g. "outcome: ✗ failed · action: added to IEM", or ""."""
        parts = []
        if self.outcomes:
            parts.append(_("outcome: {outcomes}").format(outcomes=", ".join(map(outcome_cell, self.outcomes))))
        if self.actions:
            parts.append(_("action: {actions}").format(actions=", ".join(map(action_label, self.actions))))
        if self.email:
            parts.append(_("email contains “{text}”").format(text=self.email))
        return " · ".join(parts)


def outcome_options() -> list[tuple[str, tuple[str, ...]]]:
    return [(_("All outcomes"), ()), *((outcome_cell(outcome), (outcome,)) for outcome in OUTCOMES)]


def action_options() -> list[tuple[str, tuple[str, ...]]]:
    return [(_("All actions"), ()), *((action_label(action), (action,)) for action in ACTIONS)]


# --- texts of the header and the item panel ---


def run_header(run: Record) -> str:
    """Return the run's status, trigger and times, its error in full and its counts per action."""
    status = run["status"]
    facts = [
        status_text(status),
        _("trigger: {trigger}").format(trigger=trigger_label(run["trigger"])),
        _("started {time}").format(time=local_time(run["started_at"], seconds=True)),
    ]
    if run.get("finished_at") is None:
        facts.append(_("still running"))
    else:
        facts.append(_("finished {time}").format(time=local_time(run["finished_at"], seconds=True)))
        facts.append(_("took {duration}").format(duration=format_duration(run_duration(run))))
    lines = [" · ".join(facts)]
    if run.get("allow_mass_changes"):
        lines.append(_("The safety brake was overridden for this run."))
    if run.get("error"):
        lines.append(_("Error: {error}").format(error=run_error_text(run)))

    counts = run.get("counts") or {}
    if not counts:
        lines.append(_("No writes recorded.") if run.get("finished_at") is not None
                     else _("Counts appear when the run finishes."))
    # The counts flow as one paragraph, so all eight actions fit the header at 80x24.
    parts = []
    for action in sorted(counts, key=lambda a: ACTIONS.index(a) if a in ACTIONS else len(ACTIONS)):
        by_outcome = counts[action]
        if not isinstance(by_outcome, dict):
            by_outcome = {"succeeded": by_outcome}
        numbers = ", ".join(
            f"{OUTCOME_GLYPHS.get(outcome, '?')} {format_number(int(n))} {outcome_label(outcome)}"
            for outcome, n in sorted(by_outcome.items(), key=lambda pair: _outcome_rank(pair[0])) if n)
        parts.append(_("{action}: {numbers}").format(action=action_label(action), numbers=numbers))
    if parts:
        lines.append(" · ".join(parts))
    return "\n".join(lines)


def _outcome_rank(outcome: str) -> int:
    return OUTCOMES.index(outcome) if outcome in OUTCOMES else len(OUTCOMES)


def item_detail(item: Record | None) -> str:
    """Return everything about one item, its reason and complete error message included."""
    if item is None:
        return _("No item selected.")
    identity = [_("item {id}").format(id=item["id"]), item["email"]]
    if item.get("website_id") is not None:
        identity.append(_("website {id}").format(id=item["website_id"]))
    identity.append(_("list {id}").format(id=item["list_id"]))
    write = [
        f"{action_label(item['action'])} ({direction_word(item['direction'])})",
        outcome_cell(item["outcome"]),
        ngettext("{n} try", "{n} tries", item.get("attempts", 0)).format(n=item.get("attempts", 0)),
        local_time(item.get("at"), seconds=True),
    ]
    lines = [" · ".join(identity), " · ".join(write),
             _("Reason: {reason} ({code})").format(reason=reason_word(item["reason"]), code=item["reason"])]
    if item.get("error_class") or item.get("error_message"):
        lines.append(_("Error: {error}").format(
            error=": ".join(part for part in (item.get("error_class"), item.get("error_message")) if part)))
    return "\n".join(lines)


class RunDetailScreen(PagedGridScreen):
    """A run's header and items. `email` pre-fills the items' email filter."""

    BINDINGS: ClassVar[list[BindingType]] = grid_bindings(filter_id="run_detail.filter",
                                                          export_id="run_detail.export")

    AUTO_FOCUS = "#items"
    TABLE_ID = "items"
    STATUS_ID = "run-status"
    SELECT_FIELDS: ClassVar[dict[str, str]] = {"outcome-filter": "outcomes", "action-filter": "actions"}
    EMAIL_INPUT_ID = "item-email-filter"

    DEFAULT_CSS = """
    RunDetailScreen {
        layout: vertical;
        & > #run-title {
            height: 1;
            padding: 0 1;
            background: $panel;
            text-style: bold;
        }
        & > #run-header-box {
            height: auto;
            max-height: 9;  /* all eight counts with two outcomes each, in Hungarian, at 80 columns */
            padding: 0 1;
        }
        & > #items {
            height: 1fr;
            min-height: 5;
        }
        & > #item-box {
            height: 5;
            padding: 0 1;
            background: $boost;
        }
        & > #run-status {
            height: auto;
            padding: 0 1;
            color: $text-muted;
        }
    }
    """

    grid_filter: ItemFilter

    def __init__(self, run_id: int, *, email: str = "") -> None:
        super().__init__(ItemFilter(email=email))
        self.run_id = run_id
        self.run: Record | None = None
        self.header_error: DaemonError | DaemonUnavailable | None = None

    # --- layout ---

    def compose(self) -> ComposeResult:
        yield Static(id="run-title")
        with VerticalScroll(id="run-header-box", can_focus=False):
            yield Static(Content(_("Loading the run…")), id="run-header")
        yield FilterBar(self._filter_fields, id="items-filter")
        yield RunTable(item_columns(), page_size=ITEMS_PAGE, prefetch=ITEMS_PREFETCH, id="items")
        with VerticalScroll(id="item-box"):
            yield Static(Content(item_detail(None)), id="item-detail")
        yield Static(id="run-status")
        yield Footer(show_command_palette=False)

    def _filter_fields(self) -> list[Widget]:
        current = self.grid_filter
        return [
            Select(outcome_options(), value=current.outcomes, allow_blank=False, compact=True, id="outcome-filter"),
            Select(action_options(), value=current.actions, allow_blank=False, compact=True, id="action-filter"),
            email_input(current.email, id="item-email-filter"),
        ]

    # --- loading ---

    def reload(self) -> None:
        """Load the run's header and the first page of its items again."""
        self._reload_header()
        self._reload_rows()

    def _reload_header(self) -> None:
        self.run_worker(self._load_header(), group="run-header", exclusive=True, description="load a run")

    async def _load_header(self) -> None:
        try:
            # `runs` has no lookup by id, so ask for the first run below id + 1: this run, if it exists.
            result = await self.app.daemon.call("runs", limit=1, before_id=self.run_id + 1)  # type: ignore[attr-defined]
        except (DaemonError, DaemonUnavailable) as error:
            self.header_error = error
            self._show_header()
            return
        self.header_error = None
        runs = result["runs"]
        self.run = runs[0] if runs and runs[0]["id"] == self.run_id else None
        self._show_header()

    async def _fetch_page(self, after_id: int | None, limit: int) -> tuple[list[Record], int | None]:
        params = self.grid_filter.params()
        result = await self.app.daemon.call(  # type: ignore[attr-defined]
            "run_items", run_id=self.run_id, after_id=after_id or 0, limit=limit, **params)
        return result["items"], result.get("next_after_id")

    def on_record_grid_row_highlighted(self, message: RecordGrid.RowHighlighted) -> None:
        self.query_one("#item-detail", Static).update(Content(item_detail(message.record)))

    # --- events forwarded by the App (without them, ctrl+r reloads) ---

    def on_daemon_event(self, message: DaemonEvent) -> None:
        """Reload on a resync, and reload the header when this run finishes."""
        topic, data = message.topic, message.data
        if topic == "resync":
            self.reload()
        elif topic == "run_finished" and data.get("run_id") == self.run_id:
            self._reload_header()

    def _connected(self) -> None:
        if self.header_error is not None:
            self._reload_header()

    # --- header and status line ---

    def _show_header(self) -> None:
        title = _("Run {id}").format(id=self.run_id)
        if self.header_error is not None:
            text = _("Could not load the run: {error}. ctrl+r tries again.").format(error=self.header_error)
        elif self.run is None:
            text = _("There is no run {id} in the history.").format(id=self.run_id)
        else:
            text = run_header(self.run)
        self.query_one("#run-title", Static).update(Content(title))
        self.query_one("#run-header", Static).update(Content(text))

    def _failure_text(self, error: DaemonError | DaemonUnavailable) -> str:
        if isinstance(error, DaemonUnavailable):
            return _("Could not load the items: {error}. Trying again every few seconds, or press ctrl+r.").format(
                error=error)
        return _("The daemon rejected the request for the items: {error}. ctrl+r tries again.").format(error=error)

    def _loading_text(self) -> str:
        return _("Loading items…")

    def _empty_text(self) -> str:
        if self.grid_filter.active:
            return _("No items match the filter ({filter}). Press / to change it.").format(
                filter=self.grid_filter.describe())
        return _("This run has no items: it wrote nothing.")

    def _count_text(self, count: int, *, complete: bool, sorted_by_column: bool) -> str:
        if complete:
            return ngettext("{n} item", "{n} items", count).format(n=format_number(count))
        if not sorted_by_column:
            return ngettext("{n} item loaded, more as you scroll", "{n} items loaded, more as you scroll",
                            count).format(n=format_number(count))
        return ngettext("{n} item loaded", "{n} items loaded", count).format(n=format_number(count))

    def _loaded_sort_text(self, column: str, direction: str) -> str:
        return _("loaded items sorted by {column}, {direction}; moving past the last row loads more").format(
            column=column, direction=direction)

    def _filter_parts(self) -> list[str]:
        described = self.grid_filter.describe()
        return [described] if described else []

    # --- actions ---

    def action_export(self) -> None:
        app = self.app
        run_id = self.run_id
        item_filter = self.grid_filter
        self._start_export(
            _("Exporting the items of this view…"),
            lambda: export_items(app.daemon.call, Path.cwd(), run_id, **item_filter.params()),  # type: ignore[attr-defined]
            exported_items_text, description="export run items to CSV")


def exported_items_text(count: int, file: str) -> str:
    return ngettext("Exported {n} item to {file}", "Exported {n} items to {file}", count).format(
        n=format_number(count), file=file)
