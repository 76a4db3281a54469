"""CSV export of run history, fetched page by page from the daemon and streamed to a file.

Columns are the protocol's field names (docs/protocol.md) and values are as the daemon
returns them, except that times are written in ISO 8601 (UTC) and a run's `counts` as JSON. Rows come in the daemon's order, newest run first and oldest item first,
whatever order the screen shows.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

Call = Callable[..., Awaitable[Any]]
"""A daemon call like DaemonConnection.call: (method, **params) -> result."""

RUNS_PAGE = 500  # the daemon's maximum for `runs`
ITEMS_PAGE = 1000  # the daemon's maximum for `run_items`

RUN_FIELDS = ("id", "trigger", "status", "started_at", "finished_at", "duration_seconds",
              "allow_mass_changes", "succeeded", "failed", "error", "counts")
ITEM_FIELDS = ("id", "run_id", "email", "website_id", "list_id", "action", "direction", "reason",
               "outcome", "error_class", "error_message", "attempts", "at")


def iso_time(stamp: int | None) -> str:
    """Return a Unix time as ISO 8601 in UTC, or "" for None."""
    if stamp is None:
        return ""
    return dt.datetime.fromtimestamp(stamp, tz=dt.UTC).isoformat()


def _outcome_total(counts: dict[str, Any], outcome: str) -> int:
    return sum(int(by.get(outcome, 0)) for by in counts.values() if isinstance(by, dict))


def run_row(run: dict[str, Any]) -> list[Any]:
    counts = run.get("counts") or {}
    finished = run.get("finished_at")
    return [
        run["id"],
        run["trigger"],
        run["status"],
        iso_time(run["started_at"]),
        iso_time(finished),
        "" if finished is None else finished - run["started_at"],
        int(bool(run.get("allow_mass_changes"))),
        _outcome_total(counts, "succeeded"),
        _outcome_total(counts, "failed"),
        run.get("error") or "",
        json.dumps(counts, sort_keys=True, separators=(",", ":")),
    ]


def item_row(item: dict[str, Any]) -> list[Any]:
    row = [item.get(field) for field in ITEM_FIELDS]
    row[ITEM_FIELDS.index("at")] = iso_time(item.get("at"))
    return ["" if value is None else value for value in row]


async def run_pages(call: Call, **filters: Any) -> AsyncIterator[list[dict[str, Any]]]:
    """Yield pages of the runs that match `filters` (the `runs` method's params)."""
    before_id = None
    while True:
        params = dict(filters, limit=RUNS_PAGE)
        if before_id is not None:
            params["before_id"] = before_id
        result = await call("runs", **params)
        if result["runs"]:
            yield result["runs"]
        before_id = result.get("next_before_id")
        if before_id is None:
            return


async def item_pages(call: Call, run_id: int, **filters: Any) -> AsyncIterator[list[dict[str, Any]]]:
    """Yield pages of run `run_id`'s items that match `filters` (the `run_items` method's params)."""
    after_id = 0
    while True:
        result = await call("run_items", run_id=run_id, after_id=after_id, limit=ITEMS_PAGE, **filters)
        if result["items"]:
            yield result["items"]
        after_id = result.get("next_after_id")
        if after_id is None:
            return


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def create_unique(directory: Path, stem: str) -> tuple[Path, Any]:
    """Create and open `stem`.csv in `directory`, or `stem`-2.csv and so on if it exists.

    It never overwrites a file, because it takes the name with exclusive creation. The file
    gets mode 0600 (less if the umask says so), like the history it is taken from, because
    it lists subscribers' addresses.
    """
    number = 1
    while True:
        name = f"{stem}.csv" if number == 1 else f"{stem}-{number}.csv"
        path = directory / name
        try:
            return path, open(path, "x", newline="", encoding="utf-8", opener=_private_opener)
        except FileExistsError:
            number += 1


async def write_csv(
    directory: Path, stem: str, header: Iterable[str], pages: AsyncIterator[list[dict[str, Any]]],
    to_row: Callable[[dict[str, Any]], list[Any]],
) -> tuple[Path, int]:
    """Write `header` and every record of `pages` to a new CSV file; return its path and the row count.

    A failure part way (e.g. the daemon went away) deletes the file and raises the error.
    """
    path, handle = create_unique(directory, stem)
    count = 0
    try:
        with handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            async for page in pages:
                writer.writerows(to_row(record) for record in page)
                count += len(page)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, count


async def export_runs(call: Call, directory: Path, **filters: Any) -> tuple[Path, int]:
    """Write the runs matching `filters` to edm-sync-runs.csv (or a free variant of that name)."""
    return await write_csv(directory, "edm-sync-runs", RUN_FIELDS, run_pages(call, **filters), run_row)


async def export_items(call: Call, directory: Path, run_id: int, **filters: Any) -> tuple[Path, int]:
    """Write run `run_id`'s items matching `filters` to edm-sync-run-<id>.csv (or a free variant)."""
    return await write_csv(directory, f"edm-sync-run-{run_id}", ITEM_FIELDS,
                           item_pages(call, run_id, **filters), item_row)
