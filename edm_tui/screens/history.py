"""The run history: every past run, paged from the daemon, with filters, search and export.

Filters (status, trigger, an email address) go to the daemon's `runs` method, so they
apply to the whole history. Sorting by a column other than the run id reorders only the
runs loaded so far, and the status line shows this. Later pages are merged into that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Select, Static

from edm_tui.client import DaemonError, DaemonUnavailable
from edm_tui.daemon.history import RUN_STATUSES, TRIGGERS
from edm_tui.export import export_runs
from edm_tui.i18n import N_, _, ngettext
from edm_tui.messages import DaemonEvent
from edm_tui.screens.paged import PagedGridScreen, email_input, grid_bindings
from edm_tui.screens.run_detail import RunDetailScreen
from edm_tui.summary import trigger_label
from edm_tui.widgets.filter_bar import FilterBar
from edm_tui.widgets.footer import Footer
from edm_tui.widgets.labels import format_number, status_text
from edm_tui.widgets.record_grid import Record, RecordGrid
from edm_tui.widgets.run_table import RunTable, run_columns

RUNS_PAGE = 200
RUNS_PREFETCH = 100
PROBLEM_STATUSES = ("partial", "failed", "blocked", "interrupted")


@dataclass(frozen=True)
class RunFilter:
    """The filter of the runs grid, as the `runs` method's params."""

    statuses: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    email: str = ""

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.statuses:
            params["status"] = list(self.statuses)
        if self.triggers:
            params["trigger"] = list(self.triggers)
        if self.email:
            params["email"] = self.email
        return params

    @property
    def active(self) -> bool:
        return bool(self.statuses or self.triggers or self.email)

    def describe(self) -> str:
        """Return the filter in words, e.g. `status: ✗ failed · email contains “ann”`, or ""."""
        parts = []
        if self.statuses == PROBLEM_STATUSES:
            parts.append(_("status: any problem"))
        elif self.statuses:
            parts.append(_("status: {statuses}").format(statuses=", ".join(map(short_status_text, self.statuses))))
        if self.triggers:
            parts.append(_("trigger: {triggers}").format(triggers=", ".join(map(trigger_label, self.triggers))))
        if self.email:
            parts.append(_("email contains “{text}”").format(text=self.email))
        return " · ".join(parts)


def status_options() -> list[tuple[str, tuple[str, ...]]]:
    return [
        (_("All statuses"), ()),
        (_("Any problem"), PROBLEM_STATUSES),
        *((short_status_text(status), (status,)) for status in RUN_STATUSES),
    ]


def trigger_options() -> list[tuple[str, tuple[str, ...]]]:
    return [(_("All triggers"), ()), *((trigger_label(trigger), (trigger,)) for trigger in TRIGGERS)]


def short_status_text(status: str) -> str:
    return status_text(status, short=True)


class HistoryScreen(PagedGridScreen):
    """Past runs, newest first. Enter opens a run's items."""

    BINDINGS: ClassVar[list[BindingType]] = grid_bindings(
        filter_id="history.filter", export_id="history.export",
        extra=(Binding("enter", "open_run", N_("Open"), id="history.open"),),
    )

    AUTO_FOCUS = "#runs"
    TABLE_ID = "runs"
    STATUS_ID = "history-status"
    SELECT_FIELDS: ClassVar[dict[str, str]] = {"status-filter": "statuses", "trigger-filter": "triggers"}
    EMAIL_INPUT_ID = "email-filter"

    DEFAULT_CSS = """
    HistoryScreen {
        layout: vertical;
        & > #history-title {
            height: auto;
            padding: 0 1;
            background: $panel;
            text-style: bold;
        }
        & > #runs {
            height: 1fr;
        }
        & > #history-status {
            height: auto;
            padding: 0 1;
            color: $text-muted;
        }
    }
    """

    grid_filter: RunFilter

    def __init__(self) -> None:
        super().__init__(RunFilter())
        self._new_runs = False
        """Runs started or finished since the grid was loaded and the user was not at the top."""

    # --- layout ---

    def compose(self) -> ComposeResult:
        yield Static(id="history-title")
        yield FilterBar(self._filter_fields, id="history-filter")
        yield RunTable(run_columns(), page_size=RUNS_PAGE, prefetch=RUNS_PREFETCH, id="runs")
        yield Static(id="history-status")
        yield Footer(show_command_palette=False)

    def _filter_fields(self) -> list[Widget]:
        current = self.grid_filter
        return [
            Select(status_options(), value=current.statuses, allow_blank=False, compact=True, id="status-filter"),
            Select(trigger_options(), value=current.triggers, allow_blank=False, compact=True, id="trigger-filter"),
            email_input(current.email, id="email-filter"),
        ]

    # --- loading ---

    def _reload_rows(self) -> None:
        """Load the first page again with the current filter, keeping the cursor on its run if that run is in it."""
        self._new_runs = False
        super()._reload_rows()

    async def _fetch_page(self, before_id: int | None, limit: int) -> tuple[list[Record], int | None]:
        params = self.grid_filter.params()
        if before_id is not None:
            params["before_id"] = before_id
        result = await self.app.daemon.call("runs", limit=limit, **params)  # type: ignore[attr-defined]
        return result["runs"], result.get("next_before_id")

    def on_record_grid_row_selected(self, message: RecordGrid.RowSelected) -> None:
        self._open(message.record)

    # --- events forwarded by the App (without them, ctrl+r reloads) ---

    def on_daemon_event(self, message: DaemonEvent) -> None:
        """Reload on a resync, or when runs start or finish while the cursor is on the first row."""
        topic = message.topic
        if topic == "resync":
            self.reload()
        elif topic in ("run_started", "run_finished"):
            table = self.table
            if table.cursor_position == 0 and table.sort_column is None:
                self.reload()
            else:
                self._new_runs = True
                self._show_state()

    # --- title and status line ---

    def _show_state(self) -> None:
        title = _("Run history")
        described = self.grid_filter.describe()
        if described:
            title += " · " + described
        self.query_one("#history-title", Static).update(Content(title))
        super()._show_state()

    def _failure_text(self, error: DaemonError | DaemonUnavailable) -> str:
        if isinstance(error, DaemonUnavailable):
            return _("Could not load the runs: {error}. Trying again every few seconds, or press ctrl+r.").format(
                error=error)
        return _("The daemon rejected the request for the runs: {error}. ctrl+r tries again.").format(error=error)

    def _loading_text(self) -> str:
        return _("Loading runs…")

    def _empty_text(self) -> str:
        if self.grid_filter.active:
            return _("No runs match the filter. Press / to change it.")
        return _("No runs yet.")

    def _count_text(self, count: int, *, complete: bool, sorted_by_column: bool) -> str:
        if complete:
            return ngettext("{n} run", "{n} runs", count).format(n=format_number(count))
        if not sorted_by_column:
            return ngettext("{n} run loaded, more as you scroll", "{n} runs loaded, more as you scroll",
                            count).format(n=format_number(count))
        return ngettext("{n} run loaded", "{n} runs loaded", count).format(n=format_number(count))

    def _loaded_sort_text(self, column: str, direction: str) -> str:
        return _("loaded runs sorted by {column}, {direction}; moving past the last row loads more").format(
            column=column, direction=direction)

    def _notice_parts(self) -> list[str]:
        return [_("new runs: ctrl+r shows them")] if self._new_runs else []

    # --- actions ---

    def action_open_run(self) -> None:
        record = self.table.cursor_record
        if record is not None:
            self._open(record)

    def _open(self, run: dict[str, Any]) -> None:
        self.app.push_screen(RunDetailScreen(run["id"], email=self.grid_filter.email))

    def action_export(self) -> None:
        app = self.app
        run_filter = self.grid_filter
        self._start_export(
            _("Exporting the runs of this view…"),
            lambda: export_runs(app.daemon.call, Path.cwd(), **run_filter.params()),  # type: ignore[attr-defined]
            exported_runs_text, description="export runs to CSV")


def exported_runs_text(count: int, file: str) -> str:
    return ngettext("Exported {n} run to {file}", "Exported {n} runs to {file}", count).format(
        n=format_number(count), file=file)
