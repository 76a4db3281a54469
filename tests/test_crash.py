"""A sync process killed with SIGKILL at several points: the next run finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from edm_tui.daemon.history import HistoryStore
from tests.sync_support import Bench

OLD = 1_700_000_000
NEW = 1_700_090_000
WRITE_METHODS = ("AddSubscriberToList", "UnsubscribeSubscriber", "ActivateSubscriber",
                 "ChangeSubscriberConfirm", "SaveSubscriberCustomField")


def build_shop(b: Bench) -> None:
    """120 new subscribers, 30 Magento unsubscribes, 30 IEM unsubscribes, 30 IEM-only people."""
    conn = b.connect()
    try:
        with conn.cursor() as cursor:
            rows = [(1, OLD, f"new{n}@example.test", 1) for n in range(120)]
            rows += [(1, NEW, f"left-shop{n}@example.test", 3) for n in range(30)]
            rows += [(1, OLD, f"left-iem{n}@example.test", 1) for n in range(30)]
            cursor.executemany(
                "INSERT INTO newsletter_subscriber (store_id, change_status_at, subscriber_email, "
                "subscriber_status, subscriber_confirm_code) VALUES (%s, FROM_UNIXTIME(%s), %s, %s, 'c')",
                rows)
    finally:
        conn.close()

    state = b.sim_state()
    sid = 1
    subscribers = []
    for email, unsubscribed in ([(f"left-shop{n}@example.test", 0) for n in range(30)]
                                + [(f"left-iem{n}@example.test", NEW) for n in range(30)]
                                + [(f"iem-only{n}@example.test", 0) for n in range(30)]):
        subscribers.append({"subscriberid": sid, "listid": 1, "emailaddress": email, "format": "h",
                            "confirmed": True, "subscribedate": OLD - 100, "requestdate": OLD - 100,
                            "unsubscribed": unsubscribed, "bounced": 0, "confirmcode": "c" * 32,
                            "customfields": {}})
        sid += 1
    state["subscribers"] = subscribers
    state["next_subscriberid"] = sid
    b.put_state(state)


def expected_views() -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    magento = [(f"new{n}@example.test", 1) for n in range(120)]
    magento += [(f"left-shop{n}@example.test", 3) for n in range(30)]
    magento += [(f"left-iem{n}@example.test", 3) for n in range(30)]
    magento += [(f"iem-only{n}@example.test", 1) for n in range(30)]
    iem = [(f"new{n}@example.test", "active") for n in range(120)]
    iem += [(f"left-shop{n}@example.test", "unsubscribed") for n in range(30)]
    iem += [(f"left-iem{n}@example.test", "unsubscribed") for n in range(30)]
    iem += [(f"iem-only{n}@example.test", "active") for n in range(30)]
    return sorted(magento), sorted(iem)


def views(b: Bench) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    magento = sorted((row[1], row[3]) for row in b.magento())
    iem = sorted((r["emailaddress"], "unsubscribed" if r["unsubscribed"] else "active")
                 for r in b.iem_rows())
    return magento, iem


def writes_so_far(b: Bench) -> int:
    counts = b.write_counts()
    return sum(counts.get(method, 0) for method in WRITE_METHODS)


@pytest.mark.parametrize("kill_at", ["reading", 1, 40, 120])
def test_sigkill_then_next_run_finishes(bench: Bench, kill_at: object) -> None:
    b = bench
    build_shop(b)
    config_path = b.write_config(b.tmp / "config.toml", interspire={"concurrency": 4})
    b.sim_config(latency_ms=15)  # slow enough that a loaded machine still kills before the run ends
    b.reset_stats()

    process = subprocess.Popen(
        [sys.executable, "-m", "edm_tui.cli", "--config", str(config_path), "sync"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if kill_at == "reading":
            if b.write_counts().get("GetSubscribers", 0) >= 1:
                break
        elif writes_so_far(b) >= kill_at:  # type: ignore[operator]
            break
        time.sleep(0.002)
    assert process.poll() is None, "the run ended before the kill point: " + process.stderr.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    process.stderr.close()

    b.sim_config(latency_ms=0)
    after = b.sync()
    assert after.status == "succeeded"
    assert views(b) == expected_views()
    assert len(b.iem_rows()) == 210  # no duplicate rows in IEM

    b.reset_stats()
    again = b.sync()
    assert again.counts == {}
    assert writes_so_far(b) == 0

    store = HistoryStore(b.config().storage.history_path)
    try:
        statuses = [run.status for run in reversed(store.runs())]
    finally:
        store.close()
    assert statuses == ["interrupted", "succeeded", "succeeded"]
