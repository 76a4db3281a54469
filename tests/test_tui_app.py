"""The edm-tui dashboard: against a real daemon, against a scripted one, and as snapshots.

Snapshot tests talk to `FakeDaemon`, an in-process server that speaks the daemon's protocol
with fixed data, and freeze the dashboard's clock and time zone, so the pictures do not
depend on the day, the machine or the temporary directory. Regenerate them with
`.venv/bin/pytest tests/test_tui_app.py --snapshot-update` and look at the SVGs under
tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import pytest
from textual.content import Content
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Static

from edm_tui import i18n
from edm_tui.app import EdmTuiApp, resolve_socket_path
from edm_tui.commands import palette_commands
from edm_tui.screens.dashboard import DashboardScreen
from edm_tui.screens.help import HelpScreen
from edm_tui.screens.unavailable import UnavailableScreen
from edm_tui.widgets.dialogs import BrakeOverrideDialog, QuitDialog
from edm_tui.widgets.run_progress import RunProgressPanel
from edm_tui.widgets.runs_table import RunsTable
from tests.daemon_support import DaemonProcess, add_subscribers
from tests.sync_support import Bench

NOW = 1_700_000_000  # 2023-11-14 22:13:20 UTC: the frozen clock of the scripted tests
SIZES = [(80, 24), (120, 40)]
MISSING_SOCKET = Path("/nonexistent/edm-sync/edm-sync.sock")  # fixed, so snapshots can show it

BRAKE_REASON = ("IEM list 1 returned no subscribers, but the last sync saw 3 active there; check the "
                "list in IEM before letting a run through")


# --- a scripted daemon ---


def run_record(run_id: int, status: str, started_at: int, *, trigger: str = "schedule",
               counts: dict[str, dict[str, int]] | None = None, error: str | None = None) -> dict[str, Any]:
    return {"id": run_id, "trigger": trigger, "status": status, "started_at": started_at,
            "finished_at": started_at + 42, "allow_mass_changes": False, "counts": counts or {},
            "summary": {}, "error": error}


RUNS = [
    run_record(12, "succeeded", NOW - 1800, counts={"add": {"succeeded": 30}, "update_names": {"succeeded": 2}}),
    run_record(11, "partial", NOW - 5400, trigger="manual", counts={"add": {"succeeded": 10, "failed": 2}}),
    run_record(10, "blocked", NOW - 9000, error=BRAKE_REASON),
    run_record(9, "failed", NOW - 12600, error="reading IEM list 1 failed 3 times; last error: timed out"),
    run_record(8, "cancelled", NOW - 16200, trigger="cli",
               error="cancelled by the operator; the next run finishes the job"),
    run_record(7, "interrupted", NOW - 19800,
               error="the service stopped during the run; the next run finishes the job"),
    run_record(6, "succeeded", NOW - 23400),
    run_record(5, "succeeded", NOW - 27000, counts={"unsubscribe_magento": {"succeeded": 4}}),
    run_record(4, "succeeded", NOW - 30600, counts={"confirm": {"succeeded": 1}}),
    run_record(3, "succeeded", NOW - 34200),
]


def idle_status(last_run: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    status = {
        "state": "idle", "run": None, "last_run": last_run or RUNS[0], "next_run_at": NOW + 3723,
        "schedule": {"interval_seconds": 3600.0, "at": None, "jitter_seconds": 0.0, "enabled": True},
        "config_path": "/etc/edm-sync/config.toml", "config_error": None,
        "history_path": "/var/lib/edm-sync/history.sqlite3", "version": "0.1.0", "pid": 4242,
    }
    status.update(changes)
    return status


def running_status() -> dict[str, Any]:
    run = {"id": 13, "trigger": "manual", "phase": "write", "done": 1200, "total": 5000, "rate": 310.5,
           "eta_seconds": 12.2, "started_at": NOW - 40,
           "counts": {"add": {"succeeded": 1180}, "unsubscribe_iem": {"succeeded": 18, "failed": 2}}}
    return idle_status(state="running", run=run, next_run_at=None)


class FakeDaemon:
    """A scripted daemon on a Unix socket, served by its own thread and event loop.

    It replies to hello, subscribe, status, runs and run from the attributes below, records
    every call in `calls`, and sends events with `push()`.
    """

    def __init__(self, path: Path, status: dict[str, Any], *, can_write: bool = True) -> None:
        self.path = path
        self.status = status
        self.runs = RUNS
        self.can_write = can_write
        self.run_reply: dict[str, Any] = {"result": {"run_id": 13}}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._writers: list[tuple[asyncio.StreamWriter, list[int]]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-daemon", daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_unix_server(self._serve, path=str(self.path)), self._loop).result(5)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def push(self, topic: str, data: dict[str, Any]) -> None:
        """Send an event to every subscribed client."""
        asyncio.run_coroutine_threadsafe(self._push(topic, data), self._loop).result(5)

    def methods(self) -> list[str]:
        return [method for method, _params in self.calls]

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer, _seq in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _push(self, topic: str, data: dict[str, Any]) -> None:
        for writer, seq in self._writers:
            seq[0] += 1
            await self._send(writer, {"jsonrpc": "2.0", "method": "event",
                                      "params": {"seq": seq[0], "topic": topic, "data": data}})

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seq = [0]
        try:
            while line := await reader.readline():
                request = json.loads(line)
                method, params = request["method"], request.get("params") or {}
                self.calls.append((method, params))
                reply = self._reply(method, params)
                await self._send(writer, {"jsonrpc": "2.0", "id": request["id"], **reply})
                if method == "subscribe":
                    self._writers.append((writer, seq))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers = [(w, s) for w, s in self._writers if w is not writer]
            writer.close()

    def _reply(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "hello":
            return {"result": {"protocol": 1, "server": "edm-sync 0.1.0", "pid": 4242, "user": "operator",
                               "can_write": self.can_write, "topics": ["progress", "run_started",
                                                                       "run_finished", "log", "status"]}}
        if method == "subscribe":
            return {"result": {"topics": ["progress", "run_started", "run_finished", "log", "status"], "seq": 0}}
        if method == "status":
            return {"result": self.status}
        if method == "runs":
            return {"result": {"runs": self.runs[: params.get("limit", 50)], "next_before_id": None}}
        if method == "run":
            return self.run_reply
        return {"error": {"code": -32601, "message": "method not found", "data": {"method": method}}}


# --- helpers ---


@pytest.fixture(autouse=True)
def stable_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """UTC times, English messages, and colour unless a test sets NO_COLOR.

    Key descriptions are translated when their classes are created, so the test run as a
    whole needs an English (or unset) LANG.
    """
    i18n.set_language("en")
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("NO_COLOR", raising=False)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make_app(socket_path: Path) -> EdmTuiApp:
    app = EdmTuiApp(socket_path, clock=lambda: NOW)
    app.animation_level = "none"
    return app


def text_of(widget: Widget) -> str:
    rendered = widget.render()
    return rendered.plain if isinstance(rendered, Content) else str(rendered)


def record_notifications(app: EdmTuiApp) -> list[str]:
    """Return a list that collects the text of every notification the app shows from now on."""
    notifications: list[str] = []
    notify = app.notify

    def recording_notify(message: str, **options: Any) -> None:
        notifications.append(message)
        notify(message, **options)

    app.notify = recording_notify  # type: ignore[method-assign]
    return notifications


async def wait_until(pilot: Pilot, condition: Callable[[], bool], awaited: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {awaited}")
        await pilot.pause(0.05)


def dashboard_loaded(app: EdmTuiApp, rows: int = len(RUNS)) -> bool:
    screen = app.screen
    return (isinstance(screen, DashboardScreen) and screen.status is not None
            and screen.query_one(RunsTable).row_count == rows)


def runs_table_statuses(app: EdmTuiApp) -> dict[int, str]:
    table = app.screen.query_one(RunsTable)
    statuses = {}
    for row_key in table.rows:
        cell = table.get_cell(row_key, "status")
        statuses[int(row_key.value)] = cell.plain if isinstance(cell, Content) else str(cell)
    return statuses


# --- against a real daemon ---


def add_tui_subscribers(bench: Bench, count: int) -> None:
    add_subscribers(bench, count, prefix="tui", changed_at=NOW)


async def test_sync_key_runs_to_the_end(daemon: DaemonProcess) -> None:
    add_tui_subscribers(daemon.bench, 30)
    daemon.start()
    app = EdmTuiApp(daemon.socket_path)
    progress: list[dict[str, Any]] = []

    def keep_progress(message: object) -> None:
        if getattr(message, "topic", None) == "progress" and isinstance(app.screen, DashboardScreen):
            progress.append(message.data)  # type: ignore[attr-defined]

    async with app.run_test(size=(100, 30), message_hook=keep_progress) as pilot:
        await wait_until(pilot, lambda: dashboard_loaded(app, rows=0), "the empty dashboard")
        assert "No runs" not in text_of(app.screen.query_one("#last-run"))
        await pilot.press("s")
        await wait_until(pilot, lambda: runs_table_statuses(app).get(1, "").endswith("succeeded"),
                         "run 1 in the table as succeeded")
        assert not app.screen.query_one(RunProgressPanel).display
        assert "✓ succeeded" in text_of(app.screen.query_one("#last-run"))
        assert "added to IEM: 30" in text_of(app.screen.query_one("#last-run"))
        assert app.active_run_id is None

    assert progress, "no progress event reached the dashboard"
    assert progress[-1]["done"] == 30
    assert len(daemon.bench.iem_rows()) == 30


async def test_dashboard_follows_daemon_restart(daemon: DaemonProcess) -> None:
    daemon.start()
    app = EdmTuiApp(daemon.socket_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: dashboard_loaded(app, rows=0), "the dashboard")

        await asyncio.to_thread(daemon.stop)
        await wait_until(pilot, lambda: isinstance(app.screen, UnavailableScreen), "the unavailable screen")
        screen = app.screen
        assert "stopped or is restarting" in text_of(screen.query_one("#unavailable-title"))
        assert str(daemon.socket_path) in text_of(screen.query_one("#unavailable-socket"))
        assert "systemctl start edm-sync" in text_of(screen.query_one("#unavailable-help"))

        await asyncio.to_thread(daemon.start)
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard to return")
        await wait_until(pilot, lambda: "Connected to edm-sync" in text_of(app.screen.query_one("#connection-line")),
                         "the connection line")
        await wait_until(pilot, lambda: dashboard_loaded(app, rows=0), "the dashboard to reload")


async def test_blocked_run_offers_brake_override(daemon: DaemonProcess) -> None:
    bench = daemon.bench
    for n in range(3):
        bench.add_row(f"brake{n}@example.test", 1, NOW)
    first = await asyncio.to_thread(bench.sync)
    assert first.status == "succeeded"
    state = bench.sim_state()
    state["subscribers"] = []
    bench.put_state(state)
    blocked = await asyncio.to_thread(bench.sync)
    assert blocked.status == "blocked"
    daemon.start()

    app = EdmTuiApp(daemon.socket_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: dashboard_loaded(app, rows=2), "the dashboard with two runs")
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, BrakeOverrideDialog), "the brake dialog")
        reason = text_of(app.screen.query_one("#brake-reason"))
        assert reason == blocked.error
        assert "list 1" in reason

        await pilot.click("#override-once")
        await wait_until(pilot, lambda: runs_table_statuses(app).get(3, "").endswith("succeeded"),
                         "run 3 in the table as succeeded")

    assert len(bench.iem_rows()) == 3
    runs = await asyncio.to_thread(daemon.call, "runs", limit=1)
    assert runs["runs"][0]["allow_mass_changes"] is True


# --- against a scripted daemon ---


async def test_read_only_user_cannot_sync(tmp_path: Path) -> None:
    with FakeDaemon(tmp_path / "d.sock", idle_status(), can_write=False) as fake:
        app = make_app(fake.path)
        async with app.run_test(size=(100, 30)) as pilot:
            notifications = record_notifications(app)
            await wait_until(pilot, lambda: dashboard_loaded(app), "the dashboard")
            assert app.check_action("sync_now", ()) is None
            assert "read-only" in text_of(app.screen.query_one("#connection-line"))
            await pilot.press("s")
            await pilot.pause()
            assert "run" not in fake.methods()
            assert notifications == ["Only root, the service user or members of the admin group may start a sync."]


async def test_already_running_names_the_run(tmp_path: Path) -> None:
    with FakeDaemon(tmp_path / "d.sock", idle_status()) as fake:
        fake.run_reply = {"error": {"code": -32002, "message": "a run is already in progress",
                                    "data": {"run_id": 77}}}
        app = make_app(fake.path)
        async with app.run_test(size=(100, 30)) as pilot:
            notifications = record_notifications(app)
            await wait_until(pilot, lambda: dashboard_loaded(app), "the dashboard")
            await pilot.press("s")
            await wait_until(pilot, lambda: bool(notifications), "a notification")
            assert notifications == ["A sync is already running: run 77."]


async def test_permission_denied_gives_reason(tmp_path: Path) -> None:
    with FakeDaemon(tmp_path / "d.sock", idle_status()) as fake:
        fake.run_reply = {"error": {"code": -32001, "message": "permission denied", "data": {
            "method": "run", "reason": "root, the service user 'edm-sync' or members of group 'edm-admins'"}}}
        app = make_app(fake.path)
        async with app.run_test(size=(100, 30)) as pilot:
            notifications = record_notifications(app)
            await wait_until(pilot, lambda: dashboard_loaded(app), "the dashboard")
            await pilot.press("s")
            await wait_until(pilot, lambda: bool(notifications), "a notification")
            assert len(notifications) == 1
            assert "root, the service user 'edm-sync' or members of group 'edm-admins'" in notifications[0]


async def test_brake_dialog_cancel_starts_nothing(tmp_path: Path) -> None:
    with FakeDaemon(tmp_path / "d.sock", idle_status(last_run=RUNS[2])) as fake:
        app = make_app(fake.path)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: dashboard_loaded(app), "the dashboard")
            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, BrakeOverrideDialog), "the brake dialog")
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")
            assert "run" not in fake.methods()

            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, BrakeOverrideDialog), "the brake dialog")
            await pilot.click("#run-with-brake")
            await wait_until(pilot, lambda: "run" in fake.methods(), "the run call")
            assert fake.calls[-1] == ("run", {"allow_mass_changes": False})


async def test_progress_events_update_panel(tmp_path: Path) -> None:
    with FakeDaemon(tmp_path / "d.sock", idle_status()) as fake:
        app = make_app(fake.path)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: dashboard_loaded(app), "the dashboard")
            panel = app.screen.query_one(RunProgressPanel)
            assert not panel.display

            fake.push("run_started", {"run_id": 13, "trigger": "manual"})
            fake.push("progress", {"run_id": 13, "phase": "write", "done": 250, "total": 1000,
                                   "rate": 50.0, "eta_seconds": 15.0})
            await wait_until(pilot, lambda: panel.display and panel.run.get("done") == 250, "the live panel")
            assert panel.border_title == "Run 13 · manual"
            assert text_of(panel.query_one("#run-phase")) == "Writing"
            assert text_of(panel.query_one("#run-numbers")) == "250 of 1,000 · 50.0 per second · about 15 s left"
            assert "Running run 13" in text_of(app.screen.query_one("#daemon-state"))
            assert app.active_run_id == 13

            fake.status = idle_status(last_run=run_record(13, "succeeded", NOW - 20, trigger="manual",
                                                          counts={"add": {"succeeded": 1000}}))
            fake.runs = [fake.status["last_run"], *RUNS[:9]]
            fake.push("run_finished", {"run_id": 13, "status": "succeeded",
                                       "counts": {"add": {"succeeded": 1000}}, "error": None})
            await wait_until(pilot, lambda: 13 in runs_table_statuses(app), "run 13 in the table")
            assert not panel.display
            assert app.active_run_id is None
            assert "added to IEM: 1,000" in text_of(app.screen.query_one("#last-run"))


async def test_quit_during_run_asks_first(tmp_path: Path) -> None:
    with FakeDaemon(tmp_path / "d.sock", running_status()) as fake:
        app = make_app(fake.path)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: app.active_run_id == 13, "the run in progress")
            await pilot.press("q")
            await wait_until(pilot, lambda: isinstance(app.screen, QuitDialog), "the quit dialog")
            assert "The sync goes on in the daemon" in " ".join(text_of(s) for s in app.screen.query(Static))
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")
            assert app.is_running
            await pilot.press("q")
            await wait_until(pilot, lambda: isinstance(app.screen, QuitDialog), "the quit dialog")
            await pilot.click("#quit")
            await pilot.pause()
        assert not app.is_running


async def test_help_lists_every_dashboard_key(tmp_path: Path) -> None:
    with FakeDaemon(tmp_path / "d.sock", idle_status(), can_write=False) as fake:
        app = make_app(fake.path)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: dashboard_loaded(app), "the dashboard")
            sections = {section.title: section.keys for section in app.help_sections(app.screen)}
            everywhere = {item.key: item for item in sections["Everywhere"]}
            for key in ("s", "p", "h", "c", "^r", "?", "q", "^q", "^p"):
                assert key in everywhere, f"{key} missing from the help"
            assert not everywhere["s"].enabled
            assert "admin group" in everywhere["s"].disabled_reason
            assert "esc" not in everywhere, "back is listed on the bottom screen"
            assert [item.description for item in sections["This screen"]] == ["Open run"]

            await pilot.press("question_mark")
            await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")


async def test_palette_offers_every_action(tmp_path: Path) -> None:
    with FakeDaemon(tmp_path / "d.sock", idle_status()) as fake:
        app = make_app(fake.path)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: dashboard_loaded(app), "the dashboard")
            actions = {command.action for command in palette_commands()}
            assert actions == {"sync_now", "plan", "history", "config", "refresh", "help", "request_quit"}
            for action in actions:
                assert hasattr(app, f"action_{action}"), action

            await app.run_command("refresh")
            await wait_until(pilot, lambda: fake.methods().count("runs") >= 2, "a reload")
            await app.run_command("sync_now")
            await wait_until(pilot, lambda: "run" in fake.methods(), "the run call")


def test_socket_path_from_config(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[daemon]\nsocket = "/run/elsewhere/edm.sock"\n[interspire]\nurl = 5\n')
    assert resolve_socket_path(None, str(config)) == Path("/run/elsewhere/edm.sock")
    assert resolve_socket_path("/tmp/given.sock", str(config)) == Path("/tmp/given.sock")


def test_socket_path_default_without_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDM_SYNC_SOCKET", "/run/from-env.sock")
    assert resolve_socket_path(None, str(tmp_path / "missing.toml")) == Path("/run/from-env.sock")


# --- snapshots ---


async def _wait_for_dashboard(pilot: Pilot) -> None:
    await wait_until(pilot, lambda: dashboard_loaded(pilot.app), "the dashboard")  # type: ignore[arg-type]


async def _wait_for_unavailable(pilot: Pilot) -> None:
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, UnavailableScreen), "the unavailable screen")


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_snapshot_idle(tmp_path: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    with FakeDaemon(tmp_path / "d.sock", idle_status()) as fake:
        assert snap_compare(make_app(fake.path), terminal_size=size, run_before=_wait_for_dashboard)


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_snapshot_running(tmp_path: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    with FakeDaemon(tmp_path / "d.sock", running_status()) as fake:
        assert snap_compare(make_app(fake.path), terminal_size=size, run_before=_wait_for_dashboard)


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_snapshot_unavailable(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(MISSING_SOCKET), terminal_size=size, run_before=_wait_for_unavailable)


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_snapshot_help(tmp_path: Path, snap_compare: Any, size: tuple[int, int]) -> None:
    async def open_help(pilot: Pilot) -> None:
        await _wait_for_dashboard(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), "the help")

    with FakeDaemon(tmp_path / "d.sock", idle_status(), can_write=False) as fake:
        assert snap_compare(make_app(fake.path), terminal_size=size, run_before=open_help)


def test_snapshot_idle_no_color(tmp_path: Path, snap_compare: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    with FakeDaemon(tmp_path / "d.sock", idle_status(last_run=RUNS[2])) as fake:
        assert snap_compare(make_app(fake.path), terminal_size=(80, 24), run_before=_wait_for_dashboard)


async def test_screen_keys_reuse_open_screens(tmp_path: Path) -> None:
    from edm_tui.screens.config import ConfigScreen
    from edm_tui.screens.history import HistoryScreen
    from edm_tui.screens.plan import PlanScreen
    from edm_tui.screens.run_detail import RunDetailScreen

    with FakeDaemon(tmp_path / "d.sock", idle_status()) as fake:
        app = make_app(fake.path)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_until(pilot, lambda: dashboard_loaded(app), "the dashboard")
            for key, screen_class in (("p", PlanScreen), ("c", ConfigScreen)):
                await pilot.press(key)
                await wait_until(pilot, lambda wanted=screen_class: isinstance(app.screen, wanted),
                                 screen_class.__name__)
                await pilot.press("escape")
                await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")

            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, RunDetailScreen), "the run detail")
            assert app.screen.run_id == 12
            await pilot.press("h")
            await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen), "the history")
            app.open_run(11)
            await wait_until(pilot, lambda: isinstance(app.screen, RunDetailScreen), "the run detail")
            await pilot.press("h")
            await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen), "the history again")
            assert [type(screen) for screen in app.screen_stack] == [DashboardScreen, RunDetailScreen,
                                                                     HistoryScreen]
