"""When the next scheduled run starts.

Two kinds of schedule: every `interval` seconds after the last run started, or daily at a
local time of day. A run missed while the daemon was down (or that never ran) is overdue and
starts shortly after start-up, as a systemd timer with Persistent= does. Jitter spreads the
start of many shops' runs over a window.
"""

from __future__ import annotations

import datetime as dt
import random

from edm_tui.config import ScheduleConfig


def _next_local_time(after: float, hour: int, minute: int) -> float:
    """Return the first moment strictly after `after` whose local time is hour:minute."""
    moment = dt.datetime.fromtimestamp(after).astimezone()
    candidate = moment.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate.timestamp() <= after:
        candidate = (candidate + dt.timedelta(days=1)).replace(hour=hour, minute=minute)
    return candidate.timestamp()


def next_run_at(
    schedule: ScheduleConfig,
    last_start: float | None,
    now: float,
    *,
    rng: random.Random | None = None,
) -> float | None:
    """Unix time of the next scheduled run, or None when scheduling is off.

    An overdue run (missed, or never run) starts `catch_up_delay` seconds from now.
    """
    if not schedule.enabled:
        return None
    jitter = (rng or random).uniform(0, schedule.jitter) if schedule.jitter else 0.0

    if schedule.at is not None:
        hour, minute = schedule.at
        if last_start is None:
            return _next_local_time(now, hour, minute) + jitter
        due = _next_local_time(last_start, hour, minute)
    else:
        due = now if last_start is None else last_start + schedule.interval

    if due <= now:
        return now + schedule.catch_up_delay + jitter
    return due + jitter
