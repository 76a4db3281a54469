"""The grids of the history screens: run and item columns, outcome glyphs and colours.

A status always reads as glyph + word. The colour repeats it for those who see colour, so
the grids stay readable with NO_COLOR. Run status glyphs and words come from
`edm_tui.widgets.labels`, so the history shows a status the way the dashboard does.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from edm_tui.i18n import _, format_datetime
from edm_tui.summary import action_label, outcome_label, run_error_text, trigger_label
from edm_tui.widgets.labels import format_number, status_text
from edm_tui.widgets.paged_table import PagedTable
from edm_tui.widgets.record_grid import GridColumn, Record

OUTCOME_GLYPHS = {
    "succeeded": "✓",
    "failed": "✗",
    "skipped": "–",
    "pending": "…",
    "interrupted": "↯",
}
# Component classes of RunTable that colour a status or an outcome.
TONES = {
    "succeeded": "run-table--good",
    "partial": "run-table--warning",
    "failed": "run-table--bad",
    "blocked": "run-table--bad",
    "interrupted": "run-table--warning",
    "cancelled": "run-table--muted",
    "running": "run-table--active",
    "skipped": "run-table--muted",
    "pending": "run-table--active",
}


# --- words ---


def outcome_cell(outcome: str) -> str:
    return f"{OUTCOME_GLYPHS.get(outcome, '?')} {outcome_label(outcome)}"


def direction_word(direction: str) -> str:
    words = {
        "to_iem": _("Magento → IEM"),
        "to_magento": _("IEM → Magento"),
    }
    return words.get(direction, direction)


# --- numbers and times ---


def local_time(stamp: int | None, *, seconds: bool = False) -> str:
    """Format a Unix time as local date and time in the active language, or "–" for None."""
    return format_datetime(stamp, seconds=seconds, missing="–")


def clock_time(stamp: int | None) -> str:
    """Format a Unix time as the local time of day, or "–" for None."""
    if stamp is None:
        return "–"
    return time.strftime("%H:%M:%S", time.localtime(stamp))


def run_duration(run: Record) -> int | None:
    """Return how many seconds a run took, or None while it runs."""
    if run.get("finished_at") is None:
        return None
    return max(0, int(run["finished_at"]) - int(run["started_at"]))


def format_duration(seconds: int | None) -> str:
    """Format seconds as H:MM:SS, or "–" for None."""
    if seconds is None:
        return "–"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def outcome_total(run: Record, outcome: str) -> int:
    """Return the run's items with `outcome`, over all actions."""
    total = 0
    for by_outcome in (run.get("counts") or {}).values():
        if isinstance(by_outcome, dict):
            total += int(by_outcome.get(outcome, 0))
    return total


# --- columns ---


def run_columns() -> list[GridColumn]:
    """Return the columns of the runs grid, with headings in the current language."""
    return [
        GridColumn("id", _("Run"), 6, lambda r: str(r["id"]), lambda r: r["id"], align="right"),
        GridColumn("started", _("Started"), len(local_time(0)), lambda r: local_time(r["started_at"]),
                   lambda r: r["started_at"]),
        GridColumn("duration", _("Duration"), 8, lambda r: format_duration(run_duration(r)), run_duration,
                   align="right"),
        GridColumn("trigger", _("Trigger"), 12, lambda r: trigger_label(r["trigger"]),
                   lambda r: trigger_label(r["trigger"])),
        GridColumn("status", _("Status"), 13, lambda r: status_text(r["status"], short=True), lambda r: r["status"],
                   style=lambda r: TONES.get(r["status"])),
        GridColumn("writes", _("Writes"), 7, lambda r: format_number(outcome_total(r, "succeeded")),
                   lambda r: outcome_total(r, "succeeded"), align="right"),
        GridColumn("failed", _("Failed"), 6, lambda r: format_number(outcome_total(r, "failed")),
                   lambda r: outcome_total(r, "failed"), align="right",
                   style=lambda r: TONES["failed"] if outcome_total(r, "failed") else None),
        # Width 0 keeps the grid within 80 columns; wider terminals give the room to it.
        GridColumn("error", _("Error"), 0, lambda r: run_error_text(r) or "", flex=True),
    ]


def item_columns() -> list[GridColumn]:
    """Return the columns of a run's items grid, with headings in the current language."""

    def error_text(item: Record) -> str:
        if not item.get("error_message") and not item.get("error_class"):
            return ""
        return ": ".join(part for part in (item.get("error_class"), item.get("error_message")) if part)

    return [
        GridColumn("id", _("Item"), 7, lambda i: str(i["id"]), lambda i: i["id"], align="right"),
        GridColumn("outcome", _("Outcome"), 13, lambda i: outcome_cell(i["outcome"]), lambda i: i["outcome"],
                   style=lambda i: TONES.get(i["outcome"])),
        GridColumn("action", _("Action"), 21, lambda i: action_label(i["action"]),
                   lambda i: action_label(i["action"])),
        GridColumn("email", _("Email"), 28, lambda i: i["email"], lambda i: i["email"].lower()),
        GridColumn("website", _("Website"), 7, lambda i: _none_dash(i.get("website_id")),
                   lambda i: i.get("website_id"), align="right"),
        GridColumn("list", _("List"), 5, lambda i: _none_dash(i.get("list_id")), lambda i: i.get("list_id"),
                   align="right"),
        GridColumn("attempts", _("Tries"), 5, lambda i: str(i.get("attempts", 0)), lambda i: i.get("attempts"),
                   align="right"),
        GridColumn("at", _("Time"), 8, lambda i: clock_time(i.get("at")), lambda i: i.get("at")),
        GridColumn("error", _("Error"), 20, error_text, error_text, flex=True),
    ]


def _none_dash(value: Any) -> str:
    return "–" if value is None else str(value)


class RunTable(PagedTable):
    """A PagedTable that colours run statuses and item outcomes with the theme."""

    COMPONENT_CLASSES: ClassVar[set[str]] = PagedTable.COMPONENT_CLASSES | set(TONES.values())

    DEFAULT_CSS = """
    RunTable {
        & > .run-table--good { color: $text-success; }
        & > .run-table--warning { color: $text-warning; }
        & > .run-table--bad { color: $text-error; }
        & > .run-table--muted { color: $text-muted; }
        & > .run-table--active { color: $text-accent; }
    }
    """
