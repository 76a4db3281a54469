"""Simulated `Subscribers_API` methods of IEM 6.1.x.

Each function takes the call context followed by the PHP parameters, with IEM's names and
defaults, and returns what the PHP method returns: a value, or an `(ok, message)` tuple for
the methods that return `array(status, message)`. `methods.map_return` turns that into the
envelope. Callers hold the state lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from edm_tui.interspire.simulator import customfields, php
from edm_tui.interspire.simulator.context import NOT_SUBSCRIBED, CallContext
from edm_tui.interspire.simulator.state import Subscriber

NO_DEFAULT = object()
"""Marks a PHP parameter without a default value."""


# ----- lookups shared with the xml.php special cases ----------------------------------------


def find_on_lists(
    ctx: CallContext,
    emailaddress: object,
    listids: object,
    subscriberid: object = 0,
    activeonly: object = False,
    not_bounced: object = False,
) -> Subscriber | None:
    """Find the row IEM's `IsSubscriberOnList` query returns first, or None.

    Without an email address and a subscriber id the query matches any row of the lists,
    so the first row of the first list is returned.
    """
    ids = php.check_int_vars(listids if php.is_array(listids) else [listids])
    if not ids:
        return None
    email = php.trim(emailaddress) if php.is_truthy(emailaddress) else None
    subscriberid_filter = php.intval(subscriberid) if php.is_truthy(subscriberid) else None
    only_active = php.is_truthy(activeonly)
    only_unbounced = php.is_truthy(not_bounced)

    def matches(row: Subscriber) -> bool:
        if subscriberid_filter is not None and row.subscriberid != subscriberid_filter:
            return False
        if only_active and not (row.confirmed and row.unsubscribed == 0):
            return False
        if only_unbounced and not row.is_active:
            return False
        return True

    state = ctx.state
    if email is not None:
        candidates: Iterable[Subscriber] = sorted(
            (row for listid in dict.fromkeys(ids) for row in state.find(listid, email)),
            key=lambda row: row.subscriberid,
        )
    elif subscriberid_filter is not None:
        row = state.rows_by_id.get(subscriberid_filter)
        candidates = [row] if row is not None and row.listid in ids else []
    else:
        candidates = (row for listid in sorted(set(ids)) for row in state.list_rows(listid))
    return next((row for row in candidates if matches(row)), None)


def _row_on_list(ctx: CallContext, subscriberid: int, listid: int) -> Subscriber | None:
    row = ctx.state.rows_by_id.get(subscriberid)
    return row if row is not None and row.listid == listid else None


# ----- methods ------------------------------------------------------------------------------


def is_subscriber_on_list(
    ctx: CallContext,
    emailaddress: object = "",
    listids: object = (),
    subscriberid: object = 0,
    activeonly: object = False,
    not_bounced: object = False,
    return_listid: object = False,
) -> object:
    """IsSubscriberOnList: the subscriber id, {subscriberid, listid} with `return_listid`, or false."""
    row = find_on_lists(ctx, emailaddress, listids, subscriberid, activeonly, not_bounced)
    if row is None:
        return False
    if php.is_truthy(return_listid):
        return {"subscriberid": str(row.subscriberid), "listid": str(row.listid)}
    return row.subscriberid


def unsubscribe_subscriber(
    ctx: CallContext,
    emailaddress: object = "",
    listid: object = 0,
    subscriberid: object = 0,
    skipcheck: object = False,
    statstype: object = False,
    statid: object = 0,
) -> tuple[bool, Any]:
    """UnsubscribeSubscriber: set `unsubscribed` to now and move one count to `unsubscribecount`.

    There is no "already unsubscribed" check, so a second call moves the counters again.
    With a truthy `skipcheck` the given subscriber id is used without looking it up, and
    the counters move even when no row matches.
    """
    email = php.trim(emailaddress)
    if (email == "" and php.is_at_most_zero(subscriberid)) or php.is_at_most_zero(listid):
        return (False, "No List or email address")
    if not php.is_truthy(skipcheck):
        row = find_on_lists(ctx, email, listid)
        if row is None:
            return (False, NOT_SUBSCRIBED.format(email))
        subscriberid = row.subscriberid

    list_number = php.intval(listid)
    ctx.state.adjust_counter(list_number, "unsubscribecount", 1)
    ctx.state.adjust_counter(list_number, "subscribecount", -1)
    target = _row_on_list(ctx, php.intval(subscriberid), list_number)
    if target is not None:
        target.unsubscribed = ctx.now
    ctx.state.mark_changed()
    return (True, False)


def activate_subscriber(ctx: CallContext, emailaddress: object = "", listid: object = 0) -> tuple[bool, Any]:
    """ActivateSubscriber: clear `unsubscribed` and `bounced`, keep `confirmed` and the subscriber id."""
    email = php.trim(emailaddress)
    if email == "" or php.is_at_most_zero(listid):
        return (False, "No List or email address")
    row = find_on_lists(ctx, email, listid)
    if row is None:
        return (False, NOT_SUBSCRIBED.format(email))

    list_number = php.intval(listid)
    target = _row_on_list(ctx, row.subscriberid, list_number)
    if target is not None:
        if target.unsubscribed > 0:
            ctx.state.adjust_counter(list_number, "unsubscribecount", -1)
            ctx.state.adjust_counter(list_number, "subscribecount", 1)
        if target.bounced > 0:
            ctx.state.adjust_counter(list_number, "bouncecount", -1)
            ctx.state.adjust_counter(list_number, "subscribecount", 1)
        target.unsubscribed = 0
        target.bounced = 0
    ctx.state.mark_changed()
    return (True, False)


def bounce_subscriber(
    ctx: CallContext,
    emailaddress: object = False,
    listid: object = 0,
    subscriberid: object = 0,
    bouncetime: object = 0,
    already_bounced: object = False,
) -> tuple[bool, Any]:
    """BounceSubscriber: set `bounced` to the bounce time (default now) and move one count to `bouncecount`."""
    email = php.trim(emailaddress) if php.is_truthy(emailaddress) else emailaddress
    subscriber_number = php.intval(subscriberid)
    bounce_time = php.intval(bouncetime)
    if bounce_time <= 0:
        bounce_time = ctx.now
    if not php.is_truthy(email) and subscriber_number <= 0:
        return (False, "No email address supplied")
    if php.is_at_most_zero(listid):
        return (False, "No List supplied")
    if subscriber_number <= 0:
        row = find_on_lists(ctx, email, listid)
        if row is None:
            return (False, NOT_SUBSCRIBED.format(php.to_string(email)))
        subscriber_number = row.subscriberid

    list_number = php.intval(listid)
    target = _row_on_list(ctx, subscriber_number, list_number)
    if target is not None:
        target.bounced = bounce_time
    ctx.state.adjust_counter(list_number, "bouncecount", 1)
    ctx.state.adjust_counter(list_number, "subscribecount", -1)
    ctx.state.mark_changed()
    return (True, False)


def change_subscriber_confirm(
    ctx: CallContext, status: object = "confirm", listid: object = 0, subscriberid: object = 0
) -> tuple[bool, Any]:
    """ChangeSubscriberConfirm: SUCCESS even when no row has that subscriber id, as in IEM."""
    code = php.strtolower(status)
    code = {"confirm": "c", "unconfirm": "u"}.get(code, code)
    if code not in ("c", "u"):
        return (False, "Invalid Status supplied")
    row = ctx.state.rows_by_id.get(php.intval(subscriberid))
    if row is not None and php.is_truthy(listid) and row.listid != php.intval(listid):
        row = None
    if row is not None:
        row.confirmed = code == "c"
        row.confirmdate = ctx.now if row.confirmed else 0
        ctx.state.mark_changed()
    return (True, False)


def change_subscriber_format(ctx: CallContext, format: object = "html", subscriberid: object = 0) -> tuple[bool, Any]:
    """ChangeSubscriberFormat: html/h or text/t; SUCCESS even for unknown subscriber ids."""
    code = php.strtolower(format)
    code = {"html": "h", "text": "t"}.get(code, code)
    if code not in ("h", "t"):
        return (False, "Invalid Format supplied")
    row = ctx.state.rows_by_id.get(php.intval(subscriberid))
    if row is not None:
        row.format = code
        ctx.state.mark_changed()
    return (True, False)


def save_subscriber_custom_field(
    ctx: CallContext, subscriberids: object = NO_DEFAULT, fieldid: object = NO_DEFAULT, data: object = ""
) -> bool:
    """SaveSubscriberCustomField: replace one field's value on each row, without any type check.

    Neither the field nor its attachment to the row's list is checked. "" and "0" only delete
    the old value.
    """
    ids = php.check_int_vars(subscriberids if php.is_array(subscriberids) else [subscriberids])
    field_number = php.intval(fieldid)
    if not ids or field_number <= 0:
        return False
    for subscriber_number in ids:
        row = ctx.state.rows_by_id.get(subscriber_number)
        if row is not None:
            customfields.save_value(row, field_number, data)
    ctx.state.mark_changed()
    return True


def get_all_lists_for_email_address(
    ctx: CallContext, email: object = "", listids: object = (), main_listid: object = 0
) -> list[dict[str, str]]:
    """GetAllListsForEmailAddress: active memberships as {subscriberid, listid} items.

    A list filter whose first id is 0, or that has no numeric id (for example "2,3"), is
    dropped, so every list is searched.
    """
    if not php.is_truthy(email):
        return []
    address = php.trim(email)
    ids = php.check_int_vars(listids if php.is_array(listids) else [listids])
    search = ids if ids and ids[0] != 0 else ctx.state.list_ids_with_rows()
    rows = sorted(
        (row for listid in dict.fromkeys(search) for row in ctx.state.find(listid, address) if row.is_active),
        key=lambda row: row.subscriberid,
    )
    main = php.intval(main_listid)
    if main:
        rows.sort(key=lambda row: row.listid != main)
    return [{"subscriberid": str(row.subscriberid), "listid": str(row.listid)} for row in rows]


def load_subscriber_list(
    ctx: CallContext,
    subscriberid: object = 0,
    listid: object = 0,
    returnonly: object = False,
    activeonly: object = False,
    include_customfields: object = True,
) -> object:
    """LoadSubscriberList: the whole row plus its unsubscribe record and custom fields.

    IEM matches any list only when `listid` is the integer default 0; a `<listid>0</listid>`
    element is the string "0" and matches no row.
    """
    row = ctx.state.rows_by_id.get(php.intval(subscriberid))
    if row is not None and listid != 0 and row.listid != php.intval(listid):
        row = None
    if row is not None and php.is_truthy(activeonly) and not row.is_active:
        row = None
    if row is None:
        return []

    unsubscribed = row.unsubscribed > 0
    domain = row.emailaddress[row.emailaddress.index("@") :] if "@" in row.emailaddress else ""
    info: dict[str, Any] = {
        "subscriberid": subscriberid,
        "unsubscribetime": str(row.unsubscribed) if unsubscribed else None,
        "listid": str(row.listid),
        "unsubscribeip": "" if unsubscribed else None,
        "unsubscriberequesttime": "0" if unsubscribed else None,
        "unsubscriberequestip": "" if unsubscribed else None,
        "statid": "0" if unsubscribed else None,
        "unsubscribearea": "f" if unsubscribed else None,
        "emailaddress": row.emailaddress,
        "domainname": domain,
        "format": row.format,
        "confirmed": "1" if row.confirmed else "0",
        "confirmcode": row.confirmcode,
        "requestdate": str(row.requestdate),
        "requestip": "",
        "confirmdate": str(row.confirmdate),
        "confirmip": "",
        "subscribedate": str(row.subscribedate),
        "bounced": str(row.bounced),
        "unsubscribed": str(row.unsubscribed),
        "unsubscribeconfirmed": "1" if unsubscribed else "0",
        "formid": "0",
        "CustomFields": subscriber_custom_fields(ctx, row) if php.is_truthy(include_customfields) else [],
    }
    return info


def subscriber_custom_fields(ctx: CallContext, row: Subscriber) -> list[dict[str, str]]:
    """Return a row's custom fields like `LoadSubscriberCustomFields`: stored values first, then the rest empty."""
    fields = customfields.fields_for_lists(ctx.state, [row.listid])
    stored = row.customfields or {}
    found = []
    missing = []
    for field in fields:
        key = str(field["fieldid"])
        if key in stored:
            found.append(
                {
                    "fieldid": key,
                    "data": customfields.output_value(stored[key]),
                    "fieldtype": str(field.get("fieldtype", "text")),
                    "fieldname": str(field.get("name", "")),
                }
            )
        else:
            missing.append(
                {
                    "fieldid": key,
                    "fieldtype": str(field.get("fieldtype", "text")),
                    "fieldname": str(field.get("name", "")),
                    "data": "",
                }
            )
    return found + missing


def is_unsubscriber(ctx: CallContext, emailaddress: object = "", listid: object = 0, subscriberid: object = 0) -> object:
    """IsUnSubscriber: the id of an unsubscribed row, or false."""
    email = php.trim(emailaddress)
    if (email == "" and php.is_at_most_zero(subscriberid)) or php.is_at_most_zero(listid):
        return False
    row = find_on_lists(ctx, email, listid, subscriberid)
    if row is None or row.unsubscribed <= 0:
        return False
    return str(row.subscriberid)


def is_bounce_subscriber(ctx: CallContext, emailaddress: object = "", listid: object = 0) -> object:
    """IsBounceSubscriber: the id of a bounced row, or false."""
    email = php.trim(emailaddress)
    if email == "" or php.is_at_most_zero(listid):
        return False
    row = find_on_lists(ctx, email, listid)
    if row is None or row.bounced <= 0:
        return False
    return str(row.subscriberid)


def delete_subscriber(ctx: CallContext, emailaddress: object = "", listid: object = 0, subscriberid: object = 0) -> tuple[bool, Any]:
    """DeleteSubscriber: remove the row and its custom-field data, and fix the list counters."""
    email = php.trim(emailaddress)
    subscriber_number = php.intval(subscriberid)
    if email == "" and subscriber_number <= 0:
        return (False, "No email address or subscriber id")
    if subscriber_number == 0 and email != "":
        found = find_on_lists(ctx, email, listid)
        if found is None:
            return (False, NOT_SUBSCRIBED.format(email))
        subscriber_number = found.subscriberid

    row = ctx.state.rows_by_id.get(subscriber_number)
    if row is not None and php.is_truthy(listid) and row.listid != php.intval(listid):
        row = None
    if row is None or row.listid == 0:
        return (False, NOT_SUBSCRIBED.format(email))

    if row.unsubscribed > 0:
        ctx.state.adjust_counter(row.listid, "unsubscribecount", -1)
    elif row.bounced > 0:
        ctx.state.adjust_counter(row.listid, "bouncecount", -1)
    else:
        ctx.state.adjust_counter(row.listid, "subscribecount", -1)
    ctx.state.delete(row)
    ctx.state.mark_changed()
    return (True, False)
