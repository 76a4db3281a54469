"""The history and run detail screens against a real daemon process.

Most tests share one daemon whose history file is written before it starts, with fixed
times, so the screens show the same rows on every run. One test syncs for real through the
bench and opens the run that the daemon recorded.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Select

from edm_tui.connection import DaemonConnection
from edm_tui.daemon.history import HistoryStore
from edm_tui.screens.history import HistoryScreen
from edm_tui.screens.run_detail import RunDetailScreen
from edm_tui.widgets.run_table import RunTable
from tests.daemon_support import DaemonProcess, NotifyListener, write_daemon_config
from tests.sync_support import Bench

T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC
RUN_COUNT = 250
BIG_RUN = 250  # partial, with more items than one page
BIG_RUN_ITEMS = 1200
SEARCHED_EMAIL = "ann.smith@example.test"
SEARCHED_RUNS = (245, 100)
FAILED_ITEM_IDS = tuple(range(100, BIG_RUN_ITEMS + 1, 100))  # ids of the big run's failed items
LONG_ERROR = ("IEM rejected the address: the list's custom field 'firstname' only accepts up to 30 "
              "characters, and this value has 41. Shorten the first name in Magento, then the next "
              "run will try again.")


# --- the fixed history ---


def _run_row(run_id: int, status: str, trigger: str, counts: dict, error: str | None = None,
             allow_mass_changes: bool = False, duration: int | None = None) -> tuple:
    started = T0 + run_id * 3600
    finished = started + (duration if duration is not None else 5 + (run_id % 7) * 13)
    return (run_id, trigger, status, started, finished, int(allow_mass_changes), json.dumps(counts), "{}", error)


def _item(item_id: int, run_id: int, email: str, action: str, outcome: str, *, website_id: int | None = 1,
          error_class: str | None = None, error_message: str | None = None, attempts: int = 1,
          reason: str = "new_in_magento") -> tuple:
    direction = "to_magento" if action.endswith("magento") or action == "create_guest" else "to_iem"
    return (item_id, run_id, email, website_id, 1, action, direction, reason, outcome, error_class,
            error_message, attempts, T0 + run_id * 3600 + 2)


def _counts(items: list[tuple]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for item in items:
        by_outcome = counts.setdefault(item[5], {})
        by_outcome[item[8]] = by_outcome.get(item[8], 0) + 1
    return counts


def big_run_items(first_id: int) -> list[tuple]:
    """Items of the big run: mostly additions, every 100th failed, a few skipped and other actions."""
    items = []
    for n in range(1, BIG_RUN_ITEMS + 1):
        item_id = first_id + n - 1
        email = f"user{n:04d}@example.test"
        if n % 100 == 0:
            items.append(_item(item_id, BIG_RUN, email, "add", "failed", error_class="IemRejected",
                               error_message=LONG_ERROR, attempts=3))
        elif n % 50 == 0:
            items.append(_item(item_id, BIG_RUN, email, "unsubscribe_iem", "succeeded", reason="magento_changed"))
        elif n % 45 == 0:
            items.append(_item(item_id, BIG_RUN, email, "subscribe_magento", "skipped", reason="iem_newer"))
        else:
            items.append(_item(item_id, BIG_RUN, email, "add", "succeeded"))
    return items


def write_fixed_history(state_dir: Path) -> None:
    """Write RUN_COUNT runs with fixed times; see the constants above for the special ones."""
    store = HistoryStore(state_dir / "history.sqlite3")
    searched_items = {
        run_id: [_item(10_000 + index * 2, run_id, SEARCHED_EMAIL, "add", "succeeded"),
                 _item(10_001 + index * 2, run_id, "bob@example.test", "unsubscribe_iem", "succeeded",
                       reason="magento_changed")]
        for index, run_id in enumerate(SEARCHED_RUNS)
    }
    big_items = big_run_items(1)
    special = {
        BIG_RUN: _run_row(BIG_RUN, "partial", "manual", _counts(big_items), duration=754),
        249: _run_row(249, "failed", "schedule", {},
                      error="could not connect to MariaDB at db.example.test:3306: Connection refused"),
        248: _run_row(248, "blocked", "cli", {}, error="the run would unsubscribe 120 of 800 subscribers "
                      "(15 %), more than the brake allows (5 %, at least 50)"),
        247: _run_row(247, "interrupted", "schedule", {}, error="the process stopped during the run"),
        246: _run_row(246, "cancelled", "manual", {}),
        **{run_id: _run_row(run_id, "succeeded", "schedule", _counts(items))
           for run_id, items in searched_items.items()},
    }
    runs = [special.get(run_id) or _run_row(run_id, "succeeded", "schedule", {"add": {"succeeded": run_id % 9}})
            for run_id in range(1, RUN_COUNT + 1)]
    items = big_items + [item for run_items in searched_items.values() for item in run_items]

    store.db.execute("BEGIN")
    store.db.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", runs)
    store.db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", items)
    store.db.execute("COMMIT")
    store.close()


def write_plain_config(directory: Path, socket_path: Path) -> Path:
    """A configuration that lets the daemon serve its history; runs would fail, none is started."""
    config = {
        "interspire": {"url": "http://127.0.0.1:9/xml.php", "username": "admin", "token": "secret",
                       "list_id": 1},
        "magento": {"database": "shop"},
        "storage": {"state_dir": str(directory / "state")},
        "schedule": {"enabled": False},
        "daemon": {"socket": str(socket_path)},
    }
    path = directory / "config.toml"
    path.write_text(tomlkit.dumps(config), encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture(autouse=True)
def utc_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Show times in UTC so that the screens read the same on every machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(scope="module")
def fixed_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    directory = tmp_path_factory.mktemp("history")
    write_fixed_history(directory / "state")
    socket_path = directory / "d.sock"
    notify = NotifyListener(directory / "notify.sock")
    process = DaemonProcess(None, write_plain_config(directory, socket_path), socket_path,  # type: ignore[arg-type]
                            notify, directory / "daemon.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        notify.close()


# --- a small App around one screen ---


class ScreenTestApp(App[None]):
    """Connects to the daemon like the dashboard does, then shows one screen."""

    def __init__(self, socket_path: Path, make_screen: Callable[[], Screen]) -> None:
        super().__init__()
        self.daemon = DaemonConnection(socket_path, on_event=lambda topic, data: None,
                                       on_state=lambda state, error: None)
        self.make_screen = make_screen

    def compose(self) -> ComposeResult:
        return []

    async def on_mount(self) -> None:
        self.run_worker(self.daemon.run(), group="daemon")
        async with asyncio.timeout(10):
            while not self.daemon.connected:
                await asyncio.sleep(0.01)
        await self.push_screen(self.make_screen())

    async def on_unmount(self) -> None:
        await self.daemon.close()


async def wait_until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the app run until `condition()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        await pilot.pause(0.01)


def table_of(app: App) -> RunTable:
    return app.screen.query_one(RunTable)


async def wait_loaded(pilot: Pilot, screen_type: type[Screen]) -> RunTable:
    """Wait until `screen_type` is shown and its table has its first page and nothing is loading."""
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, screen_type))
    table = table_of(pilot.app)
    await wait_until(pilot, lambda: table.record_count > 0 or table.complete)
    await wait_until(pilot, lambda: not table.fetching)
    await pilot.pause()
    return table


def shown_ids(table: RunTable) -> list[int]:
    return [table.record_at(position)["id"] for position in range(table.record_count)]


async def choose(pilot: Pilot, select_id: str, value: tuple[str, ...]) -> None:
    """Set a filter Select the way a choice from its list does, opening the filter bar first."""
    screen = pilot.app.screen
    if not screen.query(f"#{select_id}"):
        await pilot.press("slash")
    await wait_until(pilot, lambda: bool(screen.query(f"#{select_id}")))
    screen.query_one(f"#{select_id}", Select).value = value
    await pilot.pause()


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def app_for(daemon: DaemonProcess, make_screen: Callable[[], Screen]) -> ScreenTestApp:
    return ScreenTestApp(daemon.socket_path, make_screen)


# --- history ---


async def test_history_opens_run_detail(fixed_daemon: DaemonProcess) -> None:
    app = app_for(fixed_daemon, HistoryScreen)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await wait_loaded(pilot, HistoryScreen)
        assert table.cursor_record is not None
        assert table.cursor_record["id"] == BIG_RUN
        await pilot.press("down", "enter")
        items = await wait_loaded(pilot, RunDetailScreen)
        assert isinstance(app.screen, RunDetailScreen)
        assert app.screen.run_id == 249
        assert items.record_count == 0
        header = str(app.screen.query_one("#run-header").render())
        assert "could not connect to MariaDB at db.example.test:3306: Connection refused" in header
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen))
        assert table_of(app).cursor_record["id"] == 249


async def test_history_filters_by_status(fixed_daemon: DaemonProcess) -> None:
    app = app_for(fixed_daemon, HistoryScreen)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot, HistoryScreen)
        await choose(pilot, "status-filter", ("failed",))
        table = await wait_loaded(pilot, HistoryScreen)
        assert shown_ids(table) == [249]
        assert table.complete

        await choose(pilot, "status-filter", ("partial", "failed", "blocked", "interrupted"))
        table = await wait_loaded(pilot, HistoryScreen)
        assert shown_ids(table) == [250, 249, 248, 247]


async def test_history_filters_by_trigger(fixed_daemon: DaemonProcess) -> None:
    app = app_for(fixed_daemon, HistoryScreen)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot, HistoryScreen)
        await choose(pilot, "trigger-filter", ("manual",))
        table = await wait_loaded(pilot, HistoryScreen)
        assert shown_ids(table) == [250, 246]


async def test_history_searches_by_email(fixed_daemon: DaemonProcess) -> None:
    app = app_for(fixed_daemon, HistoryScreen)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot, HistoryScreen)
        await pilot.press("slash")
        await wait_until(pilot, lambda: app.focused is not None and app.focused.id == "status-filter")
        app.screen.query_one("#email-filter").focus()
        await pilot.press(*"ann.smith", "enter")
        table = await wait_loaded(pilot, HistoryScreen)
        assert shown_ids(table) == list(SEARCHED_RUNS)
        assert app.focused is table

        # The run opened from a search shows that address's items first.
        await pilot.press("enter")
        items = await wait_loaded(pilot, RunDetailScreen)
        assert [item["email"] for item in items.records_shown()] == [SEARCHED_EMAIL]


async def test_history_loads_next_page(fixed_daemon: DaemonProcess) -> None:
    app = app_for(fixed_daemon, HistoryScreen)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await wait_loaded(pilot, HistoryScreen)
        first_page = table.record_count
        assert first_page == 200
        assert not table.complete

        for _ in range(4):
            await pilot.press("pagedown")
        await wait_until(pilot, lambda: table.complete)
        assert table.record_count == RUN_COUNT
        assert shown_ids(table) == list(range(RUN_COUNT, 0, -1))
        await pilot.press("G")
        assert table.cursor_record["id"] == 1


async def test_history_sorts_loaded_runs(fixed_daemon: DaemonProcess) -> None:
    app = app_for(fixed_daemon, HistoryScreen)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await wait_loaded(pilot, HistoryScreen)
        await pilot.press("greater_than_sign", "greater_than_sign", "greater_than_sign")
        assert table.sort_column is not None
        assert table.sort_column.key == "duration"
        assert table.record_count == 200
        status = str(app.screen.query_one("#history-status").render())
        assert "loaded runs sorted by Duration, ascending" in status

        # The cursor stayed on the longest run, which is now the last row. Going past it loads the rest.
        assert table.cursor_position == 199
        assert table.cursor_record["id"] == BIG_RUN
        await pilot.press("down")
        await wait_until(pilot, lambda: table.complete)
        durations = [run["finished_at"] - run["started_at"] for run in table.records_shown()]
        assert len(durations) == RUN_COUNT
        assert durations == sorted(durations)
        assert table.cursor_record["id"] == BIG_RUN
        status = str(app.screen.query_one("#history-status").render())
        assert status == "250 runs · sorted by Duration, ascending"

        await pilot.press("r")
        assert table.sort_reverse
        assert table.record_at(0)["id"] == BIG_RUN


async def test_run_detail_sort_keeps_paging_manual(fixed_daemon: DaemonProcess) -> None:
    app = app_for(fixed_daemon, lambda: RunDetailScreen(BIG_RUN))
    async with app.run_test(size=(120, 40)) as pilot:
        table = await wait_loaded(pilot, RunDetailScreen)
        await pilot.press(*["greater_than_sign"] * 4)
        assert table.sort_column is not None
        assert table.sort_column.key == "email"
        await pilot.press("r", "G")
        await wait_until(pilot, lambda: table.record_count == 1000 and not table.fetching)
        await pilot.pause()
        assert table.record_count == 1000  # one page for one move past the end, not all of them
        emails = [item["email"] for item in table.records_shown()]
        assert emails == sorted(emails, reverse=True)
        status = str(app.screen.query_one("#run-status").render())
        assert status == ("1,000 items loaded · loaded items sorted by Email, descending; "
                          "moving past the last row loads more")


async def test_history_mouse_sorts_and_opens(fixed_daemon: DaemonProcess) -> None:
    app = app_for(fixed_daemon, HistoryScreen)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await wait_loaded(pilot, HistoryScreen)
        # Columns: a space, then Run (6), Started (16), Duration (8), each followed by a space.
        duration_x = 1 + 7 + 17 + 2
        await pilot.click(RunTable, offset=(duration_x, 0))
        assert table.sort_column is not None
        assert table.sort_column.key == "duration"
        assert not table.sort_reverse
        await pilot.click(RunTable, offset=(duration_x, 0))
        assert table.sort_reverse
        assert table.record_at(0)["id"] == BIG_RUN

        await pilot.click(RunTable, offset=(10, 3))
        assert table.cursor_position == 2
        assert isinstance(app.screen, HistoryScreen)
        await pilot.click(RunTable, offset=(10, 3))
        await wait_until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        assert app.screen.run_id == table.record_at(2)["id"]


async def test_history_export_writes_filtered_runs(
        fixed_daemon: DaemonProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = app_for(fixed_daemon, HistoryScreen)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot, HistoryScreen)
        await choose(pilot, "status-filter", ("partial", "failed", "blocked", "interrupted"))
        await wait_loaded(pilot, HistoryScreen)
        await pilot.press("e")
        await wait_until(pilot, lambda: (tmp_path / "edm-sync-runs.csv").exists()
                         and not app.screen._export_worker.is_running)

    rows = read_csv(tmp_path / "edm-sync-runs.csv")
    assert rows[0] == ["id", "trigger", "status", "started_at", "finished_at", "duration_seconds",
                       "allow_mass_changes", "succeeded", "failed", "error", "counts"]
    assert rows[1] == ["250", "manual", "partial", "2023-11-25T08:13:20+00:00", "2023-11-25T08:25:54+00:00",
                       "754", "0", "1164", "12", "",
                       ('{"add":{"failed":12,"succeeded":1152},"subscribe_magento":{"skipped":24},'
                        '"unsubscribe_iem":{"succeeded":12}}')]
    assert rows[2] == ["249", "schedule", "failed", "2023-11-25T07:13:20+00:00", "2023-11-25T07:14:17+00:00",
                       "57", "0", "0", "0",
                       "could not connect to MariaDB at db.example.test:3306: Connection refused", "{}"]
    assert [row[0] for row in rows[3:]] == ["248", "247"]


async def test_history_export_streams_every_page(
        fixed_daemon: DaemonProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "edm-sync-runs.csv").write_text("keep me\n")
    app = app_for(fixed_daemon, HistoryScreen)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await wait_loaded(pilot, HistoryScreen)
        assert table.record_count < RUN_COUNT
        await pilot.press("e")
        await wait_until(pilot, lambda: app.screen._export_worker is not None
                         and app.screen._export_worker.is_finished)

    assert (tmp_path / "edm-sync-runs.csv").read_text() == "keep me\n"
    ids = [int(row[0]) for row in read_csv(tmp_path / "edm-sync-runs-2.csv")[1:]]
    assert ids == list(range(RUN_COUNT, 0, -1))


# --- run detail ---


async def test_run_detail_pages_items(fixed_daemon: DaemonProcess) -> None:
    app = app_for(fixed_daemon, lambda: RunDetailScreen(BIG_RUN))
    async with app.run_test(size=(120, 40)) as pilot:
        table = await wait_loaded(pilot, RunDetailScreen)
        assert table.record_count == 500
        await pilot.press("G")
        await wait_until(pilot, lambda: table.record_count == 1000)
        await pilot.press("G")
        await wait_until(pilot, lambda: table.complete)
        await pilot.press("G")
        assert table.record_count == BIG_RUN_ITEMS
        assert table.cursor_record["email"] == "user1200@example.test"


async def test_run_detail_filters_outcome_and_action(fixed_daemon: DaemonProcess) -> None:
    app = app_for(fixed_daemon, lambda: RunDetailScreen(BIG_RUN))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot, RunDetailScreen)
        await choose(pilot, "outcome-filter", ("failed",))
        table = await wait_loaded(pilot, RunDetailScreen)
        assert table.complete
        assert {item["outcome"] for item in table.records_shown()} == {"failed"}
        assert shown_ids(table) == list(FAILED_ITEM_IDS)

        await choose(pilot, "outcome-filter", ("succeeded",))
        await choose(pilot, "action-filter", ("unsubscribe_iem",))
        table = await wait_loaded(pilot, RunDetailScreen)
        assert table.complete
        assert {(item["outcome"], item["action"]) for item in table.records_shown()} == {
            ("succeeded", "unsubscribe_iem")}
        assert table.record_count == 12

        await choose(pilot, "action-filter", ("subscribe_magento",))
        table = await wait_loaded(pilot, RunDetailScreen)
        assert table.record_count == 0
        status = str(app.screen.query_one("#run-status").render())
        assert status.startswith("No items match the filter")


async def test_run_detail_shows_full_error(fixed_daemon: DaemonProcess) -> None:
    app = app_for(fixed_daemon, lambda: RunDetailScreen(BIG_RUN))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot, RunDetailScreen)
        await choose(pilot, "outcome-filter", ("failed",))
        await wait_loaded(pilot, RunDetailScreen)
        await pilot.press("escape")  # closes the filter bar and returns to the grid
        assert isinstance(app.focused, RunTable)
        await pilot.press("down")
        detail = str(app.screen.query_one("#item-detail").render())
        assert "user0200@example.test" in detail
        assert f"Error: IemRejected: {LONG_ERROR}" in detail
        assert "Reason: new subscriber in Magento (new_in_magento)" in detail


async def test_run_detail_export_writes_filtered_items(
        fixed_daemon: DaemonProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = app_for(fixed_daemon, lambda: RunDetailScreen(BIG_RUN))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot, RunDetailScreen)
        await choose(pilot, "outcome-filter", ("failed",))
        await wait_loaded(pilot, RunDetailScreen)
        await pilot.press("e")
        await wait_until(pilot, lambda: app.screen._export_worker is not None
                         and app.screen._export_worker.is_finished)

    rows = read_csv(tmp_path / f"edm-sync-run-{BIG_RUN}.csv")
    assert rows[0] == ["id", "run_id", "email", "website_id", "list_id", "action", "direction", "reason",
                       "outcome", "error_class", "error_message", "attempts", "at"]
    assert rows[1] == ["100", "250", "user0100@example.test", "1", "1", "add", "to_iem", "new_in_magento",
                       "failed", "IemRejected", LONG_ERROR, "3", "2023-11-25T08:13:22+00:00"]
    assert [row[0] for row in rows[1:]] == [str(item_id) for item_id in FAILED_ITEM_IDS]


async def test_run_detail_export_streams_every_page(
        fixed_daemon: DaemonProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = app_for(fixed_daemon, lambda: RunDetailScreen(BIG_RUN))
    async with app.run_test(size=(120, 40)) as pilot:
        table = await wait_loaded(pilot, RunDetailScreen)
        assert table.record_count < BIG_RUN_ITEMS
        await pilot.press("e")
        await wait_until(pilot, lambda: app.screen._export_worker is not None
                         and app.screen._export_worker.is_finished)

    ids = [int(row[0]) for row in read_csv(tmp_path / f"edm-sync-run-{BIG_RUN}.csv")[1:]]
    assert ids == list(range(1, BIG_RUN_ITEMS + 1))


async def test_run_detail_missing_run(fixed_daemon: DaemonProcess) -> None:
    app = app_for(fixed_daemon, lambda: RunDetailScreen(9999))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        await wait_until(pilot, lambda: app.screen.table.failed is not None)
        header = str(app.screen.query_one("#run-header").render())
        assert header == "There is no run 9999 in the history."
        status = str(app.screen.query_one("#run-status").render())
        assert status == ("The daemon rejected the request for the items: there is no run 9999 (-32602). "
                          "ctrl+r tries again.")


async def test_history_recovers_after_daemon_restart(tmp_path: Path) -> None:
    write_fixed_history(tmp_path / "state")
    socket_path = tmp_path / "d.sock"
    notify = NotifyListener(tmp_path / "notify.sock")
    daemon = DaemonProcess(None, write_plain_config(tmp_path, socket_path), socket_path,  # type: ignore[arg-type]
                           notify, tmp_path / "daemon.log")
    daemon.start()
    try:
        app = app_for(daemon, HistoryScreen)
        async with app.run_test(size=(80, 24)) as pilot:
            table = await wait_loaded(pilot, HistoryScreen)
            daemon.stop()
            await wait_until(pilot, lambda: not app.daemon.connected)
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: table.failed is not None)
            status = str(app.screen.query_one("#history-status").render())
            assert status.startswith("Could not load the runs: ")
            assert status.endswith("Trying again every few seconds, or press ctrl+r.")

            daemon.start()
            await wait_until(pilot, lambda: table.record_count == 200, timeout=20)
            assert table.failed is None
    finally:
        daemon.stop()
        notify.close()


# --- a run the daemon recorded itself ---


def test_history_shows_real_run(bench: Bench) -> None:
    from tests.test_daemon import add_subscribers

    add_subscribers(bench, 12)
    socket_path = bench.tmp / "d.sock"
    notify = NotifyListener(bench.tmp / "notify.sock")
    daemon = DaemonProcess(bench, write_daemon_config(bench, socket_path), socket_path, notify,
                           bench.tmp / "daemon.log")
    daemon.start()
    try:
        run_id = daemon.call("run")["run_id"]
        daemon.wait_idle()

        async def go() -> None:
            app = app_for(daemon, HistoryScreen)
            async with app.run_test(size=(80, 24)) as pilot:
                table = await wait_loaded(pilot, HistoryScreen)
                assert shown_ids(table) == [run_id]
                assert table.cursor_record["status"] == "succeeded"
                await pilot.press("enter")
                items = await wait_loaded(pilot, RunDetailScreen)
                assert items.record_count == 12
                assert {item["action"] for item in items.records_shown()} == {"add"}
                assert {item["outcome"] for item in items.records_shown()} == {"succeeded"}

        asyncio.run(go())
    finally:
        daemon.stop()
        notify.close()


# --- snapshots ---


def _history_moved(pilot_keys: tuple[str, ...]) -> Callable[[Pilot], Any]:
    async def run_before(pilot: Pilot) -> None:
        await wait_loaded(pilot, HistoryScreen)
        await pilot.press(*pilot_keys)
        await wait_loaded(pilot, HistoryScreen)

    return run_before


async def _history_filter_open(pilot: Pilot) -> None:
    await wait_loaded(pilot, HistoryScreen)
    await choose(pilot, "status-filter", ("partial", "failed", "blocked", "interrupted"))
    await wait_loaded(pilot, HistoryScreen)


async def _failed_items(pilot: Pilot) -> None:
    await wait_loaded(pilot, RunDetailScreen)
    await choose(pilot, "outcome-filter", ("failed",))
    await wait_loaded(pilot, RunDetailScreen)
    await pilot.press("escape", "down")


async def _last_loaded_item(pilot: Pilot) -> None:
    table = await wait_loaded(pilot, RunDetailScreen)
    await pilot.press("G")
    await wait_until(pilot, lambda: table.record_count == 1000)
    await wait_loaded(pilot, RunDetailScreen)


def test_history_snapshot_80x24(fixed_daemon: DaemonProcess, snap_compare: Any) -> None:
    app = app_for(fixed_daemon, HistoryScreen)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_history_moved(("down", "down")))


def test_history_snapshot_filter_120x40(fixed_daemon: DaemonProcess, snap_compare: Any) -> None:
    app = app_for(fixed_daemon, HistoryScreen)
    assert snap_compare(app, terminal_size=(120, 40), run_before=_history_filter_open)


def test_history_snapshot_no_color(
        fixed_daemon: DaemonProcess, snap_compare: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = app_for(fixed_daemon, HistoryScreen)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_history_moved(("down", "down")))


def test_run_detail_snapshot_80x24(fixed_daemon: DaemonProcess, snap_compare: Any) -> None:
    app = app_for(fixed_daemon, lambda: RunDetailScreen(BIG_RUN))
    assert snap_compare(app, terminal_size=(80, 24), run_before=_failed_items)


def test_run_detail_snapshot_120x40(fixed_daemon: DaemonProcess, snap_compare: Any) -> None:
    app = app_for(fixed_daemon, lambda: RunDetailScreen(BIG_RUN))
    assert snap_compare(app, terminal_size=(120, 40), run_before=_last_loaded_item)
