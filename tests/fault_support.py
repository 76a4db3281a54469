"""Fault drills: a sample shop on both sides, runs under faults, and checks against a reference.

A `World` is one Magento database (the sample shop of `edm_tui.magento.sampledata`), one
IEM simulator holding the matching lists, and one state folder with the configuration and
the history. Two worlds built from the same seed and reference time start equal, so an
undisturbed run in one gives the reference end state for the other. `Snapshot` compares
both sides of two worlds; `PrivateMariadb` is a throwaway mariadbd that may be restarted.

`tests/test_faults.py` and `tools/fault-drill` share this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
import pymysql
import tomlkit

from edm_tui.interspire.simulator import SimulatorHandle, start_simulator
from edm_tui.magento.sampledata import generate_iem_list, generate_shop, load_shop

REPOSITORY = Path(__file__).resolve().parent.parent
USERNAME = "drill"
TOKEN = "drill-token-0123456789abcdef"
LISTS = (1, 2)
# Settings that make the sample shop's first sync behave like the sandbox's.
SYNC_SETTINGS = {"import_new_subscribers": True, "bounced_is_unsubscribed": True, "add_to_autoresponders": True}
WRITE_METHODS = ("AddSubscriberToList", "UnsubscribeSubscriber", "ActivateSubscriber",
                 "ChangeSubscriberConfirm", "SaveSubscriberCustomField")
RESUBSCRIBING_ACTIONS = ("activate", "subscribe_magento")


# --- MariaDB connections ---


def shared_server() -> dict[str, Any]:
    """Return PyMySQL connect arguments for the MariaDB server the tests use."""
    from tests import mariadb_support

    return mariadb_support.admin_params()


def connect(server: dict[str, Any], database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(**server, database=database, charset="utf8mb4", autocommit=True,
                           connect_timeout=5)


def drop_database(server: dict[str, Any], database: str) -> None:
    if not database.startswith("edm_test_"):
        raise ValueError(f"Not dropping {database!r}: only databases named edm_test_* are dropped.")
    connection = connect(server)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        connection.close()


def kill_connections(server: dict[str, Any], database: str) -> int:
    """Run KILL CONNECTION for every session of `database` except this one; return how many."""
    connection = connect(server)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
                           (database,))
            ids = [row[0] for row in cursor.fetchall()]
            killed = 0
            for session_id in ids:
                try:
                    cursor.execute(f"KILL CONNECTION {int(session_id)}")
                    killed += 1
                except pymysql.err.OperationalError as error:
                    if error.args[0] != 1094:  # ER_NO_SUCH_THREAD: it ended meanwhile
                        raise
            return killed
    finally:
        connection.close()


def free_port() -> int:
    from tests.mariadb_support import unused_tcp_port

    return unused_tcp_port()


class PrivateMariadb:
    """A mariadbd of our own in a temporary data folder, on 127.0.0.1 and a free port.

    It can be stopped and started again while a run uses it, which the shared server on
    port 3306 must never be.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.datadir = folder / "data"
        self.socket = folder / "mysqld.sock"
        self.log_path = folder / "mariadbd.log"
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def server(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "user": "root", "password": ""}

    def install(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}", "--user=root", "--auth-root-authentication-method=normal",
             "--skip-test-db", "--skip-name-resolve"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120,
        )

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}",
                 f"--socket={self.socket}", "--bind-address=127.0.0.1", "--user=root", "--skip-name-resolve",
                 "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=48M",
                 f"--pid-file={self.folder / 'mariadbd.pid'}", "--skip-log-bin"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.process.returncode}; see {self.log_path}")
            try:
                connect(self.server).close()
                return
            except pymysql.err.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"mariadbd did not accept connections within {timeout:g} s; see {self.log_path}")

    def stop(self, timeout: float = 60.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> float:
        """Stop the server and start it again; return how long it was unreachable, in seconds."""
        started = time.monotonic()
        self.stop()
        self.start()
        return time.monotonic() - started

    def __enter__(self) -> Self:
        self.install()
        self.start()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()


# --- worlds ---


@dataclass
class World:
    """One shop database, one IEM simulator and one state folder."""

    server: dict[str, Any]
    database: str
    sim: SimulatorHandle
    folder: Path
    config_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.folder / "config.toml"

    @property
    def history_path(self) -> Path:
        state_dir = self.config_overrides.get("storage", {}).get("state_dir", self.folder / "state")
        return Path(state_dir) / "history.sqlite3"

    def write_config(self, **sections: dict[str, Any]) -> Path:
        data: dict[str, Any] = {
            "interspire": {"url": self.sim.url, "username": USERNAME, "token": TOKEN, "list_id": 1,
                           "firstname_field_id": 2, "lastname_field_id": 3, "website_lists": {"2": 2},
                           "concurrency": 8, "retries": 3, "timeout": 10},
            "magento": {"host": self.server["host"], "port": self.server["port"], "user": self.server["user"],
                        "password": self.server["password"], "database": self.database, "table_prefix": ""},
            "sync": dict(SYNC_SETTINGS),
            "storage": {"state_dir": str(self.folder / "state")},
        }
        for section, values in {**self.config_overrides, **sections}.items():
            data[section] = {**data.get(section, {}), **values}
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(tomlkit.dumps(data), encoding="utf-8")
        self.config_path.chmod(0o600)
        return self.config_path

    # --- runs ---

    def start_sync(self, *extra: str) -> subprocess.Popen:
        """Start `edm-sync sync --json` as a process of its own."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPOSITORY)}
        return subprocess.Popen(
            [sys.executable, "-m", "edm_tui.cli", "--config", str(self.config_path), "sync", "--json", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, cwd=REPOSITORY,
        )

    def sync(self, timeout: float = 600.0) -> SyncOutcome:
        """Run `edm-sync sync` to its end and return its exit code, JSON summary and error output."""
        process = self.start_sync()
        stdout, stderr = process.communicate(timeout=timeout)
        return SyncOutcome.from_output(process.returncode, stdout, stderr)

    def sync_here(self) -> Any:
        """Run a sync in this process (faster than `sync()`) and return its RunResult."""
        import asyncio

        from edm_tui.config import load_config
        from edm_tui.daemon.runner import SyncRun

        return asyncio.run(SyncRun(load_config(self.config_path)).execute())

    def sim_config(self, **values: Any) -> None:
        self.sim.configure(**values)

    def write_count(self) -> int:
        counts = self.sim.simulator.recorder.stats()["by_method"]
        return sum(counts.get(method, 0) for method in WRITE_METHODS)

    def read_count(self) -> int:
        return self.sim.simulator.recorder.stats()["by_method"].get("GetSubscribers", 0)

    # --- what both sides contain ---

    def snapshot(self) -> Snapshot:
        connection = connect(self.server, self.database)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT store_id, subscriber_email, customer_id, subscriber_status "
                               "FROM newsletter_subscriber")
                magento = Counter(tuple(row) for row in cursor.fetchall())
        finally:
            connection.close()
        iem: dict[tuple[int, str], list[tuple[str, bool]]] = {}
        with self.sim.state.lock:
            rows = [(r.listid, r.emailaddress, r.unsubscribed, r.bounced, r.confirmed)
                    for r in self.sim.state.rows_by_id.values()]
        for list_id, email, unsubscribed, bounced, confirmed in rows:
            status = "active"
            if unsubscribed:
                status = "unsubscribed"
            elif bounced:
                status = "bounced"
            iem.setdefault((list_id, email.strip().lower()), []).append((status, bool(confirmed)))
        return Snapshot(magento, iem)

    def activations(self) -> set[tuple[int, str]]:
        """(list id, email) of every ActivateSubscriber call the simulator ran successfully."""
        found = set()
        for entry in self.sim.simulator.recorder.log():
            if entry["method"] == "ActivateSubscriber" and entry["status"] == "SUCCESS":
                details = entry["details"]
                found.add((int(details.get("listid", 0)), str(details.get("emailaddress", "")).strip().lower()))
        return found

    def history(self) -> HistoryView:
        return HistoryView.read(self.history_path)


@dataclass(frozen=True)
class SyncOutcome:
    exit_code: int
    result: dict[str, Any] | None
    stderr: str

    @classmethod
    def from_output(cls, exit_code: int, stdout: bytes, stderr: bytes) -> SyncOutcome:
        try:
            result = json.loads(stdout.decode() or "null")
        except json.JSONDecodeError:
            result = None
        return cls(exit_code, result, stderr.decode(errors="replace"))

    @property
    def status(self) -> str:
        return self.result["status"] if self.result else "none"

    @property
    def writes(self) -> int:
        """Items that the run counted, whatever their outcome."""
        if not self.result:
            return 0
        return sum(sum(by.values()) for by in self.result["counts"].values())

    @property
    def failed(self) -> int:
        if not self.result:
            return 0
        return sum(by.get("failed", 0) for by in self.result["counts"].values())


@dataclass(frozen=True)
class Snapshot:
    """Magento rows as a multiset of (store_id, email, customer_id, status), and IEM rows by (list, email)."""

    magento: Counter
    iem: dict[tuple[int, str], list[tuple[str, bool]]]

    def iem_duplicates(self) -> list[tuple[int, str]]:
        return sorted(key for key, rows in self.iem.items() if len(rows) > 1)

    def differences(self, reference: Snapshot, limit: int = 10) -> list[str]:
        """Describe how this snapshot differs from the reference, at most `limit` lines per side."""
        lines = []
        extra = self.magento - reference.magento
        missing = reference.magento - self.magento
        for row in sorted(extra, key=repr)[:limit]:
            lines.append(f"Magento has {row} that the reference has not")
        for row in sorted(missing, key=repr)[:limit]:
            lines.append(f"Magento lacks {row} that the reference has")
        keys = sorted(set(self.iem) | set(reference.iem))
        iem_lines = [f"IEM list {key[0]} {key[1]}: {self.iem.get(key)} but the reference has {reference.iem.get(key)}"
                     for key in keys if self.iem.get(key) != reference.iem.get(key)]
        lines.extend(iem_lines[:limit])
        return lines

    def unsubscribed(self) -> tuple[set[tuple[int | None, str]], set[tuple[int, str]]]:
        """Magento (store_id, email) and IEM (list, email) pairs that are unsubscribed."""
        magento = {(row[0], row[1].strip().lower()) for row in self.magento if row[3] == 3 and row[1]}
        iem = {key for key, rows in self.iem.items() if any(status == "unsubscribed" for status, _ in rows)}
        return magento, iem


def resubscribed(start: Snapshot, end: Snapshot, reference_end: Snapshot) -> list[str]:
    """Name everyone unsubscribed at the start and subscribed at the end, unless the reference did the same."""
    start_magento, start_iem = start.unsubscribed()
    end_magento, end_iem = end.unsubscribed()
    reference_magento, reference_iem = reference_end.unsubscribed()
    lines = [f"Magento store {store} {email} was resubscribed"
             for store, email in sorted(start_magento - end_magento - (start_magento - reference_magento), key=repr)]
    lines += [f"IEM list {list_id} {email} was resubscribed"
              for list_id, email in sorted(start_iem - end_iem - (start_iem - reference_iem))]
    return lines


@dataclass(frozen=True)
class HistoryView:
    """The runs of a history file, oldest first, with their item counts per outcome."""

    runs: list[dict[str, Any]]

    @classmethod
    def read(cls, path: Path) -> HistoryView:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            runs = [{"id": row[0], "status": row[1], "error": row[2], "items": {}}
                    for row in db.execute("SELECT id, status, error FROM runs ORDER BY id")]
            by_id = {run["id"]: run for run in runs}
            for run_id, outcome, count in db.execute(
                    "SELECT run_id, outcome, COUNT(*) FROM items GROUP BY run_id, outcome"):
                by_id[run_id]["items"][outcome] = count
        finally:
            db.close()
        return cls(runs)

    def statuses(self) -> list[str]:
        return [run["status"] for run in self.runs]

    def resubscribing_items(self, path: Path) -> set[tuple[str, int | None]]:
        """(email, website) of every item that set someone subscribed again and succeeded."""
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute(
                f"SELECT DISTINCT lower(trim(email)), website_id FROM items WHERE outcome = 'succeeded' "
                f"AND action IN ({','.join('?' * len(RESUBSCRIBING_ACTIONS))})", RESUBSCRIBING_ACTIONS)
            return set(rows)
        finally:
            db.close()


def integrity_check(path: Path) -> str:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


@dataclass(frozen=True)
class ShopRecipe:
    """What a world is built from: the same recipe gives the same start on both sides."""

    subscribers: int
    seed: int = 2026
    reference_time: int = field(default_factory=lambda: int(time.time()) - 3600)

    def iem_state(self) -> dict[str, Any]:
        shop = generate_shop(seed=self.seed, subscribers=self.subscribers, reference_time=self.reference_time)
        rows = generate_iem_list(shop, seed=self.seed)
        for row in rows:
            row["confirmed"] = row["confirmed"] in ("1", 1, True)
        return {
            "users": [{"userid": 1, "username": USERNAME, "token": TOKEN, "status": 1, "admin": True}],
            "lists": [{"listid": list_id, "name": f"List {list_id}", "createdate": 1_600_000_000, "ownerid": 1}
                      for list_id in LISTS],
            "custom_fields": [
                {"fieldid": 2, "name": "First name", "fieldtype": "text", "required": False, "options": []},
                {"fieldid": 3, "name": "Last name", "fieldtype": "text", "required": False, "options": []},
            ],
            "subscribers": rows,
            "next_subscriberid": max((r["subscriberid"] for r in rows), default=0) + 1,
        }

    def load_magento(self, server: dict[str, Any], database: str) -> None:
        shop = generate_shop(seed=self.seed, subscribers=self.subscribers, reference_time=self.reference_time)
        load_shop(server, database, shop)


@contextlib.contextmanager
def world(recipe: ShopRecipe, server: dict[str, Any], folder: Path, iem_state: dict[str, Any] | None = None,
          **simulator_options: Any) -> Iterator[World]:
    """Build a world from a recipe in a new database; drop the database at the end."""
    from tests.mariadb_support import unique_name

    database = unique_name()
    recipe.load_magento(server, database)
    try:
        with start_simulator(auth_delay=0, **simulator_options) as sim:
            httpx.put(f"{sim.base}/_sim/state", json=iem_state or recipe.iem_state(), timeout=60).raise_for_status()
            built = World(server, database, sim, folder)
            built.write_config()
            yield built
    finally:
        with contextlib.suppress(pymysql.err.Error):
            drop_database(server, database)


def run_until_idle(target: World, max_runs: int = 4) -> list[SyncOutcome]:
    """Sync until a run succeeds and writes nothing, at most `max_runs` times."""
    outcomes = []
    for _attempt in range(max_runs):
        outcome = target.sync()
        outcomes.append(outcome)
        if outcome.status == "succeeded" and outcome.writes == 0:
            break
    return outcomes


# --- history storage faults ---


@contextlib.contextmanager
def tmpfs(folder: Path, size_kib: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_kib` KiB on `folder`, so writes past that fail with ENOSPC."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)


@contextlib.contextmanager
def bind_mount(folder: Path) -> Iterator[Path]:
    """Bind-mount `folder` on itself so that `set_read_only` can remount it read-only."""
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)


def set_read_only(folder: Path, read_only: bool) -> None:
    """Remount a bind mount read-only or read-write; root's writes fail with EROFS while read-only."""
    mode = "ro" if read_only else "rw"
    subprocess.run(["mount", "-o", f"remount,bind,{mode}", str(folder)], check=True)


def mounts_available() -> bool:
    """Return whether this process may mount file systems (root with CAP_SYS_ADMIN)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory() as probe:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if result.returncode != 0:
            return False
        subprocess.run(["umount", probe], check=False)
    return True


def mariadb_available() -> bool:
    return shutil.which("mariadb-install-db") is not None and Path("/usr/sbin/mariadbd").exists()


# --- the daemon ---


@contextlib.contextmanager
def running_daemon(target: World) -> Iterator[Any]:
    """Start `edm-sync daemon` on a world (no schedule); stop it at the end."""
    from tests.daemon_support import DaemonProcess, NotifyListener

    socket_path = target.folder / "d.sock"
    config_path = target.write_config(
        schedule={"interval": "24h", "catch_up_delay": "0s", "enabled": False},
        daemon={"socket": str(socket_path)})
    notify = NotifyListener(target.folder / "notify.sock")
    daemon = DaemonProcess(None, config_path, socket_path, notify, target.folder / "daemon.log")  # type: ignore[arg-type]
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        notify.close()


def resize_tmpfs(folder: Path, size_kib: int) -> None:
    """Grow or shrink a tmpfs mounted by `tmpfs()`; its files stay."""
    subprocess.run(["mount", "-o", f"remount,size={size_kib}k", str(folder)], check=True)
