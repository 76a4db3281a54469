"""The base of the screens that show one paged grid with a filter bar: the run history and a run's items.

A subclass composes a FilterBar, a RunTable and a status Static, and supplies how to fetch a
page, its filter fields and its own messages. The base keeps the cursor on its record across
reloads, retries a page the daemon could not serve, applies the filter fields and runs the
CSV export in the App.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

from textual.app import App
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Input, Select, Static
from textual.worker import Worker

from edm_tui.client import DaemonError, DaemonUnavailable
from edm_tui.connection import CONNECTED
from edm_tui.i18n import N_, _
from edm_tui.messages import ConnectionChanged
from edm_tui.widgets.filter_bar import FilterBar
from edm_tui.widgets.footer import DASHBOARD_ACTIONS
from edm_tui.widgets.paged_table import PagedTable
from edm_tui.widgets.record_grid import Record, RecordGrid
from edm_tui.widgets.run_table import RunTable

RETRY_SECONDS = 3.0


class GridFilter(Protocol):
    """A frozen dataclass with an `email` field whose params go to the daemon's paging method."""

    email: str

    def params(self) -> dict[str, Any]: ...

    @property
    def active(self) -> bool: ...


def grid_bindings(*, filter_id: str, export_id: str, extra: tuple[BindingType, ...] = ()) -> list[BindingType]:
    """Return the key bindings of a paged-grid screen, with `extra` between Filter and Export in the footer."""
    return [
        Binding("slash", "toggle_filter", N_("Filter"), id=filter_id, key_display="/"),
        *extra,
        Binding("e", "export", N_("Export"), id=export_id),
        Binding("ctrl+r", "reload", N_("Refresh"), id="refresh", show=False),
        Binding("escape", "back", N_("Back"), id="back"),
    ]


def email_input(value: str, *, id: str) -> Input:
    """Return the email field of a filter bar. Pressing enter in it submits the search."""
    return Input(value=value, placeholder=_("Email contains… (enter searches)"), compact=True, id=id)


class PagedGridScreen(Screen[None]):
    """A screen with one RunTable that pages from the daemon, a filter bar and a status line."""

    FOOTER_HIDDEN_ACTIONS: ClassVar[frozenset[str]] = DASHBOARD_ACTIONS

    TABLE_ID: ClassVar[str]
    STATUS_ID: ClassVar[str]
    SELECT_FIELDS: ClassVar[dict[str, str]]
    """Id of a filter Select -> the field of the filter that its value replaces."""
    EMAIL_INPUT_ID: ClassVar[str]

    def __init__(self, grid_filter: GridFilter) -> None:
        super().__init__()
        self.grid_filter = grid_filter
        self._keep_record_id: int | None = None
        """After a reload, the cursor returns to this record if the first page has it."""
        self._export_worker: Worker[None] | None = None

    @property
    def table(self) -> RunTable:
        return self.query_one(f"#{self.TABLE_ID}", RunTable)

    def on_mount(self) -> None:
        self.reload()

    # --- loading ---

    def reload(self) -> None:
        self._reload_rows()

    def _reload_rows(self) -> None:
        """Load the first page again with the current filter, keeping the cursor on its record if that record is in it."""
        record = self.table.cursor_record
        self._keep_record_id = record["id"] if record else None
        self.table.load(self._fetch_page)
        self._show_state()

    async def _fetch_page(self, cursor: int | None, limit: int) -> tuple[list[Record], int | None]:
        raise NotImplementedError

    def on_paged_table_page_loaded(self, message: PagedTable.PageLoaded) -> None:
        if self._keep_record_id is not None:
            keep, self._keep_record_id = self._keep_record_id, None
            position = self.table.find_position(lambda record: record["id"] == keep)
            if position is not None:
                self.table.move_cursor(position)
        self._show_state()

    def on_paged_table_load_failed(self, message: PagedTable.LoadFailed) -> None:
        self._show_state()
        if isinstance(message.error, DaemonUnavailable):
            self.set_timer(RETRY_SECONDS, self.table.retry)

    def on_record_grid_sort_changed(self, message: RecordGrid.SortChanged) -> None:
        self._show_state()

    # Textual calls this handler as well as a subclass's own, so subclasses extend `_connected`.
    def on_connection_changed(self, message: ConnectionChanged) -> None:
        if message.state == CONNECTED:
            if self.table.failed is not None:
                self.table.retry()
            self._connected()

    def _connected(self) -> None:
        """Reload what failed while the daemon was unavailable, besides the grid's page."""

    # --- status line ---

    def _show_state(self) -> None:
        self.query_one(f"#{self.STATUS_ID}", Static).update(Content(self._status_text()))

    def _status_text(self) -> str:
        table = self.table
        if table.failed is not None:
            return self._failure_text(table.failed)
        count = table.record_count
        if count == 0:
            if table.fetching or not table.complete:
                return self._loading_text()
            return self._empty_text()

        column = table.sort_column
        parts = [self._count_text(count, complete=table.complete, sorted_by_column=column is not None)]
        parts += self._filter_parts()
        if column is not None:
            direction = _("descending") if table.sort_reverse else _("ascending")
            if table.complete:
                parts.append(_("sorted by {column}, {direction}").format(column=column.label, direction=direction))
            else:
                parts.append(self._loaded_sort_text(column.label, direction))
        parts += self._notice_parts()
        return " · ".join(parts)

    def _failure_text(self, error: DaemonError | DaemonUnavailable) -> str:
        raise NotImplementedError

    def _loading_text(self) -> str:
        raise NotImplementedError

    def _empty_text(self) -> str:
        raise NotImplementedError

    def _count_text(self, count: int, *, complete: bool, sorted_by_column: bool) -> str:
        raise NotImplementedError

    def _loaded_sort_text(self, column: str, direction: str) -> str:
        """Return the sort part of the status line while more pages may follow."""
        raise NotImplementedError

    def _filter_parts(self) -> list[str]:
        """Return the parts of the status line after the count."""
        return []

    def _notice_parts(self) -> list[str]:
        """Return the parts of the status line after the sort order."""
        return []

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
        field = self.SELECT_FIELDS.get(message.select.id or "")
        if field is not None:
            self._apply(dataclasses.replace(self.grid_filter, **{field: value}))  # type: ignore[type-var]

    def on_input_submitted(self, message: Input.Submitted) -> None:
        if message.input.id == self.EMAIL_INPUT_ID:
            self._apply(dataclasses.replace(self.grid_filter, email=message.value.strip()))  # type: ignore[type-var]
            self.table.focus()

    def _apply(self, grid_filter: GridFilter) -> None:
        if grid_filter != self.grid_filter:
            self.grid_filter = grid_filter
            self._reload_rows()

    # --- actions ---

    def action_reload(self) -> None:
        self.reload()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def _start_export(
        self, started: str, export: Callable[[], Awaitable[tuple[Path, int]]],
        exported: Callable[[int, str], str], *, description: str,
    ) -> None:
        """Run `export` in the App, which notifies `started` now and `exported(count, file path)` at the end."""
        if self._export_worker is not None and self._export_worker.is_running:
            self.notify(_("An export is already running."), severity="warning")
            return
        self.notify(started)
        # The App runs the export, so that it finishes even if the user leaves this screen.
        self._export_worker = self.app.run_worker(_run_export(self.app, export, exported), group="export",
                                                  description=description)


async def _run_export(
    app: App, export: Callable[[], Awaitable[tuple[Path, int]]], exported: Callable[[int, str], str],
) -> None:
    try:
        path, count = await export()
    except (DaemonError, DaemonUnavailable) as error:
        app.notify(_("Export failed: {error}").format(error=error), severity="error", markup=False)
        return
    except OSError as error:
        app.notify(_("Could not write the export file: {error}").format(error=error), severity="error",
                   markup=False)
        return
    app.notify(exported(count, str(path)), markup=False)
