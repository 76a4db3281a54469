"""When the next scheduled run starts: intervals, a time of day, catch-up and jitter."""

from __future__ import annotations

import datetime as dt
import random

from edm_tui.config import ScheduleConfig
from edm_tui.daemon.schedule import next_run_at

NOW = dt.datetime(2026, 12, 4, 12, 0).astimezone().timestamp()
HOUR = 3600.0


def test_interval_after_last_start() -> None:
    schedule = ScheduleConfig(interval=24 * HOUR)
    assert next_run_at(schedule, NOW - HOUR, NOW) == NOW + 23 * HOUR


def test_interval_overdue_catches_up() -> None:
    schedule = ScheduleConfig(interval=24 * HOUR, catch_up_delay=30)
    assert next_run_at(schedule, NOW - 48 * HOUR, NOW) == NOW + 30


def test_never_run_catches_up() -> None:
    assert next_run_at(ScheduleConfig(catch_up_delay=5), None, NOW) == NOW + 5


def test_time_of_day_later_today() -> None:
    schedule = ScheduleConfig(at=(15, 30))
    expected = dt.datetime(2026, 12, 4, 15, 30).astimezone().timestamp()
    assert next_run_at(schedule, NOW - HOUR, NOW) == expected


def test_time_of_day_tomorrow() -> None:
    schedule = ScheduleConfig(at=(3, 30))
    last = dt.datetime(2026, 12, 4, 3, 30).astimezone().timestamp()
    expected = dt.datetime(2026, 12, 5, 3, 30).astimezone().timestamp()
    assert next_run_at(schedule, last, NOW) == expected


def test_time_of_day_missed_catches_up() -> None:
    schedule = ScheduleConfig(at=(3, 30), catch_up_delay=10)
    last = dt.datetime(2026, 12, 3, 3, 30).astimezone().timestamp()
    assert next_run_at(schedule, last, NOW) == NOW + 10


def test_time_of_day_first_start_waits() -> None:
    schedule = ScheduleConfig(at=(3, 30))
    expected = dt.datetime(2026, 12, 5, 3, 30).astimezone().timestamp()
    assert next_run_at(schedule, None, NOW) == expected


def test_jitter_within_window() -> None:
    schedule = ScheduleConfig(interval=HOUR, jitter=600)
    rng = random.Random(7)
    starts = [next_run_at(schedule, NOW, NOW, rng=rng) for _ in range(200)]
    assert min(starts) >= NOW + HOUR
    assert max(starts) <= NOW + HOUR + 600
    assert max(starts) - min(starts) > 300


def test_disabled_schedule() -> None:
    assert next_run_at(ScheduleConfig(enabled=False), None, NOW) is None
