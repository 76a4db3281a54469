"""Tests of the IEM XML API simulator, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest

from edm_tui.interspire.simulator import DEFAULT_TOKEN, start_simulator
from edm_tui.interspire.simulator.context import SubscriberListing
from edm_tui.interspire.simulator.render import create_output, listing_chunks
from edm_tui.interspire.simulator.search import ROW_COLUMNS
from tests.simulator_support import IemSession, envelope, parse, running_simulator

NOW = 1700000500
HEAD = '<?xml version="1.0" encoding="UTF-8" ?>\n<response>\n'
REPO_ROOT = Path(__file__).resolve().parent.parent


def failed(message: str) -> bytes:
    """Return the exact bytes of a FAILED response."""
    return (HEAD + f"<status>FAILED</status>\n<errormessage>{message}</errormessage>\n</response>\n").encode()


def succeeded(payload: str) -> bytes:
    """Return the exact bytes of a SUCCESS response."""
    return (HEAD + f"<status>SUCCESS</status>\n<data>{payload}</data></response>\n").encode()


def state_with(
    rows: list[dict[str, Any]] | None = None,
    lists: list[dict[str, Any]] | None = None,
    fields: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Build a state document with the default admin user."""
    return {
        "users": [{"userid": 1, "username": "admin", "token": DEFAULT_TOKEN, "status": 1, "admin": True}],
        "lists": lists if lists is not None else [{"listid": 1, "name": "Newsletter", "createdate": 1700000000, "ownerid": 1}],
        "custom_fields": fields
        if fields is not None
        else [{"fieldid": 2, "name": "First name", "fieldtype": "text", "required": False, "options": []}],
        "subscribers": rows or [],
        "next_subscriberid": max((row["subscriberid"] for row in rows or []), default=0) + 1,
    }


def row(subscriberid: int, email: str, listid: int = 1, **fields: Any) -> dict[str, Any]:
    """Build a subscriber row of the state document."""
    data = {
        "subscriberid": subscriberid,
        "listid": listid,
        "emailaddress": email,
        "format": "h",
        "confirmed": True,
        "subscribedate": 1700000000,
        "requestdate": 1700000000,
        "unsubscribed": 0,
        "bounced": 0,
        "confirmcode": "c" * 32,
        "customfields": {},
    }
    data.update(fields)
    return data


@pytest.fixture
def iem() -> Any:
    with running_simulator(now=NOW) as session:
        yield session


def rows_of(session: IemSession) -> dict[str, dict[str, Any]]:
    """Return the simulator's rows keyed by email address."""
    return {entry["emailaddress"]: entry for entry in session.sim_state()["subscribers"]}


def list_counters(session: IemSession, listid: int = 1) -> tuple[int, int, int]:
    entry = next(item for item in session.sim_state()["lists"] if item["listid"] == listid)
    return entry["subscribecount"], entry["unsubscribecount"], entry["bouncecount"]


# ----- envelope --------------------------------------------------------------------------------


def test_xmlapitest_legacy_exact_bytes(iem: IemSession) -> None:
    response = iem.call("authentication", "xmlapitest")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/xml"
    assert response.content == succeeded("<userid>1</userid>\n<username>admin</username>")


def test_xmlapitest_modern_wraps_user() -> None:
    with running_simulator(dialect="modern") as session:
        response = session.call("authentication", "xmlapitest")
    assert response.content == succeeded("<user><userid>1</userid><username>admin</username></user>")


def test_xmlapitest_method_is_case_sensitive(iem: IemSession) -> None:
    assert iem.call("authentication", "XmlApiTest").content == failed("Invalid request type")


def test_root_element_name_ignored(iem: IemSession) -> None:
    response = iem.call("authentication", "xmlapitest", root="response")
    assert parse(response)["status"] == "SUCCESS"


@pytest.mark.parametrize("body", [b"", b"  \n\t", b"0"])
def test_empty_body_reports_no_data(iem: IemSession, body: bytes) -> None:
    assert iem.post(body).content == failed("No data has been given to the XML-API.")


def test_get_request_reports_no_data(iem: IemSession) -> None:
    response = iem.http.get(iem.handle.url)
    assert response.status_code == 200
    assert response.content == failed("No data has been given to the XML-API.")


def test_unescaped_ampersand_is_invalid_xml(iem: IemSession) -> None:
    response = iem.call("subscribers", "AddSubscriberToList", "<emailaddress>Tom & Jerry</emailaddress>")
    assert response.content == failed(
        "The XML you provided is not valid. Please check your XML document and try again."
    )


REQUIRED_CASES = [
    ("<xmlrequest><usertoken>t</usertoken><requesttype>a</requesttype><requestmethod>b</requestmethod><details> </details></xmlrequest>", "username"),
    ("<xmlrequest><username></username><usertoken>t</usertoken><requesttype>a</requesttype><requestmethod>b</requestmethod><details> </details></xmlrequest>", "username"),
    ("<xmlrequest><username>0</username><usertoken>t</usertoken><requesttype>a</requesttype><requestmethod>b</requestmethod><details> </details></xmlrequest>", "username"),
    ("<xmlrequest><username>admin</username><usertoken/><requesttype>a</requesttype><requestmethod>b</requestmethod><details> </details></xmlrequest>", "usertoken"),
    ("<xmlrequest><username>admin</username><usertoken>t</usertoken><requestmethod>b</requestmethod><details> </details></xmlrequest>", "requesttype"),
    ("<xmlrequest><username>admin</username><usertoken>t</usertoken><requesttype>a</requesttype><requestmethod>0</requestmethod><details> </details></xmlrequest>", "requestmethod"),
    ("<xmlrequest><username>admin</username><usertoken>t</usertoken><requesttype>a</requesttype><requestmethod>b</requestmethod><details/></xmlrequest>", "details"),
    ("<xmlrequest><username>admin</username><usertoken>t</usertoken><requesttype>a</requesttype><requestmethod>b</requestmethod><details></details></xmlrequest>", "details"),
    # Fields serialised next to <details> instead of inside it.
    ("<xmlrequest><username>admin</username><usertoken>t</usertoken><requesttype>subscribers</requesttype><requestmethod>DeleteSubscriber</requestmethod><emailaddress>a@example.test</emailaddress><list>1</list></xmlrequest>", "details"),
]


@pytest.mark.parametrize(("body", "field"), REQUIRED_CASES)
def test_required_field_php_empty(iem: IemSession, body: str, field: str) -> None:
    expected = f"The XML format you have sent is invalid. The following field is required: {field}"
    assert iem.post(body).content == failed(expected)


def test_whitespace_details_accepted(iem: IemSession) -> None:
    response = iem.post(envelope("authentication", "xmlapitest", " "))
    assert parse(response)["status"] == "SUCCESS"


def test_username_with_space_passes_required_check(iem: IemSession) -> None:
    response = iem.post(envelope("authentication", "xmlapitest", username=" 0"))
    assert response.content == failed("Unable to check user details.")


@pytest.mark.parametrize(
    ("requesttype", "requestmethod", "expected_status"),
    [
        ("subscribers", "getsubscribers", "SUCCESS"),
        ("subscribers", "GETSUBSCRIBERS", "SUCCESS"),
        ("Subscribers", "GetSubscribers", "FAILED"),
        (" subscribers", "GetSubscribers", "FAILED"),
        ("subscribers.php", "GetSubscribers", "FAILED"),
        ("subscribers", "Get-Subscribers", "FAILED"),
        ("subscribers", "GetSubscriberDetails", "FAILED"),
        ("subscribers", "EditSubscriberCustomFields", "FAILED"),
        ("newsletters", "GetSubscribers", "FAILED"),
    ],
)
def test_request_type_and_method_lookup(iem: IemSession, requesttype: str, requestmethod: str, expected_status: str) -> None:
    result = iem.result(requesttype, requestmethod, "<searchinfo><List>1</List></searchinfo>")
    assert result["status"] == expected_status
    if expected_status == "FAILED":
        assert result["errormessage"] == "Invalid request type"


def test_extra_top_level_listid_ignored(iem: IemSession) -> None:
    iem.add("a@example.test")
    body = envelope("subscribers", "IsSubscriberOnList", "<emailaddress>a@example.test</emailaddress><listids>1</listids>")
    body = body.replace("<details>", "<listid>1</listid><details>")
    assert iem.post(body).content == succeeded("1")


# ----- form bodies -----------------------------------------------------------------------------

FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def test_form_body_urlencoded_keeps_plus(iem: IemSession) -> None:
    xml = envelope("subscribers", "AddSubscriberToList", "<emailaddress>a+b@example.test</emailaddress><mailinglist>1</mailinglist>")
    response = iem.post("xml=" + quote_plus(xml), FORM_HEADERS)
    assert response.content == succeeded("1")
    assert list(rows_of(iem)) == ["a+b@example.test"]


def test_raw_form_plus_becomes_space(iem: IemSession) -> None:
    xml = envelope("subscribers", "AddSubscriberToList", "<emailaddress>a+b@example.test</emailaddress><mailinglist>1</mailinglist>")
    response = iem.post("xml=" + xml, FORM_HEADERS)
    assert response.content == succeeded("1")
    assert list(rows_of(iem)) == ["a b@example.test"]


def test_raw_form_ampersand_splits_field(iem: IemSession) -> None:
    xml = envelope("subscribers", "AddSubscriberToList", "<emailaddress>tom&amp;jerry@example.test</emailaddress><mailinglist>1</mailinglist>")
    response = iem.post("xml=" + xml, FORM_HEADERS)
    assert response.content == failed(
        "The XML you provided is not valid. Please check your XML document and try again."
    )


def test_form_without_xml_field_uses_body(iem: IemSession) -> None:
    response = iem.post(envelope("authentication", "xmlapitest"), FORM_HEADERS)
    assert parse(response)["status"] == "SUCCESS"


def test_multipart_xml_field_accepted(iem: IemSession) -> None:
    response = iem.http.post(iem.handle.url, data={"xml": envelope("authentication", "xmlapitest")}, files={"unused": ("a.txt", b"x")})
    assert parse(response)["status"] == "SUCCESS"


# ----- authentication --------------------------------------------------------------------------


def test_bad_token_fails(iem: IemSession) -> None:
    assert iem.call("authentication", "xmlapitest", token="wrong").content == failed("Unable to check user details.")


def test_unknown_user_fails(iem: IemSession) -> None:
    assert iem.call("authentication", "xmlapitest", username="nobody").content == failed("Unable to check user details.")


def test_username_whitespace_and_token_trimmed(iem: IemSession) -> None:
    response = iem.call("authentication", "xmlapitest", username="  admin ", token=f" {DEFAULT_TOKEN}\n")
    assert parse(response)["status"] == "SUCCESS"


def test_masquerade_as_other_user() -> None:
    state = state_with()
    state["users"].append({"userid": 2, "username": "op", "token": "other-token", "status": 1, "admin": False})
    with running_simulator(state_data=state) as session:
        result = parse(session.call("authentication", "xmlapitest", username="admin::op"))
    assert result["data"] == {"userid": "2", "username": "op"}


def test_failed_login_sleeps_auth_delay() -> None:
    with running_simulator(auth_delay=0.4) as session:
        started = time.monotonic()
        response = session.call("authentication", "xmlapitest", token="wrong")
        elapsed = time.monotonic() - started
    assert response.content == failed("Unable to check user details.")
    assert elapsed >= 0.4


def test_five_failures_ban_address() -> None:
    with running_simulator() as session:
        for _ in range(5):
            assert parse(session.call("authentication", "xmlapitest", token="wrong"))["status"] == "FAILED"
        banned = session.call("authentication", "xmlapitest")
        assert banned.content == failed("Unable to check user details.")
        assert session.handle.simulator.authenticator.is_banned("127.0.0.1")
        session.http.post(session.handle.base + "/_sim/reset-auth").raise_for_status()
        assert parse(session.call("authentication", "xmlapitest"))["status"] == "SUCCESS"


def test_four_failures_do_not_ban() -> None:
    with running_simulator() as session:
        for _ in range(4):
            session.call("authentication", "xmlapitest", token="wrong")
        assert parse(session.call("authentication", "xmlapitest"))["status"] == "SUCCESS"


def test_inactive_user_fails() -> None:
    state = state_with()
    state["users"][0]["status"] = 0
    with running_simulator(state_data=state) as session:
        assert session.call("authentication", "xmlapitest").content == failed("Unable to check user details.")


# ----- AddSubscriberToList ---------------------------------------------------------------------

COLOUR_FIELDS = [
    {"fieldid": 2, "name": "First name", "fieldtype": "text", "required": False, "options": []},
    {"fieldid": 4, "name": "Colour", "fieldtype": "dropdown", "required": False, "options": ["red", "blue"]},
    {"fieldid": 5, "name": "Interests", "fieldtype": "checkbox", "required": False, "options": ["red", "blue", "green"]},
    {"fieldid": 6, "name": "Birthday", "fieldtype": "date", "required": False, "options": []},
    {"fieldid": 7, "name": "Company", "fieldtype": "text", "required": True, "options": []},
]


def test_add_creates_row_with_defaults(iem: IemSession) -> None:
    response = iem.call(
        "subscribers",
        "AddSubscriberToList",
        "<emailaddress> Anna@Example.test </emailaddress><mailinglist>1</mailinglist>"
        "<customfields><item><fieldid>2</fieldid><value>Anna</value></item></customfields>",
    )
    assert response.content == succeeded("1")
    added = rows_of(iem)["Anna@Example.test"]
    assert added["subscriberid"] == 1
    assert added["format"] == "t"
    assert added["confirmed"] is False
    assert added["subscribedate"] == NOW
    assert added["requestdate"] == NOW
    assert added["unsubscribed"] == 0
    assert added["bounced"] == 0
    assert added["autoresponders"] is True
    assert added["customfields"] == {"2": "Anna"}
    assert re.fullmatch(r"[0-9a-f]{32}", added["confirmcode"])
    assert list_counters(iem) == (1, 0, 0)


@pytest.mark.parametrize(("value", "expected"), [("yes", True), ("Y", True), ("TRUE", True), ("1", True), ("no", False), ("0", False), ("false", False)])
def test_add_confirmed_words(iem: IemSession, value: str, expected: bool) -> None:
    iem.add("a@example.test", extra=f"<confirmed>{value}</confirmed>")
    assert rows_of(iem)["a@example.test"]["confirmed"] is expected


@pytest.mark.parametrize(("value", "expected"), [("html", "h"), ("H", "h"), ("TEXT", "t"), ("t", "t"), ("rich", "t")])
def test_add_format_values(iem: IemSession, value: str, expected: str) -> None:
    iem.add("a@example.test", extra=f"<format>{value}</format>")
    assert rows_of(iem)["a@example.test"]["format"] == expected


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", True),
        ("<add_to_autoresponders>1</add_to_autoresponders>", True),
        ("<add_to_autoresponders>0</add_to_autoresponders>", False),
        ("<add_to_autoresponders></add_to_autoresponders>", False),
        ("<add_to_autoresponders>false</add_to_autoresponders>", True),
        ("<add_to_autoresponders>no</add_to_autoresponders>", True),
        ("<add_to_autoresponder>0</add_to_autoresponder>", True),
        ("<autoresponder>0</autoresponder>", True),
    ],
)
def test_add_autoresponder_flag(iem: IemSession, extra: str, expected: bool) -> None:
    iem.add("a@example.test", extra=extra)
    assert rows_of(iem)["a@example.test"]["autoresponders"] is expected


def test_add_duplicate_reports_message(iem: IemSession) -> None:
    iem.add("a@example.test")
    response = iem.call("subscribers", "AddSubscriberToList", "<emailaddress>A@EXAMPLE.test</emailaddress><mailinglist>1</mailinglist>")
    assert response.content == failed("A@EXAMPLE.test already exists in the given list")
    assert len(rows_of(iem)) == 1


def test_add_duplicate_of_unsubscribed_row(iem: IemSession) -> None:
    iem.add("a@example.test")
    iem.call("subscribers", "UnsubscribeSubscriber", "<emailaddress>a@example.test</emailaddress><listid>1</listid>")
    result = iem.add("a@example.test")
    assert result["errormessage"] == "a@example.test already exists in the given list"


def test_add_duplicate_bare_id_style() -> None:
    with running_simulator(duplicate_style="id") as session:
        session.add("a@example.test")
        session.add("b@example.test")
        response = session.call("subscribers", "AddSubscriberToList", "<emailaddress>b@example.test</emailaddress><mailinglist>1</mailinglist>")
    assert response.content == failed("2")


def test_add_duplicate_on_other_list_allowed() -> None:
    state = state_with(lists=[{"listid": 1, "name": "One"}, {"listid": 2, "name": "Two"}])
    with running_simulator(state_data=state) as session:
        assert session.add("a@example.test", 1)["data"] == "1"
        assert session.add("a@example.test", 2)["data"] == "2"


def test_add_unknown_list_fails(iem: IemSession) -> None:
    response = iem.call("subscribers", "AddSubscriberToList", "<emailaddress>a@example.test</emailaddress><mailinglist>99</mailinglist>")
    assert response.content == failed("Failed adding subcriber to the list")
    assert rows_of(iem) == {}


def test_add_missing_mailinglist_fails(iem: IemSession) -> None:
    response = iem.call("subscribers", "AddSubscriberToList", "<emailaddress>a@example.test</emailaddress>")
    assert response.content == failed("Failed adding subcriber to the list")


def test_add_by_list_name_allows_duplicates(iem: IemSession) -> None:
    assert iem.add("a@example.test", "newsletter")["data"] == "1"
    assert iem.add("a@example.test", "Newsletter")["data"] == "2"
    state = iem.sim_state()
    assert [(entry["subscriberid"], entry["listid"]) for entry in state["subscribers"]] == [(1, 1), (2, 1)]


def test_add_missing_email_on_populated_list(iem: IemSession) -> None:
    iem.add("a@example.test")
    response = iem.call("subscribers", "AddSubscriberToList", "<mailinglist>1</mailinglist>")
    body = response.content.decode()
    assert body.startswith("<br />\n<b>Notice</b>:  Undefined index: emailaddress in ")
    assert body.endswith(failed(" already exists in the given list").decode())


def test_add_unknown_field_rolls_back(iem: IemSession) -> None:
    response = iem.call(
        "subscribers",
        "AddSubscriberToList",
        "<emailaddress>a@example.test</emailaddress><mailinglist>1</mailinglist>"
        "<customfields><item><fieldid>2</fieldid><value>Anna</value></item>"
        "<item><fieldid>Title</fieldid><value>Dr</value></item></customfields>",
    )
    assert response.content == failed("Unable to load field id &#039;Title&#039;")
    assert rows_of(iem) == {}
    assert list_counters(iem) == (0, 0, 0)
    # Like MySQL auto-increment, the rolled-back insert used up subscriber id 1.
    assert iem.add("a@example.test")["data"] == "2"


def test_add_invalid_dropdown_value_rolls_back() -> None:
    with running_simulator(state_data=state_with(fields=COLOUR_FIELDS)) as session:
        result = session.add(
            "a@example.test",
            extra="<customfields><item><fieldid>7</fieldid><value>ACME</value></item>"
            "<item><fieldid>4</fieldid><value>purple</value></item></customfields>",
        )
        assert result["errormessage"] == "The data provided for field 'Colour' is invalid (you provided 'purple')"
        assert rows_of(session) == {}


def test_add_required_field_empty_rejected() -> None:
    with running_simulator(state_data=state_with(fields=COLOUR_FIELDS)) as session:
        result = session.add("a@example.test", extra="<customfields><item><fieldid>7</fieldid><value></value></item></customfields>")
    assert result["errormessage"] == "The data provided for field 'Company' is invalid (you provided '')"


def test_add_checkbox_two_values_saved() -> None:
    with running_simulator(state_data=state_with(fields=COLOUR_FIELDS)) as session:
        result = session.add(
            "a@example.test",
            extra="<customfields><item><fieldid>5</fieldid><value>red</value><value>blue</value></item>"
            "<item><fieldid>4</fieldid><value>blue</value></item>"
            "<item><fieldid>7</fieldid><value>ACME</value></item></customfields>",
        )
        assert result["status"] == "SUCCESS"
        assert rows_of(session)["a@example.test"]["customfields"] == {"5": ["red", "blue"], "4": "blue", "7": "ACME"}


def test_add_checkbox_value_outside_options() -> None:
    with running_simulator(state_data=state_with(fields=COLOUR_FIELDS)) as session:
        response = session.add("a@example.test", extra="<customfields><item><fieldid>5</fieldid><value>pink</value></item></customfields>")
    assert response["errormessage"] == "The data provided for field 'Interests' is invalid (you provided 'Array')"


def test_add_date_field_cannot_be_set() -> None:
    with running_simulator(state_data=state_with(fields=COLOUR_FIELDS)) as session:
        well_formed = session.call(
            "subscribers",
            "AddSubscriberToList",
            "<emailaddress>a@example.test</emailaddress><mailinglist>1</mailinglist>"
            "<customfields><item><fieldid>6</fieldid><value>24/12/1990</value></item></customfields>",
        )
        malformed = session.add("b@example.test", extra="<customfields><item><fieldid>6</fieldid><value>1990-12-24</value></item></customfields>")
        remaining = rows_of(session)
    body = well_formed.content.decode()
    assert body.count("<b>Notice</b>:  Undefined offset: ") == 3
    assert body.endswith(failed("The data provided for field &#039;Birthday&#039; is invalid (you provided &#039;//&#039;)").decode())
    assert malformed["errormessage"] == "The data provided for field 'Birthday' is invalid (you provided '')"
    assert remaining == {}


def test_add_empty_customfields_accepted(iem: IemSession) -> None:
    response = iem.call("subscribers", "AddSubscriberToList", "<emailaddress>a@example.test</emailaddress><mailinglist>1</mailinglist><customfields></customfields>")
    body = response.content.decode()
    assert body.startswith("<br />\n<b>Warning</b>:  Invalid argument supplied for foreach() in ")
    assert body.endswith(succeeded("1").decode())
    log = iem.sim_state()["log"]
    assert log[-1]["details"] == {"emailaddress": "a@example.test", "mailinglist": "1", "customfields": ""}


def test_add_records_received_custom_fields(iem: IemSession) -> None:
    iem.add(
        "a@example.test",
        extra="<customfields><item><fieldid>2</fieldid><value>Anna</value></item><item><fieldid>3</fieldid><value>Berg</value></item></customfields>",
    )
    entry = iem.sim_state()["log"][-1]
    assert entry["method"] == "AddSubscriberToList"
    assert entry["status"] == "SUCCESS"
    assert entry["details"]["customfields"] == {"item": [{"fieldid": "2", "value": "Anna"}, {"fieldid": "3", "value": "Berg"}]}


# ----- GetSubscribers --------------------------------------------------------------------------

LEGACY_TWO_ROWS = (
    "<count>2</count>\n<subscriberlist>"
    "\n\t<item>"
    "\n\n\t\t<subscriberid>1</subscriberid>\n\n\t\t<emailaddress>a@example.test</emailaddress>"
    "\n\n\t\t<format>h</format>\n\n\t\t<subscribedate>1700000000</subscribedate>"
    "\n\n\t\t<confirmed>1</confirmed>\n\n\t\t<unsubscribed>0</unsubscribed>"
    "\n\n\t\t<bounced>0</bounced>\n\n\t\t<listid>1</listid>"
    "\n\t</item>"
    "\n\t<item>"
    "\n\n\t\t<subscriberid>2</subscriberid>\n\n\t\t<emailaddress>o&#039;brien@example.test</emailaddress>"
    "\n\n\t\t<format>h</format>\n\n\t\t<subscribedate>1700000000</subscribedate>"
    "\n\n\t\t<confirmed>1</confirmed>\n\n\t\t<unsubscribed>1700000200</unsubscribed>"
    "\n\n\t\t<bounced>0</bounced>\n\n\t\t<listid>1</listid>"
    "\n\t</item>"
    "\n</subscriberlist>"
)

MODERN_TWO_ROWS = (
    "<count>2</count><subscriberlist><items>"
    "<item><subscriberid>1</subscriberid><emailaddress>a@example.test</emailaddress><format>h</format>"
    "<subscribedate>1700000000</subscribedate><confirmed>1</confirmed><unsubscribed>0</unsubscribed>"
    "<bounced>0</bounced><listid>1</listid></item>"
    "<item><subscriberid>2</subscriberid><emailaddress>o'brien@example.test</emailaddress><format>h</format>"
    "<subscribedate>1700000000</subscribedate><confirmed>1</confirmed><unsubscribed>1700000200</unsubscribed>"
    "<bounced>0</bounced><listid>1</listid></item>"
    "</items></subscriberlist>"
)

TWO_ROWS = [row(1, "a@example.test"), row(2, "o'brien@example.test", unsubscribed=1700000200)]


def test_get_subscribers_legacy_exact_bytes() -> None:
    with running_simulator(state_data=state_with(TWO_ROWS)) as session:
        response = session.call("subscribers", "GetSubscribers", "<searchinfo><List>1</List></searchinfo>")
    assert response.content == succeeded(LEGACY_TWO_ROWS)


def test_get_subscribers_modern_exact_bytes() -> None:
    with running_simulator(state_data=state_with(TWO_ROWS), dialect="modern") as session:
        response = session.call("subscribers", "GetSubscribers", "<searchinfo><List>1</List></searchinfo>")
    assert response.content == succeeded(MODERN_TWO_ROWS)


def test_modern_non_ascii_as_character_references() -> None:
    with running_simulator(state_data=state_with([row(1, "café@example.test")]), dialect="modern") as session:
        response = session.call("subscribers", "GetSubscribers", "<searchinfo><List>any</List></searchinfo>")
    assert b"<emailaddress>caf&#xE9;@example.test</emailaddress><format>h</format>" in response.content
    assert b"<listname>Newsletter</listname>" in response.content


def test_legacy_non_ascii_kept_as_utf8() -> None:
    with running_simulator(state_data=state_with([row(1, "café@example.test")])) as session:
        response = session.call("subscribers", "GetSubscribers", "<searchinfo><List>1</List></searchinfo>")
    assert "<emailaddress>café@example.test</emailaddress>".encode() in response.content


@pytest.mark.parametrize(
    ("dialect", "zero", "one"),
    [
        ("legacy", "<count>0</count>\n<subscriberlist></subscriberlist>", "<count>1</count>\n<subscriberlist>\n\t<item>"),
        ("modern", "<count>0</count><subscriberlist/>", "<count>1</count><subscriberlist><items><item>"),
    ],
)
def test_get_subscribers_zero_and_one_row(dialect: str, zero: str, one: str) -> None:
    with running_simulator(state_data=state_with([row(1, "a@example.test")]), dialect=dialect) as session:
        empty = session.call("subscribers", "GetSubscribers", "<searchinfo><List>1</List><Status>u</Status></searchinfo>")
        single = session.call("subscribers", "GetSubscribers", "<searchinfo><List>1</List></searchinfo>")
    assert empty.content == succeeded(zero)
    assert single.content.startswith((HEAD + "<status>SUCCESS</status>\n<data>" + one).encode())
    listing = parse(single)["data"]["subscriberlist"]
    items = listing["items"]["item"] if dialect == "modern" else listing["item"]
    assert len(items) == 1


def test_get_subscribers_empty_searchinfo() -> None:
    for dialect, payload in (("legacy", "<count>0</count>\n<subscribers></subscribers>"), ("modern", "<count>0</count><subscribers/>")):
        with running_simulator(state_data=state_with(TWO_ROWS), dialect=dialect) as session:
            missing = session.call("subscribers", "GetSubscribers", "<countonly>1</countonly>")
            empty = session.call("subscribers", "GetSubscribers", "<searchinfo></searchinfo>")
        assert missing.content == succeeded(payload)
        assert empty.content == succeeded(payload)


def test_get_subscribers_without_list_prints_notices() -> None:
    with running_simulator(state_data=state_with(TWO_ROWS)) as session:
        response = session.call("subscribers", "GetSubscribers", "<searchinfo><Email>example</Email></searchinfo>")
    body = response.content.decode()
    notice, _, xml = body.partition("<?xml")
    assert notice.startswith("<br />\n<b>Notice</b>:  Undefined index: List in <b>")
    assert notice.count("Undefined index: List") == 3
    assert ("<?xml" + xml).encode() == succeeded("<count>0</count>\n<subscriberlist></subscriberlist>")


def test_notices_hidden_without_display_errors() -> None:
    with running_simulator(state_data=state_with(TWO_ROWS), display_errors=False) as session:
        response = session.call("subscribers", "GetSubscribers", "<searchinfo><Email>example</Email></searchinfo>")
    assert response.content == succeeded("<count>0</count>\n<subscriberlist></subscriberlist>")


def emails(result: dict[str, Any]) -> list[str]:
    items = (result["data"]["subscriberlist"] or {}).get("item", [])
    return [entry["emailaddress"] for entry in items]


SEARCH_ROWS = [
    row(1, "john@x.test"),
    row(2, "BigJohn@x.test", confirmed=False),
    row(3, "jo_n@y.test", unsubscribed=1700000100),
    row(4, "joan@y.test", bounced=1700000150),
    row(5, "other@x.test", format="t"),
    row(6, "john@x.test", listid=2),
]


@pytest.fixture
def search_session() -> Any:
    state = state_with(SEARCH_ROWS, lists=[{"listid": 1, "name": "One"}, {"listid": 2, "name": "Two"}])
    with running_simulator(state_data=state) as session:
        yield session


@pytest.mark.parametrize(
    ("searchinfo", "expected"),
    [
        ("<List>1</List>", ["BigJohn@x.test", "jo_n@y.test", "joan@y.test", "john@x.test", "other@x.test"]),
        ("<List>1</List><Email>JOHN@x.test</Email>", ["BigJohn@x.test", "john@x.test"]),
        ("<List>1</List><Email>jo_n</Email>", ["BigJohn@x.test", "jo_n@y.test", "joan@y.test", "john@x.test"]),
        ("<List>1</List><Email>jo\\_n</Email>", ["jo_n@y.test"]),
        ("<List>1</List><Email>j%n@y</Email>", ["jo_n@y.test", "joan@y.test"]),
        ("<List>1</List><Status>a</Status>", ["BigJohn@x.test", "john@x.test", "other@x.test"]),
        ("<List>1</List><Status>zzz</Status>", ["BigJohn@x.test", "john@x.test", "other@x.test"]),
        ("<List>1</List><Status>B</Status>", ["joan@y.test"]),
        ("<List>1</List><Status>u</Status>", ["jo_n@y.test"]),
        ("<List>1</List><Confirmed>0</Confirmed>", ["BigJohn@x.test"]),
        ("<List>1</List><Format>t</Format>", ["other@x.test"]),
        ("<List>1</List><Subscriber>4</Subscriber>", ["joan@y.test"]),
        ("<List>2</List>", ["john@x.test"]),
        ("<List>3</List>", []),
        ("<List>1</List><CustomFields><first>nn</first></CustomFields>", []),
        ("<List>2</List><CustomFields><first></first></CustomFields>", ["john@x.test"]),
        ("<List>any</List><Email>john@</Email>", ["BigJohn@x.test", "john@x.test", "john@x.test"]),
        ("<List>1</List><List>2</List><Email>john@</Email>", ["BigJohn@x.test", "john@x.test", "john@x.test"]),
    ],
)
def test_get_subscribers_filters(search_session: IemSession, searchinfo: str, expected: list[str]) -> None:
    result = search_session.result("subscribers", "GetSubscribers", f"<searchinfo>{searchinfo}</searchinfo>")
    assert result["status"] == "SUCCESS"
    assert emails(result) == expected
    assert result["data"]["count"] == str(len(expected))


def test_get_subscribers_listname_for_any(search_session: IemSession) -> None:
    result = search_session.result("subscribers", "GetSubscribers", "<searchinfo><List>any</List><Email>john@x</Email></searchinfo>")
    names = [(entry["subscriberid"], entry["listname"]) for entry in result["data"]["subscriberlist"]["item"]]
    assert names == [("2", "One"), ("1", "One"), ("6", "Two")]


def test_single_list_rows_lack_listname(search_session: IemSession) -> None:
    result = search_session.result("subscribers", "GetSubscribers", "<searchinfo><List>2</List></searchinfo>")
    assert list(result["data"]["subscriberlist"]["item"][0]) == list(ROW_COLUMNS)


def test_get_subscribers_countonly(search_session: IemSession) -> None:
    counted = search_session.call("subscribers", "GetSubscribers", "<searchinfo><List>1</List></searchinfo><countonly>1</countonly>")
    zero = search_session.call("subscribers", "GetSubscribers", "<searchinfo><List>3</List></searchinfo><countonly>1</countonly>")
    word = search_session.call("subscribers", "GetSubscribers", "<searchinfo><List>2</List></searchinfo><countonly>false</countonly>")
    assert counted.content == succeeded("5")
    assert zero.content == failed("0")
    assert word.content == succeeded("1")


@pytest.mark.parametrize(
    ("sortdetails", "expected_ids"),
    [
        ("<SortBy>subscriberid</SortBy><Direction>desc</Direction>", ["5", "4", "3", "2", "1"]),
        ("<SortBy>subscriberid</SortBy>", ["5", "4", "3", "2", "1"]),
        ("<SortBy>status</SortBy><Direction>asc</Direction>", ["2", "1", "5", "3", "4"]),
        ("<SortBy>nosuchcolumn</SortBy>", []),
    ],
)
def test_get_subscribers_sorting(search_session: IemSession, sortdetails: str, expected_ids: list[str]) -> None:
    result = search_session.result(
        "subscribers", "GetSubscribers", f"<searchinfo><List>1</List></searchinfo><sortdetails>{sortdetails}</sortdetails>"
    )
    items = (result["data"]["subscriberlist"] or {}).get("item", [])
    assert [entry["subscriberid"] for entry in items] == expected_ids
    assert result["data"]["count"] == "5"


def test_large_listing_streams_in_chunks() -> None:
    rows = [row(number, f"user{number:05d}@example.test") for number in range(1, 20001)]
    with running_simulator(state_data=state_with(rows)) as session:
        body = envelope("subscribers", "GetSubscribers", "<searchinfo><List>1</List></searchinfo>")
        with session.http.stream("POST", session.handle.url, content=body) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            content = response.read()
    assert content.startswith((HEAD + "<status>SUCCESS</status>\n<data><count>20000</count>\n<subscriberlist>\n\t<item>").encode())
    assert content.count(b"<item>") == 20000
    assert content.endswith(b"<listid>1</listid>\n\t</item>\n</subscriberlist></data></response>\n")


@pytest.mark.parametrize("dialect", ["legacy", "modern"])
@pytest.mark.parametrize("count", [0, 1, 2])
def test_chunked_listing_matches_generic_output(dialect: str, count: int) -> None:
    rows = [(number, f"u{number}@x.test", "h", 1700000000, "1", 0, 0, 1, "Liste é") for number in range(1, count + 1)]
    listing = SubscriberListing(count=count, rows=rows, columns=ROW_COLUMNS + ("listname",))
    assert "".join(listing_chunks(listing, dialect)) == create_output(listing, dialect).strip()


# ----- IsSubscriberOnList ----------------------------------------------------------------------

MEMBERSHIP_ROWS = [
    row(1, "active@x.test"),
    row(2, "pending@x.test", confirmed=False),
    row(3, "bounced@x.test", bounced=1700000100),
    row(4, "gone@x.test", unsubscribed=1700000100),
    row(5, "active@x.test", listid=2),
]


@pytest.fixture
def membership() -> Any:
    state = state_with(MEMBERSHIP_ROWS, lists=[{"listid": 1, "name": "One"}, {"listid": 2, "name": "Two"}])
    with running_simulator(state_data=state) as session:
        yield session


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ("<emailaddress>ACTIVE@x.test</emailaddress><listids>1</listids>", succeeded("1")),
        ("<emailaddress>active@x.test</emailaddress><listids>2</listids>", succeeded("5")),
        ("<emailaddress>gone@x.test</emailaddress><listids>1</listids>", succeeded("4")),
        ("<emailaddress>nobody@x.test</emailaddress><listids>1</listids>", failed("")),
        ("<emailaddress>active@x.test</emailaddress><listid>1</listid>", failed("")),
        ("<Email>active@x.test</Email><List>1</List>", failed("")),
        ("<emailaddress>active@x.test</emailaddress><listids>1,2</listids>", failed("")),
        ("<emailaddress>active@x.test</emailaddress><listids>3</listids><listids>2</listids>", succeeded("5")),
        ("<emailaddress>active@x.test</emailaddress><listids><id>2</id></listids>", succeeded("5")),
        ("<emailaddress>pending@x.test</emailaddress><listids>1</listids><activeonly>1</activeonly>", failed("")),
        ("<emailaddress>bounced@x.test</emailaddress><listids>1</listids><activeonly>1</activeonly>", succeeded("3")),
        ("<emailaddress>bounced@x.test</emailaddress><listids>1</listids><not_bounced>1</not_bounced>", failed("")),
        ("<emailaddress>gone@x.test</emailaddress><listids>1</listids><not_bounced>1</not_bounced>", failed("")),
        ("<emailaddress>active@x.test</emailaddress><listids>1</listids><activeonly>0</activeonly>", succeeded("1")),
        (
            "<emailaddress>active@x.test</emailaddress><listids>1</listids><return_listid>1</return_listid>",
            succeeded("<subscriberid>1</subscriberid>\n<listid>1</listid>"),
        ),
    ],
)
def test_is_subscriber_on_list(membership: IemSession, details: str, expected: bytes) -> None:
    assert membership.call("subscribers", "IsSubscriberOnList", details).content == expected


# ----- changes to existing rows ----------------------------------------------------------------


def test_unsubscribe_sets_time_and_moves_counters() -> None:
    with running_simulator(now=NOW) as session:
        session.add("a@example.test")
        first = session.call("subscribers", "UnsubscribeSubscriber", "<emailaddress>A@example.test</emailaddress><listid>1</listid>")
        assert first.content == succeeded("")
        assert rows_of(session)["a@example.test"]["unsubscribed"] == NOW
        assert list_counters(session) == (0, 1, 0)
        session.configure(now=NOW + 60)
        second = session.call("subscribers", "UnsubscribeSubscriber", "<emailaddress>a@example.test</emailaddress><listid>1</listid>")
        assert second.content == succeeded("")
        assert rows_of(session)["a@example.test"]["unsubscribed"] == NOW + 60
        assert list_counters(session) == (-1, 2, 0)


def test_unsubscribe_list_element_ignored(iem: IemSession) -> None:
    iem.add("a@example.test")
    response = iem.call("subscribers", "UnsubscribeSubscriber", "<emailaddress>a@example.test</emailaddress><list>1</list>")
    assert response.content == failed("No List or email address")
    assert rows_of(iem)["a@example.test"]["unsubscribed"] == 0


def test_unsubscribe_unknown_address(iem: IemSession) -> None:
    response = iem.call("subscribers", "UnsubscribeSubscriber", "<emailaddress>x@example.test</emailaddress><listid>1</listid>")
    assert response.content == failed("The email address &#039;x@example.test&#039; is not subscribed to this list")


def test_unsubscribe_bounced_row() -> None:
    with running_simulator(state_data=state_with([row(1, "a@x.test", bounced=1700000100)]), now=NOW) as session:
        response = session.call("subscribers", "UnsubscribeSubscriber", "<emailaddress>a@x.test</emailaddress><listid>1</listid>")
        updated = rows_of(session)["a@x.test"]
    assert response.content == succeeded("")
    assert updated["unsubscribed"] == NOW
    assert updated["bounced"] == 1700000100


def test_unsubscribe_skipcheck_uses_subscriberid() -> None:
    rows = [row(1, "a@x.test"), row(2, "b@x.test")]
    with running_simulator(state_data=state_with(rows), now=NOW) as session:
        response = session.call("subscribers", "UnsubscribeSubscriber", "<listid>1</listid><subscriberid>2</subscriberid><skipcheck>1</skipcheck>")
        updated = rows_of(session)
    assert response.content == succeeded("")
    assert updated["b@x.test"]["unsubscribed"] == NOW
    assert updated["a@x.test"]["unsubscribed"] == 0


def test_unsubscribe_without_skipcheck_hits_first_row() -> None:
    rows = [row(1, "a@x.test"), row(2, "b@x.test")]
    with running_simulator(state_data=state_with(rows), now=NOW) as session:
        session.call("subscribers", "UnsubscribeSubscriber", "<listid>1</listid><subscriberid>2</subscriberid>")
        updated = rows_of(session)
    assert updated["a@x.test"]["unsubscribed"] == NOW
    assert updated["b@x.test"]["unsubscribed"] == 0


def test_activate_clears_flags_keeps_identity() -> None:
    rows = [row(7, "a@x.test", confirmed=False, unsubscribed=1700000100, bounced=1700000200, customfields={"2": "Anna"})]
    lists = [{"listid": 1, "name": "One", "subscribecount": 0, "unsubscribecount": 1, "bouncecount": 1}]
    with running_simulator(state_data=state_with(rows, lists=lists)) as session:
        response = session.call("subscribers", "ActivateSubscriber", "<emailaddress>a@x.test</emailaddress><listid>1</listid>")
        updated = rows_of(session)["a@x.test"]
        counters = list_counters(session)
    assert response.content == succeeded("")
    assert updated["subscriberid"] == 7
    assert updated["unsubscribed"] == 0
    assert updated["bounced"] == 0
    assert updated["confirmed"] is False
    assert updated["customfields"] == {"2": "Anna"}
    assert counters == (2, 0, 0)


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ("<emailaddress>a@x.test</emailaddress>", "No List or email address"),
        ("<listid>1</listid>", "No List or email address"),
        ("<emailaddress>z@x.test</emailaddress><listid>1</listid>", "The email address &#039;z@x.test&#039; is not subscribed to this list"),
    ],
)
def test_activate_errors(iem: IemSession, details: str, message: str) -> None:
    assert iem.call("subscribers", "ActivateSubscriber", details).content == failed(message)


def test_change_confirm_updates_row() -> None:
    with running_simulator(state_data=state_with([row(3, "a@x.test", confirmed=False)])) as session:
        response = session.call("subscribers", "ChangeSubscriberConfirm", "<status>confirm</status><listid>1</listid><subscriberid>3</subscriberid>")
        confirmed = rows_of(session)["a@x.test"]["confirmed"]
        session.call("subscribers", "ChangeSubscriberConfirm", "<status>U</status><subscriberid>3</subscriberid>")
        unconfirmed = rows_of(session)["a@x.test"]["confirmed"]
    assert response.content == succeeded("")
    assert confirmed is True
    assert unconfirmed is False


def test_change_confirm_unknown_id_succeeds(iem: IemSession) -> None:
    response = iem.call("subscribers", "ChangeSubscriberConfirm", "<status>confirm</status><listid>1</listid><subscriberid>999</subscriberid>")
    assert response.content == succeeded("")


def test_change_confirm_invalid_status(iem: IemSession) -> None:
    response = iem.call("subscribers", "ChangeSubscriberConfirm", "<status>yes</status><subscriberid>1</subscriberid>")
    assert response.content == failed("Invalid Status supplied")


@pytest.mark.parametrize(
    ("ids", "expected_ids"),
    [
        ("<subscriberids>1</subscriberids>", {1}),
        ("<subscriberids>1</subscriberids><subscriberids>2</subscriberids>", {1, 2}),
        ("<subscriberids><id>2</id></subscriberids>", {2}),
    ],
)
def test_save_custom_field_id_forms(ids: str, expected_ids: set[int]) -> None:
    with running_simulator(state_data=state_with([row(1, "a@x.test"), row(2, "b@x.test")])) as session:
        response = session.call("subscribers", "SaveSubscriberCustomField", f"{ids}<fieldid>2</fieldid><data>Zoe</data>")
        saved = {entry["subscriberid"] for entry in session.sim_state()["subscribers"] if entry["customfields"] == {"2": "Zoe"}}
    assert response.content == succeeded("1")
    assert saved == expected_ids


def test_save_field_two_nested_ids_dropped() -> None:
    with running_simulator(state_data=state_with([row(1, "a@x.test"), row(2, "b@x.test")])) as session:
        response = session.call(
            "subscribers", "SaveSubscriberCustomField", "<subscriberids><id>1</id><id>2</id></subscriberids><fieldid>2</fieldid><data>Zoe</data>"
        )
    assert response.content == failed("")


def test_save_field_zero_or_empty_deletes() -> None:
    with running_simulator(state_data=state_with([row(1, "a@x.test", customfields={"2": "Anna", "3": "Berg"})])) as session:
        session.call("subscribers", "SaveSubscriberCustomField", "<subscriberids>1</subscriberids><fieldid>2</fieldid><data>0</data>")
        session.call("subscribers", "SaveSubscriberCustomField", "<subscriberids>1</subscriberids><fieldid>3</fieldid>")
        remaining = rows_of(session)["a@x.test"]["customfields"]
    assert remaining == {}


def test_save_field_missing_fieldid_fatal(iem: IemSession) -> None:
    response = iem.call("subscribers", "SaveSubscriberCustomField", "<subscriberids>1</subscriberids><data>x</data>")
    assert response.status_code == 200
    assert response.content.startswith(b"<br />\n<b>Fatal error</b>:  Uncaught exception 'ReflectionException'")
    assert b"<?xml" not in response.content


def test_hidden_fatal_error_is_http_500() -> None:
    with running_simulator(display_errors=False) as session:
        response = session.call("subscribers", "SaveSubscriberCustomField", "<subscriberids>1</subscriberids>")
    assert response.status_code == 500
    assert response.content == b""


def test_delete_subscriber_list_alias_hard_deletes() -> None:
    rows = [row(1, "a@x.test", customfields={"2": "Anna"}), row(2, "b@x.test")]
    lists = [{"listid": 1, "name": "One", "subscribecount": 2, "unsubscribecount": 0, "bouncecount": 0}]
    with running_simulator(state_data=state_with(rows, lists=lists)) as session:
        response = session.call("subscribers", "DeleteSubscriber", "<emailaddress>a@x.test</emailaddress><list>1</list>")
        remaining = rows_of(session)
        counters = list_counters(session)
        again = session.add("a@x.test")
    assert response.content == succeeded("")
    assert list(remaining) == ["b@x.test"]
    assert counters == (1, 0, 0)
    assert again["data"] == "3"


def test_delete_subscriber_by_subscriberid() -> None:
    with running_simulator(state_data=state_with([row(1, "a@x.test"), row(2, "b@x.test")])) as session:
        response = session.call("subscribers", "DeleteSubscriber", "<emailaddress></emailaddress><listid>1</listid><subscriberid>2</subscriberid>")
        remaining = list(rows_of(session))
    assert response.content == succeeded("")
    assert remaining == ["a@x.test"]


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ("<emailaddress>z@x.test</emailaddress><listid>1</listid>", "The email address &#039;z@x.test&#039; is not subscribed to this list"),
        ("<emailaddress>a@x.test</emailaddress>", "The email address &#039;a@x.test&#039; is not subscribed to this list"),
        ("<listid>1</listid>", "The email address &#039;1&#039; is not subscribed to this list"),
        ("<listid>1</listid><emailaddress>a@x.test</emailaddress>", "The email address &#039;1&#039; is not subscribed to this list"),
        ("<subscriberid>1</subscriberid>", "The email address &#039;1&#039; is not subscribed to this list"),
        ("<foo>bar</foo>", "The email address &#039;bar&#039; is not subscribed to this list"),
        (" ", "No email address or subscriber id"),
    ],
)
def test_delete_subscriber_binds_by_position(details: str, message: str) -> None:
    with running_simulator(state_data=state_with([row(1, "a@x.test")])) as session:
        response = session.call("subscribers", "DeleteSubscriber", details)
        remaining = list(rows_of(session))
    assert response.content == failed(message)
    assert remaining == ["a@x.test"]


def test_bounce_subscriber_marks_row() -> None:
    with running_simulator(state_data=state_with([row(1, "a@x.test")]), now=NOW) as session:
        response = session.call("subscribers", "BounceSubscriber", "<emailaddress>a@x.test</emailaddress><listid>1</listid>")
        bounced = rows_of(session)["a@x.test"]["bounced"]
        missing_list = session.call("subscribers", "BounceSubscriber", "<emailaddress>a@x.test</emailaddress>")
    assert response.content == succeeded("")
    assert bounced == NOW
    assert missing_list.content == failed("No List supplied")


def test_get_all_lists_for_email_address() -> None:
    rows = [row(1, "a@x.test", listid=1), row(2, "A@x.test", listid=2), row(3, "a@x.test", listid=3, unsubscribed=1700000100)]
    lists = [{"listid": number, "name": f"L{number}"} for number in (1, 2, 3)]
    with running_simulator(state_data=state_with(rows, lists=lists)) as session:
        comma = session.result("subscribers", "GetAllListsForEmailAddress", "<email>a@x.test</email><listids>2,3</listids>")
        filtered = session.result("subscribers", "GetAllListsForEmailAddress", "<email>a@x.test</email><listids>2</listids>")
        wrong_name = session.call("subscribers", "GetAllListsForEmailAddress", "<emailaddress>a@x.test</emailaddress>")
    assert [(entry["subscriberid"], entry["listid"]) for entry in comma["data"]["item"]] == [("1", "1"), ("2", "2")]
    assert [(entry["subscriberid"], entry["listid"]) for entry in filtered["data"]["item"]] == [("2", "2")]
    assert wrong_name.content == failed("")


def test_load_subscriber_list_returns_row() -> None:
    rows = [row(4, "a@x.test", customfields={"2": "Anna"}, unsubscribed=1700000300)]
    with running_simulator(state_data=state_with(rows)) as session:
        result = session.result("subscribers", "LoadSubscriberList", "<subscriberid>4</subscriberid>")
        zero_list = session.call("subscribers", "LoadSubscriberList", "<subscriberid>4</subscriberid><listid>0</listid>")
    data = result["data"]
    assert data["emailaddress"] == "a@x.test"
    assert data["domainname"] == "@x.test"
    assert data["unsubscribetime"] == "1700000300"
    assert data["unsubscribearea"] == "f"
    assert data["CustomFields"]["item"] == [{"fieldid": "2", "data": "Anna", "fieldtype": "text", "fieldname": "First name"}]
    assert zero_list.content == failed("")


def test_load_subscriber_list_modern_items() -> None:
    rows = [row(4, "a@x.test", customfields={"2": "Anna"})]
    with running_simulator(state_data=state_with(rows), dialect="modern") as session:
        response = session.call("subscribers", "LoadSubscriberList", "<subscriberid>4</subscriberid>")
    assert response.content.endswith(
        b"<formid>0</formid><CustomFields><items><item><fieldid>2</fieldid><data>Anna</data>"
        b"<fieldtype>text</fieldtype><fieldname>First name</fieldname></item></items></CustomFields></data></response>\n"
    )
    assert b"<unsubscribetime/><listid>4</listid>" not in response.content
    assert b"<data><subscriberid>4</subscriberid><unsubscribetime/><listid>1</listid>" in response.content


# ----- lists and custom fields -----------------------------------------------------------------

USER_LIST_COLUMNS = [
    "listid", "name", "ownername", "owneremail", "bounceemail", "replytoemail", "bounceserver",
    "bounceusername", "bouncepassword", "extramailsettings", "companyname", "companyaddress",
    "companyphone", "format", "notifyowner", "imapaccount", "createdate", "subscribecount",
    "unsubscribecount", "bouncecount", "processbounce", "agreedelete", "agreedeleteall",
    "visiblefields", "ownerid", "autorespondercount",
]


def test_user_get_lists_legacy_layout(iem: IemSession) -> None:
    response = iem.call("user", "GetLists")
    items = parse(response)["data"]["item"]
    assert response.content.startswith(
        (HEAD + "<status>SUCCESS</status>\n<data><item>\n\t<listid>1</listid>\n\t<name>Newsletter</name>\n\t<ownername></ownername>").encode()
    )
    assert response.content.endswith(b"\t<ownerid>1</ownerid>\n\t<autorespondercount></autorespondercount>\n</item></data></response>\n")
    assert list(items[0]) == USER_LIST_COLUMNS


def test_user_get_lists_modern_self_closing() -> None:
    with running_simulator(dialect="modern") as session:
        response = session.call("user", "GetLists")
    assert b"<data><item><listid>1</listid><name>Newsletter</name><ownername/>" in response.content
    assert response.content.endswith(b"<ownerid>1</ownerid><autorespondercount/></item></data></response>\n")


@pytest.mark.parametrize("count", [0, 1, 2])
def test_user_get_lists_item_counts(count: int) -> None:
    lists = [{"listid": number, "name": f"List {number}"} for number in range(1, count + 1)]
    with running_simulator(state_data=state_with(lists=lists)) as session:
        response = session.call("user", "GetLists")
    if count == 0:
        assert response.content == failed("")
    else:
        assert [entry["listid"] for entry in parse(response)["data"]["item"]] == [str(number) for number in range(1, count + 1)]


def test_user_get_lists_order_and_scope() -> None:
    lists = [{"listid": 1, "name": "zeta", "ownerid": 2}, {"listid": 2, "name": "Alpha", "ownerid": 1}, {"listid": 3, "name": "beta", "ownerid": 2}]
    state = state_with(lists=lists)
    state["users"].append({"userid": 2, "username": "op", "token": "op-token", "status": 1, "admin": False})
    with running_simulator(state_data=state) as session:
        admin = session.result("user", "GetLists")
        own = parse(session.call("user", "GetLists", username="op", token="op-token"))
        unconfirmed = session.result("user", "GetLists", "<getUnconfirmedCount>1</getUnconfirmedCount>")
    assert [entry["name"] for entry in admin["data"]["item"]] == ["Alpha", "beta", "zeta"]
    assert [entry["name"] for entry in own["data"]["item"]] == ["beta", "zeta"]
    assert unconfirmed["data"]["item"][0]["unconfirmedsubscribercount"] == "0"


def test_lists_get_lists_pages_by_ten() -> None:
    lists = [{"listid": number, "name": f"List {number:02d}", "createdate": 1700000000 + number} for number in range(1, 13)]
    with running_simulator(state_data=state_with(lists=lists)) as session:
        default = session.result("lists", "GetLists")
        everything = session.result("lists", "GetLists", "<perpage>all</perpage>")
        second_page = session.result("lists", "GetLists", "<start>10</start><perpage>10</perpage>")
        counted = session.call("lists", "GetLists", "<countonly>1</countonly>")
        chosen = session.result("lists", "GetLists", "<lists>3</lists><lists>5</lists>")
        single = session.result("lists", "GetLists", "<lists>3</lists><perpage>all</perpage>")
    assert len(default["data"]["item"]) == 10
    assert list(default["data"]["item"][0]) == ["listid", "name", "createdate", "subscribecount", "unsubscribecount", "ownerid", "username", "fullname"]
    assert default["data"]["item"][0]["username"] == "admin"
    assert len(everything["data"]["item"]) == 12
    assert [entry["listid"] for entry in second_page["data"]["item"]] == ["11", "12"]
    assert counted.content == succeeded("12")
    assert [entry["listid"] for entry in chosen["data"]["item"]] == ["3", "5"]
    assert len(single["data"]["item"]) == 12


def test_lists_get_lists_empty_fails() -> None:
    with running_simulator(state_data=state_with(lists=[])) as session:
        listing = session.call("lists", "GetLists")
        counted = session.call("lists", "GetLists", "<countonly>1</countonly>")
    assert listing.content == failed("")
    assert counted.content == failed("0")


def test_get_custom_fields_for_lists() -> None:
    fields = COLOUR_FIELDS + [{"fieldid": 9, "name": "Other list only", "fieldtype": "text", "lists": [2]}]
    lists = [{"listid": 1, "name": "One"}, {"listid": 2, "name": "Two"}]
    with running_simulator(state_data=state_with(lists=lists, fields=fields)) as session:
        one = session.result("lists", "GetCustomFields", "<listids>1</listids>")
        both = session.result("lists", "GetCustomFields", "<listids>1</listids><listids>2</listids>")
        dropdowns = session.result("lists", "GetCustomFields", "<listids>1</listids><type>dropdown</type>")
        none = session.call("lists", "GetCustomFields", "<listids>1,2</listids>")
    assert [entry["name"] for entry in one["data"]["item"]] == ["Birthday", "Colour", "Company", "First name", "Interests"]
    assert len(both["data"]["item"]) == 6
    assert dropdowns["data"]["item"] == [
        {
            "fieldid": "4",
            "name": "Colour",
            "fieldtype": "dropdown",
            "defaultvalue": None,
            "required": "0",
            "fieldsettings": 'a:2:{s:3:"Key";a:2:{i:0;s:3:"red";i:1;s:4:"blue";}s:5:"Value";a:2:{i:0;s:3:"red";i:1;s:4:"blue";}}',
            "ownerid": "1",
            "createdate": "0",
        }
    ]
    assert none.content == failed("")


# ----- faults ----------------------------------------------------------------------------------

ADD_BODY = envelope("subscribers", "AddSubscriberToList", "<emailaddress>a@example.test</emailaddress><mailinglist>1</mailinglist>")


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [
        ("notice", b"<br />\n<b>Notice</b>:  Undefined index: List in <b>/var/www/iem/admin/functions/api/subscribers.php</b> on line <b>2654</b><br />\n"),
        ("bom", b"\xef\xbb\xbf"),
        ("newline", b"\n"),
    ],
)
def test_prefix_faults_run_the_method(kind: str, prefix: bytes) -> None:
    with running_simulator(faults=[{"kind": kind}]) as session:
        response = session.post(ADD_BODY)
        added = rows_of(session)
    assert response.status_code == 200
    assert response.content == prefix + succeeded("1")
    assert list(added) == ["a@example.test"]


@pytest.mark.parametrize(
    ("kind", "status", "content_type", "body"),
    [
        ("html", 200, "text/html; charset=UTF-8", None),
        ("redirect", 302, "text/html; charset=UTF-8", b""),
        ("empty", 200, "text/xml", b""),
        ("http500", 500, "text/html; charset=UTF-8", b""),
    ],
)
def test_pre_run_faults_leave_state(kind: str, status: int, content_type: str, body: bytes | None) -> None:
    with running_simulator(faults=[{"kind": kind, "count": 1}]) as session:
        response = session.post(ADD_BODY)
        after_fault = rows_of(session)
        retried = session.post(ADD_BODY)
    assert response.status_code == status
    assert response.headers["content-type"] == content_type
    if body is not None:
        assert response.content == body
    else:
        assert b"<title>The application cannot proceed!</title>" in response.content
        assert b"Unable to connect to the database." in response.content
    if kind == "redirect":
        assert response.headers["location"] == "index.php?Page=upgradenx"
    assert after_fault == {}
    assert retried.content == succeeded("1")


def test_reset_fault_closes_connection() -> None:
    with running_simulator(faults=[{"kind": "reset", "count": 1}]) as session:
        with pytest.raises(httpx.TransportError):
            session.post(ADD_BODY)
        after_fault = rows_of(session)
        retried = session.post(ADD_BODY)
    assert after_fault == {}
    assert retried.content == succeeded("1")


def test_truncated_fault_cuts_after_half() -> None:
    with running_simulator(faults=[{"kind": "truncated", "count": 1}], seed=3) as session:
        response = session.post(ADD_BODY)
        added = rows_of(session)
    full = succeeded("1")
    assert len(full) // 2 < len(response.content) < len(full)
    assert full.startswith(response.content)
    assert list(added) == ["a@example.test"]


def test_truncated_fault_on_large_listing() -> None:
    rows = [row(number, f"user{number:04d}@example.test") for number in range(1, 3001)]
    with running_simulator(state_data=state_with(rows), faults=[{"kind": "truncated", "methods": ["GetSubscribers"]}]) as session:
        response = session.call("subscribers", "GetSubscribers", "<searchinfo><List>1</List></searchinfo>")
    assert response.content.startswith(HEAD.encode())
    assert not response.content.endswith(b"</response>\n")
    assert response.content.count(b"<item>") > 1500


def test_slow_fault_delays_after_running() -> None:
    with running_simulator(faults=[{"kind": "slow", "slow_seconds": 0.3}]) as session:
        started = time.monotonic()
        response = session.post(ADD_BODY)
        elapsed = time.monotonic() - started
    assert response.content == succeeded("1")
    assert elapsed >= 0.3


def test_fault_count_and_method_filter(iem: IemSession) -> None:
    iem.configure(faults=[{"kind": "http500", "count": 2, "methods": ["addsubscribertolist"]}])
    assert iem.call("authentication", "xmlapitest").status_code == 200
    assert iem.post(ADD_BODY).status_code == 500
    assert iem.post(ADD_BODY).status_code == 500
    assert iem.post(ADD_BODY).content == succeeded("1")
    config = iem.http.get(iem.handle.base + "/_sim/config").json()
    assert config["faults"][0]["count"] == 0
    assert iem.sim_state()["stats"]["faults_injected"] == 2


def test_fault_rate_sequence_follows_seed() -> None:
    def statuses(seed: int) -> list[int]:
        with running_simulator(faults=[{"kind": "http500", "rate": 0.5}], seed=seed) as session:
            return [session.call("authentication", "xmlapitest").status_code for _ in range(20)]

    first = statuses(11)
    assert statuses(11) == first
    assert 0 < first.count(500) < 20


def test_modern_control_character_is_fatal() -> None:
    rows = [row(1, "a\x01b@x.test")]
    with running_simulator(state_data=state_with(rows), dialect="modern") as session:
        modern = session.call("subscribers", "GetSubscribers", "<searchinfo><List>1</List></searchinfo>")
        session.configure(dialect="legacy")
        legacy = session.call("subscribers", "GetSubscribers", "<searchinfo><List>1</List></searchinfo>")
    assert modern.content.startswith((HEAD + "<status>SUCCESS</status>\n<br />\n<b>Fatal error</b>:  ").encode())
    assert b"<emailaddress>a\x01b@x.test</emailaddress>" in legacy.content


# ----- control endpoints -----------------------------------------------------------------------


def test_state_endpoint_reports_stats_and_log(iem: IemSession) -> None:
    iem.add("a@example.test")
    iem.call("subscribers", "IsSubscriberOnList", "<emailaddress>a@example.test</emailaddress><listids>1</listids>")
    iem.call("subscribers", "UnsubscribeSubscriber", "<emailaddress>a@example.test</emailaddress><listid>1</listid>")
    iem.call("authentication", "xmlapitest", token="wrong")
    state = iem.sim_state()
    assert state["stats"] == {
        "requests": 4,
        "by_method": {"AddSubscriberToList": 1, "IsSubscriberOnList": 1, "UnsubscribeSubscriber": 1, "xmlapitest": 1},
        "faults_injected": 0,
    }
    assert [entry["method"] for entry in state["log"]] == ["AddSubscriberToList", "UnsubscribeSubscriber"]
    assert state["log"][1] == {
        "method": "UnsubscribeSubscriber",
        "details": {"emailaddress": "a@example.test", "listid": "1"},
        "status": "SUCCESS",
        "fault": None,
    }
    assert set(state) == {"users", "lists", "custom_fields", "subscribers", "next_subscriberid", "stats", "log"}


def test_reset_stats_clears_counts_and_log(iem: IemSession) -> None:
    iem.add("a@example.test")
    response = iem.http.post(iem.handle.base + "/_sim/reset-stats")
    state = iem.sim_state()
    assert response.json() == {"ok": True}
    assert state["stats"] == {"requests": 0, "by_method": {}, "faults_injected": 0}
    assert state["log"] == []
    assert len(state["subscribers"]) == 1


def test_put_state_replaces_data(iem: IemSession) -> None:
    document = state_with([row(10, "z@x.test")])
    document["stats"] = {"requests": 99}
    response = iem.http.put(iem.handle.base + "/_sim/state", json=document)
    assert response.json() == {"ok": True, "subscribers": 1}
    assert iem.call("subscribers", "IsSubscriberOnList", "<emailaddress>z@x.test</emailaddress><listids>1</listids>").content == succeeded("10")
    assert iem.add("new@x.test")["data"] == "11"


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        '["a list"]',
        '{"subscribers": [{"subscriberid": "1", "listid": 1, "emailaddress": "a@x.test"}]}',
        '{"subscribers": [{"subscriberid": 1, "listid": 1, "emailaddress": "a@x.test"}, {"subscriberid": 1, "listid": 1, "emailaddress": "b@x.test"}]}',
        '{"custom_fields": [{"fieldid": 2, "fieldtype": "colour"}]}',
    ],
)
def test_put_state_rejects_invalid_document(iem: IemSession, document: str) -> None:
    response = iem.http.put(iem.handle.base + "/_sim/state", content=document)
    assert response.status_code == 400
    assert response.json()["error"].startswith("invalid state: ")
    assert iem.sim_state()["lists"][0]["name"] == "Newsletter"


def test_config_round_trip(iem: IemSession) -> None:
    changed = iem.configure(dialect="modern", duplicate_style="id", latency_ms=5, max_concurrency=2, now=1234, seed=9)
    assert changed.status_code == 200
    read = iem.http.get(iem.handle.base + "/_sim/config").json()
    assert read == {
        "dialect": "modern",
        "duplicate_style": "id",
        "auth_delay": 0.0,
        "latency_ms": 5.0,
        "max_concurrency": 2,
        "now": 1234,
        "faults": [],
        "seed": 9,
        "display_errors": True,
    }
    iem.add("a@example.test")
    assert rows_of(iem)["a@example.test"]["subscribedate"] == 1234


def test_config_now_null_uses_real_clock(iem: IemSession) -> None:
    iem.configure(now=None)
    before = int(time.time())
    iem.add("a@example.test")
    added = rows_of(iem)["a@example.test"]
    assert before <= added["subscribedate"] <= int(time.time())
    assert added["requestdate"] == added["subscribedate"]


@pytest.mark.parametrize(
    "change",
    [{"dialect": "php8"}, {"faults": [{"kind": "explode"}]}, {"faults": [{"kind": "html", "rate": 2}]}, {"max_concurrency": 0}, {"colour": "red"}],
)
def test_config_rejects_invalid_values(iem: IemSession, change: dict[str, Any]) -> None:
    response = iem.configure(**change)
    assert response.status_code == 400
    assert response.json()["error"].startswith("invalid configuration: ")
    assert iem.http.get(iem.handle.base + "/_sim/config").json()["dialect"] == "legacy"


def test_unknown_path_not_found(iem: IemSession) -> None:
    assert iem.http.get(iem.handle.base + "/admin/index.php").status_code == 404


def test_max_concurrency_queues_requests() -> None:
    with running_simulator(latency_ms=200, max_concurrency=1) as session:
        started = time.monotonic()
        threads = [threading.Thread(target=lambda: httpx.post(session.handle.url, content=envelope("authentication", "xmlapitest"))) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    assert elapsed >= 0.6


def test_latency_delays_each_request() -> None:
    with running_simulator(latency_ms=150) as session:
        started = time.monotonic()
        session.call("authentication", "xmlapitest")
        elapsed = time.monotonic() - started
    assert elapsed >= 0.15


# ----- persistence and command line ------------------------------------------------------------


def test_state_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "iem.json"
    with running_simulator(state_path=path, lists="1:News,2:Other", custom_fields="2:First name", now=NOW) as session:
        assert json.loads(path.read_text())["lists"][1]["name"] == "Other"
        session.add("a@example.test", 2, "<customfields><item><fieldid>2</fieldid><value>Anna</value></item></customfields>")
    saved = json.loads(path.read_text())
    assert list(saved) == ["users", "lists", "custom_fields", "subscribers", "next_subscriberid"]
    assert saved["subscribers"][0]["emailaddress"] == "a@example.test"
    assert saved["subscribers"][0]["customfields"] == {"2": "Anna"}
    assert saved["next_subscriberid"] == 2
    with running_simulator(state_path=path, lists="9:Ignored for an existing file") as session:
        assert session.add("b@example.test", 2)["data"] == "2"
        reloaded = session.result("subscribers", "IsSubscriberOnList", "<emailaddress>a@example.test</emailaddress><listids>2</listids>")
        assert [entry["name"] for entry in session.sim_state()["lists"]] == ["News", "Other"]
    assert reloaded["data"] == "1"


def test_state_file_saved_while_running(tmp_path: Path) -> None:
    path = tmp_path / "iem.json"
    with running_simulator(state_path=path, save_interval=0.1) as session:
        session.add("a@example.test")
        deadline = time.monotonic() + 5
        while "a@example.test" not in path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "a@example.test" in path.read_text()
    assert not list(tmp_path.glob(".iem.json.*"))


def test_cli_serves_and_saves_on_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "cli.json"
    command = [
        sys.executable, "-m", "edm_tui.interspire.simulator", "--port", "0", "--state", str(path),
        "--auth-delay", "0", "--lists", "1:News,2:Other", "--username", "iem", "--token", "secret",
    ]
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        line = process.stdout.readline() if process.stdout else ""
        match = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+/xml\.php)\n", line)
        assert match, line
        body = envelope("subscribers", "AddSubscriberToList", "<emailaddress>a@x.test</emailaddress><mailinglist>2</mailinglist>", username="iem", token="secret")
        assert httpx.post(match.group(1), content=body).content == succeeded("1")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    saved = json.loads(path.read_text())
    assert [entry["name"] for entry in saved["lists"]] == ["News", "Other"]
    assert saved["users"][0]["username"] == "iem"
    assert saved["subscribers"][0]["listid"] == 2


def test_cli_rejects_bad_lists_option(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "edm_tui.interspire.simulator", "--lists", "one:News"]
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=20)
    assert finished.returncode == 2
    assert "invalid --lists entry 'one:News'" in finished.stderr
    assert finished.stdout == ""


def test_start_simulator_rejects_unknown_option() -> None:
    with pytest.raises(TypeError):
        start_simulator(colour="red")
