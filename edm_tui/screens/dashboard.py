"""The default screen: the daemon's state, the next and the last run, a live run, recent runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import DataTable, Static

from edm_tui.client import DaemonError, DaemonUnavailable
from edm_tui.connection import CONNECTED, CONNECTING
from edm_tui.i18n import _
from edm_tui.messages import ConnectionChanged, DaemonEvent
from edm_tui.summary import run_error_text, trigger_label
from edm_tui.widgets.footer import Footer
from edm_tui.widgets.labels import (
    STATUS_LOOK,
    counts_line,
    format_countdown,
    format_time,
    status_content,
)
from edm_tui.widgets.run_progress import RunProgressPanel
from edm_tui.widgets.runs_table import RunsTable

if TYPE_CHECKING:
    from edm_tui.app import EdmTuiApp

RECENT_RUNS = 10
COUNTDOWN_INTERVAL = 1.0  # seconds between updates of the next run's countdown


class DashboardScreen(Screen[None]):
    """The daemon's state and recent runs, reloaded on every "resync" and after each run."""

    def __init__(self) -> None:
        super().__init__(id="dashboard")
        self.status: dict[str, Any] | None = None
        """The daemon's last `status` result, kept current by events."""
        self.runs: list[dict[str, Any]] = []
        self.connection_state = CONNECTING
        self.finished_run_id: int | None = None
        """The run whose `run_finished` event came last; a late progress event of it is ignored."""

    @property
    def edm_app(self) -> EdmTuiApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(id="connection-line")
        with Vertical(id="overview") as overview:
            overview.border_title = _("Daemon")
            with Grid(id="overview-grid"):
                yield Static(_("State"), classes="overview-label")
                yield Static(id="daemon-state")
                yield Static(_("Next run"), classes="overview-label")
                yield Static(id="next-run")
                yield Static(_("Last run"), classes="overview-label")
                yield Static(id="last-run")
            yield Static(id="config-problem")
        yield RunProgressPanel(id="current-run")
        table = RunsTable(id="recent-runs")
        table.border_title = _("Last {n} runs").format(n=RECENT_RUNS)
        yield table
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#current-run").display = False
        self._render_connection(self.edm_app.daemon.state)
        self._render_overview()
        self.set_interval(COUNTDOWN_INTERVAL, self._render_next_run)
        if self.edm_app.daemon.connected:
            self.reload()

    # --- messages from the App ---

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        self._render_connection(message.state)

    def on_daemon_event(self, event: DaemonEvent) -> None:
        data = event.data
        if event.topic == "resync":
            self.reload()
        elif event.topic == "status":
            self.apply_status(data)
        elif event.topic == "run_started":
            self._show_run({"id": data.get("run_id"), "trigger": data.get("trigger"), "phase": "starting",
                            "done": 0, "total": None})
        elif event.topic == "progress" and data.get("run_id") != self.finished_run_id:
            panel = self.query_one("#current-run", RunProgressPanel)
            if self.status is not None:
                self.status["state"] = "running"
            panel.update_progress(data)
            if not panel.display:
                panel.display = True
                self._render_state()
        elif event.topic == "run_finished":
            self.finished_run_id = data.get("run_id")
            self._finish_run(data)
            self.reload()

    # --- loading ---

    @work(exclusive=True, group="dashboard-reload", exit_on_error=False)
    async def reload(self) -> None:
        """Load the status and the recent runs from the daemon."""
        daemon = self.edm_app.daemon
        try:
            status = await daemon.call("status")
            runs = await daemon.call("runs", limit=RECENT_RUNS)
        except DaemonUnavailable as error:
            # The App shows the unavailable screen, and the next resync reloads.
            self.log.warning(f"dashboard reload failed: {error}")
            return
        except DaemonError as error:
            self.notify(_("Could not load the daemon's state: {message}").format(message=error.message),
                        severity="error", markup=False)
            return
        self.apply_status(status)
        self.runs = runs.get("runs") or []
        table = self.query_one(RunsTable)
        table.show_runs(self.runs)
        table.border_subtitle = "" if self.runs else _("no runs yet")

    def apply_status(self, status: dict[str, Any]) -> None:
        """Show a `status` result (also the data of a `status` event)."""
        self.status = status
        run = status.get("run")
        if status.get("state") == "running" and run:
            self._show_run(run)
        else:
            self.query_one("#current-run").display = False
        self._render_overview()

    def _show_run(self, run: dict[str, Any]) -> None:
        if self.status is not None:
            self.status["state"] = "running"
            self.status["run"] = run
        panel = self.query_one("#current-run", RunProgressPanel)
        panel.show_run(run)
        panel.display = True
        self._render_state()

    def _finish_run(self, data: dict[str, Any]) -> None:
        """Show the end of a run at once; the reload that follows fills in the full record."""
        self.query_one("#current-run").display = False
        if self.status is None:
            return
        previous = self.status.get("run") or {}
        self.status["state"] = "idle"
        self.status["run"] = None
        self.status["last_run"] = {
            "id": data.get("run_id"),
            "trigger": previous.get("trigger", ""),
            "status": data.get("status", ""),
            "started_at": previous.get("started_at"),
            "counts": data.get("counts") or {},
            "error": data.get("error"),
            "error_message": data.get("error_message"),
        }
        self._render_overview()

    # --- rendering ---

    def _render_connection(self, state: str) -> None:
        self.connection_state = state
        line = self.query_one("#connection-line", Static)
        daemon = self.edm_app.daemon
        if state != CONNECTED:
            line.update(Content.assemble(("◌ ", "$text-warning"), _("Connecting to the daemon…")))
            return
        hello = daemon.hello
        parts = [_("Connected to {server}").format(server=hello.get("server", "edm-sync"))]
        if hello.get("user"):
            parts.append(_("as {user}").format(user=hello["user"]))
        access = _("may start syncs") if daemon.can_write else _("read-only: may not start syncs")
        line.update(Content.assemble(("● ", "$text-success"), " · ".join([" ".join(parts), access])))

    def _render_overview(self) -> None:
        self._render_state()
        self._render_next_run()
        self._render_last_run()
        problem = (self.status or {}).get("config_error")
        widget = self.query_one("#config-problem", Static)
        widget.display = bool(problem)
        if problem:
            widget.update(Content.assemble(
                ("⚠ ", "$text-warning"), _("Configuration problem: {problem}").format(problem=problem)))

    def _render_state(self) -> None:
        widget = self.query_one("#daemon-state", Static)
        status = self.status
        if status is None:
            widget.update("…")
            return
        run = status.get("run") or {}
        if status.get("state") == "running":
            glyph, colour = STATUS_LOOK["running"]
            text = _("Running run {run_id}").format(run_id=run.get("id", "?"))
            if run.get("trigger"):
                text += f" ({trigger_label(run['trigger'])})"
            widget.update(Content.assemble((f"{glyph} ", colour), text))
        else:
            widget.update(Content.assemble(("○ ", "$text-secondary"), _("Idle")))

    def _render_next_run(self) -> None:
        widget = self.query_one("#next-run", Static)
        status = self.status
        if status is None:
            widget.update("…")
            return
        next_run_at = status.get("next_run_at")
        if next_run_at is None:
            schedule = status.get("schedule") or {}
            if status.get("state") == "running":
                widget.update(_("set when the current run ends"))
            elif not schedule.get("enabled"):
                widget.update(_("none: the schedule is off"))
            else:
                widget.update(_("none scheduled"))
            return
        left = next_run_at - self.edm_app.clock()
        if left > 0:
            when = _("in {countdown}").format(countdown=format_countdown(left))
        else:
            when = _("due now")
        widget.update(f"{format_time(next_run_at)} · {when}")

    def _render_last_run(self) -> None:
        widget = self.query_one("#last-run", Static)
        last = (self.status or {}).get("last_run")
        if not last:
            widget.update(_("none yet") if self.status is not None else "…")
            return
        head = [_("run {run_id}").format(run_id=last.get("id"))]
        if last.get("started_at"):
            head.append(format_time(last["started_at"]))
        if last.get("trigger"):
            head.append(trigger_label(last["trigger"]))
        lines = [Content.assemble(status_content(last.get("status", "")), " · ", " · ".join(head))]
        counts = counts_line(last.get("counts") or {})
        if counts:
            lines.append(Content(counts))
        if last.get("error"):
            lines.append(Content(_("Reason: {error}").format(error=run_error_text(last))))
        widget.update(Content("\n").join(lines))

    # --- opening a run ---

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.edm_app.open_run(int(event.row_key.value))
