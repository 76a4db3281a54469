"""Runs under faults end where an undisturbed run ends: no lost unsubscribe, no resubscribe, no duplicate.

Every test builds the same sample shop (both sides) in a world of its own and compares it,
after the faults and the runs that follow, with a reference world that was synced without
faults. Faults: SIGKILL of `edm-sync sync`, IEM returning each fault kind of the
simulator, a private MariaDB restarted during a run, KILL CONNECTION of the run's sessions,
and a history database that is full or cannot be created.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edm_tui.client import DaemonError
from edm_tui.daemon.history import HistoryStore
from tests import fault_support as fs
from tests import mariadb_support as mdb
from tests.sync_support import Bench

SUBSCRIBERS = 300
KILL_POINTS_SEED = 7
OLD = 1_700_000_000
NEW = 1_700_090_000


@pytest.fixture(scope="module")
def recipe() -> fs.ShopRecipe:
    return fs.ShopRecipe(SUBSCRIBERS)


@pytest.fixture(scope="module")
def reference(recipe: fs.ShopRecipe, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The start and the end state of an undisturbed sync of the sample shop."""
    with fs.world(recipe, fs.shared_server(), tmp_path_factory.mktemp("reference")) as world:
        start = world.snapshot()
        first = world.sync_here()
        second = world.sync_here()
        return {"start": start, "end": world.snapshot(), "first": first, "second": second,
                "activations": world.activations(),
                "resubscribed": world.history().resubscribing_items(world.history_path)}


@pytest.fixture
def world(recipe: fs.ShopRecipe, tmp_path: Path) -> Iterator[fs.World]:
    with fs.world(recipe, fs.shared_server(), tmp_path / "world") as built:
        yield built


def assert_matches_reference(world: fs.World, reference: dict) -> None:
    end = world.snapshot()
    assert end.differences(reference["end"]) == []
    assert end.iem_duplicates() == []
    assert fs.resubscribed(reference["start"], end, reference["end"]) == []
    assert world.activations() - reference["activations"] == set()
    assert world.history().resubscribing_items(world.history_path) - reference["resubscribed"] == set()


def assert_idle(world: fs.World) -> None:
    """One more run succeeds and writes nothing."""
    again = world.sync_here()
    assert again.status == "succeeded"
    assert again.counts == {}


def test_reference_run_writes_and_settles(reference: dict) -> None:
    assert reference["first"].status == "succeeded"
    assert reference["first"].failed_items == 0
    assert sum(sum(by.values()) for by in reference["first"].counts.values()) > 200
    assert reference["second"].counts == {}


# --- SIGKILL ---


def test_sigkills_over_runs_end_as_reference(world: fs.World, reference: dict) -> None:
    world.sim_config(latency_ms=3)
    rng = random.Random(KILL_POINTS_SEED)
    kill_points = ["reading"] + [rng.randint(1, 40) for _ in range(4)]
    for kill_at in kill_points:
        reads, writes = world.read_count(), world.write_count()
        process = world.start_sync()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if kill_at == "reading" and world.read_count() > reads:
                break
            if kill_at != "reading" and world.write_count() - writes >= kill_at:
                break
            time.sleep(0.002)
        assert process.poll() is None, f"the run ended before kill point {kill_at}"
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)

    world.sim_config(latency_ms=0)
    last = world.sync_here()
    assert last.status == "succeeded"
    assert_matches_reference(world, reference)
    assert_idle(world)

    history = world.history()
    assert history.statuses() == ["interrupted"] * len(kill_points) + ["succeeded", "succeeded"]
    runs_with_items = [run for run in history.runs[:len(kill_points)] if run["items"]]
    assert len(runs_with_items) == len(kill_points) - 1  # the kill while reading left no items
    assert all(set(run["items"]) <= {"succeeded", "interrupted", "skipped"} for run in runs_with_items)


# --- IEM misbehaving ---


TOLERATED_KINDS = ("notice", "bom", "newline")  # the client reads past them: nothing fails
FAILING_KINDS = ("html", "http500", "empty", "redirect", "reset", "truncated", "slow")


@pytest.mark.parametrize("kind", TOLERATED_KINDS + FAILING_KINDS)
def test_iem_fault_kind_then_next_run_finishes(world: fs.World, reference: dict, kind: str) -> None:
    # No retries, so that every fault on a write fails its item: the first run is partial.
    world.write_config(interspire={"retries": 0, "timeout": 0.5})
    rule = {"kind": kind, "rate": 0.3, "count": 12, "methods": list(fs.WRITE_METHODS), "slow_seconds": 0.8}
    world.sim_config(faults=[rule], seed=3)

    faulted = world.sync_here()
    injected = world.sim.simulator.recorder.stats()["faults_injected"]
    world.sim_config(faults=[])

    assert injected == 12
    if kind in TOLERATED_KINDS:
        assert faulted.status == "succeeded"
        assert faulted.failed_items == 0
    else:
        assert faulted.status == "partial"
        assert 1 <= faulted.failed_items <= injected

    recovery = world.sync_here()
    assert recovery.status == "succeeded"
    assert recovery.failed_items == 0
    assert_matches_reference(world, reference)


def test_iem_faults_mixed_with_retries(world: fs.World, reference: dict) -> None:
    world.write_config(interspire={"retries": 3, "timeout": 0.5})
    kinds = TOLERATED_KINDS + FAILING_KINDS
    rules = [{"kind": kind, "rate": 0.02, "slow_seconds": 0.8} for kind in kinds]
    world.sim_config(faults=rules, seed=5)

    faulted = world.sync_here()
    injected = world.sim.simulator.recorder.stats()["faults_injected"]
    world.sim_config(faults=[])

    assert injected > 10
    assert faulted.status in ("succeeded", "partial")
    world.sync_here()
    assert_matches_reference(world, reference)
    assert_idle(world)


# --- MariaDB ---


@pytest.fixture
def private_mariadb(tmp_path: Path) -> Iterator[fs.PrivateMariadb]:
    if not fs.mariadb_available():
        pytest.skip("mariadb-install-db or /usr/sbin/mariadbd is not installed")
    with fs.PrivateMariadb(tmp_path / "mariadb") as server:
        yield server


def wait_for_writes(world: fs.World, process: subprocess.Popen, count: int) -> None:
    baseline = world.write_count()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if world.write_count() - baseline >= count:
            return
        time.sleep(0.005)
    raise AssertionError(f"the run did not write {count} items")


def test_mariadb_restart_during_run(recipe: fs.ShopRecipe, reference: dict, tmp_path: Path,
                                    private_mariadb: fs.PrivateMariadb) -> None:
    with fs.world(recipe, private_mariadb.server, tmp_path / "world") as world:
        world.sim_config(latency_ms=5)
        process = world.start_sync()
        wait_for_writes(world, process, 20)
        private_mariadb.restart()
        stdout, stderr = process.communicate(timeout=120)
        cut = fs.SyncOutcome.from_output(process.returncode, stdout, stderr)
        world.sim_config(latency_ms=0)

        assert "Traceback" not in cut.stderr
        assert cut.status in ("failed", "partial", "succeeded")
        if cut.status == "failed":
            assert f"127.0.0.1:{private_mariadb.port}" in cut.result["error"]
        next_run = world.sync_here()
        assert next_run.status == "succeeded"
        assert_matches_reference(world, reference)
        assert_idle(world)


def test_killed_connection_fails_run_cleanly(world: fs.World, reference: dict) -> None:
    world.sim_config(latency_ms=5)
    process = world.start_sync()
    wait_for_writes(world, process, 20)
    killed = fs.kill_connections(world.server, world.database)
    stdout, stderr = process.communicate(timeout=120)
    cut = fs.SyncOutcome.from_output(process.returncode, stdout, stderr)
    world.sim_config(latency_ms=0)

    assert killed == 1  # the write connection; the streamed read has ended
    assert "Traceback" not in cut.stderr
    assert cut.status == "failed"
    assert "Lost the connection to the MySQL server" in cut.result["error"]
    next_run = world.sync_here()
    assert next_run.status == "succeeded"
    assert_matches_reference(world, reference)
    assert_idle(world)


# --- history storage ---


def test_history_full_fails_run_and_daemon_serves(world: fs.World, reference: dict) -> None:
    if not fs.mounts_available():
        pytest.skip("mounting a tmpfs is not permitted here")
    state = world.folder / "state"
    with fs.tmpfs(state, 160), fs.running_daemon(world) as daemon:
        daemon.call("run")
        status = daemon.wait_idle()
        failed = status["last_run"]

        assert failed["status"] == "failed"
        assert "database or disk is full" in failed["error"]
        assert str(world.history_path) in failed["error"]
        assert "free space" in failed["error"]
        assert daemon.call("status")["state"] == "idle"
        assert fs.integrity_check(world.history_path) == "ok"

        fs.resize_tmpfs(state, 65_536)
        daemon.call("run")
        assert daemon.wait_idle()["last_run"]["status"] == "succeeded"
        daemon.stop()
        assert fs.integrity_check(world.history_path) == "ok"
        assert_matches_reference(world, reference)
        assert_idle(world)


def test_history_unwritable_daemon_serves_status(world: fs.World, reference: dict) -> None:
    # Root ignores file modes, so the state folder's parent is a regular file instead.
    blocker = world.folder / "blocker"
    blocker.write_text("not a folder\n")
    state = blocker / "state"
    world.config_overrides["storage"] = {"state_dir": str(state)}
    with fs.running_daemon(world) as daemon:
        status = daemon.call("status")
        with pytest.raises(DaemonError) as refused:
            daemon.call("run")

        assert status["state"] == "idle"
        assert str(state / "history.sqlite3") in status["history_error"]
        assert "cannot be opened" in status["history_error"]
        assert refused.value.data["problems"] == [status["history_error"]]

        blocker.unlink()
        daemon.call("run")
        assert daemon.wait_idle()["last_run"]["status"] == "succeeded"
        assert daemon.call("status")["history_error"] is None
    store = HistoryStore(state / "history.sqlite3")
    try:
        assert [run.status for run in store.runs()] == ["succeeded"]
    finally:
        store.close()
    assert fs.integrity_check(state / "history.sqlite3") == "ok"
    assert_matches_reference(world, reference)


# --- an identity with two Magento rows, cut between its two UPDATEs ---


def test_unsubscribe_cut_between_rows_is_finished(bench: Bench) -> None:
    first = bench.add_row("split@example.test", 1, OLD, store_id=1)
    second = bench.add_row("Split@example.test", 1, OLD, store_id=2)
    bench.add_iem("split@example.test", unsubscribed=NEW)
    config_path = bench.write_config(bench.tmp / "config.toml")

    blocker = mdb.connect(bench.database)
    with blocker.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("SELECT * FROM newsletter_subscriber WHERE subscriber_id = %s FOR UPDATE", (second,))
    process = subprocess.Popen([sys.executable, "-m", "edm_tui.cli", "--config", str(config_path), "sync"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        session = wait_for_blocked_update(bench.database)
        killer = mdb.connect()
        with killer.cursor() as cursor:
            cursor.execute(f"KILL CONNECTION {int(session)}")
        killer.close()
        process.communicate(timeout=60)
    finally:
        blocker.rollback()
        blocker.close()

    # The cut came after the first row's UPDATE, inside the same transaction: both stay as they were.
    assert bench.status_of(first) == 1
    assert bench.status_of(second) == 1
    after = bench.sync()
    assert after.status == "succeeded"
    assert bench.status_of(first) == 3
    assert bench.status_of(second) == 3


def wait_for_blocked_update(database: str, timeout: float = 30.0) -> int:
    """Return the session id of an UPDATE of newsletter_subscriber that waits for a row lock."""
    deadline = time.monotonic() + timeout
    watcher = mdb.connect()
    try:
        with watcher.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute("SELECT id FROM information_schema.processlist WHERE db = %s AND info LIKE %s",
                               (database, "UPDATE%newsletter_subscriber%"))
                row = cursor.fetchone()
                if row is not None:
                    return int(row[0])
                time.sleep(0.01)
    finally:
        watcher.close()
    raise AssertionError("no UPDATE of newsletter_subscriber waited for the row lock")
