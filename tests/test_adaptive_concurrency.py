"""IemClient's adaptive concurrency limit against the IEM simulator over HTTP.

Each test adds subscribers with 16 workers, as a sync run does, in three phases: a healthy
simulator, a stretch of faults or slow responses, and a healthy simulator again. The limit
must drop during the faults and climb back to the maximum afterwards, and every add must
land in the simulator's state exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edm_tui.interspire.client import IemClient
from edm_tui.interspire.simulator import (
    DEFAULT_TOKEN,
    DEFAULT_USERNAME,
    SimulatorHandle,
    start_simulator,
)

MAX_CONCURRENCY = 8
WORKERS = 16
LIST_ID = 1


@pytest.fixture
def simulator() -> Iterator[SimulatorHandle]:
    with start_simulator(auth_delay=0, latency_ms=20, seed=7) as handle:
        yield handle


class LimitSampler:
    """Records the client's limit every 5 ms while a phase runs."""

    def __init__(self, client: IemClient) -> None:
        self.client = client
        self.samples: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.samples.append(self.client.concurrency_limit)
            await asyncio.sleep(0.005)

    def start(self) -> None:
        self.samples = []
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> list[int]:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.samples.append(self.client.concurrency_limit)
        return self.samples


async def add_all(client: IemClient, emails: list[str]) -> None:
    """Add every address with WORKERS concurrent workers that share one queue."""
    queue = iter(emails)

    async def worker() -> None:
        for email in queue:
            result = await client.add_subscriber(LIST_ID, email, add_to_autoresponders=False)
            assert not result.already_exists

    await asyncio.gather(*(worker() for _ in range(WORKERS)))


async def add_until(client: IemClient, done: Callable[[int], bool], prefix: str, timeout: float) -> list[str]:
    """Add batches of WORKERS addresses until `done(limit)` or `timeout` seconds pass."""
    added: list[str] = []
    deadline = time.monotonic() + timeout
    batch = 0
    while not done(client.concurrency_limit) and time.monotonic() < deadline:
        emails = [f"{prefix}{batch:03d}.{n:02d}@example.test" for n in range(WORKERS)]
        await add_all(client, emails)
        added.extend(emails)
        batch += 1
    return added


def list_emails(handle: SimulatorHandle) -> list[str]:
    with handle.state.lock:
        return sorted(row.emailaddress for row in handle.state.list_rows(LIST_ID))


def new_client(handle: SimulatorHandle) -> IemClient:
    return IemClient(
        handle.url, DEFAULT_USERNAME, DEFAULT_TOKEN, concurrency=MAX_CONCURRENCY, retries=20,
        backoff=0.01, timeout=10,
    )


async def run_phases(handle: SimulatorHandle, trouble: dict[str, Any]) -> dict[str, Any]:
    """Run healthy, trouble and healthy phases; return the limits and the addresses added.

    The trouble phase ends once the limit is at most half the maximum (or after 5 s), and
    the last phase once it is back at the maximum (or after 5 s).
    """
    async with new_client(handle) as client:
        sampler = LimitSampler(client)

        healthy = [f"before{n:03d}@example.test" for n in range(100)]
        await add_all(client, healthy)  # also sets the baseline latency

        handle.configure(**trouble)
        sampler.start()
        troubled = await add_until(client, lambda limit: limit <= MAX_CONCURRENCY // 2, "during", 5.0)
        during = await sampler.stop()

        handle.configure(faults=[], latency_ms=20)
        sampler.start()
        recovered = await add_until(client, lambda limit: limit == MAX_CONCURRENCY, "after", 5.0)
        after = await sampler.stop()
        stats = client.limiter_stats()

    return {
        "during": during,
        "after": after,
        "emails": healthy + troubled + recovered,
        "stats": stats,
    }


@pytest.mark.parametrize("kind", ["http500", "html"])
async def test_limit_drops_on_error_pages(simulator: SimulatorHandle, kind: str):
    result = await run_phases(simulator, {"faults": [{"kind": kind, "rate": 0.3}]})

    assert min(result["during"]) <= MAX_CONCURRENCY // 2
    assert result["after"][-1] == MAX_CONCURRENCY
    assert result["stats"].overloads > 0
    assert result["stats"].in_flight == 0
    assert list_emails(simulator) == sorted(result["emails"])


async def test_limit_drops_on_slow_responses(simulator: SimulatorHandle):
    result = await run_phases(simulator, {"latency_ms": 100})

    assert min(result["during"]) <= MAX_CONCURRENCY // 2
    assert result["after"][-1] == MAX_CONCURRENCY
    assert result["stats"].overloads == 0
    assert list_emails(simulator) == sorted(result["emails"])


async def test_limit_drops_on_timeouts(simulator: SimulatorHandle):
    trouble = {"faults": [{"kind": "slow", "rate": 0.2, "slow_seconds": 2.0, "methods": ["AddSubscriberToList"]}]}
    async with IemClient(
        simulator.url, DEFAULT_USERNAME, DEFAULT_TOKEN, concurrency=MAX_CONCURRENCY, retries=20,
        backoff=0.01, timeout=0.3,
    ) as client:
        simulator.configure(**trouble)
        emails = [f"slow{n:03d}@example.test" for n in range(40)]
        results = await asyncio.gather(
            *(client.add_subscriber(LIST_ID, email, add_to_autoresponders=False) for email in emails)
        )
        stats = client.limiter_stats()

    # A timed-out add may have run in IEM before the timeout, so its retry can find the row.
    assert stats.lowest_limit <= MAX_CONCURRENCY // 2
    assert stats.overloads > 0
    assert len(results) == len(emails)
    assert list_emails(simulator) == sorted(emails)
