"""Text the dashboard shows for run statuses, counts, times and durations.

Every status reads as glyph + text, and colour only repeats the meaning of the words, so the
dashboard stays readable with NO_COLOR and for colour-blind users. Colours are theme
variables, resolved when a widget renders the content.
"""

from __future__ import annotations

from typing import Any

from babel.numbers import format_decimal
from textual.content import Content

from edm_tui.i18n import _, current_language, format_datetime
from edm_tui.progress import phase_title
from edm_tui.summary import action_label, status_label
from edm_tui.sync.model import Action

# status -> (glyph, theme colour). Every screen takes run status glyphs from here. Each status
# has its own glyph, and the glyphs are one cell wide in common terminal fonts. "↯" is also
# the glyph of an interrupted item in the history grids.
STATUS_LOOK: dict[str, tuple[str, str]] = {
    "succeeded": ("✓", "$text-success"),
    "partial": ("⚠", "$text-warning"),
    "failed": ("✗", "$text-error"),
    "blocked": ("⊘", "$text-warning"),
    "interrupted": ("↯", "$text-warning"),
    "cancelled": ("■", "$text-secondary"),
    "running": ("▶", "$text-accent"),
}
UNKNOWN_LOOK = ("?", "$text-secondary")

ACTION_ORDER = [action.value for action in Action]


def status_content(status: str, *, short: bool = False) -> Content:
    """Return the glyph and label of a run status, both in the status colour.

    `short` picks the shorter word for statuses whose full label is long (for tables).
    """
    colour = STATUS_LOOK.get(status, UNKNOWN_LOOK)[1]
    return Content.assemble((status_text(status, short=short), colour))


def status_text(status: str, *, short: bool = False) -> str:
    """Return the glyph and label of a run status as plain text, e.g. "✗ failed"."""
    glyph = STATUS_LOOK.get(status, UNKNOWN_LOOK)[0]
    label = short_status_label(status) if short else status_label(status)
    return f"{glyph} {label}"


def short_status_label(status: str) -> str:
    """Return a status word short enough for a table column at 80 terminal columns."""
    labels = {
        "partial": _("partial"),
        "blocked": _("blocked"),
    }
    return labels.get(status) or status_label(status)


def phase_label(phase: str) -> str:
    if phase == "starting":
        return _("Starting")
    return phase_title(phase)


def format_number(value: float, decimals: int = 0) -> str:
    """Format a number with the current language's separators (1,200 or 1 200)."""
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    return format_decimal(value, format=pattern, locale=current_language())


def format_time(stamp: float | None) -> str:
    """Format a Unix time as local date and time to the minute in the active language, or "-" for None."""
    return format_datetime(stamp, seconds=False)


def format_duration(seconds: float) -> str:
    """Format a duration for people: "12 s", "3 min 05 s", "2 h 04 min"."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return _("{hours} h {minutes:02d} min").format(hours=hours, minutes=minutes)
    if minutes:
        return _("{minutes} min {seconds:02d} s").format(minutes=minutes, seconds=secs)
    return _("{seconds} s").format(seconds=secs)


def format_countdown(seconds: float) -> str:
    """Format the time left as a ticking clock: "1:02:03", or "4:05" under an hour."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def ordered_actions(counts: dict[str, Any]) -> list[str]:
    """Return the actions of `counts` in the engine's order; unknown ones go last."""
    return sorted(counts, key=lambda a: ACTION_ORDER.index(a) if a in ACTION_ORDER else len(ACTION_ORDER))


def outcome_counts(value: Any) -> tuple[int, int]:
    """Return (succeeded, failed) for one action's counts.

    Run records count {outcome: n} per action. The daemon's status of a run in progress
    may count a plain number per action instead, which is read as succeeded writes.
    """
    if isinstance(value, int):
        return value, 0
    if isinstance(value, dict):
        return int(value.get("succeeded", 0)), int(value.get("failed", 0))
    return 0, 0


def counts_line(counts: dict[str, Any]) -> str:
    """Return "added to IEM: 30 · unsubscribed in IEM: 2 (1 failed)", or "" for no counts."""
    parts = []
    for action in ordered_actions(counts):
        succeeded, failed = outcome_counts(counts[action])
        part = _("{action}: {n}").format(action=action_label(action), n=format_number(succeeded))
        if failed:
            part += " (" + _("{n} failed").format(n=format_number(failed)) + ")"
        parts.append(part)
    return " · ".join(parts)


def changes_summary(counts: dict[str, Any]) -> str:
    """Return the total of successful writes and failures of a run, e.g. "30" or "30, 2 failed"."""
    succeeded = failed = 0
    for value in counts.values():
        ok, bad = outcome_counts(value)
        succeeded += ok
        failed += bad
    text = format_number(succeeded)
    if failed:
        text += ", " + _("{n} failed").format(n=format_number(failed))
    return text
