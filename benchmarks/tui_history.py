"""Benchmark of the history screens on a large history: first pages and scrolling, headless.

Builds a history of 10 000 runs whose newest run has 200 000 items (written with
HistoryStore in bulk), starts `edm-sync daemon` on it, and drives HistoryScreen and
RunDetailScreen with Textual's run_test at 120×40:

* first page: from pushing the screen to the first data row being drawn;
* scrolling: page down N times, each time until the moved cursor is drawn, including the
  pages fetched from the daemon on the way;
* scrolling again once --deep-rows items are loaded, and the process's peak memory;
* filtered first pages that make SQLite scan: rare statuses and outcomes, a search by email.

Usage: .venv/bin/python benchmarks/tui_history.py [--runs N] [--items N] [--presses N]
                                                  [--deep-rows N] [--compare-datatable]

Prints the figures and their ratio to the 200 ms target. docs/benchmarks.md records them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual.app import App, ComposeResult
from textual.events import Key
from textual.pilot import Pilot
from textual.screen import Screen

from edm_tui.client import DaemonClient, DaemonUnavailable
from edm_tui.connection import DaemonConnection
from edm_tui.daemon.history import HistoryStore
from edm_tui.screens.history import HistoryScreen, RunFilter
from edm_tui.screens.run_detail import ItemFilter, RunDetailScreen
from edm_tui.widgets.record_grid import RecordGrid
from edm_tui.widgets.run_table import RunTable

TARGET_MS = 200.0
SIZE = (120, 40)
T0 = 1_700_000_000
STATUS_CYCLE = ["succeeded"] * 17 + ["partial", "failed", "blocked", "interrupted", "cancelled"]
TRIGGER_CYCLE = ["schedule"] * 8 + ["manual", "cli"]


# --- the history ---


def build_history(state_dir: Path, run_count: int, item_count: int) -> tuple[int, str]:
    """Write the history and return the id of the big run and an address that only a few runs have."""
    store = HistoryStore(state_dir / "history.sqlite3")
    big_run = run_count
    rare_email = "rare.person@example.test"

    items = []
    for n in range(1, item_count + 1):
        if n % 1000 == 0:
            items.append((big_run, f"user{n:06d}@example.test", 1, 1, "add", "to_iem", "new_in_magento",
                          "failed", "IemRejected", "IEM rejected the address: the email address is invalid",
                          3, T0 + big_run * 60))
        elif n % 7 == 0:
            items.append((big_run, f"user{n:06d}@example.test", 1, 1, "unsubscribe_iem", "to_iem",
                          "magento_changed", "succeeded", None, None, 1, T0 + big_run * 60))
        else:
            items.append((big_run, f"user{n:06d}@example.test", 1, 1, "add", "to_iem", "new_in_magento",
                          "succeeded", None, None, 1, T0 + big_run * 60))
    counts: dict[str, dict[str, int]] = {}
    for item in items:
        by_outcome = counts.setdefault(item[4], {})
        by_outcome[item[7]] = by_outcome.get(item[7], 0) + 1

    runs = []
    for run_id in range(1, run_count + 1):
        started = T0 + run_id * 60
        status = "partial" if run_id == big_run else STATUS_CYCLE[run_id % len(STATUS_CYCLE)]
        run_counts = counts if run_id == big_run else {"add": {"succeeded": run_id % 13}}
        error = "could not connect to MariaDB: Connection refused" if status == "failed" else None
        runs.append((run_id, TRIGGER_CYCLE[run_id % len(TRIGGER_CYCLE)], status, started, started + 5 + run_id % 40,
                     0, json.dumps(run_counts), "{}", error))
    small_items = [(run_id, rare_email if run_id % 2500 == 0 else f"small{run_id}@example.test", 1, 1, "add",
                    "to_iem", "new_in_magento", "succeeded", None, None, 1, T0 + run_id * 60)
                   for run_id in range(1, run_count)]

    store.db.execute("BEGIN")
    store.db.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", runs)
    store.db.executemany(
        "INSERT INTO items (run_id, email, website_id, list_id, action, direction, reason, outcome, "
        "error_class, error_message, attempts, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        small_items + items)
    store.db.execute("COMMIT")
    store.close()
    return big_run, rare_email


def start_daemon(directory: Path) -> subprocess.Popen:
    socket_path = directory / "d.sock"
    config = directory / "config.toml"
    config.write_text(
        '[interspire]\nurl = "http://127.0.0.1:9/xml.php"\nusername = "admin"\ntoken = "secret"\nlist_id = 1\n'
        '[magento]\ndatabase = "shop"\n'
        f'[storage]\nstate_dir = "{directory / "state"}"\n'
        '[schedule]\nenabled = false\n'
        f'[daemon]\nsocket = "{socket_path}"\n',
        encoding="utf-8")
    config.chmod(0o600)
    env = {key: value for key, value in os.environ.items() if key not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    with open(directory / "daemon.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "edm_tui.cli", "--config", str(config), "daemon"],
                                   stdout=subprocess.DEVNULL, stderr=log, env=env)

    async def wait_ready() -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                client = await DaemonClient.connect(socket_path)
            except DaemonUnavailable:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                await asyncio.sleep(0.05)
                continue
            await client.close()
            return

    asyncio.run(wait_ready())
    return process


# --- measuring ---


class DrawClock:
    """Records when RecordGrid draws data rows, by wrapping its render_line."""

    def __init__(self) -> None:
        self.row_draws: list[float] = []
        original = RecordGrid.render_line

        def render_line(grid: RecordGrid, y: int) -> Any:
            strip = original(grid, y)
            if y > 0 and grid.record_count:
                self.row_draws.append(time.perf_counter())
            return strip

        RecordGrid.render_line = render_line  # type: ignore[method-assign]

    def drawn_since(self, start: float) -> bool:
        return bool(self.row_draws) and self.row_draws[-1] >= start

    def first_after(self, start: float) -> float:
        return next(stamp for stamp in self.row_draws if stamp >= start)


class BenchApp(App[None]):
    def __init__(self, socket_path: Path) -> None:
        super().__init__()
        self.daemon = DaemonConnection(socket_path, on_event=lambda topic, data: None,
                                       on_state=lambda state, error: None)

    def compose(self) -> ComposeResult:
        return []

    def on_mount(self) -> None:
        self.run_worker(self.daemon.run(), group="daemon")

    async def on_unmount(self) -> None:
        await self.daemon.close()


async def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.0005)


async def first_page_ms(pilot: Pilot, clock: DrawClock, screen: Screen) -> float:
    """Push `screen` and return the milliseconds until its grid draws its first data row."""
    start = time.perf_counter()
    await pilot.app.push_screen(screen)
    await until(lambda: any(stamp >= start for stamp in clock.row_draws))
    return (clock.first_after(start) - start) * 1000


async def page_down_ms(pilot: Pilot, clock: DrawClock, table: RunTable, presses: int) -> tuple[list[float], int]:
    """Press page down `presses` times and return each press's time to the redrawn cursor, and the rows moved.

    A press whose cursor is still at the last loaded row waits there for the page being fetched,
    so fetching shows in these times.
    """
    app = pilot.app
    times = []
    start_position = table.cursor_position
    for _ in range(presses):
        before = table.cursor_position
        start = last_sent = time.perf_counter()
        app._driver.send_message(Key("pagedown", None))  # type: ignore[union-attr]
        await until(lambda before=before: table.cursor_position != before or table.complete)
        if table.cursor_position == before:
            break
        target = before + table.page_height
        while table.cursor_position < target and not table.complete:
            # The cursor stopped at the end of the loaded rows, so wait for the next page and press again.
            await until(lambda: table.record_count > table.cursor_position + 1 or table.complete)
            moved_from = table.cursor_position
            last_sent = time.perf_counter()
            app._driver.send_message(Key("pagedown", None))  # type: ignore[union-attr]
            await until(lambda moved_from=moved_from: table.cursor_position != moved_from or table.complete)
        await until(lambda last_sent=last_sent: clock.drawn_since(last_sent))
        times.append((clock.first_after(last_sent) - start) * 1000)
    return times, table.cursor_position - start_position


async def reload_ms(clock: DrawClock, table: RunTable, reload: Callable[[], None]) -> float:
    """Call `reload` and return the milliseconds until the first page is drawn (or found empty)."""
    start = time.perf_counter()
    reload()
    await until(lambda: not table.fetching and (clock.drawn_since(start) or table.record_count == 0))
    if table.record_count == 0:
        return (time.perf_counter() - start) * 1000
    return (clock.first_after(start) - start) * 1000


def ratio(ms: float) -> str:
    return f"{ms:7.1f} ms  ({ms / TARGET_MS:.2f} × target)"


async def measure(socket_path: Path, big_run: int, rare_email: str, presses: int,
                  deep_rows: int) -> dict[str, Any]:
    clock = DrawClock()
    results: dict[str, Any] = {}
    app = BenchApp(socket_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.daemon.connected, timeout=10)

        history = HistoryScreen()
        results["history first page"] = await first_page_ms(pilot, clock, history)
        table = history.query_one(RunTable)
        await until(lambda: not table.fetching)
        times, moved = await page_down_ms(pilot, clock, table, presses)
        results["history page down"] = (times, moved, table.record_count)

        history.run_filter = RunFilter(statuses=("cancelled",))
        results["history filtered (cancelled)"] = await reload_ms(clock, table, history.reload)
        history.run_filter = RunFilter(email=rare_email)
        results["history email search"] = await reload_ms(clock, table, history.reload)
        results["history email search, runs found"] = table.record_count

        detail = RunDetailScreen(big_run)
        results["run detail first page"] = await first_page_ms(pilot, clock, detail)
        items = detail.query_one(RunTable)
        await until(lambda: not items.fetching)
        times, moved = await page_down_ms(pilot, clock, items, presses)
        results["run detail page down"] = (times, moved, items.record_count)

        # Scroll again with many rows loaded, where a page down should cost the same.
        while items.record_count < deep_rows and not items.complete:
            loaded = items.record_count
            items.action_last()
            await until(lambda loaded=loaded: items.record_count > loaded or items.complete)
        await until(lambda: not items.fetching)
        items.move_cursor(items.record_count // 2)
        await asyncio.sleep(0.05)
        times, moved = await page_down_ms(pilot, clock, items, presses // 3)
        results["run detail page down, deep"] = (times, moved, items.record_count)
        results["peak memory of the process (MB)"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

        detail.item_filter = ItemFilter(outcomes=("failed",))
        results["run detail filtered (failed)"] = await reload_ms(clock, items, detail._reload_items)
    return results


async def daemon_page_ms(socket_path: Path, big_run: int) -> dict[str, float]:
    """Time the bare socket calls behind the first pages, without the dashboard."""
    client = await DaemonClient.connect(socket_path)
    timings = {}
    try:
        for label, method, params in [
            ("runs, 200", "runs", {"limit": 200}),
            ("runs, 200, status cancelled", "runs", {"limit": 200, "status": ["cancelled"]}),
            ("run_items, 500", "run_items", {"run_id": big_run, "limit": 500}),
            ("run_items, 500, after 150 000", "run_items", {"run_id": big_run, "limit": 500, "after_id": 150_000}),
            ("run_items, 500, outcome failed", "run_items", {"run_id": big_run, "limit": 500, "outcome": ["failed"]}),
        ]:
            samples = []
            for _ in range(5):
                start = time.perf_counter()
                await client.call(method, **params)
                samples.append((time.perf_counter() - start) * 1000)
            timings[label] = statistics.median(samples)
    finally:
        await client.close()
    return timings


# --- the DataTable comparison ---


async def datatable_ms(item_count: int, page: int = 1000) -> dict[str, float]:
    """Load `item_count` rows into Textual's DataTable a page at a time, as a grid of runs' items would."""
    from rich.text import Text
    from textual.widgets import DataTable

    class TableApp(App[None]):
        def compose(self) -> ComposeResult:
            yield DataTable(cursor_type="row")

    app = TableApp()
    result: dict[str, float] = {}
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(DataTable)
        for key, width in [("id", 8), ("outcome", 13), ("action", 21), ("email", 28), ("at", 8)]:
            table.add_column(key, width=width, key=key)
        for start in range(0, item_count, page):
            began = time.perf_counter()
            table.add_rows((Text(str(n)), Text("✓ succeeded"), Text("added to IEM"),
                            Text(f"user{n:06d}@example.test"), Text("08:13:22"))
                           for n in range(start, min(start + page, item_count)))
            await pilot.pause()
            if start + page >= item_count:
                result["add the last page"] = (time.perf_counter() - began) * 1000
        table.focus()
        table.move_cursor(row=item_count // 2)
        await pilot.pause()
        began = time.perf_counter()
        for _ in range(10):
            table.action_page_down()
            await pilot.pause()
        result["page down (average of 10)"] = (time.perf_counter() - began) * 100
    return result


# --- main ---


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the history (default 10000)")
    parser.add_argument("--items", type=int, default=200_000, help="items of the newest run (default 200000)")
    parser.add_argument("--presses", type=int, default=60, help="page downs per grid (default 60)")
    parser.add_argument("--deep-rows", type=int, default=100_000,
                        help="rows to load into the items grid before scrolling it again (default 100000)")
    parser.add_argument("--compare-datatable", action="store_true",
                        help="also time Textual's DataTable holding the same number of rows")
    args = parser.parse_args()
    os.environ["TZ"] = "UTC"
    time.tzset()

    with tempfile.TemporaryDirectory(prefix="edm-tui-bench-") as name:
        directory = Path(name)
        began = time.perf_counter()
        big_run, rare_email = build_history(directory / "state", args.runs, args.items)
        print(f"history: {args.runs} runs, run {big_run} with {args.items} items, "
              f"written in {time.perf_counter() - began:.1f} s")
        daemon = start_daemon(directory)
        try:
            socket_path = directory / "d.sock"
            for label, ms in asyncio.run(daemon_page_ms(socket_path, big_run)).items():
                print(f"daemon call {label:34} {ms:7.1f} ms (median of 5)")
            results = asyncio.run(measure(socket_path, big_run, rare_email, args.presses, args.deep_rows))
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)

    print(f"terminal {SIZE[0]}×{SIZE[1]}, target {TARGET_MS:.0f} ms")
    for label, value in results.items():
        if isinstance(value, int):
            print(f"{label:34} {value}")
        elif isinstance(value, tuple):
            times, moved, loaded = value
            print(f"{label:34} {len(times)} presses, {moved} rows moved, {loaded} rows loaded")
            print(f"{'':34} median {ratio(statistics.median(times))}")
            print(f"{'':34} max    {ratio(max(times))}")
            print(f"{'':34} total  {sum(times):7.1f} ms")
        else:
            print(f"{label:34} {ratio(value)}")

    if args.compare_datatable:
        for label, ms in asyncio.run(datatable_ms(args.items)).items():
            print(f"DataTable with {args.items} rows: {label:26} {ratio(ms)}")


if __name__ == "__main__":
    main()
