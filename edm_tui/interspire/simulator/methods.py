"""Dispatch of authenticated requests to the simulated API methods.

IEM's xml.php maps `requesttype` to a PHP file (case-sensitive, so only lower-case names
work) and `requestmethod` to a method of its class (case-insensitive). Most methods are
called through reflection, which binds `<details>` children to PHP parameters by name and
ignores unknown names. AddSubscriberToList and DeleteSubscriber are special cases written
in xml.php itself; both are modelled here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edm_tui.interspire.simulator import customfields, lists, php, search, subscribers
from edm_tui.interspire.simulator.context import (
    INVALID_REQUEST_TYPE,
    XML_PHP,
    CallContext,
    Failure,
    PhpFatalError,
    SubscriberListing,
    Success,
)
from edm_tui.interspire.simulator.request import ElementNode, create_function_params
from edm_tui.interspire.simulator.state import Subscriber
from edm_tui.interspire.simulator.subscribers import NO_DEFAULT

FAILED_ADDING = "Failed adding subcriber to the list"  # IEM's spelling.
DUPLICATE_MESSAGE = "{} already exists in the given list"
WRITE_METHODS = frozenset(
    {
        "AddSubscriberToList",
        "UnsubscribeSubscriber",
        "ActivateSubscriber",
        "ChangeSubscriberConfirm",
        "SaveSubscriberCustomField",
        "DeleteSubscriber",
        "BounceSubscriber",
    }
)


@dataclass(frozen=True)
class MethodSpec:
    """A PHP API method: its canonical name, implementation and parameters in PHP order."""

    name: str
    function: Callable[..., Any]
    parameters: tuple[tuple[str, object], ...]


def _spec(name: str, function: Callable[..., Any], *parameters: tuple[str, object]) -> MethodSpec:
    return MethodSpec(name, function, parameters)


# Methods reachable through reflection, per request type. Keys are lower-case because PHP
# method names are case-insensitive. Subscribers_API methods that are not listed here
# (FetchSubscribers, UpdateEmailAddress, AddBannedSubscriber, ...) return
# "Invalid request type", although IEM would run them.
API_METHODS: dict[str, dict[str, MethodSpec]] = {
    "subscribers": {
        spec.name.lower(): spec
        for spec in (
            _spec(
                "GetSubscribers",
                search.get_subscribers,
                ("searchinfo", []),
                ("sortdetails", []),
                ("countonly", False),
                ("queuedetails", []),
                ("setmax", "-1"),
            ),
            _spec(
                "IsSubscriberOnList",
                subscribers.is_subscriber_on_list,
                ("emailaddress", ""),
                ("listids", []),
                ("subscriberid", 0),
                ("activeonly", False),
                ("not_bounced", False),
                ("return_listid", False),
            ),
            _spec(
                "UnsubscribeSubscriber",
                subscribers.unsubscribe_subscriber,
                ("emailaddress", ""),
                ("listid", 0),
                ("subscriberid", 0),
                ("skipcheck", False),
                ("statstype", False),
                ("statid", 0),
            ),
            _spec("ActivateSubscriber", subscribers.activate_subscriber, ("emailaddress", ""), ("listid", 0)),
            _spec(
                "BounceSubscriber",
                subscribers.bounce_subscriber,
                ("emailaddress", False),
                ("listid", 0),
                ("subscriberid", 0),
                ("bouncetime", 0),
                ("already_bounced", False),
            ),
            _spec(
                "ChangeSubscriberConfirm",
                subscribers.change_subscriber_confirm,
                ("status", "confirm"),
                ("listid", 0),
                ("subscriberid", 0),
            ),
            _spec(
                "ChangeSubscriberFormat",
                subscribers.change_subscriber_format,
                ("format", "html"),
                ("subscriberid", 0),
            ),
            _spec(
                "SaveSubscriberCustomField",
                subscribers.save_subscriber_custom_field,
                ("subscriberids", NO_DEFAULT),
                ("fieldid", NO_DEFAULT),
                ("data", ""),
            ),
            _spec(
                "GetAllListsForEmailAddress",
                subscribers.get_all_lists_for_email_address,
                ("email", ""),
                ("listids", []),
                ("main_listid", 0),
            ),
            _spec(
                "LoadSubscriberList",
                subscribers.load_subscriber_list,
                ("subscriberid", 0),
                ("listid", 0),
                ("returnonly", False),
                ("activeonly", False),
                ("include_customfields", True),
            ),
            _spec(
                "IsUnSubscriber",
                subscribers.is_unsubscriber,
                ("emailaddress", ""),
                ("listid", 0),
                ("subscriberid", 0),
            ),
            _spec("IsBounceSubscriber", subscribers.is_bounce_subscriber, ("emailaddress", ""), ("listid", 0)),
        )
    },
    "lists": {
        spec.name.lower(): spec
        for spec in (
            _spec(
                "GetLists",
                lists.lists_get_lists,
                ("lists", None),
                ("sortinfo", []),
                ("countonly", False),
                ("start", 0),
                ("perpage", 10),
            ),
            _spec("GetCustomFields", lists.lists_get_custom_fields, ("listids", []), ("type", "")),
        )
    },
    "user": {
        spec.name.lower(): spec
        for spec in (
            _spec("GetLists", lists.user_get_lists, ("userid", 0), ("getUnconfirmedCount", False)),
        )
    },
}

SPECIAL_METHODS = {"addsubscribertolist": "AddSubscriberToList", "deletesubscriber": "DeleteSubscriber"}


def canonical_method_name(requestmethod: str) -> str:
    """Return the documented spelling of a method name, or the name as sent when it is unknown."""
    lowered = php.strtolower(requestmethod)
    if lowered in SPECIAL_METHODS:
        return SPECIAL_METHODS[lowered]
    for methods in API_METHODS.values():
        if lowered in methods:
            return methods[lowered].name
    return requestmethod


def map_return(response: object) -> Success | Failure:
    """Turn a PHP method's return value into an envelope, as xml.php's generic dispatch does.

    `(False, message)` fails with the message, or with every element joined when the
    message is empty. `(True, data)` succeeds with data, or with nothing when data is
    PHP-empty. Any other PHP-empty value (false, 0, "0", "", an empty array) fails with
    itself as the message, so a zero count fails with "0" and "not found" fails with "".
    """
    if isinstance(response, tuple) and response and response[0] is False:
        if len(response) > 1 and not php.is_empty(response[1]):
            return Failure(response[1])
        return Failure(response)
    if isinstance(response, tuple) and response and response[0] is True:
        if len(response) > 1 and response[1] is not None:
            return Success(None if php.is_empty(response[1]) else response[1])
        return Success(None)
    if not isinstance(response, SubscriberListing) and php.is_empty(response):
        return Failure(response)
    return Success(response)


@dataclass
class Dispatch:
    """The outcome of a dispatched call plus what the request log records about it."""

    outcome: Success | Failure
    method: str
    details: dict[str, object]


def dispatch(ctx: CallContext, requesttype: str, requestmethod: str, details: ElementNode) -> Dispatch:
    """Run an authenticated request and return its outcome; raise PhpFatalError for a PHP fatal error."""
    methods = API_METHODS.get(requesttype)
    lowered = php.strtolower(requestmethod)
    method_name = canonical_method_name(requestmethod)
    if methods is None:
        return Dispatch(Failure(INVALID_REQUEST_TYPE), method_name, {})

    adding = requesttype == "subscribers" and lowered == "addsubscribertolist"
    missing_keys: list[str] = []
    params = create_function_params(details, adding, missing_keys)
    for key in missing_keys:
        ctx.notice(f"Undefined index: {key}", XML_PHP, 118)

    if requesttype == "subscribers" and lowered == "addsubscribertolist":
        return Dispatch(add_subscriber_to_list(ctx, params), method_name, params)
    if requesttype == "subscribers" and lowered == "deletesubscriber":
        return Dispatch(delete_subscriber_call(ctx, params), method_name, params)

    spec = methods.get(lowered)
    if spec is None:
        return Dispatch(Failure(INVALID_REQUEST_TYPE), method_name, params)
    arguments = []
    for name, default in spec.parameters:
        if name in params:
            arguments.append(params[name])
        elif default is NO_DEFAULT:
            raise PhpFatalError(
                "Uncaught exception 'ReflectionException' with message "
                "'Internal error: Failed to retrieve the default value'"
            )
        else:
            arguments.append(default)
    return Dispatch(map_return(spec.function(ctx, *arguments)), spec.name, params)


def delete_subscriber_call(ctx: CallContext, params: dict[str, object]) -> Success | Failure:
    """Run xml.php's DeleteSubscriber case: rename `list` to `listid`, then call by position.

    xml.php passes the details array to `call_user_func_array`, which on PHP 5 and 7 binds
    values by position, not by name. The details must therefore come in the order
    emailaddress, listid, subscriberid. A renamed `list` moves to the end unless a `listid`
    element is also present.
    """
    arguments = dict(params)
    if "list" in arguments and arguments["list"] is not None:
        arguments["listid"] = arguments.pop("list")
    positional = list(arguments.values())[:3]
    defaults: list[object] = ["", 0, 0]
    positional += defaults[len(positional) :]
    ok, message = subscribers.delete_subscriber(ctx, *positional)
    return Success("") if ok else Failure(message)


def add_subscriber_to_list(ctx: CallContext, params: dict[str, object]) -> Success | Failure:
    """Run xml.php's AddSubscriberToList: duplicate check, insert, then custom fields in one transaction."""
    email = params["emailaddress"] if "emailaddress" in params else False
    mailinglist = params["mailinglist"] if "mailinglist" in params else False

    existing = subscribers.find_on_lists(ctx, email, mailinglist)
    if existing is not None:
        if ctx.duplicate_style == "id":
            return Failure(existing.subscriberid)
        if "emailaddress" not in params:
            ctx.notice("Undefined index: emailaddress", XML_PHP, 478)
        return Failure(DUPLICATE_MESSAGE.format(php.to_string(params.get("emailaddress"))))

    add_to_autoresponders = params["add_to_autoresponders"] if "add_to_autoresponders" in params else True
    subscriber_format = "t"
    if "format" in params:
        requested = php.strtolower(params["format"])
        if requested in ("t", "text", "h", "html"):
            subscriber_format = requested[0]
    confirmed = False
    if "confirmed" in params:
        confirmed = php.strtolower(params["confirmed"]) in ("yes", "y", "true", "1")

    row = _add_to_list(ctx, email, mailinglist, subscriber_format, confirmed, add_to_autoresponders)
    if row is None:
        return Failure(FAILED_ADDING)
    if "customfields" not in params:
        ctx.state.mark_changed()
        return Success(row.subscriberid)

    failure = _save_new_custom_fields(ctx, row, params["customfields"])
    if failure is not None:
        _roll_back_insert(ctx, row)
        return failure
    ctx.state.mark_changed()
    return Success(row.subscriberid)


def _add_to_list(
    ctx: CallContext,
    emailaddress: object,
    listid: object,
    subscriber_format: str,
    confirmed: bool,
    add_to_autoresponders: object,
) -> Subscriber | None:
    """Insert the row like `Subscribers_API::AddToList`; None when the address or list is invalid."""
    email = php.trim(emailaddress)
    if not php.is_truthy(email):
        return None
    real_listid = lists.find_list(ctx, listid)
    if real_listid <= 0:
        return None
    confirmdate = ctx.now if confirmed else 0
    row = Subscriber(
        ctx.state.allocate_subscriberid(),
        real_listid,
        email,
        format=subscriber_format,
        confirmed=confirmed,
        subscribedate=confirmdate or ctx.now,
        requestdate=ctx.now,
        confirmdate=confirmdate,
        confirmcode=ctx.new_confirmcode(),
        autoresponders=php.is_truthy(add_to_autoresponders),
    )
    ctx.state.insert(row)
    ctx.state.adjust_counter(real_listid, "subscribecount", 1)
    return row


def _roll_back_insert(ctx: CallContext, row: Subscriber) -> None:
    """Undo `_add_to_list`; the subscriber id stays used, as with MySQL auto-increment."""
    ctx.state.delete(row)
    ctx.state.adjust_counter(row.listid, "subscribecount", -1)
    ctx.state.mark_changed()


def _custom_field_entries(ctx: CallContext, container: object) -> list[object]:
    """Return the entries xml.php loops over: `customfields['item']` when set, else `customfields`."""
    if isinstance(container, dict) and container.get("item") is not None:
        container = container["item"]
    if not php.is_array(container):
        ctx.notice("Invalid argument supplied for foreach()", XML_PHP, 565, level="Warning")
        return []
    return php.array_values(container)


def _entry_value(ctx: CallContext, entry: object, key: str) -> object:
    """Read `$details[key]` from one entry with PHP's rules for strings and missing keys."""
    if isinstance(entry, dict):
        if key in entry:
            return entry[key]
        ctx.notice(f"Undefined index: {key}", XML_PHP, 568)
        return None
    if isinstance(entry, str):
        ctx.notice(f"Illegal string offset '{key}'", XML_PHP, 568, level="Warning")
        return entry[:1]
    ctx.notice(f"Undefined index: {key}", XML_PHP, 568)
    return None


def _save_new_custom_fields(ctx: CallContext, row: Subscriber, container: object) -> Failure | None:
    """Validate and store each custom field of a new row; return the failure that rolls the add back."""
    pending: list[tuple[int, object]] = []
    for entry in _custom_field_entries(ctx, container):
        fieldid = _entry_value(ctx, entry, "fieldid")
        field = customfields.load_field(ctx.state, fieldid)
        if field is None:
            return Failure(f"Unable to load field id '{php.to_string(fieldid)}'")

        value = _entry_value(ctx, entry, "value")
        fieldtype = field.get("fieldtype", "text")
        if fieldtype == "checkbox" and not php.is_array(value):
            value = [value]
        if fieldtype == "date":
            # IEM 6.1.4 and 6.1.5 index the parsed date with [0]/[1]/[2] although it is keyed
            # dd/mm/yy, so a well-formed date turns into "//" and no date can be saved.
            if customfields.parse_date_value(value):
                for offset in range(3):
                    ctx.notice(f"Undefined offset: {offset}", XML_PHP, 600)
                value = "//"
            else:
                value = False
            valid = False
        else:
            valid = customfields.is_valid_value(field, value)
        if not valid:
            if php.is_array(value):
                ctx.notice("Array to string conversion", XML_PHP, 617)
            return Failure(
                f"The data provided for field '{php.to_string(field.get('name', ''))}' "
                f"is invalid (you provided '{php.to_string(value)}')"
            )
        pending.append((int(field["fieldid"]), value))

    for fieldid, value in pending:
        customfields.save_value(row, fieldid, value)
    return None
