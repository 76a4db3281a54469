"""Progress of a run on stderr: a bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from edm_tui.daemon.runner import ProgressEvent
from edm_tui.i18n import _

PLAIN_INTERVAL = 5.0  # seconds between plain progress lines of one phase


def phase_title(phase: str) -> str:
    titles = {
        "read_magento": _("Reading Magento"),
        "read_iem": _("Reading IEM"),
        "plan": _("Planning"),
        "write": _("Writing"),
        "done": _("Done"),
    }
    return titles.get(phase, phase)


class ProgressPrinter:
    def __init__(self, stream=None) -> None:  # type: ignore[no-untyped-def]
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.phase = ""
        self.last_line = 0.0
        self.last_text = ""
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> "ProgressPrinter":
        if self.interactive:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(file=self.stream), transient=True,
            )
            self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, event: ProgressEvent) -> None:
        if event.phase == "done":
            return
        if self.progress is not None:
            self._update_bar(event)
        else:
            self._update_plain(event)

    def _update_bar(self, event: ProgressEvent) -> None:
        assert self.progress is not None
        if event.phase != self.phase or self.task is None:
            if self.task is not None:
                self.progress.update(self.task, visible=False)
            self.phase = event.phase
            self.task = self.progress.add_task(phase_title(event.phase), total=event.total)
        self.progress.update(self.task, completed=event.done, total=event.total)

    def _update_plain(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        new_phase = event.phase != self.phase
        finished = event.total is not None and event.done >= event.total
        if not (new_phase or finished or now - self.last_line >= PLAIN_INTERVAL):
            return
        self.phase = event.phase
        self.last_line = now
        if event.total is None:
            text = f"{phase_title(event.phase)}: {event.done}"
        else:
            text = f"{phase_title(event.phase)}: {event.done}/{event.total}"
        if text != self.last_text:
            print(text, file=self.stream, flush=True)
            self.last_text = text
