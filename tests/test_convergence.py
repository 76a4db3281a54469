"""Random states of both sides and random last synced states converge on the real system.

The same property runs thousands of times on plain data in test_reconcile; here a smaller
number of examples goes through MariaDB and the simulator, so the adapters are covered too.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edm_tui.interspire.simulator import start_simulator
from tests import mariadb_support as mdb
from tests.sync_support import Bench, base_state

T0 = 1_600_000_000
T2 = 1_700_000_000
EMAILS = [f"p{n}@example.test" for n in range(8)]
WRITE_METHODS = ("AddSubscriberToList", "UnsubscribeSubscriber", "ActivateSubscriber",
                 "ChangeSubscriberConfirm", "SaveSubscriberCustomField")

magento_rows = st.lists(
    st.tuples(st.sampled_from(EMAILS), st.booleans(), st.sampled_from([0, 1, 1, 2, 3, 3, 4]),
              st.one_of(st.none(), st.integers(T0, T2)), st.sampled_from([1, 2, 3, 0])),
    max_size=10,
)
iem_rows = st.lists(
    st.tuples(st.sampled_from(EMAILS), st.sampled_from([1, 2]), st.sampled_from(["active", "unsub", "bounced"]),
              st.booleans(), st.integers(T0, T2)),
    max_size=8,
)
changes = st.lists(st.tuples(st.sampled_from(["magento", "iem"]), st.integers(0, 20), st.sampled_from([1, 2, 3])),
                   max_size=4)

_counter = itertools.count()


def _load(b: Bench, magento: list, iem: list) -> None:
    conn = b.connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("DELETE FROM newsletter_subscriber")
        for email, upper, status, changed_at, store in magento:
            mdb.insert_subscriber(conn, email.upper() if upper else email, store, status, changed_at)
    finally:
        conn.close()

    state = base_state()
    seen = set()
    for sid, (email, list_id, kind, confirmed, at) in enumerate(iem, start=1):
        if (list_id, email) in seen:
            continue  # IEM holds one row per address and list
        seen.add((list_id, email))
        state["subscribers"].append({
            "subscriberid": sid, "listid": list_id, "emailaddress": email, "format": "h", "confirmed": confirmed,
            "subscribedate": at, "requestdate": at, "unsubscribed": at + 5 if kind == "unsub" else 0,
            "bounced": at + 5 if kind == "bounced" else 0, "confirmcode": "c" * 32, "customfields": {}})
    state["next_subscriberid"] = len(iem) + 1
    b.put_state(state)


def _mutate(b: Bench, change: tuple[str, int, int]) -> None:
    side, pick, status = change
    if side == "magento":
        rows = b.magento()
        if rows:
            sid = rows[pick % len(rows)][0]
            b.sql("UPDATE newsletter_subscriber SET subscriber_status = %s, change_status_at = UTC_TIMESTAMP() "
                  "WHERE subscriber_id = %s", (status, sid))
    else:
        state = b.sim_state()
        if state["subscribers"]:
            row = state["subscribers"][pick % len(state["subscribers"])]
            row["unsubscribed"] = 0 if status == 1 else T2 + 10_000_000
            b.put_state(state)


def test_random_worlds_converge(tmp_path: Path) -> None:
    with mdb.temporary_database() as database, start_simulator(auth_delay=0) as simulator:
        bench = Bench(database, simulator.base, simulator.url, tmp_path, sim=simulator)

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(magento_rows, iem_rows, changes)
        def converge(magento: list, iem: list, mutations: list) -> None:
            bench.tmp = tmp_path / f"example-{next(_counter)}"
            _load(bench, magento, iem)
            bench.sync(allow_mass_changes=True)
            for change in mutations:
                _mutate(bench, change)
            bench.sync(allow_mass_changes=True)

            bench.reset_stats()
            last = bench.sync(allow_mass_changes=True)
            assert last.counts == {}
            counts = bench.write_counts()
            assert sum(counts.get(m, 0) for m in WRITE_METHODS) == 0
            emails = [(r["listid"], r["emailaddress"].lower()) for r in bench.iem_rows()]
            assert len(emails) == len(set(emails))

        converge()
