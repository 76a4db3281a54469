"""A table of recent runs, keyed by run id so the cursor stays on its run across refreshes."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.widgets import DataTable

from edm_tui.i18n import N_, _
from edm_tui.summary import trigger_label
from edm_tui.widgets.labels import (
    changes_summary,
    format_time,
    status_content,
)

COLUMNS = ("run", "started", "trigger", "status", "changes")


class RunsTable(DataTable):
    """Runs as returned by the daemon's `runs` method, newest first. Enter opens the selected one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", N_("Open run"), id="open_run"),
    ]

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self.runs: list[dict[str, Any]] = []

    def on_mount(self) -> None:
        self._set_columns([])

    def _set_columns(self, rows: list[tuple[Text | Content, ...]]) -> None:
        """Create the columns, each exactly as wide as its widest cell or heading.

        NOTE: DataTable (Textual 8.2.8) measures auto-width columns when it is next idle, but
        keeps the lines it rendered before that in its caches. A table filled between two
        frames could then show header-wide columns until the cursor moves. Fixed widths
        need no measuring, so the table rebuilds its columns with each refill.
        """
        headings = (_("Run"), _("Started"), _("Trigger"), _("Status"), _("Changes"))
        self.clear(columns=True)
        for index, (key, heading) in enumerate(zip(COLUMNS, headings, strict=True)):
            width = max([cell_len(heading), *(cell_len(row[index].plain) for row in rows)])
            self.add_column(heading, key=key, width=width)

    @property
    def selected_run_id(self) -> int | None:
        """The id of the run under the cursor, or None when the table is empty."""
        if self.row_count == 0:
            return None
        row_key, _column = self.coordinate_to_cell_key(self.cursor_coordinate)
        return int(row_key.value) if row_key.value is not None else None

    def show_runs(self, runs: list[dict[str, Any]]) -> None:
        """Replace the rows with `runs`, keeping the cursor on the same run when it is still listed."""
        selected = self.selected_run_id
        self.runs = runs
        rows = [self._cells(run) for run in runs]
        self._set_columns(rows)
        for run, cells in zip(runs, rows, strict=True):
            self.add_row(*cells, key=str(run["id"]))
        if selected is not None:
            for index, run in enumerate(runs):
                if run["id"] == selected:
                    self.move_cursor(row=index, animate=False)
                    break

    @staticmethod
    def _cells(run: dict[str, Any]) -> tuple[Text | Content, ...]:
        # Text rather than str, because DataTable reads a str cell as Rich markup.
        return (
            Text(str(run["id"])),
            Text(format_time(run.get("started_at"))),
            Text(trigger_label(run.get("trigger", ""))),
            status_content(run.get("status", ""), short=True),
            Text(changes_summary(run.get("counts") or {})),
        )
