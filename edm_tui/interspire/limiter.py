"""Adaptive concurrency limit for the calls of one IEM client (AIMD).

IEM has no bulk API, so a sync is bounded by how many calls the IEM host serves at once.
`AdaptiveLimiter` lets at most `limit` calls run at the same time and moves that limit
between `min_limit` and `max_limit`:

* multiplicative decrease when a call fails with an overload error. For IemClient that is
  a timeout, a connection error, an HTTP 5xx or an HTML error page. The limit also goes
  down when several successful calls in a row take clearly longer than the lowest latency
  seen recently (the baseline);
* additive increase, by about one per `limit` successful calls, while calls succeed at a
  latency close to the baseline.

Only calls that started after the last decrease can cause the next one, because the calls
still in flight were sent under the old limit. This keeps one burst of failures from
halving the limit once per failed call, as in TCP congestion control.

A call that ends with any other error, such as IEM rejecting one subscriber or the task
being cancelled, is "dropped": it frees its slot without moving the limit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

logger = logging.getLogger("edm_sync.iem")

LOG_INTERVAL = 5.0  # seconds between two log lines about limit changes


@dataclass(frozen=True, slots=True)
class LimiterStats:
    """A snapshot of a limiter: its limit, the calls in flight and the calls finished so far."""

    limit: int
    max_limit: int
    in_flight: int
    calls: int
    overloads: int
    decreases: int
    lowest_limit: int


class Slot:
    """One admitted call. `measure=False` calls (long streamed reads) give no latency sample."""

    __slots__ = ("epoch", "measure", "started")

    def __init__(self, epoch: int, started: float, measure: bool) -> None:
        self.epoch = epoch
        self.started = started
        self.measure = measure


class AdaptiveLimiter:
    """Concurrency limit that backs off on overload and grows back while calls succeed.

    `decrease_factor` multiplies the limit after an overload error and
    `latency_decrease_factor` after a latency rise. A latency rise is `slow_streak`
    successful calls in a row, all sent under the current limit, that each took more than
    `latency_tolerance` times the baseline and at least `latency_slack` seconds more than
    it. The slack keeps the pauses of a busy client process (the latency is measured in
    its event loop) from counting as a slower IEM. The baseline is the lowest latency seen in the
    last `baseline_window` to 2 × `baseline_window` seconds, so after a slowdown that lasts
    longer than that, the slower latency becomes the baseline and the limit grows again.
    `is_overload` decides which exceptions count as overload; the others drop the call.
    """

    def __init__(
        self,
        max_limit: int,
        *,
        min_limit: int = 1,
        initial_limit: int | None = None,
        decrease_factor: float = 0.5,
        latency_decrease_factor: float = 0.75,
        latency_tolerance: float = 2.0,
        latency_slack: float = 0.05,
        baseline_window: float = 15.0,
        slow_streak: int = 3,
        is_overload: Callable[[BaseException], bool] = lambda _error: False,
        clock: Callable[[], float] = time.monotonic,
        name: str = "IEM",
    ) -> None:
        if min_limit < 1:
            raise ValueError(f"min_limit must be at least 1, got {min_limit}")
        if max_limit < min_limit:
            raise ValueError(f"max_limit must be at least min_limit ({min_limit}), got {max_limit}")
        if not 0 < decrease_factor < 1 or not 0 < latency_decrease_factor < 1:
            raise ValueError("decrease factors must be between 0 and 1 (exclusive)")
        if latency_tolerance <= 1:
            raise ValueError(f"latency_tolerance must be greater than 1, got {latency_tolerance}")
        if slow_streak < 1:
            raise ValueError(f"slow_streak must be at least 1, got {slow_streak}")

        self.min_limit = min_limit
        self.max_limit = max_limit
        self.name = name
        self._decrease_factor = decrease_factor
        self._latency_decrease_factor = latency_decrease_factor
        self._latency_tolerance = latency_tolerance
        self._latency_slack = latency_slack
        self._baseline_window = baseline_window
        self._slow_streak = slow_streak
        self._is_overload = is_overload
        self._clock = clock

        start = max_limit if initial_limit is None else initial_limit
        self._limit = float(min(max(start, min_limit), max_limit))
        self._in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._epoch = 0
        self._slow_samples = 0  # consecutive slow calls of the current epoch

        # Rolling minimum over two buckets, so a sample leaves the baseline after 1 to 2 windows.
        self._bucket_started = clock()
        self._bucket_min: float | None = None
        self._previous_bucket_min: float | None = None

        self._calls = 0
        self._overloads = 0
        self._decreases = 0
        self._lowest_limit = int(self._limit)

        self._logged_limit = int(self._limit)
        self._logged_at: float | None = None
        self._unlogged_changes = 0

    # Reading

    @property
    def limit(self) -> int:
        """The number of calls allowed in flight now."""
        return int(self._limit)

    @property
    def in_flight(self) -> int:
        """The number of calls holding a slot now."""
        return self._in_flight

    @property
    def calls(self) -> int:
        """The number of calls that finished (succeeded, failed or dropped) so far."""
        return self._calls

    @property
    def baseline_latency(self) -> float | None:
        """The lowest latency, in seconds, of the recent successful calls, or None before one."""
        candidates = [value for value in (self._bucket_min, self._previous_bucket_min) if value is not None]
        return min(candidates) if candidates else None

    def stats(self) -> LimiterStats:
        """Return a snapshot of the counters."""
        return LimiterStats(
            limit=self.limit,
            max_limit=self.max_limit,
            in_flight=self._in_flight,
            calls=self._calls,
            overloads=self._overloads,
            decreases=self._decreases,
            lowest_limit=self._lowest_limit,
        )

    # Admission

    @contextlib.asynccontextmanager
    async def slot(self, *, measure: bool = True) -> AsyncIterator[Slot]:
        """Wait for a free slot, hold it for the block, then feed the outcome to the limit.

        A normal exit is a success. An exception for which `is_overload` is true is an
        overload, and any other exception, cancellation included, drops the call.
        """
        admitted = await self.acquire(measure=measure)
        try:
            yield admitted
        except BaseException as error:
            if isinstance(error, Exception) and self._is_overload(error):
                self.release_overloaded(admitted, error)
            else:
                self.release_dropped(admitted)
            raise
        self.release_succeeded(admitted)

    async def acquire(self, *, measure: bool = True) -> Slot:
        """Wait until fewer than `limit` calls are in flight and take a slot, first come first served."""
        if self._waiters or self._in_flight >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._in_flight -= 1  # the slot was handed over just before the cancel
                    self._wake_waiters()
                else:
                    with contextlib.suppress(ValueError):  # already skipped by _wake_waiters
                        self._waiters.remove(waiter)
                raise
        else:
            self._in_flight += 1
        return Slot(self._epoch, self._clock(), measure)

    def release_succeeded(self, admitted: Slot) -> None:
        """Free a slot after a successful call and count its latency."""
        now = self._clock()
        self._free()
        if admitted.measure:
            self._observe_latency(admitted, now - admitted.started, now)

    def release_overloaded(self, admitted: Slot, error: BaseException) -> None:
        """Free a slot after an overload error, and lower the limit once per epoch."""
        self._free()
        self._overloads += 1
        if admitted.epoch == self._epoch:
            # Only the class name: messages can quote the response, which may echo a secret.
            self._decrease(self._decrease_factor, f"the call failed with {type(error).__name__}")

    def release_dropped(self, admitted: Slot) -> None:
        """Free a slot without moving the limit."""
        del admitted
        self._free()

    # Limit changes

    def _free(self) -> None:
        self._in_flight -= 1
        self._calls += 1
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        """Hand free slots to the oldest waiters; the slot counts as taken from the hand-over."""
        while self._waiters and self._in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)

    def _observe_latency(self, admitted: Slot, latency: float, now: float) -> None:
        self._update_baseline(latency, now)
        if admitted.epoch != self._epoch:
            return  # sent under an older limit, so its latency does not reflect the current one

        baseline = self.baseline_latency or latency
        # NOTE: the latency is measured in the client's event loop. A client process starved of
        # CPU for longer than the slack reads its own pauses as a slower IEM and lowers the
        # limit, as seen on a busy 2-core machine.
        threshold = max(baseline * self._latency_tolerance, baseline + self._latency_slack)
        if latency <= threshold:
            self._slow_samples = 0
            self._increase()
            return

        self._slow_samples += 1
        if self._slow_samples >= self._slow_streak:
            self._decrease(
                self._latency_decrease_factor,
                f"{self._slow_samples} calls in a row took over {threshold * 1000:.0f} ms against "
                f"a baseline latency of {baseline * 1000:.0f} ms (last {latency * 1000:.0f} ms)",
            )

    def _update_baseline(self, latency: float, now: float) -> None:
        if now - self._bucket_started >= self._baseline_window:
            self._previous_bucket_min = self._bucket_min
            self._bucket_min = None
            self._bucket_started = now
        if self._bucket_min is None or latency < self._bucket_min:
            self._bucket_min = latency

    def _increase(self) -> None:
        if self._limit >= self.max_limit:
            return
        before = self.limit
        self._limit = min(float(self.max_limit), self._limit + 1.0 / self._limit)
        if self.limit != before:
            self._wake_waiters()
            self._log_change(before, "calls succeed at a steady latency")

    def _decrease(self, factor: float, reason: str) -> None:
        before = self.limit
        self._epoch += 1
        self._slow_samples = 0
        self._limit = max(float(self.min_limit), float(int(self._limit * factor)))
        if self.limit == before:
            return
        self._decreases += 1
        self._lowest_limit = min(self._lowest_limit, self.limit)
        self._log_change(before, reason)

    def _log_change(self, before: int, reason: str) -> None:
        """Log a limit change at most once per LOG_INTERVAL, counting the changes in between."""
        self._unlogged_changes += 1
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < LOG_INTERVAL:
            return
        logger.info(
            "%s concurrency limit changed from %d to %d (maximum %d, %d changes since the "
            "last report); last change from %d: %s",
            self.name,
            self._logged_limit,
            self.limit,
            self.max_limit,
            self._unlogged_changes,
            before,
            reason,
        )
        self._logged_limit = self.limit
        self._logged_at = now
        self._unlogged_changes = 0

    def log_summary(self) -> None:
        """Log the final limit and the lowest one, when the limit ever went down."""
        if self._decreases == 0:
            return
        logger.info(
            "%s concurrency limit ended at %d (maximum %d, lowest %d, %d decreases, "
            "%d overload errors in %d calls)",
            self.name,
            self.limit,
            self.max_limit,
            self._lowest_limit,
            self._decreases,
            self._overloads,
            self._calls,
        )
