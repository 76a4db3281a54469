"""Simulated `Lists_API` and `User_API` methods of IEM 6.1.x (GetLists and GetCustomFields)."""

from __future__ import annotations

from typing import Any

from edm_tui.interspire.simulator import customfields, php
from edm_tui.interspire.simulator.context import CallContext

# Columns of IEM's `lists` table in table order, with the values the simulator uses when the
# state does not set them. `user/GetLists` returns all of them.
LIST_COLUMNS: tuple[tuple[str, object], ...] = (
    ("listid", 0),
    ("name", ""),
    ("ownername", ""),
    ("owneremail", ""),
    ("bounceemail", ""),
    ("replytoemail", ""),
    ("bounceserver", ""),
    ("bounceusername", ""),
    ("bouncepassword", ""),
    ("extramailsettings", ""),
    ("companyname", ""),
    ("companyaddress", ""),
    ("companyphone", ""),
    ("format", "b"),
    ("notifyowner", 0),
    ("imapaccount", 0),
    ("createdate", 0),
    ("subscribecount", 0),
    ("unsubscribecount", 0),
    ("bouncecount", 0),
    ("processbounce", 0),
    ("agreedelete", 1),
    ("agreedeleteall", 0),
    ("visiblefields", "emailaddress,subscribedate,format,status,confirmed"),
    ("ownerid", 1),
)

# NOTE: Lists_API's sort whitelist is not public; these names are an assumption. An unknown
# SortBy falls back to the name, as in CustomFields_API.
_LIST_SORTS = {"name": "name", "date": "createdate", "createdate": "createdate", "subscribers": "subscribecount", "unsubscribes": "unsubscribecount"}


def _column(entry: dict[str, Any], name: str, default: object) -> str:
    value = entry.get(name, default)
    if isinstance(value, bool):
        return "1" if value else "0"
    return php.to_string(value)


def _name_key(entry: dict[str, Any]) -> tuple[str, int]:
    return (str(entry.get("name", "")).lower(), int(entry["listid"]))


def user_get_lists(ctx: CallContext, userid: object = 0, getUnconfirmedCount: object = False) -> object:  # noqa: N803
    """user/GetLists: every column of each list the user may see, ordered by name.

    Admins see every list, other users the lists they own. IEM does not check whether the
    caller may read another user's lists through `userid`.
    """
    target_userid = php.intval(userid) if php.is_truthy(userid) else int(ctx.user["userid"])
    user = next((entry for entry in ctx.state.users if entry.get("userid") == target_userid), None)
    if user is None:
        return []
    visible = [
        entry
        for entry in ctx.state.lists.values()
        if user.get("admin") or int(entry.get("ownerid", 0)) == target_userid
    ]
    result: dict[int, dict[str, Any]] = {}
    for entry in sorted(visible, key=_name_key):
        row = {name: _column(entry, name, default) for name, default in LIST_COLUMNS}
        row["autorespondercount"] = ""
        if php.is_truthy(getUnconfirmedCount):
            unconfirmed = sum(1 for member in ctx.state.list_rows(int(entry["listid"])) if not member.confirmed)
            row["unconfirmedsubscribercount"] = str(unconfirmed)
        result[int(entry["listid"])] = row
    return result


def lists_get_lists(
    ctx: CallContext,
    lists: object = None,
    sortinfo: object = (),
    countonly: object = False,
    start: object = 0,
    perpage: object = 10,
) -> object:
    """lists/GetLists: a summary of all lists in the system, 10 per page unless `perpage` is set.

    A single `<lists>` element is a string, not an array, so it does not filter. `perpage`
    "all" or "0" (with `start` 0) returns every list.
    """
    entries = list(ctx.state.lists.values())
    if php.is_array(lists):
        selected = set(php.check_int_vars(lists))
        if selected:
            entries = [entry for entry in entries if int(entry["listid"]) in selected]
    if php.is_truthy(countonly):
        return len(entries)

    info = sortinfo if isinstance(sortinfo, dict) else {}
    column = _LIST_SORTS.get(php.strtolower(info.get("SortBy")), "name")
    direction = php.strtolower(info.get("Direction", "up"))
    if column == "name":
        entries.sort(key=_name_key, reverse=direction not in ("up", "asc"))
    else:
        entries.sort(key=lambda entry: int(entry.get(column, 0)), reverse=direction not in ("up", "asc"))

    if perpage != "all" and (php.is_truthy(start) or php.is_truthy(perpage)):
        offset = max(php.intval(start), 0)
        entries = entries[offset : offset + max(php.intval(perpage), 0)]

    users = {entry.get("userid"): entry for entry in ctx.state.users}
    result = []
    for entry in entries:
        owner = users.get(int(entry.get("ownerid", 0)), {})
        result.append(
            {
                "listid": _column(entry, "listid", 0),
                "name": _column(entry, "name", ""),
                "createdate": _column(entry, "createdate", 0),
                "subscribecount": _column(entry, "subscribecount", 0),
                "unsubscribecount": _column(entry, "unsubscribecount", 0),
                "ownerid": _column(entry, "ownerid", 1),
                "username": php.to_string(owner.get("username", "")),
                "fullname": php.to_string(owner.get("fullname", "")),
            }
        )
    return result


def lists_get_custom_fields(ctx: CallContext, listids: object = (), type: object = "") -> object:  # noqa: A002
    """lists/GetCustomFields: the fields attached to the lists, each once, ordered by name."""
    ids = php.check_int_vars(listids if php.is_array(listids) else [listids])
    if not ids:
        return []
    field_type = php.to_string(type)
    result: dict[int, dict[str, str]] = {}
    for field in customfields.fields_for_lists(ctx.state, ids):
        if field_type and field.get("fieldtype") != field_type:
            continue
        result[int(field["fieldid"])] = {
            "fieldid": str(field["fieldid"]),
            "name": php.to_string(field.get("name", "")),
            "fieldtype": php.to_string(field.get("fieldtype", "text")),
            "defaultvalue": php.to_string(field.get("defaultvalue", "")),
            "required": "1" if field.get("required") else "0",
            "fieldsettings": customfields.field_settings(field),
            "ownerid": php.to_string(field.get("ownerid", 1)),
            "createdate": php.to_string(field.get("createdate", 0)),
        }
    return result


def find_list(ctx: CallContext, listid: object) -> int:
    """Resolve a list id or list name like `Lists_API::Find`: the id, -1 for an ambiguous name, 0 if unknown."""
    if php.is_numeric(listid):
        number = php.intval(listid)
        return number if number in ctx.state.lists else 0
    if not isinstance(listid, str) or listid == "":
        return 0
    matches = ctx.state.find_list_ids_by_name(listid)
    if len(matches) > 1:
        return -1
    return matches[0] if matches else 0
