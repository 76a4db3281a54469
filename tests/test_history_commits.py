"""Grouped commits of the history: the rows another connection reads, as after a SIGKILL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edm_tui.daemon.history import HistoryStore
from edm_tui.sync.state import Rejection, SyncedState


def _outcomes(path: Path) -> list[tuple[str, str]]:
    """Read the items through a second connection: only committed rows are visible there."""
    other = sqlite3.connect(path)
    try:
        return [tuple(row) for row in other.execute("SELECT email, outcome FROM items ORDER BY id")]
    finally:
        other.close()


def _state(email: str) -> SyncedState:
    return SyncedState(email, 1, 1, 1, (7,), "active", True, 70, None, None, 1_700_000_000)


def _add(store: HistoryStore, run_id: int, email: str) -> int:
    return store.add_item(run_id, email=email, website_id=1, list_id=1, action="add", direction="to_iem",
                          reason="new_in_magento")


def test_commit_makes_pending_row_visible(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.sqlite")
    run_id = store.start_run("cli", False)

    with store.grouped_commits():
        first = _add(store, run_id, "a@x.test")
        assert _outcomes(store.path) == []
        store.commit()
        assert _outcomes(store.path) == [("a@x.test", "pending")]

        store.finish_item(first, "succeeded", attempts=1)
        store.save_states([_state("a@x.test")])
        _add(store, run_id, "b@x.test")
        assert _outcomes(store.path) == [("a@x.test", "pending")]
        store.commit()
        assert _outcomes(store.path) == [("a@x.test", "succeeded"), ("b@x.test", "pending")]

    assert store.state_count() == 1
    store.close()


def test_group_end_commits_the_rest(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.sqlite")
    run_id = store.start_run("cli", False)

    with store.grouped_commits():
        item = _add(store, run_id, "a@x.test")
        store.commit()
        store.finish_item(item, "failed", error_class="rejected", error_message="refused")

    assert _outcomes(store.path) == [("a@x.test", "failed")]
    assert store.db.in_transaction is False
    store.close()


def test_group_commits_on_error(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.sqlite")
    run_id = store.start_run("cli", False)

    with pytest.raises(RuntimeError), store.grouped_commits():
        _add(store, run_id, "a@x.test")
        raise RuntimeError("a worker failed")

    assert _outcomes(store.path) == [("a@x.test", "pending")]
    assert store.db.in_transaction is False
    store.close()


def test_commit_outside_group_is_noop(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.sqlite")
    run_id = store.start_run("cli", False)

    _add(store, run_id, "a@x.test")  # autocommit outside a group
    store.commit()

    assert _outcomes(store.path) == [("a@x.test", "pending")]
    assert store.db.in_transaction is False
    store.close()


def _rejection_count(store: HistoryStore) -> int:
    return int(store.db.execute("SELECT COUNT(*) FROM rejections").fetchone()[0])


def test_clear_rejection_inside_group(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.sqlite")
    run_id = store.start_run("cli", False)
    store.save_rejection(Rejection("old@x.test", 1, "add", "f1", "refused"), run_id)

    with store.grouped_commits():
        store.clear_rejection("old@x.test", 1, "add")
    assert _rejection_count(store) == 0

    with store.grouped_commits():  # the table is empty when the group starts
        store.save_rejection(Rejection("new@x.test", 1, "add", "f2", "refused"), run_id)
        assert _rejection_count(store) == 1
        store.clear_rejection("new@x.test", 1, "add")
    assert _rejection_count(store) == 0
    store.close()
