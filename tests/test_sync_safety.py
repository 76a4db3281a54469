"""Runs under faults and mistakes: retries, refusals, the safety brake, the run lock."""

from __future__ import annotations

import asyncio
import fcntl
import time

import pytest

from edm_tui.daemon.history import HistoryStore
from edm_tui.daemon.runner import AlreadyRunning, RunAborted, SyncRun
from tests import mariadb_support as mdb
from tests.sync_support import Bench

T1 = 1_700_000_000
T2 = 1_700_003_600


def item_rows(b: Bench, run_id: int) -> list[tuple[str, str, str, str | None, int]]:
    store = HistoryStore(b.config().storage.history_path)
    try:
        return [(i.email, i.action, i.outcome, i.error_class, i.attempts) for i in store.iter_items(run_id)]
    finally:
        store.close()


def by_method(b: Bench) -> dict[str, int]:
    return b.sim_state()["stats"]["by_method"]


# --- transport faults ---


@pytest.mark.parametrize("kind", ["html", "empty", "http500", "redirect", "reset"])
def test_transient_fault_retried(bench: Bench, kind: str) -> None:
    b = bench
    b.add_row("r@example.test", 1, T1)
    b.sim_config(faults=[{"kind": kind, "count": 2, "methods": ["AddSubscriberToList"]}])
    result = b.sync()
    assert result.status == "succeeded"
    assert item_rows(b, result.run_id) == [("r@example.test", "add", "succeeded", None, 3)]
    assert list(b.iem()) == ["r@example.test"]


def test_truncated_add_answer_no_duplicate(bench: Bench) -> None:
    b = bench
    b.add_row("t@example.test", 1, T1)
    b.sim_config(faults=[{"kind": "truncated", "count": 1, "methods": ["AddSubscriberToList"]}])
    result = b.sync()
    assert result.status == "succeeded"
    assert [r["emailaddress"] for r in b.iem_rows()] == ["t@example.test"]
    assert by_method(b)["AddSubscriberToList"] == 2
    # The retried add found the row, so the state records that row's id.
    assert state_ids(b) == {"t@example.test": b.iem()["t@example.test"]["subscriberid"]}


def state_ids(b: Bench) -> dict[str, int | None]:
    store = HistoryStore(b.config().storage.history_path)
    try:
        return {s.email: s.iem_subscriber_id for s in store.iter_states()}
    finally:
        store.close()


def test_added_rows_recorded_with_iem_ids(bench: Bench) -> None:
    b = bench
    b.add_row("a@example.test", 1, T1)
    customer = b.add_customer("c@example.test", 1, "Anna", "Kiss")
    b.add_row("c@example.test", 1, T1, customer_id=customer)
    first = b.sync()
    store = HistoryStore(b.config().storage.history_path)
    try:
        synced_at = {s.email: s.synced_at for s in store.iter_states()}
    finally:
        store.close()

    assert first.counts == {"add": {"succeeded": 2}}
    assert b.iem()["c@example.test"]["customfields"] != {}  # the add carried the names
    assert state_ids(b) == {email: row["subscriberid"] for email, row in b.iem().items()}
    assert None not in state_ids(b).values()

    time.sleep(1.1)  # a state recorded again would get a later synced_at
    second = b.sync()
    store = HistoryStore(b.config().storage.history_path)
    try:
        assert {s.email: s.synced_at for s in store.iter_states()} == synced_at
    finally:
        store.close()
    assert second.counts == {}


def test_old_duplicate_answer_is_bare_id(bench: Bench) -> None:
    b = bench
    b.sim_config(duplicate_style="id")
    b.add_row("old@example.test", 1, T1)
    b.sim_config(faults=[{"kind": "truncated", "count": 1, "methods": ["AddSubscriberToList"]}])
    result = b.sync()
    assert result.status == "succeeded"
    assert len(b.iem_rows()) == 1


def test_retries_exhausted_then_next_run_finishes(bench: Bench) -> None:
    b = bench
    for n in range(3):
        b.add_row(f"f{n}@example.test", 1, T1)
    b.sim_config(faults=[{"kind": "html", "rate": 1, "methods": ["AddSubscriberToList"]}])
    first = b.sync()
    assert first.status == "partial"
    assert first.exit_code == 1
    assert first.counts == {"add": {"failed": 3}}
    assert [row[2:] for row in item_rows(b, first.run_id)] == [("failed", "transient", 3)] * 3
    assert b.iem_rows() == []

    b.sim_config(faults=[])
    second = b.sync()
    assert second.status == "succeeded"
    assert sorted(b.iem()) == ["f0@example.test", "f1@example.test", "f2@example.test"]


def test_truncated_list_read_restarted(bench: Bench) -> None:
    b = bench
    for n in range(30):
        b.add_iem(f"i{n}@example.test", subscribedate=T1)
        b.add_row(f"i{n}@example.test", 1, T1)
    b.sim_config(faults=[{"kind": "truncated", "count": 1, "methods": ["GetSubscribers"]}])
    result = b.sync()
    assert result.status == "succeeded"
    assert result.counts == {}
    assert by_method(b)["GetSubscribers"] == 3  # list 1 twice, list 2 once


def test_notice_and_bom_prefixes_parsed(bench: Bench) -> None:
    b = bench
    b.add_iem("n@example.test", subscribedate=T1)
    b.sim_config(faults=[{"kind": "notice", "count": 1, "methods": ["GetSubscribers"]},
                         {"kind": "bom", "count": 1, "methods": ["GetSubscribers"]}])
    result = b.sync()
    assert result.status == "succeeded"
    assert [r[1:4] for r in b.magento()] == [("n@example.test", 1, 1)]


# --- authentication and refusals ---


def test_bad_token_stops_without_retry(bench: Bench) -> None:
    b = bench
    b.add_row("a@example.test", 1, T1)
    config = b.config(interspire={"token": "wrong-token"})
    with pytest.raises(RunAborted) as caught:
        b.sync(config=config)
    assert "interspire.token" in str(caught.value)
    assert "wrong-token" not in str(caught.value)
    assert b.sim_state()["stats"]["requests"] == 1
    assert b.iem_rows() == []


def test_unknown_field_refused_not_retried(bench: Bench) -> None:
    b = bench
    customer = b.add_customer("c@example.test", 1, "Cili", "Nagy")
    b.add_row("c@example.test", 1, T1, customer_id=customer)
    b.overrides = {"interspire": {"firstname_field_id": 99}}
    first = b.sync()
    assert first.status == "partial"
    assert item_rows(b, first.run_id) == [("c@example.test", "add", "failed", "rejected", 1)]
    assert b.iem_rows() == []

    b.reset_stats()
    second = b.sync()
    assert second.counts == {}
    assert second.summary["previously_rejected"] == 1
    assert by_method(b).get("AddSubscriberToList", 0) == 0

    b.sql("UPDATE `{p}customer_entity` SET firstname = 'Cecília' WHERE entity_id = %s", (customer,))
    b.overrides = {}
    third = b.sync()
    assert third.status == "succeeded"
    assert b.iem()["c@example.test"]["customfields"] == {"2": "Cecília", "3": "Nagy"}


def test_unreachable_iem_is_configuration_error(bench: Bench) -> None:
    b = bench
    config = b.config(interspire={"url": "http://127.0.0.1:9/xml.php", "retries": 0, "timeout": 2})
    with pytest.raises(RunAborted) as caught:
        b.sync(config=config)
    assert "interspire.url" in str(caught.value)


def test_wrong_database_names_it(bench: Bench) -> None:
    b = bench
    config = b.config(magento={"database": "edm_test_does_not_exist"})
    with pytest.raises(RunAborted) as caught:
        b.sync(config=config)
    assert "edm_test_does_not_exist" in str(caught.value)


# --- safety brake ---


def test_brake_blocks_mass_unsubscribe(bench: Bench) -> None:
    b = bench
    state = b.sim_state()
    for n in range(60):
        b.add_row(f"m{n}@example.test", 1, T1)
        state["subscribers"].append({
            "subscriberid": n + 1, "listid": 1, "emailaddress": f"m{n}@example.test", "format": "h",
            "confirmed": True, "subscribedate": T1 - 10, "requestdate": T1 - 10, "unsubscribed": T2,
            "bounced": 0, "confirmcode": "c" * 32, "customfields": {}})
    state["next_subscriberid"] = 61
    b.put_state(state)

    blocked = b.sync()
    assert blocked.status == "blocked"
    assert blocked.exit_code == 1
    assert "60" in blocked.error
    assert "50" in blocked.error
    assert {row[3] for row in b.magento()} == {1}
    assert item_rows(b, blocked.run_id) == []

    allowed = b.sync(allow_mass_changes=True)
    assert allowed.status == "succeeded"
    assert {row[3] for row in b.magento()} == {3}


def test_brake_on_emptied_list(bench: Bench) -> None:
    b = bench
    for n in range(3):
        b.add_row(f"e{n}@example.test", 1, T1)
    b.sync()
    state = b.sim_state()
    state["subscribers"] = []
    b.put_state(state)
    blocked = b.sync()
    assert blocked.status == "blocked"
    assert "list 1" in blocked.error
    assert b.iem_rows() == []


# --- run lock ---


def test_database_lock_refuses_second_run(bench: Bench) -> None:
    b = bench
    b.add_row("l@example.test", 1, T1)
    lock_name = asyncio.run(_lock_name(b))
    holder = mdb.connect(b.database)
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, 0)", (lock_name,))
            assert cursor.fetchone()[0] == 1
        with pytest.raises(AlreadyRunning):
            b.sync()
    finally:
        holder.close()
    assert b.iem_rows() == []
    store = HistoryStore(b.config().storage.history_path)
    assert store.runs() == []
    store.close()


def test_process_lock_refuses_second_run(bench: Bench) -> None:
    b = bench
    b.add_row("l@example.test", 1, T1)
    state_dir = b.config().storage.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "sync.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(AlreadyRunning):
            b.sync()
    assert b.iem_rows() == []


def test_concurrent_runs_one_wins(bench: Bench) -> None:
    b = bench
    for n in range(40):
        b.add_row(f"c{n}@example.test", 1, T1)
    b.sim_config(latency_ms=20)

    async def both() -> list:
        config = b.config()
        other = b.config(storage={"state_dir": str(b.tmp / "other-state")})
        return await asyncio.gather(SyncRun(config).execute(), SyncRun(other).execute(),
                                    return_exceptions=True)

    results = asyncio.run(both())
    refused = [r for r in results if isinstance(r, AlreadyRunning)]
    finished = [r for r in results if not isinstance(r, BaseException)]
    assert len(refused) == 1
    assert len(finished) == 1
    assert finished[0].counts == {"add": {"succeeded": 40}}
    assert len(b.iem_rows()) == 40


async def _lock_name(b: Bench) -> str:
    from edm_tui.magento.db import run_lock_name

    return run_lock_name(b.database, b.prefix)


def test_interrupted_run_marked_at_next_start(bench: Bench) -> None:
    b = bench
    store = HistoryStore(b.config().storage.history_path)
    run_id = store.start_run("cli")
    store.add_item(run_id, email="x@example.test", website_id=1, list_id=1, action="add",
                          direction="to_iem", reason="new_in_magento")
    store.close()
    b.sync()
    store = HistoryStore(b.config().storage.history_path)
    try:
        assert store.run(run_id).status == "interrupted"
        assert [i.outcome for i in store.iter_items(run_id)] == ["interrupted"]
    finally:
        store.close()
