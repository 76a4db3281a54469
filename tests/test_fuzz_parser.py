"""Bad input for the IEM response parsers: mutated real responses, hostile XML, odd encodings.

The corpus is real xml.php output of the simulator in both dialects, fetched over HTTP once
per module. Whatever the bytes, `parse_response`, the result functions and
`SubscriberStreamParser` may raise only IemError subclasses. test_iem_parse.py covers random
bytes and mutations of hand-written fixtures; this module mutates real responses and feeds the
stream in random chunks.
"""

from __future__ import annotations

import socket
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edm_tui.interspire.errors import IemBadResponse, IemError
from edm_tui.interspire.stream import SubscriberStreamParser
from edm_tui.interspire.xmlapi import (
    MAX_DEPTH,
    Response,
    add_result_from_response,
    build_request,
    check_custom_field_saved,
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
from tests.simulator_support import IemSession, running_simulator

USERNAME = "fuzz"
TOKEN = "fuzz-token-0123456789"

SUBSCRIBERS = [
    # (email, listid, confirmed, unsubscribed, bounced, first name)
    ("a@example.test", 1, True, 0, 0, "Anna"),
    ("o'brien@example.test", 1, False, 0, 0, "Órla <&> \"Ó\""),
    ("árvíztűrő@example.test", 1, True, 1_700_000_500, 0, "Tükörfúrógép 😀"),
    ("bounced@example.test", 1, True, 0, 1_700_000_900, ""),
]


@dataclass(frozen=True)
class Sample:
    """One real response: the dialect, a label, the method's result function and the body."""

    dialect: str
    label: str
    read: Callable[[Response], Any]
    body: bytes

    def __repr__(self) -> str:
        return f"Sample({self.dialect}/{self.label}, {len(self.body)} bytes)"


def _state() -> dict[str, Any]:
    subscribers = []
    for index, (email, listid, confirmed, unsubscribed, bounced, firstname) in enumerate(SUBSCRIBERS, 1):
        subscribers.append({
            "subscriberid": index, "listid": listid, "emailaddress": email, "format": "h",
            "confirmed": confirmed, "subscribedate": 1_700_000_000 + index, "requestdate": 1_700_000_000,
            "unsubscribed": unsubscribed, "bounced": bounced, "confirmcode": "c" * 32,
            "customfields": {"2": firstname} if firstname else {},
        })
    return {
        "users": [{"userid": 1, "username": USERNAME, "token": TOKEN, "status": 1, "admin": True}],
        "lists": [{"listid": 1, "name": "Hírlevél <Main> & more", "createdate": 1_600_000_000, "ownerid": 1}],
        "custom_fields": [
            {"fieldid": 2, "name": "Keresztnév", "fieldtype": "text", "required": False, "options": []},
        ],
        "subscribers": subscribers,
        "next_subscriberid": len(subscribers) + 1,
    }


def _post(session: IemSession, requesttype: str, method: str, details: dict[str, Any], *,
          token: str = TOKEN) -> bytes:
    body = build_request(USERNAME, token, requesttype, method, details)
    return session.post(body).content


def _collect(dialect: str) -> list[Sample]:
    """Fetch one response per method and outcome, plus the broken bodies the simulator injects."""
    samples: list[Sample] = []
    with running_simulator(dialect=dialect, state_data=_state()) as session:

        def add(label: str, read: Callable[[Response], Any], requesttype: str, method: str,
                details: dict[str, Any], **options: Any) -> None:
            samples.append(Sample(dialect, label, read, _post(session, requesttype, method, details, **options)))

        add("token", token_user_from_response, "authentication", "xmlapitest", {})
        add("token-rejected", token_user_from_response, "authentication", "xmlapitest", {}, token="wrong")
        add("lists", lists_from_response, "lists", "GetLists", {})
        add("fields", custom_fields_from_response, "lists", "GetCustomFields", {"listids": 1})
        add("subscribers", subscribers_from_response, "subscribers", "GetSubscribers",
            subscriber_search_details(1))
        for kind in ("notice", "bom", "html", "empty", "truncated"):
            session.configure(faults=[{"kind": kind, "count": 1}])
            add(f"subscribers-{kind}", subscribers_from_response, "subscribers", "GetSubscribers",
                subscriber_search_details(1))
        session.configure(faults=[])
        add("subscribers-none", subscribers_from_response, "subscribers", "GetSubscribers",
            subscriber_search_details(1, "nobody@"))
        add("count", subscriber_count_from_response, "subscribers", "GetSubscribers",
            {**subscriber_search_details(1), "countonly": True})
        add("on-list", subscriber_id_from_response, "subscribers", "IsSubscriberOnList",
            {"emailaddress": "a@example.test", "listids": 1})
        add("not-on-list", subscriber_id_from_response, "subscribers", "IsSubscriberOnList",
            {"emailaddress": "nobody@example.test", "listids": 1})
        add("add", add_result_from_response, "subscribers", "AddSubscriberToList",
            {"emailaddress": "new@example.test", "mailinglist": 1, "format": "html", "confirmed": True})
        add("add-duplicate", add_result_from_response, "subscribers", "AddSubscriberToList",
            {"emailaddress": "a@example.test", "mailinglist": 1, "format": "html", "confirmed": True})
        add("save-field", _save_field, "subscribers", "SaveSubscriberCustomField",
            {"subscriberids": {"id": 1}, "fieldid": 2, "data": "Ünő"})
        add("unknown-method", token_user_from_response, "subscribers", "NoSuchMethod", {})

    return samples


@pytest.fixture(scope="module")
def corpus() -> list[Sample]:
    return _collect("legacy") + _collect("modern")


def _save_field(response: Response) -> None:
    check_custom_field_saved(response, subscriber_id=1, field_id=2)


def _stream(body: bytes, chunk_sizes: Iterator[int]) -> list[IemRow]:
    parser = SubscriberStreamParser(list_id=1)
    rows: list[IemRow] = []
    position = 0
    while position < len(body):
        size = next(chunk_sizes)
        rows.extend(parser.feed(body[position : position + size]))
        position += size
    rows.extend(parser.close())
    return rows


def _outcome(action: Callable[[], Any]) -> Any:
    """Return the action's result, or the IemError it raised; any other exception propagates."""
    try:
        return action()
    except IemError as error:
        return error


def _by_id(rows: list[IemRow]) -> list[IemRow]:
    return sorted(rows, key=lambda row: row.subscriber_id)


# Real responses -----------------------------------------------------------------------------

EXPECTED_ROWS = [
    IemRow(subscriber_id=1, email="a@example.test", list_id=1, confirmed=True,
           subscribedate=1_700_000_001, unsubscribed=0, bounced=0),
    IemRow(subscriber_id=2, email="o'brien@example.test", list_id=1, confirmed=False,
           subscribedate=1_700_000_002, unsubscribed=0, bounced=0),
    IemRow(subscriber_id=3, email="árvíztűrő@example.test", list_id=1, confirmed=True,
           subscribedate=1_700_000_003, unsubscribed=1_700_000_500, bounced=0),
    IemRow(subscriber_id=4, email="bounced@example.test", list_id=1, confirmed=True,
           subscribedate=1_700_000_004, unsubscribed=0, bounced=1_700_000_900),
]


@pytest.mark.parametrize("dialect", ["legacy", "modern"])
def test_real_subscribers_whole_and_streamed(corpus: list[Sample], dialect: str):
    sample = next(s for s in corpus if s.dialect == dialect and s.label == "subscribers")

    whole = subscribers_from_response(parse_response(sample.body))
    streamed = _stream(sample.body, iter(lambda: 1, None))

    assert _by_id(whole) == EXPECTED_ROWS
    assert streamed == whole


@pytest.mark.parametrize("dialect", ["legacy", "modern"])
def test_real_broken_bodies_are_bad_responses(corpus: list[Sample], dialect: str):
    broken = [s for s in corpus if s.dialect == dialect and s.label.split("-")[-1] in ("html", "empty", "truncated")]

    assert len(broken) == 3
    for sample in broken:
        whole = _outcome(lambda body=sample.body: parse_response(body))
        streamed = _outcome(lambda body=sample.body: _stream(body, iter(lambda: 7, None)))
        assert isinstance(whole, IemBadResponse), sample
        assert isinstance(streamed, IemBadResponse), sample


@pytest.mark.parametrize("dialect", ["legacy", "modern"])
def test_real_junk_prefixes_are_dropped(corpus: list[Sample], dialect: str):
    for label in ("subscribers-notice", "subscribers-bom"):
        sample = next(s for s in corpus if s.dialect == dialect and s.label == label)
        assert _by_id(subscribers_from_response(parse_response(sample.body))) == EXPECTED_ROWS, label
        assert _by_id(_stream(sample.body, iter(lambda: 3, None))) == EXPECTED_ROWS, label


# Mutated real responses ------------------------------------------------------------------------

_EDIT = st.tuples(
    st.sampled_from(["insert", "delete", "replace", "splice", "truncate"]),
    st.integers(min_value=0, max_value=1 << 16),
    st.integers(min_value=0, max_value=64),
    st.binary(min_size=1, max_size=12),
)


def _mutate(body: bytes, edits: list[tuple[str, int, int, bytes]]) -> bytes:
    """Apply byte edits; "splice" copies a slice of the body itself to another position."""
    for kind, position, length, data in edits:
        position %= len(body) + 1
        if kind == "insert":
            body = body[:position] + data + body[position:]
        elif kind == "delete":
            body = body[:position] + body[position + length :]
        elif kind == "replace":
            body = body[:position] + data + body[position + len(data) :]
        elif kind == "splice":
            source = (position * 7 + length) % (len(body) + 1)
            body = body[:position] + body[source : source + length] + body[position:]
        else:
            body = body[:position]
    return body


def _check_all_readers(body: bytes, read: Callable[[Response], Any], chunk_sizes: list[int]) -> None:
    whole = _outcome(lambda: parse_response(body))
    if isinstance(whole, Response):
        _outcome(lambda: read(whole))
        for reader in (token_user_from_response, lists_from_response, subscribers_from_response,
                       subscriber_count_from_response, add_result_from_response):
            _outcome(lambda reader=reader: reader(whole))
    sizes = iter(chunk_sizes * (len(body) // max(sum(chunk_sizes), 1) + 2))
    _outcome(lambda: _stream(body, sizes))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data(), edits=st.lists(_EDIT, min_size=1, max_size=4),
       chunk_sizes=st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=5))
def test_mutated_responses_raise_iem_errors(
    corpus: list[Sample], data: st.DataObject, edits: list[tuple[str, int, int, bytes]], chunk_sizes: list[int]
):
    sample = data.draw(st.sampled_from(corpus))

    _check_all_readers(_mutate(sample.body, edits), sample.read, chunk_sizes)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data(), text=st.text(max_size=40))
def test_random_element_text_raises_iem_errors(
    corpus: list[Sample], data: st.DataObject, text: str
):
    """Replace the text of one element with arbitrary Unicode, escaped or raw."""
    sample = data.draw(st.sampled_from(corpus))
    closings = [index for index in range(len(sample.body)) if sample.body.startswith(b"</", index)]
    if not closings:
        return
    end = data.draw(st.sampled_from(closings))
    start = sample.body.rfind(b">", 0, end) + 1
    raw = text.encode("utf-8", "surrogatepass")
    if data.draw(st.booleans()):
        raw = raw.replace(b"&", b"&amp;").replace(b"<", b"&lt;")

    _check_all_readers(sample.body[:start] + raw + sample.body[end:], sample.read, [5, 1, 64])


# Hostile shapes --------------------------------------------------------------------------------

HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def _success(data: bytes) -> bytes:
    return HEAD + b"<response><status>SUCCESS</status><data>" + data + b"</data></response>"


def _deep(tag: bytes, depth: int) -> bytes:
    return b"<%s>" % tag * depth + b"x" + b"</%s>" % tag * depth


@pytest.mark.parametrize("tag", [b"a", b"item", b"items"])
def test_deep_nesting_is_bad_response(tag: bytes):
    body = _success(_deep(tag, 20_000))

    with pytest.raises(IemBadResponse) as raised:
        parse_response(body)
    assert raised.value.message == f"response nests elements more than {MAX_DEPTH} levels deep"


def test_deep_nesting_streamed_is_bad_response():
    body = _success(b"<count>1</count><subscriberlist><items><item>" + _deep(b"a", 20_000)
                    + b"</item></items></subscriberlist>")

    rows = _outcome(lambda: _stream(body, iter(lambda: 4096, None)))

    # Fields nested below a row's field are ignored, so the row lacks its subscriberid.
    assert isinstance(rows, IemBadResponse)
    assert rows.message == "subscriberid is None, expected a non-negative integer below 2**63"


@pytest.mark.parametrize(
    ("reader", "data"),
    [
        pytest.param(subscriber_count_from_response, b"9" * 5000, id="count-5000-digits"),
        pytest.param(subscriber_id_from_response, b"9" * 20, id="id-20-digits"),
        pytest.param(add_result_from_response, b"9223372036854775808", id="new-id-2-pow-63"),
    ],
)
def test_huge_integer_is_bad_response(reader: Callable[[Response], Any], data: bytes):
    with pytest.raises(IemBadResponse) as raised:
        reader(parse_response(_success(data)))

    assert "expected a non-negative integer below 2**63" in raised.value.message
    assert len(raised.value.message) < 200


def test_huge_duplicate_id_is_iem_error():
    body = HEAD + b"<response><status>FAILED</status><errormessage>" + b"7" * 5000 + b"</errormessage></response>"

    with pytest.raises(IemError):
        add_result_from_response(parse_response(body))


def test_huge_subscriber_id_streamed_is_bad_response():
    item = (b"<item><subscriberid>" + b"1" * 5000 + b"</subscriberid><emailaddress>a@x.test</emailaddress>"
            b"<listid>1</listid></item>")
    body = _success(b"<count>1</count><subscriberlist><items>" + item + b"</items></subscriberlist>")

    with pytest.raises(IemBadResponse) as raised:
        _stream(body, iter(lambda: 100, None))
    assert raised.value.message.startswith("subscriberid is '1111")


# UTF-7 and unicode_escape pass the declaration check but can decode to lone surrogates.
SURROGATE_BODIES = [
    pytest.param(b'<?xml version="1.0" encoding="UTF-7"?><response><status>SUCCESS</status>'
                 b"<data>+2AA-</data></response>", "utf-7", id="utf-7"),
    pytest.param(b'<?xml version="1.0" encoding="unicode_escape"?><response><status>SUCCESS</status>'
                 b"<data>\\ud800</data></response>", "unicode-escape", id="unicode-escape"),
]


@pytest.mark.parametrize(("body", "codec"), SURROGATE_BODIES)
def test_lone_surrogate_is_bad_response(body: bytes, codec: str):
    with pytest.raises(IemBadResponse) as raised:
        parse_response(body)

    assert raised.value.message == f"response is not valid {codec}: it decodes to the lone surrogate U+D800"


@pytest.mark.parametrize(("body", "codec"), SURROGATE_BODIES)
def test_lone_surrogate_streamed_is_bad_response(body: bytes, codec: str):
    with pytest.raises(IemBadResponse) as raised:
        _stream(body, iter(lambda: 1, None))

    assert raised.value.message == f"response is not valid {codec}: it decodes to the lone surrogate U+D800"


def test_long_status_is_cut_in_message():
    body = HEAD + b"<response><status>" + b"S" * 100_000 + b"</status></response>"

    with pytest.raises(IemBadResponse) as raised:
        parse_response(body)
    assert len(raised.value.message) < 200


# Entity expansion ------------------------------------------------------------------------------

# Ten levels of ten references each: 10**10 copies of "lol" if a parser expanded them.
BILLION_LAUGHS = (
    HEAD + b'<!DOCTYPE response [\n<!ENTITY l0 "lol">\n'
    + b"".join(b'<!ENTITY l%d "%s">\n' % (level, b"&l%d;" % (level - 1) * 10) for level in range(1, 11))
    + b"]>\n<response><status>FAILED</status><errormessage>&l10;</errormessage></response>"
)
# One 100 KB entity referenced 10 000 times: a gigabyte without nested entities.
QUADRATIC_BLOWUP = (
    HEAD + b'<!DOCTYPE response [<!ENTITY big "' + b"x" * 100_000 + b'">]>\n'
    b"<response><status>FAILED</status><errormessage>" + b"&big;" * 10_000 + b"</errormessage></response>"
)
EXTERNAL_FILE = (
    HEAD + b'<!DOCTYPE response [<!ENTITY secret SYSTEM "file:///etc/hostname">]>\n'
    b"<response><status>FAILED</status><errormessage>&secret;</errormessage></response>"
)
PARAMETER_ENTITY = (
    HEAD + b'<!DOCTYPE response [<!ENTITY % p "<!ENTITY e \'boom\'>"> %p;]>\n'
    b"<response><status>FAILED</status><errormessage>&e;</errormessage></response>"
)
ENTITY_BODIES = [
    pytest.param(BILLION_LAUGHS, id="billion-laughs"),
    pytest.param(QUADRATIC_BLOWUP, id="quadratic-blowup"),
    pytest.param(EXTERNAL_FILE, id="external-file"),
    pytest.param(PARAMETER_ENTITY, id="parameter-entity"),
    pytest.param(BILLION_LAUGHS.replace(b"UTF-8", b"ISO-8859-1"), id="latin1-billion-laughs"),
    pytest.param(b"\xef\xbb\xbf<br />notice\n" + BILLION_LAUGHS, id="junk-then-billion-laughs"),
]
DOCTYPE_MESSAGE = "response contains a DOCTYPE declaration, which IEM never sends"
MEMORY_LIMIT = 2_000_000  # bytes; the largest body above is about 150 KB


def _peak_memory(action: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        outcome = _outcome(action)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return outcome, peak


@pytest.mark.parametrize("body", ENTITY_BODIES)
def test_entity_document_rejected_with_flat_memory(body: bytes):
    outcome, peak = _peak_memory(lambda: parse_response(body))

    assert isinstance(outcome, IemBadResponse)
    assert outcome.message == DOCTYPE_MESSAGE
    assert peak < MEMORY_LIMIT


@pytest.mark.parametrize("body", ENTITY_BODIES)
@pytest.mark.parametrize("chunk", [1, 13, 1 << 20])
def test_entity_document_streamed_rejected_with_flat_memory(body: bytes, chunk: int):
    outcome, peak = _peak_memory(lambda: _stream(body, iter(lambda: chunk, None)))

    assert isinstance(outcome, IemBadResponse)
    assert outcome.message == DOCTYPE_MESSAGE
    assert peak < MEMORY_LIMIT


def test_external_dtd_is_never_fetched():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    body = (HEAD + b'<!DOCTYPE response SYSTEM "http://127.0.0.1:%d/evil.dtd">\n' % port
            + b"<response><status>SUCCESS</status><data>&e;</data></response>")
    try:
        whole = _outcome(lambda: parse_response(body))
        streamed = _outcome(lambda: _stream(body, iter(lambda: 16, None)))
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()

    assert isinstance(whole, IemBadResponse)
    assert whole.message == DOCTYPE_MESSAGE
    assert isinstance(streamed, IemBadResponse)
    assert streamed.message == DOCTYPE_MESSAGE


def test_long_status_streamed_is_cut_in_message():
    body = HEAD + b"<response><status>" + b"S" * 100_000 + b"</status></response>"

    with pytest.raises(IemBadResponse) as raised:
        _stream(body, iter(lambda: 4096, None))
    assert len(raised.value.message) < 200


NESTED_EMAIL_ITEM = (b"<item><subscriberid>1</subscriberid><emailaddress>a@x.test<b>bold</b></emailaddress>"
                     b"<listid>1</listid></item>")


def test_email_with_child_element_is_bad_response():
    body = _success(b"<count>1</count><subscriberlist><items>" + NESTED_EMAIL_ITEM + b"</items></subscriberlist>")

    with pytest.raises(IemBadResponse) as raised:
        subscribers_from_response(parse_response(body))
    assert raised.value.message == "subscriber emailaddress is {'b': 'bold', '#text': 'a@x.test'}, expected text"


def test_email_with_child_element_streamed_is_bad_response():
    body = _success(b"<count>1</count><subscriberlist><items>" + NESTED_EMAIL_ITEM + b"</items></subscriberlist>")

    with pytest.raises(IemBadResponse) as raised:
        _stream(body, iter(lambda: 5, None))
    assert raised.value.message == "subscriber emailaddress is {}, expected text"


def test_list_name_with_child_element_is_bad_response():
    body = _success(b"<item><listid>1</listid><name><x>1</x></name></item>")

    with pytest.raises(IemBadResponse) as raised:
        lists_from_response(parse_response(body))
    assert raised.value.message == "list name is {'x': '1'}, expected text"
