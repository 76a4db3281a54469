"""The run history: every past run, paged from the daemon, with filters, search and export.

Filters (status, trigger, an email address) go to the daemon's `runs` method, so they
apply to the whole history. Sorting by a column other than the run id reorders only the
runs loaded so far, and the status line shows this. Later pages are merged into that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input, Select, Static
from textual.worker import Worker

from edm_tui.client import DaemonError, DaemonUnavailable
from edm_tui.connection import CONNECTED
from edm_tui.daemon.history import RUN_STATUSES, TRIGGERS
from edm_tui.export import export_runs
from edm_tui.i18n import _, ngettext
from edm_tui.messages import ConnectionChanged, DaemonEvent
from edm_tui.screens.run_detail import RunDetailScreen
from edm_tui.widgets.filter_bar import FilterBar
from edm_tui.widgets.paged_table import PagedTable
from edm_tui.widgets.record_grid import RecordGrid
from edm_tui.widgets.run_table import (
    RunTable,
    format_number,
    run_columns,
    status_cell,
    trigger_word,
)

RUNS_PAGE = 200
RUNS_PREFETCH = 100
RETRY_SECONDS = 3.0
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
            parts.append(_("status: {statuses}").format(statuses=", ".join(map(status_cell, self.statuses))))
        if self.triggers:
            parts.append(_("trigger: {triggers}").format(triggers=", ".join(map(trigger_word, self.triggers))))
        if self.email:
            parts.append(_("email contains “{text}”").format(text=self.email))
        return " · ".join(parts)


def status_options() -> list[tuple[str, tuple[str, ...]]]:
    return [
        (_("All statuses"), ()),
        (_("Any problem"), PROBLEM_STATUSES),
        *((status_cell(status), (status,)) for status in RUN_STATUSES),
    ]


def trigger_options() -> list[tuple[str, tuple[str, ...]]]:
    return [(_("All triggers"), ()), *((trigger_word(trigger), (trigger,)) for trigger in TRIGGERS)]


class HistoryScreen(Screen[None]):
    """Past runs, newest first. Enter opens a run's items."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "toggle_filter", _("Filter"), id="history.filter", key_display="/"),
        Binding("enter", "open_run", _("Open"), id="history.open"),
        Binding("e", "export", _("Export"), id="history.export"),
        Binding("ctrl+r", "reload", _("Refresh"), id="refresh"),
        Binding("escape", "back", _("Back"), id="back"),
    ]

    AUTO_FOCUS = "#runs"

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

    def __init__(self) -> None:
        super().__init__()
        self.run_filter = RunFilter()
        self._keep_run_id: int | None = None
        """After a reload, the cursor returns to this run if the first page has it."""
        self._new_runs = False
        """Runs started or finished since the grid was loaded and the user was not at the top."""
        self._export_worker: Worker[None] | None = None

    # --- layout ---

    def compose(self) -> ComposeResult:
        yield Static(id="history-title")
        yield FilterBar(self._filter_fields, id="history-filter")
        yield RunTable(run_columns(), page_size=RUNS_PAGE, prefetch=RUNS_PREFETCH, id="runs")
        yield Static(id="history-status")
        yield Footer(show_command_palette=False)

    def _filter_fields(self) -> list[Widget]:
        current = self.run_filter
        return [
            Select(status_options(), value=current.statuses, allow_blank=False, compact=True, id="status-filter"),
            Select(trigger_options(), value=current.triggers, allow_blank=False, compact=True, id="trigger-filter"),
            Input(value=current.email, placeholder=_("Email contains… (enter searches)"), compact=True,
                  id="email-filter"),
        ]

    @property
    def table(self) -> RunTable:
        return self.query_one("#runs", RunTable)

    def on_mount(self) -> None:
        self.reload()

    # --- loading ---

    def reload(self) -> None:
        """Load the first page again with the current filter, keeping the cursor on its run if that run is in it."""
        record = self.table.cursor_record
        self._keep_run_id = record["id"] if record else None
        self._new_runs = False
        self.table.load(self._fetch_runs)
        self._show_state()

    async def _fetch_runs(self, before_id: int | None, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        params = self.run_filter.params()
        if before_id is not None:
            params["before_id"] = before_id
        result = await self.app.daemon.call("runs", limit=limit, **params)  # type: ignore[attr-defined]
        return result["runs"], result.get("next_before_id")

    def on_paged_table_page_loaded(self, message: PagedTable.PageLoaded) -> None:
        if self._keep_run_id is not None:
            keep, self._keep_run_id = self._keep_run_id, None
            position = self.table.find_position(lambda run: run["id"] == keep)
            if position is not None:
                self.table.move_cursor(position)
        self._show_state()

    def on_paged_table_load_failed(self, message: PagedTable.LoadFailed) -> None:
        self._show_state()
        if isinstance(message.error, DaemonUnavailable):
            self.set_timer(RETRY_SECONDS, self.table.retry)

    def on_record_grid_sort_changed(self, message: RecordGrid.SortChanged) -> None:
        self._show_state()

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

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        if message.state == CONNECTED and self.table.failed is not None:
            self.table.retry()

    # --- title and status line ---

    def _show_state(self) -> None:
        title = _("Run history")
        described = self.run_filter.describe()
        if described:
            title += " · " + described
        self.query_one("#history-title", Static).update(Content(title))
        self.query_one("#history-status", Static).update(Content(self._status_text()))

    def _status_text(self) -> str:
        table = self.table
        if isinstance(table.failed, DaemonUnavailable):
            return _("Could not load the runs: {error}. Trying again every few seconds, or press ctrl+r.").format(
                error=table.failed)
        if table.failed is not None:
            return _("The daemon rejected the request for the runs: {error}. ctrl+r tries again.").format(
                error=table.failed)
        count = table.record_count
        if count == 0:
            if table.fetching or not table.complete:
                return _("Loading runs…")
            if self.run_filter.active:
                return _("No runs match the filter. Press / to change it.")
            return _("No runs yet.")

        column = table.sort_column
        if table.complete:
            parts = [ngettext("{n} run", "{n} runs", count).format(n=format_number(count))]
        elif column is None:
            parts = [ngettext("{n} run loaded, more as you scroll", "{n} runs loaded, more as you scroll",
                              count).format(n=format_number(count))]
        else:
            parts = [ngettext("{n} run loaded", "{n} runs loaded", count).format(n=format_number(count))]
        if column is not None:
            direction = _("descending") if table.sort_reverse else _("ascending")
            if table.complete:
                parts.append(_("sorted by {column}, {direction}").format(column=column.label, direction=direction))
            else:
                parts.append(_("loaded runs sorted by {column}, {direction}; moving past the last row loads more")
                             .format(column=column.label, direction=direction))
        if self._new_runs:
            parts.append(_("new runs: ctrl+r shows them"))
        return " · ".join(parts)

    # --- filters ---

    async def action_toggle_filter(self) -> None:
        bar = self.query_one(FilterBar)
        if bar.is_open:
            bar.action_close()
        else:
            await bar.open()

    def on_filter_bar_closed(self, message: FilterBar.Closed) -> None:
        self.table.focus()

    def on_select_changed(self, message: Select.Changed) -> None:
        value = message.value if isinstance(message.value, tuple) else ()
        if message.select.id == "status-filter":
            self._apply(RunFilter(value, self.run_filter.triggers, self.run_filter.email))
        elif message.select.id == "trigger-filter":
            self._apply(RunFilter(self.run_filter.statuses, value, self.run_filter.email))

    def on_input_submitted(self, message: Input.Submitted) -> None:
        if message.input.id == "email-filter":
            self._apply(RunFilter(self.run_filter.statuses, self.run_filter.triggers, message.value.strip()))
            self.table.focus()

    def _apply(self, run_filter: RunFilter) -> None:
        if run_filter != self.run_filter:
            self.run_filter = run_filter
            self.reload()

    # --- actions ---

    def action_open_run(self) -> None:
        record = self.table.cursor_record
        if record is not None:
            self._open(record)

    def _open(self, run: dict[str, Any]) -> None:
        self.app.push_screen(RunDetailScreen(run["id"], email=self.run_filter.email))

    def action_reload(self) -> None:
        self.reload()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def action_export(self) -> None:
        if self._export_worker is not None and self._export_worker.is_running:
            self.notify(_("An export is already running."), severity="warning")
            return
        self.notify(_("Exporting the runs of this view…"))
        # The App runs the export, so that it finishes even if the user leaves this screen.
        self._export_worker = self.app.run_worker(self._export(self.app, self.run_filter), group="export",
                                                  description="export runs to CSV")

    @staticmethod
    async def _export(app: App, run_filter: RunFilter) -> None:
        try:
            path, count = await export_runs(app.daemon.call, Path.cwd(),  # type: ignore[attr-defined]
                                            **run_filter.params())
        except (DaemonError, DaemonUnavailable) as error:
            app.notify(_("Export failed: {error}").format(error=error), severity="error", markup=False)
            return
        except OSError as error:
            app.notify(_("Could not write the export file: {error}").format(error=error), severity="error",
                       markup=False)
            return
        app.notify(ngettext("Exported {n} run to {file}", "Exported {n} runs to {file}", count).format(
            n=format_number(count), file=path.name), markup=False)
