"""AdaptiveLimiter on its own: admission, decrease, increase and the latency signal.

The limiter is plain asyncio bookkeeping, so these tests drive it directly with a manual
clock; tests/test_adaptive_concurrency.py runs it inside IemClient against the simulator.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from edm_tui.interspire.limiter import AdaptiveLimiter, Slot


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Overloaded(Exception):
    pass


def make_limiter(max_limit: int = 8, **options: object) -> tuple[AdaptiveLimiter, ManualClock]:
    clock = ManualClock()
    limiter = AdaptiveLimiter(
        max_limit, is_overload=lambda error: isinstance(error, Overloaded), clock=clock, **options
    )
    return limiter, clock


async def succeed(limiter: AdaptiveLimiter, clock: ManualClock, latency: float) -> None:
    admitted = await limiter.acquire()
    clock.now += latency
    limiter.release_succeeded(admitted)


async def test_limiter_starts_at_maximum():
    limiter, _clock = make_limiter(8)

    assert limiter.limit == 8


async def test_limiter_initial_limit_clamped():
    limiter, _clock = make_limiter(8, initial_limit=50)

    assert limiter.limit == 8


async def test_limiter_rejects_invalid_bounds():
    with pytest.raises(ValueError, match="max_limit"):
        AdaptiveLimiter(0)


async def test_overload_halves_limit():
    limiter, _clock = make_limiter(8)

    admitted = await limiter.acquire()
    limiter.release_overloaded(admitted, Overloaded("HTTP 500"))

    assert limiter.limit == 4


async def test_overload_burst_decreases_once():
    limiter, _clock = make_limiter(8)
    slots = [await limiter.acquire() for _ in range(8)]

    for admitted in slots:
        limiter.release_overloaded(admitted, Overloaded("HTTP 500"))

    assert limiter.limit == 4
    assert limiter.stats().decreases == 1
    assert limiter.stats().overloads == 8


async def test_overload_after_decrease_decreases_again():
    limiter, _clock = make_limiter(8)
    first = await limiter.acquire()
    limiter.release_overloaded(first, Overloaded())

    second = await limiter.acquire()
    limiter.release_overloaded(second, Overloaded())

    assert limiter.limit == 2


async def test_limit_never_below_minimum():
    limiter, _clock = make_limiter(8, min_limit=2)

    for _ in range(10):
        admitted = await limiter.acquire()
        limiter.release_overloaded(admitted, Overloaded())

    assert limiter.limit == 2
    assert limiter.stats().lowest_limit == 2


async def test_successes_grow_limit_additively():
    limiter, clock = make_limiter(8, initial_limit=2)

    # From 2, the limit grows by 1/limit per success: 2 → 2.5 → 2.9 → 3.24
    for _ in range(3):
        await succeed(limiter, clock, 0.02)

    assert limiter.limit == 3


async def test_limit_never_above_maximum():
    limiter, clock = make_limiter(4, initial_limit=1)

    for _ in range(200):
        await succeed(limiter, clock, 0.02)

    assert limiter.limit == 4


async def test_latency_rise_lowers_limit():
    limiter, clock = make_limiter(8)
    for _ in range(10):
        await succeed(limiter, clock, 0.02)

    for _ in range(3):
        await succeed(limiter, clock, 0.2)

    assert limiter.limit == 6
    assert limiter.baseline_latency == pytest.approx(0.02)


async def test_single_slow_call_keeps_limit():
    limiter, clock = make_limiter(8)
    for _ in range(10):
        await succeed(limiter, clock, 0.02)

    await succeed(limiter, clock, 0.2)
    await succeed(limiter, clock, 0.02)
    await succeed(limiter, clock, 0.02)

    assert limiter.limit == 8


async def test_lasting_slowdown_becomes_baseline():
    limiter, clock = make_limiter(8, baseline_window=1.0)
    for _ in range(10):
        await succeed(limiter, clock, 0.02)

    # Slow calls for longer than two baseline windows: the limit first drops, then the
    # slower latency is the new baseline and the limit grows back.
    for _ in range(60):
        await succeed(limiter, clock, 0.2)

    assert limiter.stats().lowest_limit < 8
    assert limiter.baseline_latency == pytest.approx(0.2)
    assert limiter.limit == 8


async def test_unmeasured_slot_gives_no_latency_sample():
    limiter, clock = make_limiter(8)
    for _ in range(10):
        await succeed(limiter, clock, 0.02)

    for _ in range(5):
        admitted = await limiter.acquire(measure=False)
        clock.now += 30.0
        limiter.release_succeeded(admitted)

    assert limiter.limit == 8
    assert limiter.baseline_latency == pytest.approx(0.02)


async def test_slot_context_classifies_errors():
    limiter, _clock = make_limiter(8)

    with pytest.raises(ValueError):
        async with limiter.slot():
            raise ValueError("not an overload")
    limit_after_other_error = limiter.limit

    with pytest.raises(Overloaded):
        async with limiter.slot():
            raise Overloaded()

    assert limit_after_other_error == 8
    assert limiter.limit == 4
    assert limiter.in_flight == 0
    assert limiter.calls == 2


async def test_waiters_admitted_in_order():
    limiter, _clock = make_limiter(1)
    holder = await limiter.acquire()
    order: list[int] = []

    async def wait(number: int) -> Slot:
        admitted = await limiter.acquire()
        order.append(number)
        return admitted

    tasks = [asyncio.create_task(wait(number)) for number in range(3)]
    await asyncio.sleep(0)
    limiter.release_dropped(holder)
    first = await tasks[0]
    limiter.release_dropped(first)
    second = await tasks[1]
    limiter.release_dropped(second)
    await tasks[2]

    assert order == [0, 1, 2]
    assert limiter.in_flight == 1


async def test_limit_increase_admits_waiters():
    limiter, clock = make_limiter(3, initial_limit=1)
    holder = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)

    clock.now += 0.02
    limiter.release_succeeded(holder)  # 1 → 2: the waiter and one more may run
    await waiter
    extra = await asyncio.wait_for(limiter.acquire(), timeout=1)

    assert limiter.limit == 2
    assert limiter.in_flight == 2
    assert extra.measure is True


async def test_cancelled_waiter_takes_no_slot():
    limiter, _clock = make_limiter(1)
    holder = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limiter.release_dropped(holder)

    assert limiter.in_flight == 0
    assert await asyncio.wait_for(limiter.acquire(), timeout=1) is not None


async def test_limit_changes_logged_rate_limited(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="edm_sync.iem")
    limiter, clock = make_limiter(64)

    for _ in range(4):
        admitted = await limiter.acquire()
        limiter.release_overloaded(admitted, Overloaded())
    clock.now += 10.0
    admitted = await limiter.acquire()
    limiter.release_overloaded(admitted, Overloaded())

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "changed from 64 to 32" in messages[0]
    assert "changed from 32 to 2" in messages[1]
    assert "4 changes since the last report" in messages[1]
