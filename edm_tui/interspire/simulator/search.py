"""Simulated `Subscribers_API::GetSubscribers`, the only method that scans many rows.

The filters follow IEM's query builder (`GenerateSubscriberSubQuery`): `searchinfo` keys are
case-sensitive, `Email` is a case-insensitive SQL LIKE '%value%' in which `_` and `%` are
wildcards, and `Status` falls back to "active" for any value other than b or u. There is no
paging: every matching row is returned.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from edm_tui.interspire.simulator import php
from edm_tui.interspire.simulator.context import SUBSCRIBERS_PHP, CallContext, SubscriberListing
from edm_tui.interspire.simulator.state import Subscriber

ROW_COLUMNS = ("subscriberid", "emailaddress", "format", "subscribedate", "confirmed", "unsubscribed", "bounced", "listid")

# Columns of list_subscribers that MySQL accepts in `ORDER BY`; anything else is an SQL
# error, after which IEM returns the count but no rows.
_SORT_COLUMNS: dict[str, Callable[[Subscriber], Any]] = {
    "subscriberid": lambda row: row.subscriberid,
    "listid": lambda row: row.listid,
    "emailaddress": lambda row: row.email_key,
    "domainname": lambda row: row.email_key[row.email_key.find("@") :] if "@" in row.email_key else "",
    "format": lambda row: row.format.lower(),
    "confirmed": lambda row: row.confirmed,
    "confirmcode": lambda row: row.confirmcode.lower(),
    "requestdate": lambda row: row.requestdate,
    "confirmdate": lambda row: row.confirmdate,
    "subscribedate": lambda row: row.subscribedate,
    "bounced": lambda row: row.bounced,
    "unsubscribed": lambda row: row.unsubscribed,
    "unsubscribeconfirmed": lambda row: row.unsubscribed > 0,
    "requestip": lambda row: "",
    "confirmip": lambda row: "",
    "formid": lambda row: 0,
}


def _status_rank(row: Subscriber) -> int:
    if row.is_active:
        return 1
    return 2 if row.unsubscribed > 0 else 3


def like_pattern(value: str) -> re.Pattern[str]:
    """Compile MySQL `LIKE '%value%'` under a case-insensitive collation into a regex.

    `%` matches any run of characters, `_` one character, and a backslash makes the next
    character literal.
    """
    parts = [".*"]
    escaped = False
    for character in value:
        if escaped:
            parts.append(re.escape(character))
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == "%":
            parts.append(".*")
        elif character == "_":
            parts.append(".")
        else:
            parts.append(re.escape(character))
    if escaped:
        parts.append(re.escape("\\"))
    parts.append(".*")
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _mysql_number(value: object) -> float:
    """Convert a value the way MySQL compares a string with an integer column."""
    return php.to_number(php.to_string(value))


def get_subscribers(
    ctx: CallContext,
    searchinfo: object = (),
    sortdetails: object = (),
    countonly: object = False,
    queuedetails: object = (),
    setmax: object = "-1",
) -> object:
    """GetSubscribers: the count and the rows matching `searchinfo`, or only the count with `countonly`."""
    if php.is_empty(searchinfo):
        return SubscriberListing(count=0, rows=[], columns=ROW_COLUMNS, key="subscribers")
    if php.is_empty(sortdetails):
        sortdetails = {"SortBy": "emailaddress", "Direction": "asc"}

    list_value = _read_list(ctx, searchinfo)
    info: dict[str, Any] = searchinfo if isinstance(searchinfo, dict) else {}
    with_listname = php.is_array(list_value) or list_value == "any"
    filters = _build_filters(ctx, info)
    if filters is None:
        matched: list[Subscriber] = []
    else:
        matched = [row for row in _candidate_rows(ctx, info, list_value) if all(check(row) for check in filters)]
    if with_listname:
        matched = [row for row in matched if row.listid in ctx.state.lists]

    count = len(matched)
    if php.is_truthy(countonly):
        return count
    columns = ROW_COLUMNS + (("listname",) if with_listname else ())
    if not php.is_empty(queuedetails):
        # IEM inserts the rows into a send queue instead of returning them.
        return SubscriberListing(count=count, rows=[], columns=columns)
    ordered = _sort_rows(ctx, matched, sortdetails, with_listname)
    return SubscriberListing(count=count, rows=[_row_values(ctx, row, with_listname) for row in ordered], columns=columns)


def _read_list(ctx: CallContext, searchinfo: object) -> object:
    """Read `$searchinfo['List']` the three times IEM reads it, with the notices PHP prints."""
    if isinstance(searchinfo, dict) and "List" in searchinfo:
        return searchinfo["List"]
    if isinstance(searchinfo, str):
        for line in (2231, 2231, 2237):
            ctx.notice("Illegal string offset 'List'", SUBSCRIBERS_PHP, line, level="Warning")
        return searchinfo[0]
    for line in (2231, 2231, 2237):
        ctx.notice("Undefined index: List", SUBSCRIBERS_PHP, line)
    return None


def _candidate_rows(ctx: CallContext, info: dict[str, Any], list_value: object) -> Iterable[Subscriber]:
    """Return the rows the list condition selects, before the other filters."""
    state = ctx.state
    if "AvailableLists" in info and info["AvailableLists"] is not None:
        list_value = php.check_int_vars(info["AvailableLists"]) or [0]
    if php.is_array(list_value):
        ids = php.check_int_vars(list_value)
        if not ids:
            return state.all_rows()
        return (row for listid in sorted(set(ids)) for row in state.list_rows(listid))
    if list_value == "any":
        return state.all_rows()
    listid = _mysql_number(list_value)
    if listid != int(listid):
        return ()
    return state.list_rows(int(listid))


def _build_filters(ctx: CallContext, info: dict[str, Any]) -> list[Callable[[Subscriber], bool]] | None:
    """Translate the non-list `searchinfo` keys into row predicates; None means no row can match."""
    filters: list[Callable[[Subscriber], bool]] = []

    link = info.get("Link")
    if link is not None and (info.get("LinkType") is None or info.get("LinkType") == "clicked"):
        return None  # The simulator records no link clicks.
    newsletter = info.get("Newsletter")
    if newsletter is not None and (info.get("OpenType") is None or info.get("OpenType") == "opened"):
        return None  # The simulator records no email opens.

    if info.get("Format") is not None:
        format_filter = php.to_string(info["Format"]).lower().rstrip(" ")
        filters.append(lambda row: row.format.lower() == format_filter)

    email = info.get("Email")
    if email is not None and email != "":
        pattern = like_pattern(php.to_string(email))
        filters.append(lambda row: pattern.fullmatch(row.emailaddress) is not None)

    if info.get("Status") is not None:
        status = php.strtolower(info["Status"])
        if status == "b":
            filters.append(lambda row: row.bounced > 0)
        elif status == "u":
            filters.append(lambda row: row.unsubscribed > 0)
        else:
            filters.append(lambda row: row.is_active)

    if info.get("Confirmed") is not None:
        confirmed = php.strtolower(info["Confirmed"])
        if confirmed in ("1", "0"):
            confirmed_filter = confirmed == "1"
            filters.append(lambda row: row.confirmed == confirmed_filter)

    if info.get("Subscriber") is not None:
        subscriberid_filter = php.intval(info["Subscriber"])
        filters.append(lambda row: row.subscriberid == subscriberid_filter)

    # Field ids are numbers, but an XML element name cannot start with a digit, so a
    # <CustomFields> child never names an existing field and IEM's data subquery finds
    # nothing. Children with empty data are skipped, as in IEM.
    fields = info.get("CustomFields")
    if php.is_array(fields) and any(data is not None and data != "" for _, data in php.array_items(fields)):
        return None

    # NOTE: DateSearch is not modelled; it is ignored, so it matches every row.
    return filters


def _sort_rows(ctx: CallContext, rows: list[Subscriber], sortdetails: object, with_listname: bool) -> list[Subscriber]:
    """Order rows like `ORDER BY <SortBy> <asc|desc>, emailaddress`; an invalid SortBy gives no rows."""
    details = sortdetails if isinstance(sortdetails, dict) else {}
    sort_by = php.strtolower(details.get("SortBy"))
    descending = php.strtolower(details.get("Direction")) != "asc"
    column = sort_by[2:] if sort_by.startswith("l.") else sort_by

    key: Callable[[Subscriber], Any] | None
    if column == "status":
        key = _status_rank
    elif with_listname and column in ("listname", "ml.name"):
        key = lambda row: str(ctx.state.lists.get(row.listid, {}).get("name", "")).lower()  # noqa: E731
    else:
        key = _SORT_COLUMNS.get(column)
    if key is None:
        return []

    ordered = sorted(rows, key=lambda row: row.subscriberid)
    if column != "emailaddress":
        ordered.sort(key=_SORT_COLUMNS["emailaddress"])
    ordered.sort(key=key, reverse=descending)
    return ordered


def _row_values(ctx: CallContext, row: Subscriber, with_listname: bool) -> tuple[Any, ...]:
    values: tuple[Any, ...] = (
        row.subscriberid,
        row.emailaddress,
        row.format,
        row.subscribedate,
        "1" if row.confirmed else "0",
        row.unsubscribed,
        row.bounced,
        row.listid,
    )
    if with_listname:
        values += (str(ctx.state.lists.get(row.listid, {}).get("name", "")),)
    return values
