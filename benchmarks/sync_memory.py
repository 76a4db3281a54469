"""Benchmark of a sync run's peak memory with a million subscribers on each side.

Builds a throwaway MariaDB database (`edm_test_<random>`) with N newsletter subscribers on
website 1. They are guests, so that the first run pushes no names. The IEM simulator runs as
a separate process, and its list 1 is seeded with the same N addresses in bulk through
`PUT /_sim/state`. Each step runs `edm-sync` as a separate process, and the script reads that
process's peak RSS (ru_maxrss from os.wait4) and wall time:

1. sync, both sides in step and no history yet (records N synced states, writes nothing);
2. plan, after a share of --change-share of the subscribers changed (half unsubscribed in
   Magento, half unsubscribed in IEM through the XML API);
3. sync of those changes (the steady state);
4. initial sync of --initial-subscribers Magento subscribers into an empty IEM list, with
   the simulator's latency at --latency-ms (a million single adds take too long on a
   development machine, so this step runs at a smaller N).

Prints each step's peak MB, wall time and ratio to the 300 MB target. --code-path runs the
steps with another copy of the `edm_tui` package first on PYTHONPATH, e.g. a copy of the
code before a change, to compare both in one run. The database is dropped at the end.

Usage: .venv/bin/python benchmarks/sync_memory.py [--subscribers N] [--initial-subscribers N]
           [--change-share X] [--latency-ms N] [--code-path DIR ...] [--skip-initial]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
import tomlkit
from sync_scale import at_least

from edm_tui.interspire.client import IemClient
from edm_tui.magento.schema import quoted_table_name
from tests import mariadb_support as mdb

TARGET_MB = 300.0
TOKEN = "bench-token-0123456789"
USERNAME = "bench"
SUBSCRIBED_AT = 1_700_000_000  # subscribe time on both sides
CHANGED_AT = 1_750_000_000  # time of the changes between the runs
INSERT_BATCH = 5000


@dataclass
class Measurement:
    label: str
    code: str
    peak_mb: float
    seconds: float
    exit_code: int
    planned: dict[str, int]  # decisions by action, from the command's JSON output
    identities: int


# --- Magento ---


def email_of(index: int) -> str:
    return f"subscriber{index:07d}@bench.example"


def fill_magento(database: str, count: int) -> None:
    """Insert `count` subscribed guest rows on store 1 with multi-row INSERTs."""
    connection = mdb.connect(database)
    subscribers = quoted_table_name("", "newsletter_subscriber")
    changed = mdb.utc_text(SUBSCRIBED_AT)
    try:
        with connection.cursor() as cursor:
            for start in range(1, count + 1, INSERT_BATCH):
                stop = min(count + 1, start + INSERT_BATCH)
                # PyMySQL turns executemany into one multi-row INSERT only when every value is a
                # placeholder.
                cursor.executemany(
                    f"INSERT INTO {subscribers} (subscriber_id, store_id, change_status_at, customer_id,"
                    " subscriber_email, subscriber_status) VALUES (%s, %s, %s, %s, %s, %s)",
                    [(i, 1, changed, 0, email_of(i), 1) for i in range(start, stop)],
                )
        connection.commit()  # one commit: a commit per batch waits for a log flush each time
    finally:
        connection.close()


def unsubscribe_in_magento(database: str, indexes: list[int]) -> None:
    connection = mdb.connect(database)
    table = quoted_table_name("", "newsletter_subscriber")
    try:
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table} SET subscriber_status = 3, change_status_at = %s WHERE subscriber_id = %s",
                [(mdb.utc_text(CHANGED_AT), i) for i in indexes],
            )
        connection.commit()
    finally:
        connection.close()


# --- the IEM simulator ---


def state_chunks(count: int) -> Iterator[bytes]:
    """Yield a simulator state document with list 1 holding `count` confirmed subscribers."""
    head = {
        "users": [{"userid": 1, "username": USERNAME, "token": TOKEN, "status": 1, "admin": True}],
        "lists": [{"listid": 1, "name": "Newsletter", "createdate": SUBSCRIBED_AT, "ownerid": 1}],
        "custom_fields": [
            {"fieldid": 2, "name": "First name", "fieldtype": "text", "required": False, "options": []},
            {"fieldid": 3, "name": "Last name", "fieldtype": "text", "required": False, "options": []},
        ],
        "next_subscriberid": count + 1,
    }
    yield (json.dumps(head)[:-1] + ', "subscribers": [').encode()
    batch = []
    for i in range(1, count + 1):
        row = {"subscriberid": i, "listid": 1, "emailaddress": email_of(i), "confirmed": True,
               "subscribedate": SUBSCRIBED_AT, "format": "h"}
        batch.append(json.dumps(row))
        if len(batch) == INSERT_BATCH:
            yield ((", " if i > INSERT_BATCH else "") + ", ".join(batch)).encode()
            batch = []
    if batch:
        yield ((", " if count > len(batch) else "") + ", ".join(batch)).encode()
    yield b"]}"


class Simulator:
    """The IEM simulator in a process of its own, on a free port of 127.0.0.1."""

    def __init__(self, latency_ms: float, max_concurrency: int | None = None) -> None:
        cap = ["--max-concurrency", str(max_concurrency)] if max_concurrency is not None else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edm_tui.interspire.simulator", "--port", "0", "--auth-delay", "0",
             "--latency-ms", str(latency_ms), *cap],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the simulator did not start: {line!r}")
        self.url = line.removeprefix("listening on ")
        self.base = self.url.rsplit("/", 1)[0]

    def seed(self, count: int) -> None:
        response = httpx.put(f"{self.base}/_sim/state", content=state_chunks(count), timeout=600)
        response.raise_for_status()

    def set_latency(self, latency_ms: float) -> None:
        response = httpx.post(f"{self.base}/_sim/config", json={"latency_ms": latency_ms}, timeout=30)
        response.raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


async def unsubscribe_in_iem(url: str, indexes: list[int]) -> None:
    client = IemClient(url, USERNAME, TOKEN, timeout=30, concurrency=8, retries=2, verify=False)
    try:
        semaphore = asyncio.Semaphore(8)

        async def one(index: int) -> None:
            async with semaphore:
                await client.unsubscribe(1, email_of(index))

        await asyncio.gather(*(one(i) for i in indexes))
    finally:
        await client.aclose()


# --- runs ---


def write_config(path: Path, database: str, sim_url: str, state_dir: Path) -> Path:
    params = mdb.adapter_params()
    data = {
        "interspire": {"url": sim_url, "username": USERNAME, "token": TOKEN, "list_id": 1,
                       "firstname_field_id": 2, "lastname_field_id": 3, "timeout": 60},
        "magento": {"host": params["host"], "port": params["port"], "user": params["user"],
                    "password": params["password"], "database": database},
        "sync": {},
        "storage": {"state_dir": str(state_dir)},
    }
    path.write_text(tomlkit.dumps(data), encoding="utf-8")
    path.chmod(0o600)
    return path


def run_edm(label: str, code: str, code_path: Path, config: Path, *command: str) -> Measurement:
    """Run one edm-sync command as a child process and return its peak RSS and wall time."""
    env = dict(os.environ, PYTHONPATH=str(code_path))
    started = time.monotonic()
    with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "edm_tui.cli", "--config", str(config), *command, "--json"],
            env=env, cwd=code_path, stdout=output, stderr=errors,
        )
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        output.seek(0)
        errors.seek(0)
        text = output.read().decode(errors="replace")
        if process.returncode not in (0, 1):
            print(errors.read().decode(errors="replace")[-2000:], file=sys.stderr)
    try:
        summary = json.loads(text).get("summary", {})
    except json.JSONDecodeError:
        summary = {}
    return Measurement(label, code, usage.ru_maxrss / 1024, seconds, process.returncode,
                       summary.get("planned", {}), summary.get("identities", 0))


def steady_steps(code: str, code_path: Path, count: int, change_share: float, tmp: Path) -> list[Measurement]:
    """Steps 1 to 3 on a fresh database and simulator."""
    results = []
    database = mdb.create_database()
    simulator = Simulator(latency_ms=0)
    try:
        started = time.monotonic()
        fill_magento(database, count)
        simulator.seed(count)
        print(f"  [{code}] seeded {count} subscribers on both sides in {time.monotonic() - started:.0f} s",
              flush=True)
        config = write_config(tmp / f"{code}-steady.toml", database, simulator.url, tmp / f"{code}-steady-state")

        results.append(run_edm("sync, in step, no history", code, code_path, config, "sync"))
        print_measurement(results[-1])

        changes = max(2, int(count * change_share))
        step = max(1, count // changes)
        changed = list(range(step, count + 1, step))[:changes]
        unsubscribe_in_magento(database, changed[0::2])
        asyncio.run(unsubscribe_in_iem(simulator.url, changed[1::2]))

        results.append(run_edm(f"plan, {changes} changes", code, code_path, config, "plan"))
        print_measurement(results[-1])
        results.append(run_edm(f"sync, {changes} changes", code, code_path, config, "sync"))
        print_measurement(results[-1])
    finally:
        simulator.stop()
        mdb.drop_database(database)
    return results


def initial_step(code: str, code_path: Path, count: int, latency_ms: float, tmp: Path) -> Measurement:
    """Step 4: every Magento subscriber is added to an empty IEM list."""
    print(f"  [{code}] initial sync at {count} subscribers, not the full size: IEM adds one subscriber "
          "per request, so a million adds take hours", flush=True)
    database = mdb.create_database()
    simulator = Simulator(latency_ms=latency_ms)
    try:
        fill_magento(database, count)
        simulator.seed(0)
        config = write_config(tmp / f"{code}-initial.toml", database, simulator.url, tmp / f"{code}-initial-state")
        result = run_edm(f"initial sync, {count} adds, latency {latency_ms:g} ms", code, code_path, config,
                         "sync", "--allow-mass-changes")
        print_measurement(result)
        return result
    finally:
        simulator.stop()
        mdb.drop_database(database)


def print_measurement(m: Measurement) -> None:
    planned = ", ".join(f"{action} {n}" for action, n in sorted(m.planned.items())) or "no writes"
    print(f"  {m.code:8} {m.label:42} peak {m.peak_mb:7.1f} MB  {m.seconds:7.1f} s  "
          f"{m.peak_mb / TARGET_MB:5.2f} x target  exit {m.exit_code}  "
          f"({m.identities} identities; {planned})", flush=True)


def non_negative_milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a latency; use 0 or more milliseconds")
    return value


def share(text: str) -> float:
    """Parse a share of the subscribers, more than 0 and at most 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share; use a number above 0 and at most 1, e.g. 0.001")
    return value


def main() -> int:
    # SIGTERM ends the script through SystemExit, so the database and the simulator are cleaned up.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=at_least(100), default=1_000_000,
                        help="subscribers on each side for the plan and steady-state steps (default 1000000)")
    parser.add_argument("--initial-subscribers", type=at_least(1), default=20_000,
                        help="Magento subscribers of the initial sync into an empty list (default 20000)")
    parser.add_argument("--change-share", type=share, default=0.001,
                        help="share of subscribers changed before the plan and the steady-state sync "
                             "(default 0.001)")
    parser.add_argument("--latency-ms", type=non_negative_milliseconds, default=1.0,
                        help="simulator delay per request during the initial sync, in ms (default 1)")
    parser.add_argument("--code-path", type=Path, action="append", default=[],
                        help="a folder containing another edm_tui package to measure as well; repeatable")
    parser.add_argument("--skip-initial", action="store_true", help="leave out the initial sync step")
    parser.add_argument("--skip-current", action="store_true",
                        help="measure only the --code-path copies, not this checkout")
    args = parser.parse_args()

    codes = [("current", ROOT)] + [(f"other{i + 1}", path.resolve()) for i, path in enumerate(args.code_path)]
    if args.skip_current:
        codes = codes[1:]
    for name, path in codes:
        if name == "current":
            continue
        print(f"{name}: edm_tui from {path}")
    print(f"target: {TARGET_MB:g} MB peak RSS of the edm-sync process; {os.cpu_count()} CPUs")

    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="edm-sync-memory-") as tmp:
        for name, path in codes:
            results += steady_steps(name, path, args.subscribers, args.change_share, Path(tmp))
            if not args.skip_initial:
                results.append(initial_step(name, path, args.initial_subscribers, args.latency_ms, Path(tmp)))

    print("\nsummary")
    for m in results:
        print_measurement(m)
    if len(codes) > 1 and codes[0][0] == "current":
        print("\nratio current / other (peak memory, wall time)")
        current = {m.label: m for m in results if m.code == "current"}
        for m in results:
            if m.code != "current" and m.label in current:
                c = current[m.label]
                print(f"  {m.code:8} {m.label:42} memory {c.peak_mb / m.peak_mb:5.2f}  "
                      f"time {c.seconds / m.seconds:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
