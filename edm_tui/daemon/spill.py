"""A temporary SQLite file that lets a run plan any number of subscribers in bounded memory.

A run writes the Magento rows, the IEM rows, the last synced state and the rejections into
the file as it reads them. Planning then walks the groups (list id, normalised email) in key
order, merging four index scans, and plans one group at a time with `GroupPlanner`. The
groups that need writes, the settled states and the invalid decisions go back into the file,
so that the writes after the safety brake read them from there. Only a sample of the
decisions stays in memory, for `edm-sync plan` and the dashboard.

The file lives in the state directory (it contains email addresses, like the history), is
created with mode 0600 and is deleted when the run ends. A file left by a process that was
killed is deleted by the next run.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self

from edm_tui.sync.identity import (
    INVALID_EMAIL,
    OUT_OF_SCOPE,
    magento_identity,
    normalise_email,
)
from edm_tui.sync.model import IemRow, MagentoRow
from edm_tui.sync.reconcile import (
    Decision,
    GroupInput,
    GroupPlan,
    GroupPlanner,
    Plan,
    SyncOptions,
)
from edm_tui.sync.state import Rejection, SyncedState

log = logging.getLogger("edm_sync.run")

SAMPLE_PER_ACTION = 1000  # decisions of each action kept in memory; the RPC `plan` shows at most 1000
BATCH = 5000  # rows per executemany, and states or groups per stored blob
CACHE_KIB = 32 * 1024  # SQLite page cache of the spill connection
FILE_PREFIX = ".plan-"
_FILE_PATTERN = re.compile(re.escape(FILE_PREFIX) + r"(\d+)-.*\.sqlite")

_SCHEMA = """
CREATE TABLE magento (
    seq INTEGER PRIMARY KEY, list_id INTEGER NOT NULL, email_norm TEXT NOT NULL,
    subscriber_id INTEGER NOT NULL, email TEXT, store_id INTEGER, website_id INTEGER,
    customer_id INTEGER NOT NULL, status INTEGER NOT NULL, changed_at INTEGER,
    firstname TEXT, lastname TEXT, name_error TEXT
);
CREATE TABLE iem (
    seq INTEGER PRIMARY KEY, list_id INTEGER NOT NULL, email_norm TEXT NOT NULL,
    subscriber_id INTEGER NOT NULL, email TEXT NOT NULL, confirmed INTEGER NOT NULL,
    subscribedate INTEGER NOT NULL, unsubscribed INTEGER NOT NULL, bounced INTEGER NOT NULL
);
CREATE TABLE last (
    group_list_id INTEGER NOT NULL, email TEXT NOT NULL, website_id INTEGER NOT NULL,
    list_id INTEGER NOT NULL, magento_status INTEGER, subscriber_ids TEXT NOT NULL,
    iem_class TEXT NOT NULL, iem_confirmed INTEGER NOT NULL, iem_subscriber_id INTEGER,
    firstname TEXT, lastname TEXT, synced_at INTEGER NOT NULL
);
CREATE TABLE rejections (
    group_list_id INTEGER NOT NULL, email TEXT NOT NULL, website_id INTEGER NOT NULL,
    action TEXT NOT NULL, fingerprint TEXT NOT NULL, message TEXT NOT NULL
);
CREATE TABLE quiet (
    list_id INTEGER NOT NULL, email_norm TEXT NOT NULL, subscribed INTEGER NOT NULL,
    PRIMARY KEY (list_id, email_norm)
) WITHOUT ROWID;
CREATE TABLE planned (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE settled (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE invalid (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""

# Created once the rows are in: building an index at the end is faster than keeping it up to
# date on every insert. The group walks read these in order, so SQLite never sorts.
_INDEXES = """
CREATE INDEX magento_group ON magento(list_id, email_norm);
CREATE INDEX magento_subscriber ON magento(subscriber_id);
CREATE INDEX iem_group ON iem(list_id, email_norm, subscriber_id);
CREATE INDEX last_group ON last(group_list_id, email, website_id);
CREATE INDEX rejections_group ON rejections(group_list_id, email, website_id);
"""


class SubscriberIds:
    """Contains the subscriber_id of every spilled Magento row (in scope, with an email)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __contains__(self, subscriber_id: object) -> bool:
        row = self.db.execute("SELECT 1 FROM magento WHERE subscriber_id = ? LIMIT 1", (subscriber_id,))
        return row.fetchone() is not None


class SpillStore:
    """One run's spill file; use it as a context manager so the file is deleted on errors too."""

    def __init__(self, directory: Path, list_of: Callable[[int], int]) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        remove_stale_files(directory)
        handle, name = tempfile.mkstemp(prefix=f"{FILE_PREFIX}{os.getpid()}-", suffix=".sqlite", dir=directory)
        os.close(handle)
        self.path = Path(name)
        self.list_of = list_of
        self.out_of_scope = 0
        self.invalid_email = 0
        self.magento_rows = 0
        self.quiet_groups = 0  # groups of the last plan() that needed no planning (see _QUIET_GROUPS)
        self._indexed = False
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            # Nothing here has to survive a crash: the next run starts from both sides again.
            self.db.execute("PRAGMA journal_mode=OFF")
            self.db.execute("PRAGMA synchronous=OFF")
            self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self.db.executescript(_SCHEMA)
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and delete the file."""
        self.db.close()
        self.path.unlink(missing_ok=True)

    # --- filling ---

    def add_magento_rows(self, rows: Iterable[MagentoRow]) -> None:
        """Store the rows that belong to an identity; count those out of scope or without an email."""
        values = []
        for row in rows:
            self.magento_rows += 1
            key = magento_identity(row)
            if key == OUT_OF_SCOPE:
                self.out_of_scope += 1
                continue
            if key == INVALID_EMAIL:
                self.invalid_email += 1
                continue
            email_norm, website_id = key  # type: ignore[misc]
            values.append((
                self.list_of(website_id), email_norm, row.subscriber_id, row.email, row.store_id,
                row.website_id, row.customer_id, row.status, row.changed_at, row.firstname, row.lastname,
                row.name_error,
            ))
        self._insert("magento", "list_id, email_norm, subscriber_id, email, store_id, website_id, customer_id, "
                     "status, changed_at, firstname, lastname, name_error", values)

    def add_iem_rows(self, rows: Iterable[IemRow]) -> None:
        values = [
            (r.list_id, normalise_email(r.email), r.subscriber_id, r.email, int(r.confirmed), r.subscribedate,
             r.unsubscribed, r.bounced)
            for r in rows
        ]
        self._insert("iem", "list_id, email_norm, subscriber_id, email, confirmed, subscribedate, unsubscribed, "
                     "bounced", values)

    def discard_iem_list(self, list_id: int) -> None:
        """Forget the rows of a list whose read failed part way, before it is read again."""
        self.db.execute("DELETE FROM iem WHERE list_id = ?", (list_id,))

    def add_states(self, states: Iterable[SyncedState]) -> None:
        for batch in _batches(states):
            self._insert("last", "group_list_id, email, website_id, list_id, magento_status, subscriber_ids, "
                         "iem_class, iem_confirmed, iem_subscriber_id, firstname, lastname, synced_at", [
                             (self.list_of(s.website_id), s.email, s.website_id, s.list_id, s.magento_status,
                              ",".join(map(str, s.subscriber_ids)), s.iem_class, int(s.iem_confirmed),
                              s.iem_subscriber_id, s.firstname, s.lastname, s.synced_at)
                             for s in batch
                         ])

    def copy_states(self, history: Path, default_list: int, website_lists: Mapping[int, int]) -> None:
        """Copy the last synced states straight from the history file, inside SQLite.

        Equal to `add_states(store.iter_states())` with `list_of` built from the same list
        settings, but without turning 100 000s of rows into Python objects and back.
        """
        cases = " ".join("WHEN ? THEN ?" for _ in website_lists)
        group_list = f"CASE website_id {cases} ELSE ? END" if website_lists else "?"
        params: list[int] = [value for pair in website_lists.items() for value in pair] + [default_list]
        self.db.execute("ATTACH DATABASE ? AS history", (str(history),))
        try:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO last (group_list_id, email, website_id, list_id, magento_status, subscriber_ids, "
                "iem_class, iem_confirmed, iem_subscriber_id, firstname, lastname, synced_at) "
                f"SELECT {group_list}, email, website_id, list_id, magento_status, subscriber_ids, iem_class, "
                "iem_confirmed, iem_subscriber_id, firstname, lastname, synced_at FROM history.synced_state",
                params,
            )
            self.db.execute("COMMIT")
        finally:
            self.db.execute("DETACH DATABASE history")

    def add_rejections(self, rejections: Iterable[Rejection]) -> None:
        for batch in _batches(rejections):
            self._insert("rejections", "group_list_id, email, website_id, action, fingerprint, message", [
                (self.list_of(r.website_id), r.email, r.website_id, r.action, r.fingerprint, r.message)
                for r in batch
            ])

    def _insert(self, table: str, columns: str, values: list[tuple[Any, ...]]) -> None:
        if values:
            marks = ", ".join("?" * (columns.count(",") + 1))
            self.db.execute("BEGIN")
            self.db.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", values)
            self.db.execute("COMMIT")

    # --- planning ---

    def plan(
        self, options: SyncOptions, on_progress: Callable[[int], None] | None = None, *, store: bool = True
    ) -> Plan:
        """Plan every group; return the counts and a sample of the decisions.

        With `store`, the groups needing writes, the settled states and the invalid decisions
        of the whole plan are kept in the file, for iter_planned(), iter_settled() and
        iter_invalid(). A dry run passes store=False and saves that time.
        """
        if not self._indexed:
            self.db.executescript(_INDEXES)
            self._indexed = True
        self.db.execute("DELETE FROM planned")
        self.db.execute("DELETE FROM settled")
        self.db.execute("DELETE FROM invalid")
        self.db.execute("DELETE FROM quiet")
        self.db.execute(_QUIET_GROUPS)
        self.quiet_groups, quiet_subscribed = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(subscribed), 0) FROM quiet").fetchone()

        planner = GroupPlanner(options, SubscriberIds(self.db))
        tally = Plan(out_of_scope=self.out_of_scope, invalid_email=self.invalid_email,
                     identities=self.quiet_groups, subscribed_identities=quiet_subscribed)
        sample = Plan()
        totals: dict[str, int] = {}
        sampled: dict[str, int] = {}
        invalid_count = rejected_count = planned_groups = 0
        planned: list[GroupPlan] = []
        settled: list[tuple[Any, ...]] = []
        invalid: list[tuple[Decision, str]] = []

        self.db.execute("BEGIN")
        for done, group in enumerate(self._iter_groups(), start=self.quiet_groups + 1):
            tally.duplicates += _count_duplicates(group)
            planner.plan_group(tally, group)

            for group_plan in tally.groups:
                planned_groups += 1
                if _add_to_sample(group_plan, totals, sampled):
                    sample.groups.append(group_plan)
                if store:
                    planned.append(group_plan)
            if store:
                settled.extend(_state_values(state) for state in tally.settled)
            for item in tally.invalid:
                invalid_count += 1
                if len(sample.invalid) < SAMPLE_PER_ACTION:
                    sample.invalid.append(item)
                if store:
                    invalid.append(item)
            rejected_count += len(tally.rejected)
            tally.groups.clear()
            tally.settled.clear()
            tally.invalid.clear()
            tally.rejected.clear()

            if len(planned) >= BATCH:
                self._store_blob("planned", planned)
                planned = []
            if len(settled) >= BATCH:
                self._store_blob("settled", settled)
                settled = []
            if len(invalid) >= BATCH:
                self._store_blob("invalid", invalid)
                invalid = []
            if on_progress is not None and done % 1000 == 0:
                on_progress(done)
        for table, items in (("planned", planned), ("settled", settled), ("invalid", invalid)):
            if items:
                self._store_blob(table, items)
        self.db.execute("COMMIT")

        for name in ("identities", "subscribed_identities", "out_of_scope", "invalid_email", "duplicates",
                     "pending", "unknown_status"):
            setattr(sample, name, getattr(tally, name))
        sample.totals = totals
        sample.rejected_count = rejected_count
        sample.truncated = len(sample.groups) < planned_groups or len(sample.invalid) < invalid_count
        return sample

    def _store_blob(self, table: str, items: list[Any]) -> None:
        self.db.execute(f"INSERT INTO {table} (data) VALUES (?)", (pickle.dumps(items, pickle.HIGHEST_PROTOCOL),))

    def _iter_blobs(self, table: str) -> Iterator[Any]:
        # The file is this process's own, created with mode 0600, so unpickling it is safe.
        for (data,) in self.db.execute(f"SELECT data FROM {table} ORDER BY seq"):
            yield from pickle.loads(data)

    def iter_planned(self) -> Iterator[GroupPlan]:
        """Yield the groups that need writes, in key order."""
        return self._iter_blobs("planned")

    def iter_settled(self) -> Iterator[list[SyncedState]]:
        """Yield the states to record without a write, in batches of at most BATCH."""
        for (data,) in self.db.execute("SELECT data FROM settled ORDER BY seq"):
            yield [SyncedState(*values) for values in pickle.loads(data)]

    def iter_invalid(self) -> Iterator[tuple[Decision, str]]:
        """Yield the decisions that fail up front because of bad data, with the reason."""
        return self._iter_blobs("invalid")

    def _iter_groups(self) -> Iterator[GroupInput]:
        """Merge the four tables, each read in (list id, email) order, into one input per group."""
        magento = self.db.execute(
            "SELECT list_id, email_norm, subscriber_id, email, store_id, website_id, customer_id, status, "
            "changed_at, firstname, lastname, name_error FROM magento "
            f"WHERE {_NOT_QUIET.format('magento.list_id', 'magento.email_norm')} "
            "ORDER BY list_id, email_norm, seq"
        )
        last = self.db.execute(
            "SELECT group_list_id, email, website_id, list_id, magento_status, subscriber_ids, iem_class, "
            "iem_confirmed, iem_subscriber_id, firstname, lastname, synced_at FROM last "
            f"WHERE {_NOT_QUIET.format('last.group_list_id', 'last.email')} "
            "ORDER BY group_list_id, email, website_id"
        )
        iem = self.db.execute(
            "SELECT list_id, email_norm, subscriber_id, email, confirmed, subscribedate, unsubscribed, bounced "
            f"FROM iem WHERE {_NOT_QUIET.format('iem.list_id', 'iem.email_norm')} "
            "ORDER BY list_id, email_norm, subscriber_id, seq"
        )
        rejections = self.db.execute(  # a quiet group has no rejections
            "SELECT group_list_id, email, website_id, action, fingerprint, message FROM rejections "
            "ORDER BY group_list_id, email, website_id"
        )
        streams = [itertools.groupby(cursor, key=_group_key) for cursor in (magento, last, iem, rejections)]
        heads = [next(stream, None) for stream in streams]

        while any(head is not None for head in heads):
            key = min(head[0] for head in heads if head is not None)
            parts: list[list[tuple[Any, ...]]] = []
            for i, head in enumerate(heads):
                if head is not None and head[0] == key:
                    parts.append(list(head[1]))
                    heads[i] = next(streams[i], None)
                else:
                    parts.append([])
            yield _group_input(key, *parts)


# The quiet groups: one Magento row, one last synced state and one IEM row, no rejection,
# and both sides as the last sync left them. GroupPlanner finds no change in such a group
# (`_decide_member` returns early), so it plans no write and no new state, and the walk
# skips it. The conditions are those under which `plan_group` adds nothing but counts:
# * the state is of the group's list, with the Magento row's website, status and subscriber_id;
# * the IEM row has the state's class, confirmed flag and subscriber id;
# * the status is subscribed (1) or unsubscribed (3), so that no pending counts apply;
# * a subscribed customer's names are readable, and blank or equal to those last pushed, so
#   that no name update is planned (names are pushed for subscribed customers only).
# tests/test_streamed_plan.py checks that skipping them leaves the plan unchanged.
_QUIET_GROUPS = """
INSERT INTO quiet (list_id, email_norm, subscribed)
SELECT m.list_id, m.email_norm, m.status = 1 OR (i.unsubscribed <= 0 AND i.bounced <= 0)
FROM magento AS m
JOIN last AS l ON l.group_list_id = m.list_id AND l.email = m.email_norm
JOIN iem AS i ON i.list_id = m.list_id AND i.email_norm = m.email_norm
WHERE m.status IN (1, 3)
  AND l.website_id = m.website_id AND l.list_id = m.list_id AND l.magento_status = m.status
  AND l.subscriber_ids = CAST(m.subscriber_id AS TEXT)
  AND l.iem_class = CASE WHEN i.unsubscribed > 0 THEN 'unsubscribed' WHEN i.bounced > 0 THEN 'bounced'
                         ELSE 'active' END
  AND l.iem_confirmed = i.confirmed AND l.iem_subscriber_id = i.subscriber_id
  AND (m.status <> 1 OR m.customer_id <= 0
       OR (m.name_error IS NULL AND (COALESCE(m.firstname, '') = '' OR m.firstname = l.firstname)
           AND (COALESCE(m.lastname, '') = '' OR m.lastname = l.lastname)))
  AND NOT EXISTS (SELECT 1 FROM magento AS m2
                  WHERE m2.list_id = m.list_id AND m2.email_norm = m.email_norm AND m2.seq <> m.seq)
  AND NOT EXISTS (SELECT 1 FROM last AS l2
                  WHERE l2.group_list_id = m.list_id AND l2.email = m.email_norm AND l2.rowid <> l.rowid)
  AND NOT EXISTS (SELECT 1 FROM iem AS i2
                  WHERE i2.list_id = m.list_id AND i2.email_norm = m.email_norm AND i2.seq <> i.seq)
  AND NOT EXISTS (SELECT 1 FROM rejections AS r WHERE r.group_list_id = m.list_id AND r.email = m.email_norm)
"""
_NOT_QUIET = "NOT EXISTS (SELECT 1 FROM quiet AS q WHERE q.list_id = {0} AND q.email_norm = {1})"


def _group_key(row: tuple[Any, ...]) -> tuple[int, str]:
    return (row[0], row[1])


def _group_input(
    key: tuple[int, str],
    magento: list[tuple[Any, ...]],
    last: list[tuple[Any, ...]],
    iem: list[tuple[Any, ...]],
    rejections: list[tuple[Any, ...]],
) -> GroupInput:
    list_id, email = key
    rows: dict[int, list[MagentoRow]] = {}
    for r in magento:
        rows.setdefault(r[5], []).append(MagentoRow(*r[2:]))
    states = {
        r[2]: SyncedState(r[1], r[2], r[3], r[4], tuple(int(x) for x in r[5].split(",") if x), r[6],
                          bool(r[7]), r[8], r[9], r[10], r[11])
        for r in last
    }
    # The lowest subscriber id wins when a list returned the address twice (see index_iem_rows).
    iem_row = None
    if iem:
        r = iem[0]
        iem_row = IemRow(r[2], r[3], r[0], bool(r[4]), r[5], r[6], r[7])
    return GroupInput(
        list_id=list_id,
        email=email,
        websites=sorted(rows.keys() | states.keys()),
        rows=rows,
        last=states,
        iem=iem_row,
        rejections={r[2]: Rejection(r[1], r[2], r[3], r[4], r[5]) for r in rejections},
    )


def _state_values(state: SyncedState) -> tuple[Any, ...]:
    """Return the state's fields in SyncedState's order: a tuple pickles faster than the dataclass."""
    return (state.email, state.website_id, state.list_id, state.magento_status, state.subscriber_ids,
            state.iem_class, state.iem_confirmed, state.iem_subscriber_id, state.firstname, state.lastname,
            state.synced_at)


def _count_duplicates(group: GroupInput) -> int:
    count = 0
    for website, rows in group.rows.items():
        if len(rows) > 1:
            count += 1
            log.debug("identity %s on website %d has %d rows", group.email, website, len(rows))
    return count


def _add_to_sample(group: GroupPlan, totals: dict[str, int], sampled: dict[str, int]) -> bool:
    """Count the group's decisions; return whether the sample still needs one of its actions."""
    needed = False
    for decision in group.decisions:
        action = decision.action.value
        totals[action] = totals.get(action, 0) + 1
        if sampled.get(action, 0) < SAMPLE_PER_ACTION:
            needed = True
    if needed:
        for decision in group.decisions:
            sampled[decision.action.value] = sampled.get(decision.action.value, 0) + 1
    return needed


def _batches(items: Iterable[Any]) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, BATCH)):
        yield batch


def remove_stale_files(directory: Path) -> None:
    """Delete spill files whose process no longer runs (it was killed before it could clean up)."""
    for path in directory.glob(f"{FILE_PREFIX}*.sqlite"):
        match = _FILE_PATTERN.fullmatch(path.name)
        if match is None or process_exists(int(match.group(1))):
            continue
        path.unlink(missing_ok=True)
        log.info("deleted the spill file %s of a run that stopped without cleaning up", path)


def process_exists(pid: int) -> bool:
    """Return whether a process with this pid runs (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["SpillStore", "process_exists", "remove_stale_files"]
