"""A grid of records drawn line by line, for tables with hundreds of thousands of rows.

Textual's DataTable (8.2.8) measures every cell of each new row and rebuilds its row offsets
after each change, so adding a page or moving a page down gets slower as it fills up
(`benchmarks/tui_history.py --compare-datatable` times it with 200 000 rows). This grid
keeps the records as they came (dicts), gives every column a fixed width and renders only
the lines on screen. Adding a page or moving the cursor costs the same at any size, except
in a sorted grid, where a new page is merged into the order of all the loaded rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from edm_tui.i18n import N_

Record = dict[str, Any]

MIN_TEXT_WIDTH = 3

# Error messages may contain newlines, and a control character would break a grid line.
_FLATTEN = {code: " " for code in range(32)}


@dataclass(frozen=True, slots=True)
class GridColumn:
    """A column of a RecordGrid: its heading, width and how it shows and sorts a record."""

    key: str
    label: str
    width: int
    text: Callable[[Record], str]
    sort_key: Callable[[Record], Any] | None = None
    """The value that rows are sorted by. None makes the column unsortable."""
    align: Literal["left", "right"] = "left"
    style: Callable[[Record], str | None] | None = None
    """The name of a component class of the grid that colours the cell, or None."""
    flex: bool = False
    """Whether the column also takes the width that the other columns leave free."""


def fit_cell(text: str, width: int, align: str = "left") -> str:
    """Return `text` on one line, padded or cut with "…" to exactly `width` cells.

    A column narrower than MIN_TEXT_WIDTH stays blank, because one or two letters of a word mislead.
    """
    if width < MIN_TEXT_WIDTH:
        return " " * width
    text = text.translate(_FLATTEN)
    length = cell_len(text)
    if length > width:
        return set_cell_size(text, width - 1) + "…" if width > 1 else set_cell_size(text, width)
    padding = " " * (width - length)
    return padding + text if align == "right" else text + padding


def _none_last(value: Any) -> tuple[bool, Any]:
    """Return a sort key that puts None after every other value."""
    return (value is None, 0 if value is None else value)


class RecordGrid(ScrollView, can_focus=True):
    """Rows of records under a fixed heading line, with a row cursor and sorting.

    Records keep the order in which they were added unless the grid is sorted by a column.
    Sorting reorders only the records in the grid. The screen decides what that means for
    records it has not loaded.
    """

    # The grid's keys stay out of the footer, which has no room for them at 80 columns in
    # Hungarian; the help screen (?) lists them, and a click on a heading sorts too.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "first", N_("First row"), id="grid.first", show=False),
        Binding("G", "last", N_("Last row"), id="grid.last", show=False),
        Binding("less_than_sign", "sort_previous", N_("Sort by the previous column"), id="grid.sort_previous",
                key_display="<", show=False),
        Binding("greater_than_sign", "sort_next", N_("Sort by the next column"), id="grid.sort_next",
                key_display=">", show=False),
        Binding("r", "sort_reverse", N_("Reverse the sort order"), id="grid.sort_reverse", show=False),
        Binding("home,ctrl+home", "first", N_("First row"), show=False),
        Binding("end,ctrl+end", "last", N_("Last row"), show=False),
        Binding("up", "cursor_up", N_("Up"), show=False),
        Binding("down", "cursor_down", N_("Down"), show=False),
        Binding("pageup", "page_up", N_("Page up"), show=False),
        Binding("pagedown", "page_down", N_("Page down"), show=False),
        Binding("left", "scroll_columns(-8)", N_("Scroll left"), show=False),
        Binding("right", "scroll_columns(8)", N_("Scroll right"), show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "record-grid--header",
        "record-grid--cursor",
        "record-grid--odd-row",
    }

    DEFAULT_CSS = """
    RecordGrid {
        background: $surface;
        color: $foreground;
        & > .record-grid--header {
            background: $panel;
            color: $foreground;
            text-style: bold;
        }
        & > .record-grid--odd-row {
            background: $surface-lighten-1 50%;
        }
        & > .record-grid--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .record-grid--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """

    class RowHighlighted(Message):
        """The cursor moved to another record, or the grid became empty (record is None)."""

        def __init__(self, grid: RecordGrid, record: Record | None) -> None:
            super().__init__()
            self.grid = grid
            self.record = record

        @property
        def control(self) -> RecordGrid:
            return self.grid

    class RowSelected(Message):
        """The user clicked the record under the cursor."""

        def __init__(self, grid: RecordGrid, record: Record) -> None:
            super().__init__()
            self.grid = grid
            self.record = record

        @property
        def control(self) -> RecordGrid:
            return self.grid

    class SortChanged(Message):
        """The grid is now sorted by `column` (None: in the order the records came)."""

        def __init__(self, grid: RecordGrid, column: GridColumn | None, reverse: bool) -> None:
            super().__init__()
            self.grid = grid
            self.column = column
            self.reverse = reverse

        @property
        def control(self) -> RecordGrid:
            return self.grid

    def __init__(
        self, columns: Sequence[GridColumn], *, name: str | None = None, id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = tuple(columns)
        self._records: list[Record] = []
        self._order: list[int] = []
        """Indexes into _records, in the order the rows are shown."""
        self._sort_values: list[Any] = []
        """The sort column's key of each record, parallel to _records while sorted."""
        self.sort_column: GridColumn | None = None
        self.sort_reverse = False
        self.cursor_position = 0
        self._highlighted: Record | None = None
        self._min_width = 1 + sum(column.width + 1 for column in self.columns)
        self.virtual_size = Size(self._min_width, 1)

    # --- records ---

    @property
    def record_count(self) -> int:
        return len(self._records)

    @property
    def cursor_record(self) -> Record | None:
        """The record under the cursor, or None when the grid is empty."""
        if not self._order:
            return None
        return self._records[self._order[self.cursor_position]]

    def records_shown(self) -> list[Record]:
        """Return the records in the order the rows show them."""
        return [self._records[index] for index in self._order]

    def record_at(self, position: int) -> Record:
        """Return the record shown at row `position` (0 is the first row)."""
        return self._records[self._order[position]]

    def clear(self) -> None:
        """Remove every record and move the cursor and the view back to the top."""
        self._records.clear()
        self._order.clear()
        self._sort_values.clear()
        self.cursor_position = 0
        self.virtual_size = Size(self._min_width, 1)
        self.scroll_to(0, 0, animate=False, immediate=True)
        self.refresh()
        self._post_highlight()

    def add_records(self, records: Iterable[Record]) -> None:
        """Add records below the others, or into the sort order while the grid is sorted."""
        start = len(self._records)
        self._records.extend(records)
        if len(self._records) == start:
            return
        new = range(start, len(self._records))
        if self.sort_column is None:
            self._order.extend(new)
        else:
            keep = self.cursor_record
            key = self._sort_key(self.sort_column)
            self._sort_values.extend(key(self._records[index]) for index in new)
            self._order.extend(new)
            # Timsort takes the rows already sorted as one run: about O(n + page × log page).
            self._order.sort(key=self._sort_values.__getitem__, reverse=self.sort_reverse)
            self._restore_cursor(keep)
        self.virtual_size = Size(self._min_width, len(self._order) + 1)
        self.refresh()
        self._post_highlight()

    def find_position(self, predicate: Callable[[Record], bool]) -> int | None:
        """Return the row position of the first record shown that matches, or None."""
        for position, index in enumerate(self._order):
            if predicate(self._records[index]):
                return position
        return None

    # --- sorting ---

    @property
    def sortable_columns(self) -> list[GridColumn]:
        return [column for column in self.columns if column.sort_key is not None]

    def sort_by(self, column: GridColumn | None, reverse: bool = False) -> None:
        """Sort the rows by `column`, or put them back in the order they came (None)."""
        keep = self.cursor_record
        self.sort_column = column
        self.sort_reverse = reverse if column is not None else False
        if column is None:
            self._sort_values = []
            self._order = list(range(len(self._records)))
        else:
            key = self._sort_key(column)
            self._sort_values = [key(record) for record in self._records]
            self._order.sort(key=self._sort_values.__getitem__, reverse=self.sort_reverse)
        self._restore_cursor(keep)
        self.refresh()
        self.post_message(self.SortChanged(self, self.sort_column, self.sort_reverse))

    def _sort_key(self, column: GridColumn) -> Callable[[Record], Any]:
        assert column.sort_key is not None
        value = column.sort_key
        return lambda record: _none_last(value(record))

    def action_sort_next(self) -> None:
        self._step_sort(1)

    def action_sort_previous(self) -> None:
        self._step_sort(-1)

    def _step_sort(self, step: int) -> None:
        """Sort by the sortable column `step` places away. A step past the last one returns to arrival order."""
        choices: list[GridColumn | None] = [None, *self.sortable_columns]
        current = choices.index(self.sort_column) if self.sort_column in choices else 0
        self.sort_by(choices[(current + step) % len(choices)])

    def action_sort_reverse(self) -> None:
        if self.sort_column is not None:
            self.sort_by(self.sort_column, not self.sort_reverse)

    # --- the cursor ---

    @property
    def page_height(self) -> int:
        """How many rows fit under the heading line."""
        return max(1, self.scrollable_content_region.height - 1)

    def move_cursor(self, position: int) -> None:
        """Put the cursor on row `position` (clamped to the rows there are) and show that row."""
        if not self._order:
            return
        position = max(0, min(position, len(self._order) - 1))
        if position != self.cursor_position:
            # Row n is virtual line n + 1, under the heading line.
            self.refresh_line(self.cursor_position + 1)
            self.cursor_position = position
            self.refresh_line(position + 1)
        self._scroll_to_cursor()
        self._post_highlight()

    def _restore_cursor(self, record: Record | None) -> None:
        if record is None:
            return
        position = self.find_position(lambda candidate: candidate is record)
        self.cursor_position = position or 0
        self._scroll_to_cursor()

    def _scroll_to_cursor(self) -> None:
        top = round(self.scroll_target_y)
        height = self.page_height
        if self.cursor_position < top:
            self.scroll_to(y=self.cursor_position, animate=False, immediate=True)
        elif self.cursor_position >= top + height:
            self.scroll_to(y=self.cursor_position - height + 1, animate=False, immediate=True)

    def _post_highlight(self) -> None:
        record = self.cursor_record
        if record is not self._highlighted:
            self._highlighted = record
            self.post_message(self.RowHighlighted(self, record))

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor_position - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor_position + 1)
        self.user_moved_down()

    def action_page_down(self) -> None:
        """Move the cursor and the view one page down, so the cursor keeps its place on screen."""
        page = self.page_height
        self.scroll_to(y=self.scroll_target_y + page, animate=False, immediate=True)
        self.move_cursor(self.cursor_position + page)
        self.user_moved_down()

    def action_page_up(self) -> None:
        page = self.page_height
        self.scroll_to(y=self.scroll_target_y - page, animate=False, immediate=True)
        self.move_cursor(self.cursor_position - page)

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self._order) - 1)
        self.user_moved_down()

    def user_moved_down(self) -> None:
        """Called after the user moved the cursor or the view down; a subclass may load more rows."""

    def action_scroll_columns(self, cells: int) -> None:
        self.scroll_to(x=self.scroll_target_x + cells, animate=False, immediate=True)

    # --- mouse and focus ---

    async def _on_click(self, event: events.Click) -> None:
        event.stop()
        if event.y == 0:
            self._click_heading(event.x + round(self.scroll_x))
            return
        position = round(self.scroll_y) + event.y - 1
        if not 0 <= position < len(self._order):
            return
        if position == self.cursor_position or event.chain > 1:
            self.move_cursor(position)
            self.post_message(self.RowSelected(self, self.record_at(position)))
        else:
            self.move_cursor(position)

    def _click_heading(self, x: int) -> None:
        """Sort by the clicked column; a second click reverses the order."""
        left = 1
        for column, width in zip(self.columns, self._column_widths(), strict=True):
            if left <= x < left + width + 1:
                if column.sort_key is None:
                    return
                if column is self.sort_column:
                    self.sort_by(column, not self.sort_reverse)
                else:
                    self.sort_by(column)
                return
            left += width + 1

    def on_mouse_scroll_down(self) -> None:
        self.user_moved_down()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def on_resize(self) -> None:
        self._scroll_to_cursor()
        self.refresh()

    # --- rendering ---

    def _column_widths(self) -> list[int]:
        """Return each column's width; a flex column takes the room the others leave."""
        widths = [column.width for column in self.columns]
        spare = self.scrollable_content_region.width - self._min_width
        if spare > 0:
            for index, column in enumerate(self.columns):
                if column.flex:
                    widths[index] += spare
                    break
        return widths

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        widths = self._column_widths()
        if y == 0:
            strip = self._heading_strip(widths)
        else:
            position = scroll_y + y - 1
            if position >= len(self._order):
                return Strip.blank(width, self.rich_style)
            strip = self._row_strip(position, widths)
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _heading_strip(self, widths: list[int]) -> Strip:
        style = self.rich_style + self.get_component_rich_style("record-grid--header", partial=True)
        segments = [Segment(" ", style)]
        for column, width in zip(self.columns, widths, strict=True):
            label = column.label
            if column is self.sort_column:
                arrow = "▼" if self.sort_reverse else "▲"
                if cell_len(label) > width - 2:
                    label = fit_cell(label, max(0, width - 2))
                label = f"{label} {arrow}"
            segments.append(Segment(fit_cell(label, width, column.align), style))
            segments.append(Segment(" ", style))
        return Strip(segments, 1 + sum(width + 1 for width in widths))

    def _row_style(self, position: int) -> Style:
        style = self.rich_style
        if position % 2:
            style += self.get_component_rich_style("record-grid--odd-row", partial=True)
        return style

    def _row_strip(self, position: int, widths: list[int]) -> Strip:
        record = self.record_at(position)
        row_style = self._row_style(position)
        cursor_style = None
        if position == self.cursor_position:
            cursor_style = self.get_component_rich_style("record-grid--cursor", partial=True)
            row_style += cursor_style

        segments = [Segment(" ", row_style)]
        for column, width in zip(self.columns, widths, strict=True):
            cell_style = row_style
            component = column.style(record) if column.style is not None else None
            if component:
                cell_style = self._row_style(position) + self.get_component_rich_style(component, partial=True)
                if cursor_style is not None:
                    cell_style += cursor_style
            text = fit_cell(column.text(record), width, column.align)
            segments.append(Segment(text, cell_style))
            segments.append(Segment(" ", row_style))
        return Strip(segments, 1 + sum(width + 1 for width in widths))
