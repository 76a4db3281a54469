"""IemClient against real HTTP servers on 127.0.0.1.

`CannedServer` is a stdlib HTTP server that responds to each POST with the next queued reply
and records what it received, so each transport fault (truncation, reset, redirect, delay)
is exact. The last section runs the client against the IEM simulator in both dialects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import pytest_asyncio

from edm_tui.interspire import client as client_module
from edm_tui.interspire.client import AddResult, IemClient, IemField, IemList
from edm_tui.interspire.errors import (
    IemAuthError,
    IemBadResponse,
    IemConnectionError,
    IemHttpError,
    IemRejected,
    IemRequestError,
    IemTimeout,
)
from edm_tui.sync.model import Attempts, IemRow

TOKEN = "SECRET-TOKEN-5f1d9c"
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


def subscriber_item(subscriber_id: int, email: str, *, unsubscribed: int = 0) -> bytes:
    return (
        f"<item><subscriberid>{subscriber_id}</subscriberid><emailaddress>{email}</emailaddress>"
        f"<format>h</format><subscribedate>1700000000</subscribedate><confirmed>1</confirmed>"
        f"<unsubscribed>{unsubscribed}</unsubscribed><bounced>0</bounced><listid>7</listid></item>"
    ).encode()


def subscribers(*items: bytes) -> bytes:
    count = str(len(items)).encode()
    return success(
        b"<count>" + count + b"</count><subscriberlist><items>" + b"".join(items)
        + b"</items></subscriberlist>"
    )


HTML_PAGE = (
    b"<html><head><title>The application cannot proceed!</title></head><body>"
    b"Unable to connect to the database.</body></html>"
)


# The canned server -----------------------------------------------------------------------


@dataclass
class Reply:
    """One canned reply.

    `cut_at` sends only that many body bytes after announcing the full Content-Length, then
    closes the connection. `reset` closes the connection with a TCP reset before any reply.
    """

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    cut_at: int | None = None
    reset: bool = False
    chunk_size: int | None = None


class _QuietHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that ignores connections the client dropped on purpose."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class CannedServer:
    """HTTP server on 127.0.0.1 that sends queued replies and records requests."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[ReceivedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = _QuietHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}/iem/xml.php"

    def queue(self, *replies: Reply | bytes) -> None:
        for reply in replies:
            self.replies.append(reply if isinstance(reply, Reply) else Reply(reply))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def bodies(self) -> list[bytes]:
        return [request.body for request in self.requests]

    def _next_reply(self, request: ReceivedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.replies:
                return self.replies.popleft()
        return Reply(b"no canned reply left", status=599)

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        canned = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                self._respond()

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                self._respond()

            def _respond(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = ReceivedRequest(
                    method=self.command,
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=self.rfile.read(length),
                )
                reply = canned._next_reply(request)
                try:
                    self._send(reply)
                finally:
                    canned._done()

            def _send(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.reset:
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    return

                self.send_response(reply.status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.cut_at is not None:
                    self.send_header("Connection", "close")
                self.end_headers()

                body = reply.body if reply.cut_at is None else reply.body[: reply.cut_at]
                step = reply.chunk_size or len(body) or 1
                for start in range(0, len(body), step):
                    self.wfile.write(body[start : start + step])
                    self.wfile.flush()
                if reply.cut_at is not None:
                    self.close_connection = True

            def log_message(self, *_args: object) -> None:
                pass

        return Handler


@pytest.fixture
def server() -> Iterator[CannedServer]:
    canned = CannedServer()
    yield canned
    canned.stop()


@pytest_asyncio.fixture(loop_scope="function")
async def iem(server: CannedServer) -> AsyncIterator[IemClient]:
    client = IemClient(server.url, "admin", TOKEN, timeout=5.0, retries=3, backoff=0.0)
    yield client
    await client.aclose()


# Envelope and headers ------------------------------------------------------------------


async def test_request_headers_and_body(server: CannedServer, iem: IemClient):
    server.queue(success(b"<userid>5</userid>\n<username>admin</username>"))

    user = await iem.test_token()

    request = server.requests[0]
    assert user == {"userid": "5", "username": "admin"}
    assert request.method == "POST"
    assert request.path == "/iem/xml.php"
    assert request.headers["content-type"] == "text/xml; charset=utf-8"
    assert b"<requesttype>authentication</requesttype>" in request.body
    assert b"<requestmethod>xmlapitest</requestmethod>" in request.body
    assert b"<details> </details>" in request.body
    assert f"<usertoken>{TOKEN}</usertoken>".encode() in request.body


async def test_token_modern_user_wrapper(server: CannedServer, iem: IemClient):
    server.queue(success(b"<user><userid>7</userid><username>op</username></user>"))

    assert await iem.test_token() == {"userid": "7", "username": "op"}


async def test_auth_error_not_retried(server: CannedServer, iem: IemClient):
    server.queue(failed(b"Unable to check user details."))

    with pytest.raises(IemAuthError) as raised:
        await iem.test_token()

    assert raised.value.attempts == 1
    assert raised.value.method == "xmlapitest"
    assert len(server.requests) == 1


async def test_policy_auth_error_not_retried(server: CannedServer, iem: IemClient):
    server.queue(failed(b"XML API is restricted to admin users only"))
    counter = Attempts()

    with pytest.raises(IemAuthError):
        await iem.unsubscribe(7, "a@x.com", counter=counter)

    assert counter.n == 1
    assert len(server.requests) == 1


# Lists and fields -------------------------------------------------------------------------

LIST_ITEMS = (
    b"<item><listid>3</listid><name>Caf&#xE9;</name><subscribecount>12</subscribecount></item>"
    b"<item><listid>7</listid><name>Shop</name><subscribecount>0</subscribecount></item>"
)


async def test_get_lists_asks_for_all(server: CannedServer, iem: IemClient):
    server.queue(success(LIST_ITEMS))

    lists = await iem.get_lists()

    assert lists == [IemList(3, "Café", 12), IemList(7, "Shop", 0)]
    assert b"<requesttype>lists</requesttype>" in server.requests[0].body
    assert b"<perpage>all</perpage>" in server.requests[0].body


async def test_get_lists_falls_back_to_user(server: CannedServer, iem: IemClient):
    server.queue(failed(b"Invalid request type"), success(LIST_ITEMS))

    lists = await iem.get_lists()

    assert [item.listid for item in lists] == [3, 7]
    assert b"<requesttype>user</requesttype>" in server.requests[1].body
    assert b"<requestmethod>GetLists</requestmethod>" in server.requests[1].body


async def test_get_lists_none(server: CannedServer, iem: IemClient):
    server.queue(failed(b""))

    assert await iem.get_lists() == []


async def test_get_custom_fields(server: CannedServer, iem: IemClient):
    server.queue(
        success(
            b"<item><fieldid>2</fieldid><name>First name</name><fieldtype>text</fieldtype>"
            b"<required>0</required></item>"
        )
    )

    fields = await iem.get_custom_fields(7)

    assert fields == [IemField(2, "First name", "text", False)]
    assert b"<listids>7</listids>" in server.requests[0].body


# Reading subscribers ---------------------------------------------------------------------


async def test_iter_subscribers_streams_rows(server: CannedServer, iem: IemClient):
    items = [subscriber_item(index + 1, f"user{index}@x.com") for index in range(20_000)]
    server.queue(Reply(subscribers(*items), chunk_size=8192))

    rows = [row async for row in iem.iter_subscribers(7)]

    body = server.requests[0].body
    assert len(rows) == 20_000
    assert rows[-1].subscriber_id == 20_000
    assert b"<searchinfo><List>7</List></searchinfo>" in body
    assert b"<listid>7</listid>" in body
    assert b"<Status>" not in body


async def test_iter_subscribers_not_retried(server: CannedServer, iem: IemClient):
    body = subscribers(*[subscriber_item(index + 1, f"u{index}@x.com") for index in range(50)])
    server.queue(Reply(body, cut_at=len(body) // 2), subscribers())

    with pytest.raises(IemBadResponse) as raised:
        async with contextlib.aclosing(iem.iter_subscribers(7)) as rows:
            async for _row in rows:
                pass

    assert raised.value.attempts == 1
    assert raised.value.method == "GetSubscribers"
    assert len(server.requests) == 1


async def test_iter_subscribers_xml_truncated(server: CannedServer, iem: IemClient):
    body = subscribers(*[subscriber_item(index + 1, f"u{index}@x.com") for index in range(50)])
    server.queue(body[: len(body) - 40])

    with pytest.raises(IemBadResponse) as raised:
        [row async for row in iem.iter_subscribers(7)]

    assert "truncated" in raised.value.message


async def test_iter_subscribers_auth_error(server: CannedServer, iem: IemClient):
    server.queue(failed(b"Unable to check user details."))

    with pytest.raises(IemAuthError):
        [row async for row in iem.iter_subscribers(7)]


async def test_iter_subscribers_empty_list(server: CannedServer, iem: IemClient):
    server.queue(success(b"<count>0</count><subscriberlist/>"))

    assert [row async for row in iem.iter_subscribers(7)] == []


async def test_iter_subscribers_early_stop_frees_slot(server: CannedServer):
    items = [subscriber_item(index + 1, f"u{index}@x.com") for index in range(2000)]
    server.queue(subscribers(*items), success(b"<userid>1</userid><username>a</username>"))

    async with IemClient(server.url, "admin", TOKEN, concurrency=1, timeout=5.0) as client:
        async with contextlib.aclosing(client.iter_subscribers(7)) as rows:
            async for _row in rows:
                break
        user = await asyncio.wait_for(client.test_token(), timeout=5)

    assert user["userid"] == "1"


async def test_find_subscriber_exact_match(server: CannedServer, iem: IemClient):
    server.queue(
        subscribers(
            subscriber_item(1, "bigjohn@x.com"),
            subscriber_item(2, "John@X.com", unsubscribed=1700000500),
            subscriber_item(3, "john@x.com.au"),
        )
    )

    row = await iem.find_subscriber(7, "john@x.com")

    assert row == IemRow(2, "John@X.com", 7, True, 1700000000, 1700000500, 0)
    assert b"<Email>john@x.com</Email>" in server.requests[0].body
    assert b"<List>7</List>" in server.requests[0].body


async def test_find_subscriber_not_found(server: CannedServer, iem: IemClient):
    server.queue(subscribers(subscriber_item(1, "bigjohn@x.com")))

    assert await iem.find_subscriber(7, "john@x.com") is None


# Writes ------------------------------------------------------------------------------------


async def test_add_subscriber_request(server: CannedServer, iem: IemClient):
    server.queue(success(b"764964"))

    result = await iem.add_subscriber(
        7,
        "a+b&c@x.com",
        add_to_autoresponders=False,
        custom_fields={2: "Zoë", 3: ""},
    )

    body = server.requests[0].body
    assert result == AddResult(subscriber_id=764964, already_exists=False)
    assert b"<requestmethod>AddSubscriberToList</requestmethod>" in body
    assert b"<emailaddress>a+b&amp;c@x.com</emailaddress>" in body
    assert b"<mailinglist>7</mailinglist>" in body
    assert b"<format>html</format>" in body
    assert b"<confirmed>1</confirmed>" in body
    assert b"<add_to_autoresponders>0</add_to_autoresponders>" in body
    assert "<item><fieldid>2</fieldid><value>Zoë</value></item>".encode() in body
    assert b"<fieldid>3</fieldid>" not in body


@pytest.mark.parametrize(
    ("response_body", "expected"),
    [
        pytest.param(
            failed(b"a@x.com already exists in the given list"), AddResult(None, True), id="message"
        ),
        pytest.param(failed(b"764963"), AddResult(764963, True), id="numeric-id"),
    ],
)
async def test_add_subscriber_duplicate(
    server: CannedServer, iem: IemClient, response_body: bytes, expected: AddResult
):
    server.queue(response_body)

    assert await iem.add_subscriber(7, "a@x.com", add_to_autoresponders=True) == expected


async def test_add_retry_after_lost_response(server: CannedServer, iem: IemClient):
    # The first add reached IEM but its response was cut off, so the retry finds the row.
    first = success(b"764964")
    server.queue(
        Reply(first, cut_at=len(first) - 10), failed(b"a@x.com already exists in the given list")
    )
    counter = Attempts()

    result = await iem.add_subscriber(7, "a@x.com", add_to_autoresponders=True, counter=counter)

    assert result == AddResult(subscriber_id=None, already_exists=True)
    assert counter.n == 2


async def test_add_rejection_not_retried(server: CannedServer, iem: IemClient):
    server.queue(failed(b"Unable to load field id &#039;99&#039;"))
    counter = Attempts()

    with pytest.raises(IemRejected) as raised:
        await iem.add_subscriber(
            7, "a@x.com", add_to_autoresponders=True, custom_fields={99: "x"}, counter=counter
        )

    assert raised.value.message == "Unable to load field id '99'"
    assert raised.value.attempts == 1
    assert counter.n == 1


async def test_add_unrepresentable_email_sends_nothing(server: CannedServer, iem: IemClient):
    with pytest.raises(IemRejected) as raised:
        await iem.add_subscriber(7, "a\x00@x.com", add_to_autoresponders=True)

    assert raised.value.attempts == 0
    assert server.requests == []


async def test_activate_request(server: CannedServer, iem: IemClient):
    server.queue(success(b""))

    await iem.activate(7, "a@x.com")

    body = server.requests[0].body
    assert b"<requestmethod>ActivateSubscriber</requestmethod>" in body
    assert b"<details><emailaddress>a@x.com</emailaddress><listid>7</listid></details>" in body


async def test_unsubscribe_request(server: CannedServer, iem: IemClient):
    server.queue(success(b""))

    await iem.unsubscribe(7, "a@x.com")

    body = server.requests[0].body
    assert b"<requestmethod>UnsubscribeSubscriber</requestmethod>" in body
    assert b"<details><emailaddress>a@x.com</emailaddress><listid>7</listid></details>" in body


async def test_unsubscribe_not_subscribed(server: CannedServer, iem: IemClient):
    server.queue(failed(b"The email address &#039;a@x.com&#039; is not subscribed to this list"))

    with pytest.raises(IemRejected) as raised:
        await iem.unsubscribe(7, "a@x.com")

    assert raised.value.method == "UnsubscribeSubscriber"


async def test_confirm_request(server: CannedServer, iem: IemClient):
    server.queue(success(b""))

    await iem.confirm(7, 764963)

    body = server.requests[0].body
    assert b"<requestmethod>ChangeSubscriberConfirm</requestmethod>" in body
    assert (
        b"<details><status>confirm</status><listid>7</listid>"
        b"<subscriberid>764963</subscriberid></details>"
    ) in body


async def test_save_custom_field_request(server: CannedServer, iem: IemClient):
    server.queue(success(b"1"))

    await iem.save_custom_field(764963, 2, "Jane")

    body = server.requests[0].body
    assert b"<requestmethod>SaveSubscriberCustomField</requestmethod>" in body
    assert (
        b"<details><subscriberids>764963</subscriberids><fieldid>2</fieldid>"
        b"<data>Jane</data></details>"
    ) in body


async def test_save_custom_field_false_is_rejected(server: CannedServer, iem: IemClient):
    server.queue(failed(b""))

    with pytest.raises(IemRejected):
        await iem.save_custom_field(764963, 2, "Jane")


async def test_request_error_not_retried(server: CannedServer, iem: IemClient):
    server.queue(failed(b"Invalid request type"))

    with pytest.raises(IemRequestError):
        await iem.confirm(7, 1)

    assert len(server.requests) == 1


# Transient failures and retries ---------------------------------------------------------

_BODY_OK = success(b"")

TRANSIENT_REPLIES = {
    "html": (Reply(HTML_PAGE), IemBadResponse),
    "empty": (Reply(b""), IemBadResponse),
    "xml-truncated": (Reply(_BODY_OK[:30]), IemBadResponse),
    "http-truncated": (Reply(_BODY_OK, cut_at=20), IemBadResponse),
    "http500": (Reply(b"", status=500), IemHttpError),
    "http502": (Reply(b"<html>Bad gateway</html>", status=502), IemHttpError),
    "redirect": (Reply(b"", status=302, headers={"Location": "index.php?Page=upgradenx"}),
                 IemHttpError),
    "reset": (Reply(reset=True), IemConnectionError),
}


@pytest.mark.parametrize("fault", TRANSIENT_REPLIES)
async def test_transient_fault_retried(server: CannedServer, iem: IemClient, fault: str):
    reply, _ = TRANSIENT_REPLIES[fault]
    server.queue(reply, _BODY_OK)
    counter = Attempts()

    await iem.activate(7, "a@x.com", counter=counter)

    assert counter.n == 2
    assert len(server.requests) == 2
    assert server.requests[1].body == server.requests[0].body


@pytest.mark.parametrize("fault", TRANSIENT_REPLIES)
async def test_transient_fault_gives_up(server: CannedServer, iem: IemClient, fault: str):
    reply, expected = TRANSIENT_REPLIES[fault]
    server.queue(*[reply] * 4)
    counter = Attempts()

    with pytest.raises(expected) as raised:
        await iem.activate(7, "a@x.com", counter=counter)

    assert raised.value.attempts == 4
    assert raised.value.method == "ActivateSubscriber"
    assert counter.n == 4
    assert len(server.requests) == 4


async def test_redirect_not_followed(server: CannedServer, iem: IemClient):
    server.queue(*[Reply(status=302, headers={"Location": "index.php?Page=upgradenx"})] * 4)

    with pytest.raises(IemHttpError) as raised:
        await iem.get_lists()

    assert raised.value.status_code == 302
    assert "upgradenx" in raised.value.message
    assert {request.method for request in server.requests} == {"POST"}
    assert {request.path for request in server.requests} == {"/iem/xml.php"}


async def test_html_error_message(server: CannedServer, iem: IemClient):
    server.queue(*[Reply(HTML_PAGE)] * 4)

    with pytest.raises(IemBadResponse) as raised:
        await iem.get_lists()

    assert "The application cannot proceed!" in raised.value.message


async def test_notice_prefix_accepted(server: CannedServer, iem: IemClient):
    notice = b"<br />\n<b>Notice</b>:  Undefined index: List on line <b>2260</b><br />\n"
    server.queue(notice + success(b"<userid>5</userid><username>a</username>"))

    assert (await iem.test_token())["userid"] == "5"
    assert len(server.requests) == 1


async def test_read_timeout_retried(server: CannedServer):
    server.queue(Reply(_BODY_OK, delay=1.0), _BODY_OK)
    counter = Attempts()

    async with IemClient(server.url, "admin", TOKEN, timeout=0.3, backoff=0.0) as client:
        await client.activate(7, "a@x.com", counter=counter)

    assert counter.n == 2


async def test_read_timeout_gives_up(server: CannedServer):
    server.queue(Reply(_BODY_OK, delay=1.0))

    async with IemClient(server.url, "admin", TOKEN, timeout=0.3, retries=0) as client:
        with pytest.raises(IemTimeout) as raised:
            await client.activate(7, "a@x.com")

    assert raised.value.attempts == 1
    assert "0.3 s" in raised.value.message


async def test_connection_refused(unused_tcp_port: int):
    url = f"http://127.0.0.1:{unused_tcp_port}/xml.php"

    async with IemClient(url, "admin", TOKEN, retries=1, backoff=0.0) as client:
        with pytest.raises(IemConnectionError) as raised:
            await client.test_token()

    assert raised.value.attempts == 2


@pytest.mark.parametrize(
    ("backoff", "expected_bounds"),
    [(0.5, [0.5, 1.0, 2.0]), (20.0, [20.0, 30.0, 30.0])],
)
async def test_backoff_bounds(
    server: CannedServer, monkeypatch: pytest.MonkeyPatch, backoff: float, expected_bounds: list
):
    bounds: list[float] = []

    def record_uniform(low: float, high: float) -> float:
        bounds.append(high)
        return 0.0

    monkeypatch.setattr(client_module.random, "uniform", record_uniform)
    server.queue(*[Reply(b"")] * 4)

    async with IemClient(server.url, "admin", TOKEN, backoff=backoff) as client:
        with pytest.raises(IemBadResponse):
            await client.test_token()

    assert bounds == expected_bounds


async def test_retry_logged_as_warning(
    server: CannedServer, iem: IemClient, caplog: pytest.LogCaptureFixture
):
    server.queue(Reply(b"", status=500), _BODY_OK)

    with caplog.at_level(logging.WARNING, logger="edm_sync.iem"):
        await iem.unsubscribe(7, "a@x.com")

    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "UnsubscribeSubscriber" in record.getMessage()
    assert "attempt 1 of 4" in record.getMessage()
    assert "IemHttpError" in record.getMessage()


async def test_concurrency_limit(server: CannedServer):
    server.queue(*[Reply(_BODY_OK, delay=0.2)] * 6)

    async with IemClient(server.url, "admin", TOKEN, concurrency=2) as client:
        await asyncio.gather(*[client.activate(7, f"u{index}@x.com") for index in range(6)])

    assert server.max_in_flight == 2


# The token never leaks -----------------------------------------------------------------


async def test_token_never_leaks(
    server: CannedServer, caplog: pytest.LogCaptureFixture
):
    # A misconfigured proxy echoes the request body; the token must still not surface.
    echo = b"<html><head><title>Rejected " + TOKEN.encode() + b"</title></head></html>"
    server.queue(*[Reply(echo, status=200)] * 2, failed(b"Bad token " + TOKEN.encode()))
    client = IemClient(server.url, "admin", TOKEN, retries=1, backoff=0.0)

    with caplog.at_level(logging.DEBUG, logger="edm_sync.iem"):
        with pytest.raises(IemBadResponse) as bad_response:
            await client.test_token()
        with pytest.raises(IemRejected) as rejected:
            await client.activate(7, "a@x.com")
    await client.aclose()

    for error in (bad_response.value, rejected.value):
        assert TOKEN not in str(error)
        assert TOKEN not in repr(error)
        assert TOKEN not in error.message
        assert all(TOKEN not in str(argument) for argument in error.args)
    assert TOKEN not in repr(client)
    assert TOKEN not in caplog.text
    assert caplog.records, "the retry should have been logged"


def test_constructor_rejects_missing_token():
    with pytest.raises(ValueError) as raised:
        IemClient("http://127.0.0.1:1/xml.php", "admin", " ")

    assert "token" in str(raised.value)


def test_constructor_rejects_control_character_in_token():
    with pytest.raises(ValueError) as raised:
        IemClient("http://127.0.0.1:1/xml.php", "admin", TOKEN + "\x01")

    assert "<usertoken>" in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_constructor_rejects_non_http_url():
    with pytest.raises(ValueError):
        IemClient("ftp://127.0.0.1/xml.php", "admin", TOKEN)


def test_repr_hides_url_password():
    client = IemClient("https://user:pw@iem.example.com/xml.php", "admin", TOKEN)

    assert "pw" not in repr(client)
    assert "iem.example.com" in repr(client)


# Against the IEM simulator ---------------------------------------------------------------
#
# The simulator imitates IEM's xml.php, both output dialects and its fault modes. The
# simulator package is imported inside the fixtures so that the canned-server tests above
# still run when it cannot be imported.


@pytest.fixture(params=["legacy", "modern"])
def simulator(request: pytest.FixtureRequest) -> Iterator[Any]:
    from edm_tui.interspire.simulator import start_simulator

    handle = start_simulator(auth_delay=0, dialect=request.param)
    yield handle
    handle.stop()


def simulator_client(handle: Any, **options: Any) -> IemClient:
    from edm_tui.interspire.simulator import DEFAULT_TOKEN, DEFAULT_USERNAME

    settings = {"timeout": 10.0, "backoff": 0.0, **options}
    token = settings.pop("token", DEFAULT_TOKEN)
    return IemClient(handle.url, DEFAULT_USERNAME, token, **settings)


def simulator_state(handle: Any) -> dict[str, Any]:
    response = httpx.get(handle.base + "/_sim/state", timeout=10)
    response.raise_for_status()
    return response.json()


def set_faults(handle: Any, *faults: dict[str, Any]) -> None:
    response = httpx.post(handle.base + "/_sim/config", json={"faults": list(faults)}, timeout=10)
    response.raise_for_status()


async def test_simulator_subscriber_lifecycle(simulator: Any):
    async with simulator_client(simulator) as client:
        await client.add_subscriber(1, "xjane.doe@example.com", add_to_autoresponders=True)
        added = await client.add_subscriber(
            1,
            "Jane.Doe@Example.com",
            confirmed=False,
            add_to_autoresponders=False,
            custom_fields={2: "Jane", 3: ""},
        )
        found = await client.find_subscriber(1, "jane.doe@example.com")
        await client.unsubscribe(1, "jane.doe@example.com")
        unsubscribed = await client.find_subscriber(1, "jane.doe@example.com")
        await client.activate(1, "jane.doe@example.com")
        await client.confirm(1, added.subscriber_id)
        await client.save_custom_field(added.subscriber_id, 3, "Doe")
        final = await client.find_subscriber(1, "JANE.DOE@example.com")
        missing = await client.find_subscriber(1, "doe@example.com")

    [stored] = [
        row for row in simulator_state(simulator)["subscribers"]
        if row["subscriberid"] == added.subscriber_id
    ]
    assert added.already_exists is False
    assert found is not None
    assert found.subscriber_id == added.subscriber_id
    assert found.email == "Jane.Doe@Example.com"
    assert found.confirmed is False
    assert unsubscribed is not None
    assert unsubscribed.unsubscribed > 0
    assert final is not None
    assert final.subscriber_id == added.subscriber_id
    assert final.unsubscribed == 0
    assert final.confirmed is True
    assert missing is None
    assert stored["customfields"] == {"2": "Jane", "3": "Doe"}
    assert stored["format"] == "h"
    assert stored["autoresponders"] is False


async def test_simulator_lists_and_fields(simulator: Any):
    async with simulator_client(simulator) as client:
        user = await client.test_token()
        lists = await client.get_lists()
        fields = await client.get_custom_fields(1)

    assert user["username"] == "admin"
    assert [(item.listid, item.name) for item in lists] == [(1, "Newsletter")]
    assert [(field.fieldid, field.name) for field in fields] == [
        (2, "First name"),
        (3, "Last name"),
    ]


@pytest.mark.parametrize("style", ["message", "id"])
async def test_simulator_duplicate_add(simulator: Any, style: str):
    simulator.configure(duplicate_style=style)

    async with simulator_client(simulator) as client:
        first = await client.add_subscriber(1, "a@x.com", add_to_autoresponders=True)
        second = await client.add_subscriber(1, "A@X.com", add_to_autoresponders=True)

    expected_id = first.subscriber_id if style == "id" else None
    assert first.already_exists is False
    assert second == AddResult(subscriber_id=expected_id, already_exists=True)


SIMULATOR_FAULTS = {
    "html": IemBadResponse,
    "empty": IemBadResponse,
    "truncated": IemBadResponse,
    "http500": IemHttpError,
    "redirect": IemHttpError,
    "reset": IemConnectionError,
}


@pytest.mark.parametrize("kind", SIMULATOR_FAULTS)
async def test_simulator_fault_retried(simulator: Any, kind: str):
    async with simulator_client(simulator) as client:
        await client.add_subscriber(1, "a@x.com", add_to_autoresponders=True)
        await client.unsubscribe(1, "a@x.com")
        set_faults(simulator, {"kind": kind, "count": 2, "methods": ["ActivateSubscriber"]})
        counter = Attempts()

        await client.activate(1, "a@x.com", counter=counter)
        row = await client.find_subscriber(1, "a@x.com")

    stats = simulator_state(simulator)["stats"]
    assert counter.n == 3
    assert stats["by_method"]["ActivateSubscriber"] == 3
    assert stats["faults_injected"] == 2
    assert row is not None
    assert row.unsubscribed == 0


@pytest.mark.parametrize("kind", SIMULATOR_FAULTS)
async def test_simulator_fault_gives_up(simulator: Any, kind: str):
    set_faults(simulator, {"kind": kind, "count": 5, "methods": ["GetLists"]})

    async with simulator_client(simulator) as client:
        with pytest.raises(SIMULATOR_FAULTS[kind]) as raised:
            await client.get_lists()

    assert raised.value.attempts == 4
    assert raised.value.method == "GetLists"
    assert simulator_state(simulator)["stats"]["by_method"]["GetLists"] == 4


@pytest.mark.parametrize("kind", ["notice", "bom", "newline"])
async def test_simulator_prefix_not_retried(simulator: Any, kind: str):
    set_faults(simulator, {"kind": kind, "count": 1})
    counter = Attempts()

    async with simulator_client(simulator) as client:
        result = await client.add_subscriber(
            1, "a@x.com", add_to_autoresponders=True, counter=counter
        )

    assert result.already_exists is False
    assert counter.n == 1


async def test_simulator_add_after_truncated_response(simulator: Any):
    set_faults(simulator, {"kind": "truncated", "count": 1, "methods": ["AddSubscriberToList"]})
    counter = Attempts()

    async with simulator_client(simulator) as client:
        result = await client.add_subscriber(
            1, "a@x.com", add_to_autoresponders=True, counter=counter
        )
        row = await client.find_subscriber(1, "a@x.com")

    rows = simulator_state(simulator)["subscribers"]
    assert result.already_exists is True
    assert counter.n == 2
    assert row is not None
    assert len(rows) == 1


async def test_simulator_slow_response_times_out(simulator: Any):
    set_faults(
        simulator,
        {"kind": "slow", "count": 1, "slow_seconds": 1.0, "methods": ["ChangeSubscriberConfirm"]},
    )
    counter = Attempts()

    async with simulator_client(simulator, timeout=0.3) as client:
        added = await client.add_subscriber(
            1, "a@x.com", confirmed=False, add_to_autoresponders=True
        )
        await client.confirm(1, added.subscriber_id, counter=counter)
        row = await client.find_subscriber(1, "a@x.com")

    assert counter.n == 2
    assert row is not None
    assert row.confirmed is True


async def test_simulator_auth_error_not_retried(simulator: Any):
    async with simulator_client(simulator, token="0" * 40) as client:
        with pytest.raises(IemAuthError) as raised:
            await client.test_token()
        with pytest.raises(IemAuthError):
            [row async for row in client.iter_subscribers(1)]

    stats = simulator_state(simulator)["stats"]
    assert raised.value.attempts == 1
    assert stats["requests"] == 2


async def test_simulator_truncated_stream_not_retried(simulator: Any):
    async with simulator_client(simulator) as client:
        for index in range(200):
            await client.add_subscriber(1, f"user{index}@x.com", add_to_autoresponders=True)
        set_faults(simulator, {"kind": "truncated", "count": 1, "methods": ["GetSubscribers"]})

        with pytest.raises(IemBadResponse) as raised:
            [row async for row in client.iter_subscribers(1)]

    assert raised.value.attempts == 1
    assert simulator_state(simulator)["stats"]["by_method"]["GetSubscribers"] == 1


@pytest.mark.parametrize("dialect", ["legacy", "modern"])
async def test_simulator_streams_20000_rows(dialect: str):
    from edm_tui.interspire.simulator import SimulatorState, Subscriber, start_simulator

    rows = 20_000
    state = SimulatorState.seeded().to_json()
    state["subscribers"] = [
        Subscriber(
            index,
            1,
            f"user{index}@example.com",
            format="h",
            confirmed=index % 2 == 0,
            subscribedate=1700000000 + index,
            unsubscribed=1700100000 if index % 10 == 0 else 0,
        ).to_json()
        for index in range(1, rows + 1)
    ]
    handle = start_simulator(auth_delay=0, dialect=dialect, state_data=state)

    try:
        async with simulator_client(handle) as client:
            received = [row async for row in client.iter_subscribers(1)]
    finally:
        handle.stop()

    assert len(received) == rows
    assert {row.subscriber_id for row in received} == set(range(1, rows + 1))
    assert sum(1 for row in received if row.unsubscribed) == rows // 10
    assert sum(1 for row in received if row.confirmed) == rows // 2
    assert all(row.list_id == 1 for row in received)
