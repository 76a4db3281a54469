"""History and the last synced state, in one SQLite file.

WAL mode with synchronous=NORMAL: every commit survives the process being killed, which is
what crash safety needs (an intent is committed before its write, an outcome after it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edm_tui.i18n import Translatable
from edm_tui.sync.state import Rejection, SyncedState

log = logging.getLogger("edm_sync.history")

RUN_STATUSES = ("running", "succeeded", "partial", "failed", "blocked", "interrupted", "cancelled")
TRIGGERS = ("schedule", "manual", "cli")

MIGRATIONS = [
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        trigger TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        allow_mass_changes INTEGER NOT NULL DEFAULT 0,
        counts TEXT NOT NULL DEFAULT '{}',
        summary TEXT NOT NULL DEFAULT '{}',
        error TEXT
    );
    CREATE INDEX runs_started ON runs(started_at);
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        email TEXT NOT NULL,
        website_id INTEGER,
        list_id INTEGER NOT NULL,
        action TEXT NOT NULL,
        direction TEXT NOT NULL,
        reason TEXT NOT NULL,
        outcome TEXT NOT NULL,
        error_class TEXT,
        error_message TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        at INTEGER NOT NULL
    );
    CREATE INDEX items_run ON items(run_id, id);
    CREATE INDEX items_email ON items(email);
    CREATE TABLE synced_state (
        email TEXT NOT NULL,
        website_id INTEGER NOT NULL,
        list_id INTEGER NOT NULL,
        magento_status INTEGER,
        subscriber_ids TEXT NOT NULL,
        iem_class TEXT NOT NULL,
        iem_confirmed INTEGER NOT NULL,
        iem_subscriber_id INTEGER,
        firstname TEXT,
        lastname TEXT,
        synced_at INTEGER NOT NULL,
        PRIMARY KEY (email, website_id)
    ) WITHOUT ROWID;
    CREATE TABLE rejections (
        email TEXT NOT NULL,
        website_id INTEGER NOT NULL,
        action TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        message TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        PRIMARY KEY (email, website_id)
    ) WITHOUT ROWID;
    CREATE TABLE lists (
        list_id INTEGER PRIMARY KEY,
        backfilled_run_id INTEGER NOT NULL,
        backfilled_at INTEGER NOT NULL
    );
    """,
    # A run's items of one outcome (e.g. its few failures among 200 000 writes) in id order,
    # without reading every item of the run: query_items with one outcome seeks here.
    """
    CREATE INDEX items_run_outcome ON items(run_id, outcome, id);
    """,
]


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    trigger: str
    status: str
    started_at: int
    finished_at: int | None
    allow_mass_changes: bool
    counts: dict[str, dict[str, int]]
    summary: dict[str, Any]
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trigger": self.trigger,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "allow_mass_changes": self.allow_mass_changes,
            "counts": self.counts,
            "summary": self.summary,
            "error": self.error,
            "error_message": self.summary.get("error_message"),  # for clients to translate
        }


@dataclass(frozen=True, slots=True)
class ItemRecord:
    id: int
    run_id: int
    email: str
    website_id: int | None
    list_id: int
    action: str
    direction: str
    reason: str
    outcome: str
    error_class: str | None
    error_message: str | None
    attempts: int
    at: int

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


class HistoryStore:
    def __init__(self, path: Path) -> None:
        # The history contains every subscriber's address, so only the service's user may read it.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        os.chmod(path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._grouping = False  # inside grouped_commits()
        self._rejections_exist = True  # False only inside grouped_commits() while the table is empty
        self._migrate()

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._transaction():
                for statement in script.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")
            log.info("history database %s migrated to version %d", self.path, number)

    def _transaction(self) -> "_Transaction | contextlib.nullcontext[None]":
        if self._grouping:
            return contextlib.nullcontext()  # the open grouped_commits() transaction covers it
        return _Transaction(self.db)

    @contextlib.contextmanager
    def grouped_commits(self) -> Iterator[None]:
        """Keep the writes made inside in one open transaction until `commit()` or the end.

        The write phase of a run records about five statements per item, and a commit for
        each took more CPU time than building and parsing the IEM call. The run commits once
        before each write it sends, so that an item's pending row is in the file before its
        write starts. If the process is killed, the outcomes and states recorded since the
        last commit are lost. Those items then show as interrupted, and the next run finds
        their writes done on both sides.
        """
        if self._grouping:
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._grouping = True
        # Only a sync run saves rejections, and the run lock keeps other runs out until the end.
        self._rejections_exist = self.db.execute("SELECT EXISTS (SELECT 1 FROM rejections)").fetchone()[0] == 1
        try:
            yield
        finally:
            self._grouping = False
            self._rejections_exist = True
            try:
                if self.db.in_transaction:
                    self.db.execute("COMMIT")
            except sqlite3.Error:
                # A full disk can fail the COMMIT itself; later writes must not join this transaction.
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    def commit(self) -> None:
        """Commit the writes of the open `grouped_commits()` transaction and open the next one."""
        if self._grouping:
            self.db.execute("COMMIT")
            self.db.execute("BEGIN IMMEDIATE")

    # --- runs ---

    def mark_interrupted(self) -> list[int]:
        """Runs left `running` by a process that died are interrupted, and so are their open items."""
        ids = [row[0] for row in self.db.execute("SELECT id FROM runs WHERE status = 'running'")]
        if ids:
            now = int(time.time())
            with self._transaction():
                for run_id in ids:
                    self.db.execute(
                        "UPDATE runs SET status = 'interrupted', finished_at = ?, "
                        "error = COALESCE(error, 'the process stopped during the run') WHERE id = ?",
                        (now, run_id),
                    )
                    self.db.execute(
                        "UPDATE items SET outcome = 'interrupted' WHERE run_id = ? AND outcome = 'pending'",
                        (run_id,),
                    )
            log.warning("marked run(s) %s as interrupted", ", ".join(map(str, ids)))
        return ids

    def start_run(self, trigger: str, allow_mass_changes: bool = False) -> int:
        cursor = self.db.execute(
            "INSERT INTO runs (trigger, status, started_at, allow_mass_changes) VALUES (?, 'running', ?, ?)",
            (trigger, int(time.time()), int(allow_mass_changes)),
        )
        return int(cursor.lastrowid)  # type: ignore[arg-type]

    def update_run(self, run_id: int, *, counts: dict | None = None, summary: dict | None = None) -> None:
        if counts is not None:
            self.db.execute("UPDATE runs SET counts = ? WHERE id = ?", (json.dumps(counts), run_id))
        if summary is not None:
            self.db.execute("UPDATE runs SET summary = ? WHERE id = ?", (json.dumps(summary), run_id))

    def finish_run(
        self, run_id: int, status: str, *, counts: dict, summary: dict, error: str | None = None
    ) -> None:
        self.db.execute(
            "UPDATE runs SET status = ?, finished_at = ?, counts = ?, summary = ?, error = ? WHERE id = ?",
            (status, int(time.time()), json.dumps(counts), json.dumps(summary), error, run_id),
        )

    def run(self, run_id: int) -> RunRecord | None:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run_record(row) if row else None

    def runs(self, limit: int = 50, before_id: int | None = None) -> list[RunRecord]:
        if before_id is None:
            rows = self.db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self.db.execute(
                "SELECT * FROM runs WHERE id < ? ORDER BY id DESC LIMIT ?", (before_id, limit)
            )
        return [_run_record(row) for row in rows]

    def query_runs(
        self, *, limit: int = 50, before_id: int | None = None, statuses: Iterable[str] = (),
        triggers: Iterable[str] = (), since: int | None = None, until: int | None = None,
        email: str | None = None,
    ) -> list[RunRecord]:
        """Runs newest first, one page at a time (keyset paging on the run id)."""
        where, params = [], []
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        statuses, triggers = list(statuses), list(triggers)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params += statuses
        if triggers:
            where.append(f"trigger IN ({','.join('?' * len(triggers))})")
            params += triggers
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        if until is not None:
            where.append("started_at < ?")
            params.append(until)
        if email:
            where.append("id IN (SELECT run_id FROM items WHERE email LIKE ? ESCAPE '\\')")
            params.append(_like(email))
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [_run_record(row) for row in self.db.execute(sql, params)]

    def query_items(
        self, run_id: int, *, limit: int = 1000, after_id: int = 0, outcomes: Iterable[str] = (),
        actions: Iterable[str] = (), email: str | None = None,
    ) -> list[ItemRecord]:
        """One run's items in order, one page at a time (keyset paging on the item id)."""
        where, params = ["run_id = ?", "id > ?"], [run_id, after_id]
        outcomes, actions = list(outcomes), list(actions)
        if outcomes:
            where.append(f"outcome IN ({','.join('?' * len(outcomes))})")
            params += outcomes
        if actions:
            where.append(f"action IN ({','.join('?' * len(actions))})")
            params += actions
        if email:
            where.append("email LIKE ? ESCAPE '\\'")
            params.append(_like(email))
        rows = self.db.execute(
            "SELECT id, run_id, email, website_id, list_id, action, direction, reason, outcome, "
            f"error_class, error_message, attempts, at FROM items WHERE {' AND '.join(where)} "
            "ORDER BY id LIMIT ?",
            (*params, limit),
        )
        return [ItemRecord(*row) for row in rows]

    def last_run(self) -> RunRecord | None:
        runs = self.runs(limit=1)
        return runs[0] if runs else None

    # --- items ---

    def add_item(
        self, run_id: int, *, email: str, website_id: int | None, list_id: int, action: str,
        direction: str, reason: str, outcome: str = "pending", error_class: str | None = None,
        error_message: str | None = None, attempts: int = 0,
    ) -> int:
        cursor = self.db.execute(
            "INSERT INTO items (run_id, email, website_id, list_id, action, direction, reason, outcome, "
            "error_class, error_message, attempts, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, email, website_id, list_id, action, direction, reason, outcome, error_class,
             error_message, attempts, int(time.time())),
        )
        return int(cursor.lastrowid)  # type: ignore[arg-type]

    def finish_item(
        self, item_id: int, outcome: str, *, attempts: int = 0, error_class: str | None = None,
        error_message: str | None = None,
    ) -> None:
        self.db.execute(
            "UPDATE items SET outcome = ?, attempts = ?, error_class = ?, error_message = ?, at = ? WHERE id = ?",
            (outcome, attempts, error_class, error_message, int(time.time()), item_id),
        )

    def items(self, run_id: int, limit: int = 1000, after_id: int = 0) -> list[ItemRecord]:
        rows = self.db.execute(
            "SELECT id, run_id, email, website_id, list_id, action, direction, reason, outcome, "
            "error_class, error_message, attempts, at FROM items WHERE run_id = ? AND id > ? "
            "ORDER BY id LIMIT ?",
            (run_id, after_id, limit),
        )
        return [ItemRecord(*row) for row in rows]

    def iter_items(self, run_id: int, page: int = 5000) -> Iterator[ItemRecord]:
        after = 0
        while True:
            batch = self.items(run_id, limit=page, after_id=after)
            if not batch:
                return
            yield from batch
            after = batch[-1].id

    # --- last synced state ---

    def load_state(self) -> dict[tuple[str, int], SyncedState]:
        return {item.key: item for item in self.iter_states()}

    def active_by_list(self) -> dict[int, int]:
        """Return how many identities were active in IEM at the last sync, by list id."""
        rows = self.db.execute(
            "SELECT list_id, COUNT(*) FROM synced_state WHERE iem_class = 'active' GROUP BY list_id")
        return {list_id: count for list_id, count in rows}

    def iter_states(self) -> Iterator[SyncedState]:
        """Stream the last synced state of every identity, in no particular order."""
        rows = self.db.execute(
            "SELECT email, website_id, list_id, magento_status, subscriber_ids, iem_class, iem_confirmed, "
            "iem_subscriber_id, firstname, lastname, synced_at FROM synced_state"
        )
        for row in rows:
            ids = tuple(int(x) for x in row[4].split(",") if x)
            yield SyncedState(row[0], row[1], row[2], row[3], ids, row[5], bool(row[6]), row[7],
                              row[8], row[9], row[10])

    def save_states(self, states: Iterable[SyncedState]) -> int:
        rows = [
            (s.email, s.website_id, s.list_id, s.magento_status, ",".join(map(str, s.subscriber_ids)),
             s.iem_class, int(s.iem_confirmed), s.iem_subscriber_id, s.firstname, s.lastname, s.synced_at)
            for s in states
        ]
        if rows:
            with self._transaction():
                self.db.executemany(
                    "INSERT OR REPLACE INTO synced_state VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
        return len(rows)

    def state_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM synced_state").fetchone()[0])

    def load_rejections(self) -> dict[tuple[str, int], Rejection]:
        return {(r.email, r.website_id): r for r in self.iter_rejections()}

    def iter_rejections(self) -> Iterator[Rejection]:
        rows = self.db.execute("SELECT email, website_id, action, fingerprint, message FROM rejections")
        for row in rows:
            yield Rejection(*row)

    def save_rejection(self, rejection: Rejection, run_id: int) -> None:
        self._rejections_exist = True
        self.db.execute(
            "INSERT OR REPLACE INTO rejections VALUES (?, ?, ?, ?, ?, ?)",
            (rejection.email, rejection.website_id, rejection.action, rejection.fingerprint,
             rejection.message, run_id),
        )

    def clear_rejection(self, email: str, website_id: int, action: str) -> None:
        """Forgets a refusal once the same kind of write has gone through."""
        if not self._rejections_exist:
            return  # saves a DELETE per written item in the common case of no refusals
        self.db.execute(
            "DELETE FROM rejections WHERE email = ? AND website_id = ? AND action = ?",
            (email, website_id, action),
        )

    # --- lists ---

    def backfilled_lists(self) -> set[int]:
        return {row[0] for row in self.db.execute("SELECT list_id FROM lists")}

    def mark_backfilled(self, list_ids: Iterable[int], run_id: int) -> None:
        now = int(time.time())
        with self._transaction():
            for list_id in list_ids:
                self.db.execute(
                    "INSERT OR IGNORE INTO lists (list_id, backfilled_run_id, backfilled_at) VALUES (?, ?, ?)",
                    (list_id, run_id, now),
                )


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _run_record(row: tuple) -> RunRecord:
    return RunRecord(
        id=row[0], trigger=row[1], status=row[2], started_at=row[3], finished_at=row[4],
        allow_mass_changes=bool(row[5]), counts=json.loads(row[6]), summary=json.loads(row[7]),
        error=row[8],
    )


def history_open_failure(path: Path, error: BaseException) -> Translatable:
    """Return the message for a history database that cannot be opened or created."""
    return Translatable("the history database {path} cannot be opened ({error}); make {folder} a writable "
                        "folder of the service's user, with free space, then start a run again",
                        path=str(path), error=str(error), folder=str(path.parent))


def history_write_failure(path: Path, error: BaseException) -> Translatable:
    """Return the message for a run that could not write the history or its temporary file beside it."""
    return Translatable("writing the history database {path} or a run's temporary file beside it failed "
                        "({error}); free space on the file system of {folder} or make it writable, then "
                        "start a run again", path=str(path), error=str(error), folder=str(path.parent))
