"""Benchmark of edm-sync at scale against the IEM simulator: printed figures, not a test.

IEM has no bulk API: every new subscriber is one AddSubscriberToList call. When IEM responds
to each call after L ms and serves C calls at once, an initial sync of N subscribers cannot
take less than N × L / C. This script builds a throwaway MariaDB database with N Magento
subscribers (dropped at the end), starts the simulator as a separate process with
`--latency-ms L --max-concurrency C`, and measures with the real `edm-sync` command line:

* the simulator's own capacity: how many of C simultaneous calls it serves at once, and the
  calls per second that C workers of a plain httpx client get, against C / L;
* the initial sync into an empty list: wall time, IEM calls, ratio to N × L / C;
* a one-call-at-a-time client on the same simulator, timed on a sample and scaled to N;
* syncs with no change, and with 0.1 % and 1 % of the subscribers unsubscribed on each side
  (Magento with SQL, IEM through its XML API): IEM calls and wall time;
* `edm-sync plan` on the synced data;
* an adaptive run (in process, so that the client's limit can be sampled): a second data set
  of M subscribers is synced while the simulator slows down and fails a share of calls
  for a stretch in the middle; calls per second and the client's concurrency limit are
  sampled and plotted to docs/performance-calls.png (needs the `bench` extra: matplotlib).

Usage: .venv/bin/python benchmarks/sync_scale.py [--n N] [--latency-ms L] [--cap C] [--quick]

Every figure is printed on one line with its target and PASS, FAIL or INFO (no target).
docs/performance.md records a run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import pymysql
import tomlkit

from edm_tui.config import parse_config
from edm_tui.daemon.runner import ProgressEvent, SyncRun
from edm_tui.interspire.client import IemClient
from edm_tui.magento.schema import render_schema_statements

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PLOT = REPO / "docs" / "performance-calls.png"
USERNAME = "bench"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
MAIN_LIST = 1
ADAPTIVE_LIST = 2
BASELINE_LIST = 9
ADAPTIVE_PREFIX = "adaptive_"
DATABASE_PREFIX = "edm_bench_"
CHANGED_AT = "2024-01-01 00:00:00"  # change_status_at of the generated rows
INSERT_BATCH = 5000  # rows per multi-row INSERT

# Figure names, in print order; tests/test_benchmarks_smoke.py checks that each is printed.
FIGURES = (
    "simulator concurrency",
    "simulator throughput, plain client",
    "initial sync wall time",
    "initial sync IEM calls",
    "initial sync CPU time of edm-sync",
    "initial sync / bound",
    "one-at-a-time client, scaled",
    "edm-sync speedup over one-at-a-time",
    "no changes: IEM calls",
    "no changes: wall time / initial",
    "0.1% changes: IEM calls",
    "0.1% changes: wall time",
    "0.1% changes: both sides agree",
    "1% changes: IEM calls",
    "1% changes: wall time",
    "1% changes: both sides agree",
    "plan wall time",
    "adaptive: lowest limit in the stretch",
    "adaptive: limit after recovery",
    "adaptive: calls/s after / before",
    "adaptive: all writes landed",
    "adaptive: plot",
)


# --- printing ---


class Report:
    """Prints one line per figure and counts the verdicts."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def figure(self, name: str, value: str, target: str | None = None, ok: bool | None = None) -> None:
        assert name in FIGURES, name
        if ok is None:
            verdict = "INFO"
        elif ok:
            verdict = "PASS"
            self.passed += 1
        else:
            verdict = "FAIL"
            self.failed += 1
        print(f"{name:<40} {value:<34} target: {target or '-':<22} {verdict}", flush=True)


def say(message: str) -> None:
    print(f"# {message}", flush=True)


# --- Magento data ---


@dataclass
class Mysql:
    host: str
    port: int
    user: str
    password: str

    def connect(self, database: str | None = None) -> pymysql.Connection:
        return pymysql.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               database=database, charset="utf8mb4", autocommit=True)


@contextmanager
def throwaway_database(mysql: Mysql) -> Iterator[str]:
    """Create a database with the Magento schema under two prefixes; drop it at the end."""
    name = DATABASE_PREFIX + secrets.token_hex(6)
    connection = mysql.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    finally:
        connection.close()
    try:
        for prefix in ("", ADAPTIVE_PREFIX):
            loader = mysql.connect(name)
            try:
                with loader.cursor() as cursor:
                    for statement in render_schema_statements(prefix):
                        cursor.execute(statement)
            finally:
                loader.close()
        yield name
    finally:
        connection = mysql.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            connection.close()


def insert_subscribers(mysql: Mysql, database: str, prefix: str, count: int, email_stem: str) -> None:
    """Insert `count` subscribed rows on website 1: even numbers customers with names, odd guests.

    PyMySQL's executemany turns each batch into one multi-row INSERT statement.
    """
    connection = mysql.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET time_zone = '+00:00'")
            for start in range(0, count, INSERT_BATCH):
                numbers = range(start, min(count, start + INSERT_BATCH))
                customers = [(n + 1, 1, f"{email_stem}{n:07d}@example.test", f"First{n}", f"Last{n}")
                             for n in numbers if n % 2 == 0]
                cursor.executemany(
                    f"INSERT INTO `{prefix}customer_entity` (entity_id, website_id, email, firstname, lastname) "
                    "VALUES (%s, %s, %s, %s, %s)", customers)
                rows = [(1 + n % 2, CHANGED_AT, n + 1 if n % 2 == 0 else 0, f"{email_stem}{n:07d}@example.test", 1)
                        for n in numbers]
                cursor.executemany(
                    f"INSERT INTO `{prefix}newsletter_subscriber` "
                    "(store_id, change_status_at, customer_id, subscriber_email, subscriber_status) "
                    "VALUES (%s, %s, %s, %s, %s)", rows)
    finally:
        connection.close()


def unsubscribe_in_magento(mysql: Mysql, database: str, subscriber_ids: list[int]) -> None:
    connection = mysql.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET time_zone = '+00:00'")
            for start in range(0, len(subscriber_ids), INSERT_BATCH):
                chunk = subscriber_ids[start:start + INSERT_BATCH]
                marks = ", ".join(["%s"] * len(chunk))
                cursor.execute(
                    "UPDATE newsletter_subscriber SET subscriber_status = 3, change_status_at = UTC_TIMESTAMP() "
                    f"WHERE subscriber_id IN ({marks})", chunk)
    finally:
        connection.close()


def magento_unsubscribed(mysql: Mysql, database: str) -> int:
    connection = mysql.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM newsletter_subscriber WHERE subscriber_status = 3")
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


# --- the simulator process ---


class SimulatorProcess:
    """`python -m edm_tui.interspire.simulator` on a free port, state in memory only."""

    def __init__(self, latency_ms: float, cap: int, log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edm_tui.interspire.simulator", "--port", "0", "--auth-delay", "0",
             "--latency-ms", str(latency_ms), "--max-concurrency", str(cap),
             "--username", USERNAME, "--token", TOKEN,
             "--lists", f"{MAIN_LIST}:Newsletter,{ADAPTIVE_LIST}:Adaptive,{BASELINE_LIST}:Baseline",
             "--custom-fields", "2:First name,3:Last name"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
        )
        self.base = self._wait_for_port()
        self.url = self.base + "/xml.php"
        self.http = httpx.Client(base_url=self.base, timeout=30)

    def _wait_for_port(self) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for line in self.log_path.read_text().splitlines():
                if line.startswith("listening on "):
                    return line.removeprefix("listening on ").removesuffix("/xml.php")
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()
        log_tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-5:])
        raise RuntimeError(f"the simulator did not start; the end of its log:\n{log_tail}")

    def stats(self) -> dict[str, Any]:
        return self.http.get("/_sim/stats").raise_for_status().json()

    def reset_stats(self) -> None:
        self.http.post("/_sim/reset-stats").raise_for_status()

    def configure(self, **values: Any) -> None:
        self.http.post("/_sim/config", json=values).raise_for_status()

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


# --- edm-sync ---


def write_config(path: Path, *, sim_url: str, mysql: Mysql, database: str, prefix: str, list_id: int,
                 cap: int, state_dir: Path) -> Path:
    data = config_data(sim_url=sim_url, mysql=mysql, database=database, prefix=prefix, list_id=list_id,
                       cap=cap, state_dir=state_dir)
    path.write_text(tomlkit.dumps(data), encoding="utf-8")
    path.chmod(0o600)
    return path


def config_data(*, sim_url: str, mysql: Mysql, database: str, prefix: str, list_id: int, cap: int,
                state_dir: Path) -> dict[str, Any]:
    return {
        # concurrency is the client's maximum: the adaptive limit moves between 1 and it.
        "interspire": {"url": sim_url, "username": USERNAME, "token": TOKEN, "list_id": list_id,
                       "firstname_field_id": 2, "lastname_field_id": 3, "concurrency": cap,
                       "timeout": 30, "retries": 6},
        "magento": {"host": mysql.host, "port": mysql.port, "user": mysql.user, "password": mysql.password,
                    "database": database, "table_prefix": prefix},
        "sync": {"import_new_subscribers": True},
        "storage": {"state_dir": str(state_dir)},
    }


def edm_sync_command() -> list[str]:
    script = Path(sys.executable).parent / "edm-sync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "edm_tui.cli"]


@dataclass
class CommandRun:
    wall_s: float
    cpu_s: float  # user + system time of the edm-sync process
    output: dict[str, Any] | None


def run_edm_sync(config_path: Path, *arguments: str) -> CommandRun:
    """Run `edm-sync --config PATH ARGUMENTS --json`; return its wall and CPU time and its JSON output."""
    command = [*edm_sync_command(), "--config", str(config_path), *arguments, "--json"]
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    completed = subprocess.run(command, check=False, capture_output=True, text=True, cwd=REPO,
                               stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime - usage_before.ru_utime + usage.ru_stime - usage_before.ru_stime
    output = _json_output(completed, arguments)
    return CommandRun(elapsed, cpu, output)


def _json_output(completed: subprocess.CompletedProcess[str], arguments: tuple[str, ...]) -> dict[str, Any] | None:
    if completed.returncode not in (0, 1):
        say(f"{' '.join(arguments)} exited with {completed.returncode}: {completed.stderr.strip()[-2000:]}")
        return None
    try:
        return json.loads(completed.stdout)
    except json.JSONDecodeError:
        say(f"{' '.join(arguments)} printed no JSON: {completed.stdout[-500:]!r}")
        return None


def sync_once(sim: SimulatorProcess, config_path: Path) -> tuple[CommandRun, int]:
    """Run one `edm-sync sync`; return the run and the IEM calls it made."""
    sim.reset_stats()
    run = run_edm_sync(config_path, "sync")
    calls = int(sim.stats()["requests"])
    if run.output is not None and run.output.get("status") != "succeeded":
        say(f"sync finished with status {run.output.get('status')}: {run.output.get('error')}")
    return run, calls


def say_load() -> None:
    one, five, _fifteen = os.getloadavg()
    say(f"load average now: {one:.2f} (1 min), {five:.2f} (5 min)")


# --- measurements ---


TOKEN_CHECK_BODY = (f"<xmlrequest><username>{USERNAME}</username><usertoken>{TOKEN}</usertoken>"
                    "<requesttype>authentication</requesttype><requestmethod>xmlapitest</requestmethod>"
                    "<details> </details></xmlrequest>").encode()


async def measure_concurrency(sim: SimulatorProcess, cap: int, latency_ms: float, probe_latency_ms: float) -> float:
    """Return how many of `cap` simultaneous calls the simulator serves at once.

    The latency is raised to `probe_latency_ms` for the probe, so that the client's own CPU
    time per call is small against it: `cap` calls served at once take one latency, and
    served one by one `cap` latencies. The best of 5 batches counts.
    """
    sim.configure(latency_ms=probe_latency_ms)
    limits = httpx.Limits(max_connections=cap, max_keepalive_connections=cap)
    try:
        async with httpx.AsyncClient(limits=limits, timeout=30) as http:
            async def call() -> None:
                response = await http.post(sim.url, content=TOKEN_CHECK_BODY, headers={"Content-Type": "text/xml"})
                response.raise_for_status()

            await asyncio.gather(*(call() for _ in range(cap)))  # opens the connections
            best = math.inf
            for _ in range(5):
                started = time.monotonic()
                await asyncio.gather(*(call() for _ in range(cap)))
                best = min(best, time.monotonic() - started)
    finally:
        sim.configure(latency_ms=latency_ms)
    return cap * probe_latency_ms / 1000 / best


async def measure_throughput(sim: SimulatorProcess, cap: int, seconds: float) -> float:
    """Send cheap authentication checks from `cap` workers for `seconds`; return calls per second."""
    body = TOKEN_CHECK_BODY
    limits = httpx.Limits(max_connections=cap, max_keepalive_connections=cap)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        deadline = time.monotonic() + seconds
        calls = 0

        async def worker() -> None:
            nonlocal calls
            while time.monotonic() < deadline:
                response = await http.post(sim.url, content=body, headers={"Content-Type": "text/xml"})
                response.raise_for_status()
                calls += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(cap)))
        return calls / (time.monotonic() - started)


async def measure_one_at_a_time(sim: SimulatorProcess, sample: int) -> float:
    """Add `sample` subscribers one after another with a concurrency of 1; return seconds per call."""
    async with IemClient(sim.url, USERNAME, TOKEN, concurrency=1, timeout=30) as client:
        started = time.monotonic()
        for n in range(sample):
            await client.add_subscriber(BASELINE_LIST, f"baseline{n:07d}@example.test",
                                        add_to_autoresponders=False, custom_fields={2: "First", 3: "Last"})
        return (time.monotonic() - started) / sample


async def unsubscribe_in_iem(sim: SimulatorProcess, emails: list[str], cap: int) -> None:
    async with IemClient(sim.url, USERNAME, TOKEN, concurrency=cap, timeout=30) as client:
        queue = iter(emails)

        async def worker() -> None:
            for email in queue:
                await client.unsubscribe(MAIN_LIST, email)

        await asyncio.gather(*(worker() for _ in range(cap)))


async def count_list(sim: SimulatorProcess, list_id: int) -> tuple[int, int]:
    """Return (rows, active rows) of one list, read with GetSubscribers."""
    rows = active = 0
    async with IemClient(sim.url, USERNAME, TOKEN, concurrency=1, timeout=120) as client:
        async for row in client.iter_subscribers(list_id):
            rows += 1
            if not row.unsubscribed and not row.bounced:
                active += 1
    return rows, active


@dataclass
class Sample:
    seconds: float
    requests: int
    faults: int
    limit: int
    phase: str


async def adaptive_run(sim: SimulatorProcess, config: dict[str, Any], *, latency_ms: float, healthy_s: float,
                       trouble_s: float, sample_s: float) -> tuple[list[Sample], Any]:
    """Sync in process while the simulator is healthy, then slow and failing, then healthy again."""
    write_started = asyncio.Event()

    def on_progress(event: ProgressEvent) -> None:
        if event.phase == "write":
            write_started.set()

    # The retries during the stretch are expected; their warnings would drown the figures.
    logging.getLogger("edm_sync").setLevel(logging.ERROR)
    run = SyncRun(parse_config(config), trigger="cli", on_progress=on_progress)
    task = asyncio.create_task(run.execute())
    samples: list[Sample] = []
    async with httpx.AsyncClient(base_url=sim.base, timeout=30) as http:
        waiter = asyncio.create_task(write_started.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        start = time.monotonic()
        phase = "before"
        while not task.done():
            elapsed = time.monotonic() - start
            if phase == "before" and elapsed >= healthy_s:
                await http.post("/_sim/config", json={
                    "latency_ms": latency_ms * 5, "faults": [{"kind": "http500", "rate": 0.1}]})
                phase = "stretch"
            elif phase == "stretch" and elapsed >= healthy_s + trouble_s:
                await http.post("/_sim/config", json={"latency_ms": latency_ms, "faults": []})
                phase = "after"
            stats = (await http.get("/_sim/stats")).json()
            limit = run.iem.concurrency_limit if run.iem is not None else 0
            samples.append(Sample(elapsed, stats["requests"], stats["faults_injected"], limit, phase))
            await asyncio.sleep(sample_s)
        if phase != "after":
            await http.post("/_sim/config", json={"latency_ms": latency_ms, "faults": []})
    return samples, await task


def rates(samples: list[Sample]) -> list[tuple[float, float, int, str]]:
    """Return (seconds, calls per second, limit, phase) between consecutive samples."""
    points = []
    for previous, current in itertools.pairwise(samples):
        span = current.seconds - previous.seconds
        if span > 0:
            points.append((current.seconds, (current.requests - previous.requests) / span, current.limit,
                           current.phase))
    return points


def plot(samples: list[Sample], path: Path, title: str) -> str:
    """Write the calls-per-second and limit plot; return a description of what happened."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "skipped: matplotlib is missing (pip install -e '.[bench]')"

    points = rates(samples)
    figure, calls_axis = plt.subplots(figsize=(9, 4.5), dpi=100)
    calls_axis.plot([p[0] for p in points], [p[1] for p in points], color="tab:blue", label="IEM calls/s")
    calls_axis.set_xlabel("seconds since the write phase started")
    calls_axis.set_ylabel("IEM calls per second", color="tab:blue")
    limit_axis = calls_axis.twinx()
    limit_axis.step([s.seconds for s in samples], [s.limit for s in samples], where="post", color="tab:red",
                    label="client concurrency limit")
    limit_axis.set_ylabel("concurrency limit", color="tab:red")
    limit_axis.set_ylim(0, max(s.limit for s in samples) + 2)
    stretch = [s.seconds for s in samples if s.phase == "stretch"]
    if stretch:
        calls_axis.axvspan(min(stretch), max(stretch), color="0.85", label="5 x latency, 10 % HTTP 500")
    handles = calls_axis.get_legend_handles_labels()
    more = limit_axis.get_legend_handles_labels()
    calls_axis.legend(handles[0] + more[0], handles[1] + more[1], loc="lower right", fontsize=8)
    calls_axis.set_title(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return str(path)


# --- the benchmark ---


@dataclass
class Settings:
    n: int
    latency_ms: float
    cap: int
    sample: int
    adaptive_n: int
    healthy_s: float
    trouble_s: float
    capacity_s: float
    probe_latency_ms: float
    plot_path: Path | None
    mysql: Mysql
    quick: bool = False


def at_least(minimum: int) -> Callable[[str], int]:
    """Return an argparse type for whole numbers of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small; use {minimum} or more")
        return value

    return parse


def positive_milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 ms, because the bound N x L / C uses it")
    return value


def parse_arguments(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=at_least(100), default=100_000,
                        help="Magento subscribers, at least 100 (default 100000)")
    parser.add_argument("--latency-ms", type=positive_milliseconds, default=20.0,
                        help="simulator delay before each API request, in milliseconds (default 20)")
    parser.add_argument("--cap", type=at_least(1), default=16,
                        help="API requests the simulator handles at once; also edm-sync's concurrency (default 16)")
    parser.add_argument("--sample", type=at_least(1), default=2000,
                        help="subscribers added one at a time for the baseline (default 2000)")
    parser.add_argument("--adaptive-n", type=at_least(100), default=20_000,
                        help="subscribers of the adaptive run, at least 100 (default 20000)")
    parser.add_argument("--plot", type=Path, default=None,
                        help=f"PNG of the adaptive run (default {DEFAULT_PLOT.relative_to(REPO)} with the default "
                             f"sizes, else {DEFAULT_PLOT.name} in the temporary folder; none with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for a smoke run of about 15 s (figures are not meaningful)")
    parser.add_argument("--mysql-host", default=os.environ.get("EDM_TEST_MYSQL_HOST", "127.0.0.1"),
                        help="MariaDB host for the throwaway database (default $EDM_TEST_MYSQL_HOST or 127.0.0.1)")
    parser.add_argument("--mysql-port", type=at_least(1), default=int(os.environ.get("EDM_TEST_MYSQL_PORT", "3306")),
                        help="MariaDB port (default $EDM_TEST_MYSQL_PORT or 3306)")
    parser.add_argument("--mysql-user", default=os.environ.get("EDM_TEST_MYSQL_USER", "root"),
                        help="a MariaDB user that may create and drop databases (default $EDM_TEST_MYSQL_USER or root)")
    parser.add_argument("--mysql-password", default=os.environ.get("EDM_TEST_MYSQL_PASSWORD", ""),
                        help="that user's password (default $EDM_TEST_MYSQL_PASSWORD or none)")
    args = parser.parse_args(argv)
    if args.quick and any(value != parser.get_default(name) for name, value in
                          (("n", args.n), ("sample", args.sample), ("adaptive_n", args.adaptive_n))):
        parser.error("--quick sets its own sizes; leave out --n, --sample and --adaptive-n, or leave out --quick")

    mysql = Mysql(args.mysql_host, args.mysql_port, args.mysql_user, args.mysql_password)
    if args.quick:
        return Settings(n=400, latency_ms=args.latency_ms, cap=args.cap, sample=20, adaptive_n=800,
                        healthy_s=0.3, trouble_s=0.6, capacity_s=0.3, probe_latency_ms=200,
                        plot_path=args.plot, mysql=mysql, quick=True)
    plot_path = args.plot
    if plot_path is None:
        # Only a run with the documented sizes replaces the plot in docs/.
        documented = all(getattr(args, name) == parser.get_default(name)
                         for name in ("n", "latency_ms", "cap", "adaptive_n"))
        plot_path = DEFAULT_PLOT if documented else Path(tempfile.gettempdir()) / DEFAULT_PLOT.name
    return Settings(n=args.n, latency_ms=args.latency_ms, cap=args.cap, sample=min(args.sample, args.n),
                    adaptive_n=args.adaptive_n, healthy_s=5.0, trouble_s=8.0, capacity_s=3.0,
                    probe_latency_ms=500, plot_path=plot_path, mysql=mysql)


def describe_machine() -> None:
    say(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    try:
        load = os.getloadavg()
        say(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    settings = parse_arguments(argv)
    describe_machine()
    say(f"N = {settings.n}, L = {settings.latency_ms:g} ms, C = {settings.cap}; "
        f"bound N x L / C = {settings.n * settings.latency_ms / 1000 / settings.cap:.1f} s")
    if settings.quick:
        say("--quick: N = 400 and short phases, so that the script is checked end to end in about "
            "15 s; the timing figures are dominated by fixed costs and may FAIL, only the call counts "
            "and the checks of both sides mean anything")
    report = Report()
    workdir = Path(tempfile.mkdtemp(prefix="edm-bench-"))
    sim: SimulatorProcess | None = None
    try:
        sim = SimulatorProcess(settings.latency_ms, settings.cap, workdir / "simulator.log")
        with throwaway_database(settings.mysql) as database:
            run_all(settings, report, sim, database, workdir)
    finally:
        if sim is not None:
            sim.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    say(f"{report.passed} PASS, {report.failed} FAIL" + (" (a --quick run)" if settings.quick else ""))
    return 0


def run_all(settings: Settings, report: Report, sim: SimulatorProcess, database: str, workdir: Path) -> None:
    n, cap, latency = settings.n, settings.cap, settings.latency_ms / 1000
    ideal_rate = cap / latency

    served = asyncio.run(measure_concurrency(sim, cap, settings.latency_ms, settings.probe_latency_ms))
    report.figure("simulator concurrency", f"{served:.1f} of {cap} calls at once", f">= 0.9 x {cap}",
                  served >= 0.9 * cap)
    rate = asyncio.run(measure_throughput(sim, cap, settings.capacity_s))
    report.figure("simulator throughput, plain client", f"{rate:.0f} calls/s = {rate / ideal_rate:.2f} x C/L")

    started = time.monotonic()
    insert_subscribers(settings.mysql, database, "", n, "user")
    insert_subscribers(settings.mysql, database, ADAPTIVE_PREFIX, settings.adaptive_n, "adaptive")
    say(f"inserted {n + settings.adaptive_n} Magento rows in {time.monotonic() - started:.1f} s")

    config_path = write_config(workdir / "config.toml", sim_url=sim.url, mysql=settings.mysql, database=database,
                               prefix="", list_id=MAIN_LIST, cap=cap, state_dir=workdir / "state")

    # Initial sync into an empty list.
    initial, calls = sync_once(sim, config_path)
    initial_s = initial.wall_s
    say_load()
    bound = n * latency / cap
    report.figure("initial sync wall time", f"{initial_s:.1f} s")
    report.figure("initial sync IEM calls", f"{calls} ({calls - n} besides the adds)", f"<= N + 3 = {n + 3}",
                  calls <= n + 3)
    report.figure("initial sync CPU time of edm-sync",
                  f"{initial.cpu_s:.1f} s = {initial.cpu_s / initial_s:.2f} cores ({initial.cpu_s / n * 1000:.2f} ms/add)")
    report.figure("initial sync / bound", f"{initial_s / bound:.2f} x {bound:.1f} s", "<= 1.2", initial_s <= 1.2 * bound)

    # One call at a time, on a sample.
    per_call = asyncio.run(measure_one_at_a_time(sim, settings.sample))
    baseline_s = per_call * n
    report.figure("one-at-a-time client, scaled",
                  f"{baseline_s:.0f} s ({settings.sample} adds, {per_call * 1000:.1f} ms each)")
    report.figure("edm-sync speedup over one-at-a-time", f"{baseline_s / initial_s:.1f} x", ">= 10",
                  baseline_s / initial_s >= 10)

    # Steady state.
    steady, calls = sync_once(sim, config_path)
    steady_s = steady.wall_s
    report.figure("no changes: IEM calls", str(calls), "<= 3", calls <= 3)
    report.figure("no changes: wall time / initial", f"{steady_s / initial_s:.3f} ({steady_s:.2f} s)", "<= 0.03",
                  steady_s <= 0.03 * initial_s)

    unsubscribed = 0
    for label, share in (("0.1%", 0.001), ("1%", 0.01)):
        k = max(1, round(n * share))
        # Subscriber ids are 1..n in email order; the two sides get disjoint rows.
        magento_ids = [1 + unsubscribed * 2 + 2 * i for i in range(k)]
        iem_numbers = [unsubscribed * 2 + 2 * i + 1 for i in range(k)]
        unsubscribe_in_magento(settings.mysql, database, magento_ids)
        asyncio.run(unsubscribe_in_iem(sim, [f"user{number:07d}@example.test" for number in iem_numbers], cap))
        unsubscribed += k
        changes = 2 * k
        changed, calls = sync_once(sim, config_path)
        elapsed = changed.wall_s
        report.figure(f"{label} changes: IEM calls", f"{calls} for {changes} changes", f"<= 3 + {changes}",
                      calls <= 3 + changes)
        report.figure(f"{label} changes: wall time", f"{elapsed:.2f} s = {elapsed / initial_s:.3f} x initial")
        magento_count = magento_unsubscribed(settings.mysql, database)
        rows, active = asyncio.run(count_list(sim, MAIN_LIST))
        expected = 2 * unsubscribed
        report.figure(f"{label} changes: both sides agree",
                      f"Magento {magento_count}, IEM {rows - active} unsubscribed",
                      f"{expected} on each side", magento_count == expected and rows - active == expected)

    plan_s = run_edm_sync(config_path, "plan").wall_s
    say_load()
    report.figure("plan wall time", f"{plan_s:.2f} s = {plan_s / initial_s:.3f} x initial")

    run_adaptive(settings, report, sim, database, workdir)


def run_adaptive(settings: Settings, report: Report, sim: SimulatorProcess, database: str, workdir: Path) -> None:
    cap = settings.cap
    config = config_data(sim_url=sim.url, mysql=settings.mysql, database=database, prefix=ADAPTIVE_PREFIX,
                         list_id=ADAPTIVE_LIST, cap=cap, state_dir=workdir / "adaptive-state")
    sample_s = 0.25 if settings.plot_path is not None else 0.1
    samples, result = asyncio.run(adaptive_run(sim, config, latency_ms=settings.latency_ms,
                                               healthy_s=settings.healthy_s, trouble_s=settings.trouble_s,
                                               sample_s=sample_s))
    stretch = [s.limit for s in samples if s.phase == "stretch"]
    lowest = min(stretch) if stretch else math.nan
    report.figure("adaptive: lowest limit in the stretch", f"{lowest} of {cap}", f"<= {cap // 2}",
                  bool(stretch) and lowest <= cap // 2)
    final = samples[-1].limit if samples else 0
    report.figure("adaptive: limit after recovery", f"{final} of {cap}", f"= {cap}", final == cap)

    points = rates(samples)
    before = [p[1] for p in points if p[3] == "before"]
    after = [p[1] for p in points if p[3] == "after"][1:-1]  # edges hold a phase change or the run's end
    if before and after:
        ratio = (sum(after) / len(after)) / (sum(before) / len(before))
        report.figure("adaptive: calls/s after / before",
                      f"{ratio:.2f} ({sum(after) / len(after):.0f} / {sum(before) / len(before):.0f})",
                      ">= 0.8", ratio >= 0.8)
    else:
        report.figure("adaptive: calls/s after / before", "too few samples", ">= 0.8", False)

    rows, active = asyncio.run(count_list(sim, ADAPTIVE_LIST))
    report.figure("adaptive: all writes landed",
                  f"{active} of {settings.adaptive_n} active, run {result.status}",
                  f"{settings.adaptive_n}, succeeded",
                  rows == settings.adaptive_n and active == settings.adaptive_n and result.status == "succeeded")

    if settings.plot_path is None:
        report.figure("adaptive: plot", "not written (--quick without --plot)")
        return
    title = (f"edm-sync adaptive run: {settings.adaptive_n} adds, L = {settings.latency_ms:g} ms, "
             f"C = {cap}; stretch: 5 x L and 10 % HTTP 500")
    report.figure("adaptive: plot", plot(samples, settings.plot_path, title))


if __name__ == "__main__":
    sys.exit(main())
