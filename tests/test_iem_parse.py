"""Request building and response parsing of the IEM XML API, on byte-exact fixtures.

Legacy fixtures follow the output of IEM 6.1.x (`FormatXML`: tabs, blank lines inside items,
`<data>` hugging its content, no newline before `</response>`). Modern fixtures follow 6.2+
and 8.x (one line, self-closing empty elements, `&#x...;` references, `<items>` and `<user>`
wrappers).
"""

from __future__ import annotations

import random
import tracemalloc
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edm_tui.interspire.errors import (
    IemAuthError,
    IemBadResponse,
    IemError,
    IemRejected,
    IemRequestError,
    IemServerError,
    classify_failure,
)
from edm_tui.interspire.stream import SubscriberStreamParser
from edm_tui.interspire.xmlapi import (
    AddResult,
    IemField,
    IemList,
    add_result_from_response,
    add_subscriber_details,
    build_request,
    check_custom_field_saved,
    check_success,
    custom_fields_from_response,
    lists_from_response,
    parse_response,
    subscriber_count_from_response,
    subscriber_id_from_response,
    subscriber_search_details,
    subscribers_from_response,
    token_user_from_response,
)
from edm_tui.sync.model import IemRow

# Envelopes -----------------------------------------------------------------------------

HEAD = b'<?xml version="1.0" encoding="UTF-8" ?>\n<response>\n'


def success(payload: bytes) -> bytes:
    return HEAD + b"<status>SUCCESS</status>\n<data>" + payload + b"</data></response>\n"


def failed(message: bytes) -> bytes:
    return (
        HEAD
        + b"<status>FAILED</status>\n<errormessage>"
        + message
        + b"</errormessage>\n</response>\n"
    )


# GetSubscribers fixtures ---------------------------------------------------------------

ROW_A = IemRow(
    subscriber_id=1,
    email="a@x.com",
    list_id=7,
    confirmed=True,
    subscribedate=1700000000,
    unsubscribed=0,
    bounced=0,
)
ROW_B = IemRow(
    subscriber_id=2,
    email="o'brien@x.com",
    list_id=7,
    confirmed=False,
    subscribedate=1700000100,
    unsubscribed=1700000500,
    bounced=0,
)

LEGACY_ITEM_A = (
    b"\t<item>\n\n"
    b"\t\t<subscriberid>1</subscriberid>\n\n"
    b"\t\t<emailaddress>a@x.com</emailaddress>\n\n"
    b"\t\t<format>h</format>\n\n"
    b"\t\t<subscribedate>1700000000</subscribedate>\n\n"
    b"\t\t<confirmed>1</confirmed>\n\n"
    b"\t\t<unsubscribed>0</unsubscribed>\n\n"
    b"\t\t<bounced>0</bounced>\n\n"
    b"\t\t<listid>7</listid>\n"
    b"\t</item>\n"
)
LEGACY_ITEM_B = (
    b"\t<item>\n\n"
    b"\t\t<subscriberid>2</subscriberid>\n\n"
    b"\t\t<emailaddress>o&#039;brien@x.com</emailaddress>\n\n"
    b"\t\t<format>t</format>\n\n"
    b"\t\t<subscribedate>1700000100</subscribedate>\n\n"
    b"\t\t<confirmed>0</confirmed>\n\n"
    b"\t\t<unsubscribed>1700000500</unsubscribed>\n\n"
    b"\t\t<bounced>0</bounced>\n\n"
    b"\t\t<listid>7</listid>\n"
    b"\t</item>\n"
)
MODERN_ITEM_A = (
    b"<item><subscriberid>1</subscriberid><emailaddress>a@x.com</emailaddress>"
    b"<format>h</format><subscribedate>1700000000</subscribedate><confirmed>1</confirmed>"
    b"<unsubscribed>0</unsubscribed><bounced>0</bounced><listid>7</listid></item>"
)
MODERN_ITEM_B = (
    b"<item><subscriberid>2</subscriberid><emailaddress>o'brien@x.com</emailaddress>"
    b"<format>t</format><subscribedate>1700000100</subscribedate><confirmed>0</confirmed>"
    b"<unsubscribed>1700000500</unsubscribed><bounced>0</bounced><listid>7</listid></item>"
)


def legacy_subscribers(*items: bytes) -> bytes:
    count = str(len(items)).encode()
    if not items:
        return success(b"<count>0</count>\n<subscriberlist></subscriberlist>")
    return success(
        b"<count>"
        + count
        + b"</count>\n<subscriberlist>\n"
        + b"".join(items)
        + b"</subscriberlist>"
    )


def modern_subscribers(*items: bytes) -> bytes:
    count = str(len(items)).encode()
    if not items:
        return success(b"<count>0</count><subscriberlist/>")
    return success(
        b"<count>"
        + count
        + b"</count><subscriberlist><items>"
        + b"".join(items)
        + b"</items></subscriberlist>"
    )


SUBSCRIBER_FIXTURES = [
    pytest.param(legacy_subscribers(), [], id="legacy-0"),
    pytest.param(legacy_subscribers(LEGACY_ITEM_A), [ROW_A], id="legacy-1"),
    pytest.param(legacy_subscribers(LEGACY_ITEM_A, LEGACY_ITEM_B), [ROW_A, ROW_B], id="legacy-2"),
    pytest.param(modern_subscribers(), [], id="modern-0"),
    pytest.param(modern_subscribers(MODERN_ITEM_A), [ROW_A], id="modern-1"),
    pytest.param(modern_subscribers(MODERN_ITEM_A, MODERN_ITEM_B), [ROW_A, ROW_B], id="modern-2"),
    pytest.param(
        success(b"<count>0</count><subscribers></subscribers>"), [], id="early-return"
    ),
    pytest.param(failed(b"0"), [], id="failed-0"),
    pytest.param(failed(b""), [], id="failed-empty"),
]


def stream_rows(body: bytes, chunk_sizes: Iterator[int] | None = None) -> list[IemRow]:
    """Feed `body` to a SubscriberStreamParser in chunks of the given sizes (default: 1)."""
    parser = SubscriberStreamParser(list_id=7)
    rows: list[IemRow] = []
    position = 0
    while position < len(body):
        size = next(chunk_sizes) if chunk_sizes is not None else 1
        rows.extend(parser.feed(body[position : position + size]))
        position += size
    rows.extend(parser.close())
    return rows


# build_request --------------------------------------------------------------------------


def test_build_request_exact_bytes():
    body = build_request("admin", "d467e49b", "Subscribers", "IsSubscriberOnList", {
        "emailaddress": "jane@example.com",
        "listids": 7,
    })

    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<xmlrequest>'
        b"<username>admin</username><usertoken>d467e49b</usertoken>"
        b"<requesttype>subscribers</requesttype>"
        b"<requestmethod>IsSubscriberOnList</requestmethod>"
        b"<details><emailaddress>jane@example.com</emailaddress><listids>7</listids></details>"
        b"</xmlrequest>"
    )


def test_build_request_empty_details_sends_space():
    body = build_request("admin", "tok", "authentication", "xmlapitest", {})

    assert b"<details> </details>" in body
    assert b"<details/>" not in body


def test_build_request_all_none_details():
    body = build_request("admin", "tok", "lists", "GetLists", {"perpage": None})

    assert b"<details> </details>" in body


def test_build_request_token_check_spelling():
    body = build_request("admin", "tok", "Authentication", "XmlApiTest", {})

    assert b"<requestmethod>xmlapitest</requestmethod>" in body
    assert b"<requesttype>authentication</requesttype>" in body


def test_build_request_escapes_every_value():
    body = build_request("a&b", "t<o>k", "subscribers", "GetSubscribers", {
        "searchinfo": {"Email": "Tom & Jerry <tj@x.com>"},
    })

    assert b"<username>a&amp;b</username>" in body
    assert b"<usertoken>t&lt;o&gt;k</usertoken>" in body
    assert b"<Email>Tom &amp; Jerry &lt;tj@x.com&gt;</Email>" in body


def test_build_request_is_utf8():
    body = build_request("admin", "tok", "subscribers", "AddSubscriberToList", {
        "emailaddress": "zoë@exämple.com",
    })

    assert "<emailaddress>zoë@exämple.com</emailaddress>".encode() in body


def test_build_request_booleans_as_digits():
    body = build_request("admin", "tok", "subscribers", "AddSubscriberToList", {
        "confirmed": True,
        "add_to_autoresponders": False,
    })

    assert b"<confirmed>1</confirmed>" in body
    assert b"<add_to_autoresponders>0</add_to_autoresponders>" in body


def test_build_request_nested_and_repeated_elements():
    body = build_request("admin", "tok", "subscribers", "AddSubscriberToList", {
        "customfields": {
            "item": [
                {"fieldid": 2, "value": "Jane"},
                {"fieldid": 5, "value": ["red", "blue"]},
            ]
        },
        "listids": [1, 2],
    })

    assert (
        b"<customfields><item><fieldid>2</fieldid><value>Jane</value></item>"
        b"<item><fieldid>5</fieldid><value>red</value><value>blue</value></item></customfields>"
    ) in body
    assert b"<listids>1</listids><listids>2</listids>" in body


def test_build_request_keeps_carriage_return():
    body = build_request("admin", "tok", "subscribers", "SaveSubscriberCustomField", {
        "data": "line 1\r\nline 2",
    })

    parsed = ElementTree.fromstring(body)
    assert parsed.findtext("details/data") == "line 1\r\nline 2"


def test_build_request_rejects_control_character():
    with pytest.raises(ValueError) as raised:
        build_request("admin", "tok", "subscribers", "AddSubscriberToList", {
            "emailaddress": "bad\x01secret@x.com",
        })

    assert "<emailaddress>" in str(raised.value)
    assert "secret" not in str(raised.value)


def test_build_request_rejects_invalid_element_name():
    with pytest.raises(ValueError):
        build_request("admin", "tok", "subscribers", "GetSubscribers", {"bad name": "x"})


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=(
    "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17"
    "\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\ufffe\uffff"
))))
def test_build_request_round_trips_any_text(value: str):
    body = build_request("admin", "tok", "subscribers", "SaveSubscriberCustomField", {
        "data": value,
    })

    parsed = ElementTree.fromstring(body)
    assert (parsed.findtext("details/data") or "") == value


def test_search_details_include_listid():
    details = subscriber_search_details(7, "a@x.com")

    assert details == {"searchinfo": {"List": 7, "Email": "a@x.com"}, "listid": 7}


def test_search_details_have_no_status_filter():
    details = subscriber_search_details(7)

    assert details == {"searchinfo": {"List": 7}, "listid": 7}


def test_add_details_skip_blank_fields():
    details = add_subscriber_details(
        7,
        "a@x.com",
        confirmed=True,
        add_to_autoresponders=False,
        custom_fields={2: "Jane", 3: "", 4: "   "},
    )

    assert details["customfields"] == {"item": [{"fieldid": 2, "value": "Jane"}]}
    assert details["format"] == "html"
    assert details["mailinglist"] == 7
    assert details["add_to_autoresponders"] is False


def test_add_details_omit_empty_customfields():
    details = add_subscriber_details(
        7, "a@x.com", confirmed=False, add_to_autoresponders=True, custom_fields={3: ""}
    )
    body = build_request("admin", "tok", "subscribers", "AddSubscriberToList", details)

    assert b"customfields" not in body
    assert b"<confirmed>0</confirmed>" in body
    assert b"<add_to_autoresponders>1</add_to_autoresponders>" in body


# parse_response: envelopes and dialects -----------------------------------------------


@pytest.mark.parametrize(("body", "expected"), SUBSCRIBER_FIXTURES)
def test_subscribers_from_fixture(body: bytes, expected: list[IemRow]):
    rows = subscribers_from_response(parse_response(body), list_id=7)

    assert rows == expected


@pytest.mark.parametrize(("body", "expected"), SUBSCRIBER_FIXTURES)
def test_stream_one_byte_chunks(body: bytes, expected: list[IemRow]):
    assert stream_rows(body) == expected


@pytest.mark.parametrize(("body", "expected"), SUBSCRIBER_FIXTURES)
@pytest.mark.parametrize("seed", range(5))
def test_stream_random_chunks(body: bytes, expected: list[IemRow], seed: int):
    generator = random.Random(seed)
    sizes = iter(lambda: generator.randint(1, 40), None)

    assert stream_rows(body, sizes) == expected


def test_stream_whole_body_in_one_chunk():
    body = modern_subscribers(MODERN_ITEM_A, MODERN_ITEM_B)
    parser = SubscriberStreamParser()

    rows = parser.feed(body) + parser.close()

    assert rows == [ROW_A, ROW_B]


def test_stream_yields_rows_before_close():
    body = legacy_subscribers(LEGACY_ITEM_A, LEGACY_ITEM_B)
    cut = body.index(b"</item>") + len(b"</item>")
    parser = SubscriberStreamParser()

    first = parser.feed(body[:cut])

    assert first == [ROW_A]
    assert parser.feed(body[cut:]) + parser.close() == [ROW_B]


def test_stream_uses_list_id_when_row_has_none():
    item = MODERN_ITEM_A.replace(b"<listid>7</listid>", b"")
    parser = SubscriberStreamParser(list_id=9)

    rows = parser.feed(modern_subscribers(item)) + parser.close()

    assert rows[0].list_id == 9


def test_token_check_legacy():
    body = success(b"<userid>5</userid>\n<username>luser</username>")

    assert token_user_from_response(parse_response(body)) == {"userid": "5", "username": "luser"}


def test_token_check_modern_user_wrapper():
    body = success(b"<user><userid>7</userid><username>op</username></user>")

    assert token_user_from_response(parse_response(body)) == {"userid": "7", "username": "op"}


def test_token_check_auth_failure():
    body = failed(b"Unable to check user details.")

    with pytest.raises(IemAuthError) as raised:
        token_user_from_response(parse_response(body))

    assert raised.value.method == "xmlapitest"


LIST_ITEM_1 = (
    b"<item><listid>3</listid><name>Caf&#xE9; news</name><createdate>1600000000</createdate>"
    b"<subscribecount>12</subscribecount><unsubscribecount>1</unsubscribecount></item>"
)
LIST_ITEM_2 = (
    b"<item>\n\n\t<listid>7</listid>\n\n\t<name>Tom &amp; Jerry&#039;s</name>\n\n"
    b"\t<subscribecount>0</subscribecount>\n\n"
    b"\t<autorespondercount></autorespondercount>\n</item>\n"
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(failed(b""), [], id="none"),
        pytest.param(success(LIST_ITEM_1), [IemList(3, "Café news", 12)], id="one"),
        pytest.param(
            success(LIST_ITEM_1 + LIST_ITEM_2),
            [IemList(3, "Café news", 12), IemList(7, "Tom & Jerry's", 0)],
            id="two",
        ),
    ],
)
def test_lists_from_response(body: bytes, expected: list[IemList]):
    assert lists_from_response(parse_response(body)) == expected


def test_custom_fields_from_response():
    body = success(
        b"<item><fieldid>2</fieldid><name>First name</name><fieldtype>text</fieldtype>"
        b"<defaultvalue/><required>1</required><fieldsettings>a:0:{}</fieldsettings></item>"
    )

    fields = custom_fields_from_response(parse_response(body))

    assert fields == [IemField(2, "First name", "text", True)]


def test_custom_fields_none():
    assert custom_fields_from_response(parse_response(failed(b""))) == []


# parse_response: FAILED responses, duplicates and errors ------------------------------


def test_failed_empty_message_is_empty_string():
    response = parse_response(failed(b""))

    assert response.status == "FAILED"
    assert response.errormessage == ""


def test_failed_self_closing_message():
    body = HEAD + b"<status>FAILED</status>\n<errormessage/>\n</response>\n"

    assert parse_response(body).errormessage == ""


def test_success_empty_data_is_empty_string():
    response = parse_response(success(b""))

    assert response.ok
    assert response.data == ""


def test_is_subscriber_on_list_no():
    assert subscriber_id_from_response(parse_response(failed(b""))) is None


def test_is_subscriber_on_list_yes():
    assert subscriber_id_from_response(parse_response(success(b"764963"))) == 764963


def test_is_subscriber_on_list_with_return_listid():
    body = success(b"<subscriberid>9</subscriberid><listid>7</listid>")

    assert subscriber_id_from_response(parse_response(body)) == 9


def test_countonly_zero_is_failed_0():
    assert subscriber_count_from_response(parse_response(failed(b"0"))) == 0


def test_countonly_count():
    assert subscriber_count_from_response(parse_response(success(b"42"))) == 42


def test_add_new_subscriber():
    assert add_result_from_response(parse_response(success(b"764964"))) == AddResult(764964, False)


def test_add_duplicate_numeric_id():
    result = add_result_from_response(parse_response(failed(b"764963")))

    assert result == AddResult(subscriber_id=764963, already_exists=True)


def test_add_duplicate_message():
    body = failed(b"Jane@Example.com already exists in the given list")

    assert add_result_from_response(parse_response(body)) == AddResult(None, True)


def test_add_rejected_field_value():
    body = failed(
        b"The data provided for field &#039;Birthday&#039; is invalid (you provided &#039;//&#039;)"
    )

    with pytest.raises(IemRejected) as raised:
        add_result_from_response(parse_response(body))

    assert raised.value.message == (
        "The data provided for field 'Birthday' is invalid (you provided '//')"
    )
    assert raised.value.method == "AddSubscriberToList"


def test_add_unknown_list():
    with pytest.raises(IemRejected):
        add_result_from_response(parse_response(failed(b"Failed adding subcriber to the list")))


def test_not_subscribed_message_decoded():
    body = failed(b"The email address &#039;a@x.com&#039; is not subscribed to this list")

    with pytest.raises(IemRejected) as raised:
        check_success(parse_response(body), "UnsubscribeSubscriber")

    assert raised.value.message == "The email address 'a@x.com' is not subscribed to this list"


def test_save_custom_field_false_is_rejected():
    with pytest.raises(IemRejected) as raised:
        check_custom_field_saved(parse_response(failed(b"")), subscriber_id=5, field_id=2)

    assert "field 2" in raised.value.message
    assert "subscriber 5" in raised.value.message


def test_save_custom_field_success():
    check_custom_field_saved(parse_response(success(b"1")), subscriber_id=5, field_id=2)


def test_stream_failed_auth_raises_on_close():
    parser = SubscriberStreamParser()
    parser.feed(failed(b"Unable to check user details."))

    with pytest.raises(IemAuthError):
        parser.close()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Unable to check user details.", IemAuthError),
        ("XML API access is not enabled for this user", IemAuthError),
        ("Access denied: XML API is restricted to admin users only.", IemAuthError),
        ("The XML format you have sent is invalid. The following field is required: details",
         IemRequestError),
        ("The XML you provided is not valid. Please check your XML document and try again.",
         IemRequestError),
        ("No data has been given to the XML-API.", IemRequestError),
        ("Invalid request type", IemRequestError),
        ("Error: Please contact your system admin!", IemServerError),
        ("The XML-API requires the SimpleXML extension to be loaded.", IemServerError),
        ("Unable to load field id 'Title'", IemRejected),
        ("Failed adding subcriber to the list", IemRejected),
        ("No List or email address", IemRejected),
        ("something new", IemRejected),
    ],
)
def test_classify_failure(message: str, expected: type[IemError]):
    error = classify_failure(message, method="M")

    assert type(error) is expected
    assert error.method == "M"


# parse_response: junk, encodings and broken bodies -------------------------------------

SIMPLE = success(b"<userid>5</userid>\n<username>luser</username>")


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param(b"\xef\xbb\xbf", id="bom"),
        pytest.param(b"\n", id="newline"),
        pytest.param(b"\r\n \t", id="white-space"),
        pytest.param(
            b"<br />\n<b>Notice</b>:  Undefined index: List in "
            b"<b>/var/www/admin/functions/api/subscribers.php</b> on line <b>2260</b><br />\n",
            id="php-notice",
        ),
        pytest.param(b"\xef\xbb\xbf\n<br />\n<b>Warning</b>: x<br />\n", id="bom-and-notice"),
    ],
)
def test_junk_before_xml_is_dropped(prefix: bytes):
    response = parse_response(prefix + SIMPLE)

    assert token_user_from_response(response) == {"userid": "5", "username": "luser"}


def test_junk_before_stream_is_dropped():
    prefix = b"\xef\xbb\xbf<br />\n<b>Notice</b>: Undefined offset: 1<br />\n"
    body = prefix + modern_subscribers(MODERN_ITEM_A)

    assert stream_rows(body) == [ROW_A]


def test_response_without_declaration():
    body = b"<response><status>SUCCESS</status><data>12</data></response>"

    assert parse_response(body).data == "12"


LATIN1 = (
    b'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<response>\n<status>SUCCESS</status>\n'
    b"<data><count>1</count>\n<subscriberlist>\n\t<item>\n\n"
    b"\t\t<subscriberid>3</subscriberid>\n\n\t\t<emailaddress>Ren\xe9e@x.com</emailaddress>\n\n"
    b"\t\t<subscribedate>1</subscribedate>\n\n\t\t<confirmed>1</confirmed>\n\n"
    b"\t\t<unsubscribed>0</unsubscribed>\n\n\t\t<bounced>0</bounced>\n\n"
    b"\t\t<listid>7</listid>\n\t</item>\n</subscriberlist></data></response>\n"
)


def test_latin1_declaration():
    rows = subscribers_from_response(parse_response(LATIN1))

    assert rows[0].email == "Renée@x.com"


def test_latin1_declaration_streamed():
    assert stream_rows(LATIN1)[0].email == "Renée@x.com"


@pytest.mark.parametrize("encoding", [b"no-such-charset", b"base64", b"rot13", b"zlib", b"UTF-16"])
def test_unsupported_encoding_is_bad_response(encoding: bytes):
    body = SIMPLE.replace(b'encoding="UTF-8"', b'encoding="' + encoding + b'"')

    with pytest.raises(IemBadResponse) as raised:
        parse_response(body)
    assert "encoding" in raised.value.message

    with pytest.raises(IemBadResponse):
        stream_rows(body)

def test_hex_reference_decoded():
    body = modern_subscribers(MODERN_ITEM_A.replace(b"a@x.com", b"caf&#xE9;@x.com"))

    assert subscribers_from_response(parse_response(body))[0].email == "café@x.com"
    assert stream_rows(body)[0].email == "café@x.com"


def test_invalid_utf8_is_bad_response():
    body = success(b"<name>\xff\xfe</name>")

    with pytest.raises(IemBadResponse):
        parse_response(body)


HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>The application cannot proceed!</title></head>"
    b"<body><p>Unable to connect to the database. Please make sure the database information "
    b"specified in admin/includes/config.php are correct.</p></body></html>\n"
)


def test_html_page_is_bad_response():
    with pytest.raises(IemBadResponse) as raised:
        parse_response(HTML_PAGE)

    assert "HTML page" in raised.value.message
    assert "The application cannot proceed!" in raised.value.message


def test_html_page_streamed_is_bad_response():
    parser = SubscriberStreamParser()
    parser.feed(HTML_PAGE)

    with pytest.raises(IemBadResponse) as raised:
        parser.close()

    assert "HTML page" in raised.value.message


@pytest.mark.parametrize("body", [b"", b"   \n", b"\xef\xbb\xbf"])
def test_empty_body_is_bad_response(body: bytes):
    with pytest.raises(IemBadResponse) as raised:
        parse_response(body)

    assert raised.value.message == "empty response body"


def test_empty_body_streamed_is_bad_response():
    parser = SubscriberStreamParser()

    with pytest.raises(IemBadResponse) as raised:
        parser.close()

    assert raised.value.message == "empty response body"


def test_plain_text_is_bad_response():
    with pytest.raises(IemBadResponse) as raised:
        parse_response(b"Fatal error: Allowed memory size exhausted")

    assert "not XML" in raised.value.message


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9, 0.99])
def test_truncated_body_is_bad_response(keep: float):
    body = legacy_subscribers(LEGACY_ITEM_A, LEGACY_ITEM_B)
    truncated = body[: int(len(body) * keep)]

    with pytest.raises(IemBadResponse) as raised:
        parse_response(truncated)

    assert "truncated" in raised.value.message


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9, 0.99])
def test_truncated_stream_is_bad_response(keep: float):
    body = modern_subscribers(MODERN_ITEM_A, MODERN_ITEM_B)
    truncated = body[: int(len(body) * keep)]

    with pytest.raises(IemBadResponse) as raised:
        stream_rows(truncated)

    assert "truncated" in raised.value.message


def test_truncated_inside_character_is_truncated():
    body = success(b"<name>caf\xc3\xa9</name>")
    truncated = body[: body.index(b"\xa9")]

    with pytest.raises(IemBadResponse) as raised:
        parse_response(truncated)
    assert "truncated" in raised.value.message

    with pytest.raises(IemBadResponse) as raised:
        stream_rows(truncated)
    assert "truncated" in raised.value.message


def test_junk_after_document_is_bad_response():
    with pytest.raises(IemBadResponse) as raised:
        parse_response(SIMPLE + b"<br />Notice")

    assert "not well-formed" in raised.value.message


def test_unknown_status_is_bad_response():
    body = HEAD + b"<status>ERROR</status>\n<errormessage>x</errormessage>\n</response>\n"

    with pytest.raises(IemBadResponse):
        parse_response(body)


def test_missing_subscriberlist_is_bad_response():
    body = success(b"<count>3</count>")

    with pytest.raises(IemBadResponse):
        subscribers_from_response(parse_response(body))
    with pytest.raises(IemBadResponse):
        stream_rows(body)


def test_non_numeric_subscriber_id_is_bad_response():
    body = modern_subscribers(MODERN_ITEM_A.replace(b">1</subscriberid>", b">x</subscriberid>"))

    with pytest.raises(IemBadResponse):
        stream_rows(body)


# Entity handling --------------------------------------------------------------------------

ENTITY_BOMB = (
    b'<?xml version="1.0"?>\n<!DOCTYPE response [\n'
    b'<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">\n'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">\n'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">\n'
    b'<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">\n'
    b'<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">\n'
    b"]>\n<response><status>FAILED</status><errormessage>&e;</errormessage></response>"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE response [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    b"<response><status>FAILED</status><errormessage>&x;</errormessage></response>"
)


@pytest.mark.parametrize("body", [ENTITY_BOMB, EXTERNAL_ENTITY], ids=["bomb", "external"])
def test_doctype_is_rejected(body: bytes):
    with pytest.raises(IemBadResponse) as raised:
        parse_response(body)

    assert "DOCTYPE" in raised.value.message


@pytest.mark.parametrize("body", [ENTITY_BOMB, EXTERNAL_ENTITY], ids=["bomb", "external"])
def test_doctype_is_rejected_when_streamed(body: bytes):
    with pytest.raises(IemBadResponse) as raised:
        stream_rows(body)

    assert "DOCTYPE" in raised.value.message


# Random input ------------------------------------------------------------------------------


def _parse_whole_and_streamed(body: bytes) -> None:
    try:
        parse_response(body)
    except IemError:
        pass

    parser = SubscriberStreamParser()
    try:
        parser.feed(body)
        parser.close()
    except IemError:
        pass


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_iem_errors(body: bytes):
    _parse_whole_and_streamed(body)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([
        legacy_subscribers(LEGACY_ITEM_A, LEGACY_ITEM_B),
        modern_subscribers(MODERN_ITEM_A),
        failed(b"0"),
        SIMPLE,
        LATIN1,
    ]),
    st.integers(min_value=0, max_value=2000),
    st.binary(max_size=8),
    st.integers(min_value=0, max_value=40),
)
def test_mutated_documents_raise_only_iem_errors(
    body: bytes, position: int, inserted: bytes, deleted: int
):
    position %= len(body) + 1
    mutated = body[:position] + inserted + body[position + deleted :]

    _parse_whole_and_streamed(mutated)


# Memory ---------------------------------------------------------------------------------------


def _generated_subscribers(rows: int) -> Iterator[bytes]:
    yield HEAD + b"<status>SUCCESS</status>\n<data><count>%d</count><subscriberlist><items>" % rows
    batch = []
    for index in range(rows):
        batch.append(
            b"<item><subscriberid>%d</subscriberid><emailaddress>user%d@example.com</emailaddress>"
            b"<format>h</format><subscribedate>1700000000</subscribedate><confirmed>1</confirmed>"
            b"<unsubscribed>0</unsubscribed><bounced>0</bounced><listid>7</listid></item>"
            % (index + 1, index)
        )
        if len(batch) == 100:
            yield b"".join(batch)
            batch = []
    yield b"".join(batch)
    yield b"</items></subscriberlist></data></response>\n"


def test_stream_memory_stays_flat():
    rows = 50_000
    parser = SubscriberStreamParser()
    seen = 0

    tracemalloc.start()
    try:
        for chunk in _generated_subscribers(rows):
            seen += len(parser.feed(chunk))
        seen += len(parser.close())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # The body is about 11 MB; a parser that kept rows or elements would peak far above 2 MB.
    assert seen == rows
    assert peak < 2_000_000


@pytest.mark.slow
def test_stream_one_million_rows():
    parser = SubscriberStreamParser()
    seen = 0
    last = None

    for chunk in _generated_subscribers(1_000_000):
        for row in parser.feed(chunk):
            seen += 1
            last = row
    seen += len(parser.close())

    assert seen == 1_000_000
    assert last is not None
    assert last.subscriber_id == 1_000_000

