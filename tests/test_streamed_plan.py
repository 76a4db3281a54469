"""The plan built through the spill file equals the plan built in memory.

Random worlds are synced once in memory (so that they have last synced states), then both
sides change at random (statuses, deleted rows, changed email addresses, names that cannot
be read) and some planned writes are marked as rejected. The streamed plan of the result
must hold the same groups, settled states, invalid decisions and counts as `reconcile`.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edm_tui.daemon.spill import SpillStore
from edm_tui.sync.identity import group_magento_rows, index_iem_rows, list_for_website
from edm_tui.sync.reconcile import Plan, reconcile
from edm_tui.sync.state import Rejection
from tests.engine_world import World

T0 = 1_600_000_000
T2 = 1_700_000_000
# Case, white space and non-ASCII spellings, so that grouping and the SQLite sort order are tested.
EMAILS = ["a@x.test", "A@x.test ", "b@x.test", "é@x.test", "É@X.TEST", "z@x.test", "ä@x.test", "ab@x.test"]

magento_rows = st.lists(
    st.tuples(st.sampled_from(EMAILS), st.sampled_from([0, 1, 1, 2, 3, 3, 4, 7]),
              st.one_of(st.none(), st.integers(T0, T2)), st.sampled_from([1, 1, 2, 3, 0, None]),
              st.booleans()),
    max_size=12,
)
iem_rows = st.lists(
    st.tuples(st.sampled_from(EMAILS), st.sampled_from([1, 2]), st.sampled_from(["active", "unsub", "bounced"]),
              st.booleans(), st.integers(T0, T2)),
    max_size=10,
)
changes = st.lists(
    st.tuples(st.sampled_from(["status", "delete", "email", "name", "iem"]), st.integers(0, 30),
              st.sampled_from(EMAILS), st.sampled_from([1, 2, 3])),
    max_size=6,
)
website_lists = st.sampled_from([{1: 1, 2: 2}, {1: 1, 2: 1}, {2: 2}])


def _world(magento: list, iem: list, lists: dict[int, int]) -> World:
    w = World(website_lists=dict(lists))
    for sid, (email, status, changed_at, store, customer) in enumerate(magento, start=1):
        w.add_magento(sid, email, status, changed_at, store_id=store, customer_id=sid if customer else 0,
                      firstname=f"F{sid}" if customer else None, lastname="L" if customer else None)
    for sid, (email, list_id, kind, confirmed, at) in enumerate(iem, start=100):
        w.add_iem(sid, email, list_id, confirmed=confirmed, subscribedate=at,
                  unsubscribed=at + 5 if kind == "unsub" else 0, bounced=at + 5 if kind == "bounced" else 0)
    return w


def _change(w: World, kind: str, pick: int, email: str, status: int) -> None:
    sids = sorted(w.magento)
    if kind == "iem":
        ids = sorted(w.iem)
        if ids:
            row = w.iem[ids[pick % len(ids)]]
            w.iem[row.subscriber_id] = replace(row, unsubscribed=0 if status == 1 else T2 + pick)
        return
    if not sids:
        return
    sid = sids[pick % len(sids)]
    row = w.magento[sid]
    if kind == "status":
        w.magento[sid] = replace(row, status=status, changed_at=T2 + pick)
    elif kind == "delete":
        del w.magento[sid]
    elif kind == "email":
        w.magento[sid] = replace(row, email=email)
    elif kind == "name":
        w.magento[sid] = replace(row, name_error=f"firstname of customer {row.customer_id} is not valid UTF-8")


def _in_memory(w: World, rejections: dict[tuple[str, int], Rejection]) -> Plan:
    scan = group_magento_rows(w.magento.values())
    return reconcile(w.options(), scan, index_iem_rows(w.iem.values()), w.last, rejections)


def _streamed(w: World, rejections: dict[tuple[str, int], Rejection], folder: Path) -> tuple[Plan, list, list, list]:
    options = w.options()
    with SpillStore(folder, lambda website: list_for_website(website, 1, options.website_lists)) as spill:
        spill.add_magento_rows(w.magento.values())
        spill.add_iem_rows(w.iem.values())
        spill.add_states(w.last.values())
        spill.add_rejections(rejections.values())
        plan = spill.plan(options)
        groups = list(spill.iter_planned())
        settled = [state for batch in spill.iter_settled() for state in batch]
        invalid = list(spill.iter_invalid())
    return plan, groups, settled, invalid


def _invalid_key(item: tuple) -> tuple:
    decision, reason = item
    return (decision.list_id, decision.email_norm, decision.website_id, decision.action.value, reason)


def test_streamed_plan_equals_in_memory_plan() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(magento_rows, iem_rows, website_lists, changes, st.lists(st.integers(0, 20), max_size=3))
        def check(magento: list, iem: list, lists: dict, world_changes: list, rejected_picks: list) -> None:
            w = _world(magento, iem, lists)
            w.sync()
            for change in world_changes:
                _change(w, *change)
            decisions = _in_memory(w, {}).decisions
            rejections = {}
            for pick in rejected_picks:
                if decisions:
                    d = decisions[pick % len(decisions)]
                    rejections[(d.email_norm, d.website_id or 0)] = Rejection(
                        d.email_norm, d.website_id or 0, d.action.value, d.fingerprint, "refused")

            expected = _in_memory(w, rejections)
            plan, groups, settled, invalid = _streamed(w, rejections, folder)

            assert groups == sorted(expected.groups, key=lambda g: (g.list_id, g.email_norm))
            assert sorted(settled, key=lambda s: s.key) == sorted(expected.settled, key=lambda s: s.key)
            assert sorted(invalid, key=_invalid_key) == sorted(expected.invalid, key=_invalid_key)
            assert plan.counts() == expected.counts()
            assert plan.rejected_count == len(expected.rejected)
            for name in ("identities", "subscribed_identities", "out_of_scope", "invalid_email", "duplicates",
                         "pending", "unknown_status"):
                assert getattr(plan, name) == getattr(expected, name), name
            assert plan.truncated is False
            assert plan.groups == groups

        check()
        assert list(folder.iterdir()) == []


def test_streamed_plan_samples_large_plan(tmp_path: Path) -> None:
    w = World()
    for sid in range(1, 2502):
        w.add_magento(sid, f"p{sid:05d}@x.test", 1, T0)
    options = w.options()

    with SpillStore(tmp_path, lambda website: list_for_website(website, 1, options.website_lists)) as spill:
        spill.add_magento_rows(w.magento.values())
        plan = spill.plan(options)
        written = sum(len(group.decisions) for group in spill.iter_planned())

    assert plan.counts() == {"add": 2501}
    assert len(plan.decisions) == 1000
    assert plan.truncated is True
    assert written == 2501


def test_dry_run_plan_stores_nothing(tmp_path: Path) -> None:
    w = World()
    w.add_magento(1, "p1@x.test", 1, T0)
    options = w.options()

    with SpillStore(tmp_path, lambda website: list_for_website(website, 1, options.website_lists)) as spill:
        spill.add_magento_rows(w.magento.values())
        plan = spill.plan(options, store=False)
        planned = list(spill.iter_planned())

    assert plan.counts() == {"add": 1}
    assert [d.email_norm for d in plan.decisions] == ["p1@x.test"]
    assert planned == []


def test_spill_file_deleted_after_error(tmp_path: Path) -> None:
    try:
        with SpillStore(tmp_path, lambda website: 1) as spill:
            path = spill.path
            assert path.exists()
            raise RuntimeError("stop")
    except RuntimeError:
        pass
    assert not path.exists()
