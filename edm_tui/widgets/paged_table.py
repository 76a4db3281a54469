"""A RecordGrid that loads its records page by page as the user nears the end.

The daemon pages with keyset cursors (`runs`: before_id, `run_items`: after_id). A page
source is an async function that takes the cursor of the next page (None for the first)
and a page size, and returns the page's records and the cursor after them (None on the
last page). The table requests the next page while fewer than `prefetch` rows are left
below the cursor or the view, so that scrolling rarely has to wait for the daemon.

While the table is sorted by a column, its last rows are not the last ones the source
returned, so it asks for the next page only when the user moves down from the last row or
scrolls to the bottom.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from textual.message import Message

from edm_tui.client import DaemonError, DaemonUnavailable
from edm_tui.widgets.record_grid import GridColumn, Record, RecordGrid

PageSource = Callable[[Any, int], Awaitable[tuple[list[Record], Any]]]


class PagedTable(RecordGrid):
    """Records from a page source, fetched one page at a time in a worker."""

    FETCH_GROUP = "paged-table-fetch"

    class PageLoaded(Message):
        """A page arrived; `complete` is True once the source has no more pages."""

        def __init__(self, table: PagedTable, added: int, complete: bool) -> None:
            super().__init__()
            self.table = table
            self.added = added
            self.complete = complete

        @property
        def control(self) -> PagedTable:
            return self.table

    class LoadFailed(Message):
        """A page could not be fetched. `retry()` requests it again."""

        def __init__(self, table: PagedTable, error: DaemonError | DaemonUnavailable) -> None:
            super().__init__()
            self.table = table
            self.error = error

        @property
        def control(self) -> PagedTable:
            return self.table

    def __init__(
        self, columns: Sequence[GridColumn], *, page_size: int, first_page_size: int | None = None,
        prefetch: int | None = None, name: str | None = None, id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(columns, name=name, id=id, classes=classes)
        self.page_size = page_size
        self.first_page_size = first_page_size or page_size
        self.prefetch = prefetch if prefetch is not None else page_size // 2
        self._source: PageSource | None = None
        self._next_cursor: Any = None
        self._generation = 0
        """Counts load() calls, so that a page of an earlier source is dropped when it arrives."""
        self.fetching = False
        self.complete = False
        self.failed: DaemonError | DaemonUnavailable | None = None

    def load(self, source: PageSource) -> None:
        """Drop every record and start again from the first page of `source`."""
        self.workers.cancel_group(self, self.FETCH_GROUP)
        self._generation += 1
        self._source = source
        self._next_cursor = None
        self.fetching = False
        self.complete = False
        self.failed = None
        self.clear()
        self._request_page()

    def retry(self) -> None:
        """Ask again for the page that failed."""
        if self.failed is not None:
            self.failed = None
            self._request_page()

    def _request_page(self) -> None:
        if self._source is None or self.fetching or self.complete or self.failed is not None:
            return
        self.fetching = True
        size = self.page_size if self.record_count else self.first_page_size
        self.run_worker(self._fetch_page(self._generation, self._source, self._next_cursor, size),
                        group=self.FETCH_GROUP, description="fetch a page")

    async def _fetch_page(self, generation: int, source: PageSource, cursor: Any, size: int) -> None:
        try:
            records, next_cursor = await source(cursor, size)
        except (DaemonError, DaemonUnavailable) as error:
            if generation == self._generation:
                self.fetching = False
                self.failed = error
                self.post_message(self.LoadFailed(self, error))
            return
        if generation != self._generation:
            return
        self.fetching = False
        self._next_cursor = next_cursor
        self.complete = next_cursor is None
        self.add_records(records)
        self.post_message(self.PageLoaded(self, len(records), self.complete))
        self._prefetch_if_near_end()

    def _prefetch_if_near_end(self) -> None:
        if self.fetching or self.complete or self.sort_column is not None:
            return
        bottom = max(self.cursor_position, round(self.scroll_y) + self.page_height)
        if self.record_count - bottom <= self.prefetch:
            self._request_page()

    def user_moved_down(self) -> None:
        if self.sort_column is None:
            self._prefetch_if_near_end()
        elif self.cursor_position >= self.record_count - 1 or self.scroll_y >= self.max_scroll_y:
            self._request_page()

    def move_cursor(self, position: int) -> None:
        super().move_cursor(position)
        self._prefetch_if_near_end()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._prefetch_if_near_end()

    def on_resize(self) -> None:
        super().on_resize()
        self._prefetch_if_near_end()
