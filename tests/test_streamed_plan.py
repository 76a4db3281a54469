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
    st.tuples(st.sampled_from(["status", "delete", "email", "name", "rename", "blank_name", "iem", "confirm"]),
              st.integers(0, 30),
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
    if kind in ("iem", "confirm"):
        ids = sorted(w.iem)
        if ids:
            row = w.iem[ids[pick % len(ids)]]
            if kind == "iem":
                row = replace(row, unsubscribed=0 if status == 1 else T2 + pick)
            else:
                row = replace(row, confirmed=not row.confirmed)
            w.iem[row.subscriber_id] = row
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
    elif kind == "rename":
        w.magento[sid] = replace(row, lastname=f"L{pick}")
    elif kind == "blank_name":
        w.magento[sid] = replace(row, firstname="")


def _in_memory(w: World, rejections: dict[tuple[str, int], Rejection]) -> Plan:
    scan = group_magento_rows(w.magento.values())
    return reconcile(w.options(), scan, index_iem_rows(w.iem.values()), w.last, rejections)


def _streamed(
    w: World, rejections: dict[tuple[str, int], Rejection], folder: Path, quiet: list[int] | None = None
) -> tuple[Plan, list, list, list]:
    """Plan through a spill file; append the number of groups skipped as quiet to `quiet`."""
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
        if quiet is not None:
            quiet.append(spill.quiet_groups)
    return plan, groups, settled, invalid


def _assert_plans_equal(w: World, rejections: dict, folder: Path, quiet: list[int] | None = None) -> None:
    expected = _in_memory(w, rejections)
    plan, groups, settled, invalid = _streamed(w, rejections, folder, quiet)

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

            _assert_plans_equal(w, rejections, folder, quiet)

        quiet: list[int] = []
        check()
        assert list(folder.iterdir()) == []
        # The comparison covers the quiet-group shortcut: about a quarter of the examples reach
        # it, and a tenth leaves room for the random draws.
        assert sum(1 for count in quiet if count) >= len(quiet) // 10


def _quiet_world() -> World:
    """A synced world of four quiet groups: customers and guests, subscribed and unsubscribed."""
    w = World()
    w.add_magento(1, "cust@x.test", 1, T0, customer_id=1, firstname="Anna", lastname="Kiss")
    w.add_magento(2, "guest@x.test", 1, T0)
    w.add_magento(3, "gone@x.test", 3, T0, customer_id=3, firstname="Béla", lastname="Nagy")
    w.add_magento(4, "guest2@x.test", 3, T0)
    w.add_iem(101, "cust@x.test", subscribedate=T0)
    w.add_iem(102, "guest@x.test", subscribedate=T0)
    w.add_iem(103, "gone@x.test", subscribedate=T0, unsubscribed=T0 + 5)
    w.add_iem(104, "guest2@x.test", subscribedate=T0, unsubscribed=T0 + 5)
    w.sync()
    w.sync()
    return w


QUIET_BREAKERS = {
    "magento status": lambda w: w.magento.update({1: replace(w.magento[1], status=3, changed_at=T2)}),
    "pending status": lambda w: w.magento.update({2: replace(w.magento[2], status=2, changed_at=T2)}),
    "second magento row": lambda w: w.add_magento(9, "CUST@x.test", 1, T2, store_id=1),
    "row deleted": lambda w: w.magento.pop(2),
    "subscriber id": lambda w: w.magento.update({10: replace(w.magento.pop(2), subscriber_id=10)}),
    "name changed": lambda w: w.magento.update({1: replace(w.magento[1], firstname="Anikó")}),
    "name unreadable": lambda w: w.magento.update({1: replace(w.magento[1], name_error="not valid UTF-8")}),
    "customer subscribes": lambda w: w.magento.update({3: replace(w.magento[3], status=1, changed_at=T2)}),
    "iem unsubscribed": lambda w: w.iem.update({101: replace(w.iem[101], unsubscribed=T2)}),
    "iem bounced": lambda w: w.iem.update({102: replace(w.iem[102], bounced=T2)}),
    "iem unconfirmed": lambda w: w.iem.update({102: replace(w.iem[102], confirmed=False)}),
    "iem resubscribed": lambda w: w.iem.update({103: replace(w.iem[103], unsubscribed=0, subscribedate=T2)}),
    "iem row gone": lambda w: w.iem.pop(101),
    "iem duplicate": lambda w: w.add_iem(99, "cust@x.test", subscribedate=T2),
    "iem subscriber id": lambda w: w.iem.update({105: replace(w.iem.pop(102), subscriber_id=105)}),
}


def test_quiet_groups_skipped_when_in_step(tmp_path: Path) -> None:
    w = _quiet_world()
    quiet: list[int] = []
    plan, groups, settled, invalid = _streamed(w, {}, tmp_path, quiet)

    assert quiet == [4]
    assert groups == []
    assert settled == []
    assert invalid == []
    assert plan.identities == 4
    assert plan.subscribed_identities == 2
    _assert_plans_equal(w, {}, tmp_path)


def test_quiet_group_with_rejection_planned(tmp_path: Path) -> None:
    w = _quiet_world()
    rejections = {("guest@x.test", 1): Rejection("guest@x.test", 1, "add", "f", "refused")}
    quiet: list[int] = []

    _assert_plans_equal(w, rejections, tmp_path, quiet)
    assert quiet == [3]


def test_each_change_breaks_quiet_group(tmp_path: Path) -> None:
    for name, breaker in QUIET_BREAKERS.items():
        w = _quiet_world()
        breaker(w)
        quiet: list[int] = []
        _assert_plans_equal(w, {}, tmp_path, quiet)
        assert quiet[0] < 4, name


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
