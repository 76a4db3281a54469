"""The live panel of the run in progress: phase, progress bar, rate, time left and counts."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Static

from edm_tui.i18n import _
from edm_tui.summary import trigger_label
from edm_tui.widgets.labels import (
    counts_line,
    format_duration,
    format_number,
    phase_label,
)


class RunProgressPanel(Vertical):
    """One run in progress, fed by `show_run` and `update_progress`."""

    DEFAULT_CSS = """
    RunProgressPanel {
        height: auto;
        border: round $accent;
        border-title-color: $text-accent;
        padding: 0 1;
    }
    RunProgressPanel #run-phase-row {
        height: 1;
    }
    RunProgressPanel #run-phase {
        width: auto;
        min-width: 12;
        padding-right: 1;
    }
    RunProgressPanel ProgressBar {
        width: 1fr;
    }
    RunProgressPanel ProgressBar Bar {
        width: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.run: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        with Horizontal(id="run-phase-row"):
            yield Static(id="run-phase")
            yield ProgressBar(show_eta=False, id="run-bar")
        yield Static(id="run-numbers")
        yield Static(id="run-counts")

    @property
    def run_id(self) -> int | None:
        return self.run.get("id")

    def show_run(self, run: dict[str, Any]) -> None:
        """Show `run` (the `run` object of the daemon's status) from scratch."""
        self.run = dict(run)
        self._render_run()

    def update_progress(self, data: dict[str, Any]) -> None:
        """Apply a `progress` event; a run with another id replaces the one shown."""
        if data.get("run_id") != self.run.get("id"):
            self.run = {"id": data.get("run_id")}
        for key in ("phase", "done", "total", "rate", "eta_seconds", "counts"):
            if key in data:
                self.run[key] = data[key]
        self._render_run()

    def _render_run(self) -> None:
        run = self.run
        title = _("Run {run_id}").format(run_id=run.get("id", "?"))
        if run.get("trigger"):
            title += " · " + trigger_label(run["trigger"])
        self.border_title = title

        self.query_one("#run-phase", Static).update(phase_label(run.get("phase", "starting")))
        bar = self.query_one("#run-bar", ProgressBar)
        total = run.get("total")
        done = run.get("done") or 0
        if total:
            bar.update(total=total, progress=min(done, total))
        else:
            # An unknown total shows as an indeterminate bar until the daemon reports the phase's total.
            bar.update(total=None, progress=0)

        self.query_one("#run-numbers", Static).update(self._numbers_text(run))
        counts = counts_line(run.get("counts") or {})
        counts_widget = self.query_one("#run-counts", Static)
        counts_widget.update(counts)
        counts_widget.display = bool(counts)

    @staticmethod
    def _numbers_text(run: dict[str, Any]) -> str:
        done = run.get("done") or 0
        total = run.get("total")
        if total:
            parts = [_("{done} of {total}").format(done=format_number(done), total=format_number(total))]
        else:
            parts = [format_number(done)]
        if run.get("rate") is not None:
            parts.append(_("{rate} per second").format(rate=format_number(run["rate"], decimals=1)))
        if run.get("eta_seconds") is not None:
            parts.append(_("about {duration} left").format(duration=format_duration(run["eta_seconds"])))
        return " · ".join(parts)
