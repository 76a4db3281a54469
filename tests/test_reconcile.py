"""The reconciliation rules on plain data: every row of the rule table, first run and later runs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edm_tui.sync.brake import check_brake
from edm_tui.sync.identity import representative
from edm_tui.sync.model import Action, MagentoRow
from tests.engine_world import World

T0 = 1_650_000_000  # an old time
T1 = 1_660_000_000
T2 = 1_670_000_000  # newer than T1


def actions(plan) -> list[tuple[str, str]]:
    return sorted((d.action.value, d.email_norm) for d in plan.decisions)


def synced(world: World) -> World:
    """A world whose first run has settled: the last synced state is recorded."""
    world.sync()
    return world


# --- first run (no last synced state) ---


def test_subscribed_absent_adds() -> None:
    w = World()
    w.add_magento(1, "Anna@Example.test", 1, T1, customer_id=7, firstname="Anna", lastname="Kovács")
    plan = w.sync()
    assert actions(plan) == [("add", "anna@example.test")]
    add = plan.decisions[0]
    assert add.email == "Anna@Example.test"
    assert (add.firstname, add.lastname) == ("Anna", "Kovács")
    row = w.iem_row(1, "anna@example.test")
    assert row is not None
    assert row.confirmed
    assert row.unsubscribed == 0


def test_guest_add_sends_no_names() -> None:
    w = World()
    w.add_magento(1, "guest@example.test", 1, T1)
    plan = w.sync()
    assert (plan.decisions[0].firstname, plan.decisions[0].lastname) == (None, None)


def test_subscribed_unconfirmed_confirms() -> None:
    w = World()
    w.add_magento(1, "u@example.test", 1, T1)
    w.add_iem(10, "u@example.test", confirmed=False, subscribedate=T0)
    assert actions(w.sync()) == [("confirm", "u@example.test")]
    assert w.iem[10].confirmed is True


def test_subscribed_vs_newer_iem_unsubscribe() -> None:
    w = World()
    w.add_magento(1, "t20@example.test", 1, T1)
    w.add_iem(10, "t20@example.test", unsubscribed=T2)
    assert actions(w.sync()) == [("unsubscribe_magento", "t20@example.test")]
    assert w.magento[1].status == 3
    assert w.iem[10].unsubscribed == T2


def test_subscribed_newer_than_iem_unsubscribe_activates() -> None:
    w = World()
    w.add_magento(1, "t4@example.test", 1, T2)
    w.add_iem(10, "t4@example.test", unsubscribed=T1, confirmed=False)
    plan = w.sync()
    assert actions(plan) == [("activate", "t4@example.test")]
    assert plan.decisions[0].iem_confirmed is False  # the runner confirms after activating
    assert w.iem[10].unsubscribed == 0
    assert len([r for r in w.iem.values() if r.email == "t4@example.test"]) == 1


def test_tie_goes_to_unsubscribe() -> None:
    w = World()
    w.add_magento(1, "tie@example.test", 1, T1)
    w.add_iem(10, "tie@example.test", unsubscribed=T1)
    assert actions(w.sync()) == [("unsubscribe_magento", "tie@example.test")]


def test_null_change_time_loses_to_iem_unsubscribe() -> None:
    w = World()
    w.add_magento(1, "t19@example.test", 1, None)
    w.add_iem(10, "t19@example.test", unsubscribed=T0)
    assert actions(w.sync()) == [("unsubscribe_magento", "t19@example.test")]
    assert w.iem[10].unsubscribed == T0


def test_bounced_counts_as_unsubscribed() -> None:
    w = World()
    w.add_magento(1, "b@example.test", 1, T1)
    w.add_iem(10, "b@example.test", bounced=T2)
    assert actions(w.sync()) == [("unsubscribe_magento", "b@example.test")]


def test_bounce_ignored_when_configured() -> None:
    w = World()
    w.add_magento(1, "b@example.test", 1, T1)
    w.add_iem(10, "b@example.test", bounced=T2)
    scan_plan = w.plan
    options = w.options()
    from dataclasses import replace

    w.options = lambda: replace(options, bounced_is_unsubscribed=False)  # type: ignore[method-assign]
    assert actions(scan_plan()) == []


def test_unsubscribed_magento_newer_unsubscribes_iem() -> None:
    w = World()
    w.add_magento(1, "m@example.test", 3, T2)
    w.add_iem(10, "m@example.test", subscribedate=T1)
    assert actions(w.sync()) == [("unsubscribe_iem", "m@example.test")]
    assert w.iem[10].unsubscribed > 0


def test_unsubscribed_iem_newer_subscribes_magento() -> None:
    w = World()
    w.add_magento(1, "i@example.test", 3, T1)
    w.add_iem(10, "i@example.test", subscribedate=T2)
    assert actions(w.sync()) == [("subscribe_magento", "i@example.test")]
    assert w.magento[1].status == 1


def test_unsubscribed_absent_does_nothing() -> None:
    w = World()
    w.add_magento(1, "gone@example.test", 3, T1)
    assert actions(w.sync()) == []
    assert w.iem == {}


def test_absent_active_creates_guest() -> None:
    w = World()
    w.add_iem(10, "T5@Example.test", list_id=2, subscribedate=T1)
    plan = w.sync()
    assert actions(plan) == [("create_guest", "t5@example.test")]
    guest = plan.decisions[0]
    assert (guest.website_id, guest.store_id, guest.email) == (2, 3, "T5@Example.test")
    rows = [r for r in w.magento.values() if r.email == "T5@Example.test"]
    assert [(r.status, r.store_id, r.customer_id) for r in rows] == [(1, 3, 0)]


def test_absent_active_respects_import_switch() -> None:
    w = World(import_new_subscribers=False)
    w.add_iem(10, "t5@example.test", subscribedate=T1)
    assert actions(w.sync()) == []
    assert w.magento == {}


def test_absent_unsubscribed_does_nothing() -> None:
    w = World()
    w.add_iem(10, "x@example.test", unsubscribed=T1)
    assert actions(w.sync()) == []


def test_pending_never_pushed() -> None:
    w = World()
    w.add_magento(1, "t2@example.test", 2, T1)
    w.add_magento(2, "t2b@example.test", 4, T1)
    w.add_magento(3, "t0@example.test", 0, T1)
    assert actions(w.sync()) == []
    assert w.iem == {}


def test_pending_account_not_unsubscribed_in_iem() -> None:
    w = World()
    w.add_magento(1, "t9@example.test", 4, T2, customer_id=9)
    w.add_iem(10, "t9@example.test", subscribedate=T1)
    assert actions(w.sync()) == []
    assert w.iem[10].unsubscribed == 0


def test_pending_confirmation_confirmed_in_iem() -> None:
    w = World()
    w.add_magento(1, "p@example.test", 2, T1)
    w.add_iem(10, "p@example.test", subscribedate=T2, confirmed=True)
    assert actions(w.sync()) == [("subscribe_magento", "p@example.test")]


def test_pending_confirmation_unconfirmed_in_iem_waits() -> None:
    w = World()
    w.add_magento(1, "p@example.test", 2, T1)
    w.add_iem(10, "p@example.test", subscribedate=T2, confirmed=False)
    assert actions(w.sync()) == []


def test_pending_iem_unsubscribe_newer() -> None:
    w = World()
    w.add_magento(1, "p2@example.test", 2, T1)
    w.add_magento(2, "p4@example.test", 4, T1)
    w.add_iem(10, "p2@example.test", unsubscribed=T2)
    w.add_iem(11, "p4@example.test", unsubscribed=T2)
    assert actions(w.sync()) == [("unsubscribe_magento", "p2@example.test"),
                                 ("unsubscribe_magento", "p4@example.test")]


def test_pending_iem_unsubscribe_older_kept() -> None:
    w = World()
    w.add_magento(1, "p@example.test", 2, T2)
    w.add_iem(10, "p@example.test", unsubscribed=T1)
    assert actions(w.sync()) == []


def test_out_of_scope_rows_ignored_and_counted() -> None:
    w = World()
    w.add_magento(1, "admin@example.test", 1, T1, store_id=0)
    w.add_magento(2, "orphan@example.test", 1, T1, store_id=None)
    w.add_magento(3, None, 1, T1)  # type: ignore[arg-type]
    plan = w.sync()
    assert actions(plan) == []
    assert (plan.out_of_scope, plan.invalid_email) == (2, 1)


# --- later runs: three-way ---


def test_magento_unsubscribe_carried_to_iem() -> None:
    w = World()
    w.add_magento(1, "t1@example.test", 1, T1)
    synced(w)
    w.magento[1] = MagentoRow(1, "t1@example.test", 1, 1, 0, 3, w.now)
    assert actions(w.sync()) == [("unsubscribe_iem", "t1@example.test")]
    assert actions(w.sync()) == []


def test_status_change_without_time_detected() -> None:
    w = World()
    w.add_magento(1, "t8@example.test", 1, T1)
    synced(w)
    w.magento[1] = MagentoRow(1, "t8@example.test", 1, 1, 0, 3, T1)  # change_status_at not touched
    assert actions(w.sync()) == [("unsubscribe_iem", "t8@example.test")]


def test_iem_unsubscribe_carried_to_magento_without_echo() -> None:
    w = World()
    w.add_magento(1, "t18@example.test", 1, T1)
    synced(w)
    row = w.iem_row(1, "t18@example.test")
    w.iem[row.subscriber_id] = row.__class__(**{**_fields(row), "unsubscribed": w.now})
    assert actions(w.sync()) == [("unsubscribe_magento", "t18@example.test")]
    assert actions(w.sync()) == []
    assert w.writes.count(("unsubscribe_iem", "t18@example.test")) == 0


def test_deleted_row_unsubscribes_iem() -> None:
    w = World()
    w.add_magento(1, "t24@example.test", 1, T1)
    synced(w)
    del w.magento[1]
    plan = w.sync()
    assert actions(plan) == [("unsubscribe_iem", "t24@example.test")]
    assert plan.decisions[0].reason == "row_deleted"
    assert len(w.iem) == 1  # unsubscribed, never deleted


def test_email_change_moves_subscription() -> None:
    w = World()
    w.add_magento(1, "old@example.test", 1, T1, customer_id=3)
    synced(w)
    w.magento[1] = MagentoRow(1, "new@example.test", 1, 1, 3, 1, T1)
    plan = w.sync()
    assert actions(plan) == [("add", "new@example.test"), ("unsubscribe_iem", "old@example.test")]
    reasons = {d.email_norm: d.reason for d in plan.decisions}
    assert reasons["old@example.test"] == "email_changed"


def test_both_changed_newer_wins() -> None:
    w = World()
    w.add_magento(1, "both@example.test", 1, T1)
    synced(w)
    row = w.iem_row(1, "both@example.test")
    w.iem[row.subscriber_id] = row.__class__(**{**_fields(row), "unsubscribed": w.now + 10})
    w.magento[1] = MagentoRow(1, "both@example.test", 1, 1, 0, 3, w.now + 20)
    # Both sides now show the address as unsubscribed, so there is nothing to write.
    assert actions(w.sync()) == []


def test_names_change_updates_iem() -> None:
    w = World()
    w.add_magento(1, "n@example.test", 1, T1, customer_id=5, firstname="Eva", lastname="Kiss")
    synced(w)
    w.magento[1] = MagentoRow(1, "n@example.test", 1, 1, 5, 1, T1, "Éva", "Kiss")
    plan = w.sync()
    assert actions(plan) == [("update_names", "n@example.test")]
    assert (plan.decisions[0].firstname, plan.decisions[0].lastname) == ("Éva", None)
    assert actions(w.sync()) == []


def test_names_never_blank_iem() -> None:
    w = World()
    w.add_magento(1, "n@example.test", 1, T1, customer_id=5, firstname="Eva", lastname="Kiss")
    synced(w)
    w.magento[1] = MagentoRow(1, "n@example.test", 1, 1, 5, 1, T1, "", None)
    assert actions(w.sync()) == []


def test_invalid_name_fails_up_front_once() -> None:
    w = World()
    w.magento[1] = MagentoRow(1, "t21@example.test", 1, 1, 21, 1, T1, None, "Bad",
                              "firstname of customer 21 is not valid UTF-8")
    w.add_magento(2, "zoe@example.test", 1, T1, customer_id=22, firstname="Zoë", lastname="Łukasz")
    plan = w.plan()
    assert [(d.email_norm, reason) for d, reason in plan.invalid] == [
        ("t21@example.test", "firstname of customer 21 is not valid UTF-8")]
    assert actions(plan) == [("add", "t21@example.test"), ("add", "zoe@example.test")]


# --- duplicates, websites, shared lists ---


def test_representative_row_order() -> None:
    rows = [
        MagentoRow(1, "d@example.test", 1, 1, 0, 1, None),
        MagentoRow(2, "D@example.test", 2, 1, 0, 3, T1),
        MagentoRow(3, "d@example.test", 1, 1, 5, 1, T1),
        MagentoRow(4, "d@example.test", 1, 1, 0, 1, T1),
    ]
    assert representative(rows).subscriber_id == 3
    assert representative(rows[:2]).subscriber_id == 2
    assert representative([rows[0], MagentoRow(9, "d@example.test", 1, 1, 0, 1, None)]).subscriber_id == 9


def test_inbound_write_hits_every_row() -> None:
    w = World()
    w.add_magento(1, "dup@example.test", 1, T1, store_id=1)
    w.add_magento(2, "DUP@example.test", 1, T0, store_id=2)
    w.add_magento(3, "dup@example.test", 3, T0, store_id=1)
    w.add_iem(10, "dup@example.test", unsubscribed=T2)
    plan = w.sync()
    assert actions(plan) == [("unsubscribe_magento", "dup@example.test")]
    assert sorted(plan.decisions[0].rows) == [(1, 1), (2, 1)]
    assert [w.magento[i].status for i in (1, 2, 3)] == [3, 3, 3]


def test_same_email_two_websites_separate_lists() -> None:
    w = World()
    w.add_magento(1, "t11@example.test", 1, T1, store_id=1)
    w.add_magento(2, "t11@example.test", 1, T1, store_id=3)
    synced(w)
    w.magento[2] = MagentoRow(2, "t11@example.test", 3, 2, 0, 3, w.now)
    plan = w.sync()
    assert [(d.action.value, d.list_id) for d in plan.decisions] == [("unsubscribe_iem", 2)]
    assert w.iem_row(1, "t11@example.test").unsubscribed == 0
    assert w.iem_row(2, "t11@example.test").unsubscribed > 0


def test_shared_list_stays_while_one_website_subscribed() -> None:
    w = World(website_lists={})
    w.add_magento(1, "s@example.test", 1, T1, store_id=1)
    w.add_magento(2, "s@example.test", 1, T1, store_id=3)
    assert actions(w.sync()) == [("add", "s@example.test")]
    w.magento[2] = MagentoRow(2, "s@example.test", 3, 2, 0, 3, w.now)
    assert actions(w.sync()) == []
    w.magento[1] = MagentoRow(1, "s@example.test", 1, 1, 0, 3, w.now + 5)
    assert actions(w.sync()) == [("unsubscribe_iem", "s@example.test")]


def test_shared_list_iem_unsubscribe_reaches_all_websites() -> None:
    w = World(website_lists={})
    w.add_magento(1, "s@example.test", 1, T1, store_id=1)
    w.add_magento(2, "s@example.test", 1, T1, store_id=3)
    w.add_iem(10, "s@example.test", unsubscribed=T2)
    plan = w.sync()
    assert sorted((d.action.value, d.website_id) for d in plan.decisions) == [
        ("unsubscribe_magento", 1), ("unsubscribe_magento", 2)]


# --- brake ---


def test_brake_stops_mass_unsubscribe() -> None:
    w = World()
    for n in range(60):
        w.add_magento(n + 1, f"m{n}@example.test", 1, T1)
        w.add_iem(100 + n, f"m{n}@example.test", unsubscribed=T2)
    reason = check_brake(w.plan(), {1: 60}, {})
    assert reason is not None
    assert (reason.code, reason.side, reason.count, reason.limit) == ("mass_unsubscribe", "magento", 60, 50)


def test_brake_allows_small_change() -> None:
    w = World()
    for n in range(50):
        w.add_magento(n + 1, f"m{n}@example.test", 1, T1)
        w.add_iem(100 + n, f"m{n}@example.test", unsubscribed=T2)
    assert check_brake(w.plan(), {1: 50}, {}) is None


def test_brake_on_empty_list() -> None:
    w = World()
    w.add_magento(1, "a@example.test", 1, T1)
    synced(w)
    w.iem.clear()
    reason = check_brake(w.plan(), {1: 0, 2: 0}, w.last)
    assert reason is not None and (reason.code, reason.list_id) == ("empty_list", 1)


# --- convergence on random worlds ---

emails = st.sampled_from([f"p{n}@example.test" for n in range(6)])
times = st.one_of(st.none(), st.integers(T0, T2))


@st.composite
def worlds(draw) -> World:  # noqa: ANN001
    w = World(website_lists=draw(st.sampled_from([{1: 1, 2: 2}, {}])))
    for sid in range(1, draw(st.integers(0, 8)) + 1):
        email = draw(emails)
        if draw(st.booleans()):
            email = email.upper()
        w.add_magento(sid, email, draw(st.sampled_from([0, 1, 1, 2, 3, 3, 4])), draw(times),
                      store_id=draw(st.sampled_from([1, 2, 3, 3, 0])), customer_id=draw(st.sampled_from([0, 5])),
                      firstname=draw(st.sampled_from([None, "Ádám", ""])))
    for sid in range(100, 100 + draw(st.integers(0, 6))):
        state = draw(st.sampled_from(["active", "unsub", "bounced"]))
        w.add_iem(sid, draw(emails), draw(st.sampled_from([1, 2])), confirmed=draw(st.booleans()),
                  subscribedate=draw(st.integers(T0, T2)),
                  unsubscribed=draw(st.integers(T0, T2)) if state == "unsub" else 0,
                  bounced=draw(st.integers(T0, T2)) if state == "bounced" else 0)
    # dedupe IEM rows per (list, email) as IEM itself would
    seen, keep = set(), {}
    for sid, row in sorted(w.iem.items()):
        key = (row.list_id, row.email.lower())
        if key not in seen:
            seen.add(key)
            keep[sid] = row
    w.iem = keep
    return w


@settings(max_examples=400, deadline=None)
@given(worlds(), st.integers(0, 3), st.data())
def test_two_runs_converge(world: World, mutations: int, data: st.DataObject) -> None:
    world.sync()
    # random changes on both sides between runs, then two more runs
    for _ in range(mutations):
        if world.magento and data.draw(st.booleans()):
            sid = data.draw(st.sampled_from(sorted(world.magento)))
            row = world.magento[sid]
            world.magento[sid] = MagentoRow(row.subscriber_id, row.email, row.store_id, row.website_id,
                                            row.customer_id, data.draw(st.sampled_from([1, 2, 3])),
                                            world.now + data.draw(st.integers(1, 100)))
        elif world.iem:
            sid = data.draw(st.sampled_from(sorted(world.iem)))
            row = world.iem[sid]
            world.iem[sid] = row.__class__(**{**_fields(row),
                                              "unsubscribed": data.draw(st.sampled_from([0, world.now + 50]))})
    world.sync()
    second = world.sync()
    assert actions(second) == []


def _fields(row) -> dict:  # noqa: ANN001
    return {name: getattr(row, name) for name in row.__slots__}


def test_brake_counts_both_sides_separately() -> None:
    w = World()
    for n in range(40):
        w.add_magento(n + 1, f"m{n}@example.test", 1, T1)
        w.add_iem(100 + n, f"m{n}@example.test", unsubscribed=T2)
    for n in range(40):
        w.add_magento(200 + n, f"i{n}@example.test", 3, T2)
        w.add_iem(300 + n, f"i{n}@example.test", subscribedate=T1)
    assert check_brake(w.plan(), {1: 80}, {}) is None
    plan = w.plan()
    assert sum(d.action is Action.UNSUBSCRIBE_IEM for d in plan.decisions) == 40
