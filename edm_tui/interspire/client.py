"""Async client for the IEM (Interspire Email Marketer) XML API over httpx.

Every call is one POST of a raw XML body to IEM's `xml.php`. Redirects are never followed,
because IEM redirects to its upgrade or install page, and following would turn the POST into
a GET of an HTML page. Transient failures are retried with exponential backoff and full
jitter. Authentication errors are never retried, because IEM sleeps 5 s per failed login and
bans the caller's IP after 5 failures within 300 s.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

import httpx

from edm_tui.interspire.errors import (
    IemBadResponse,
    IemCertificateError,
    IemConnectionError,
    IemError,
    IemHttpError,
    IemRejected,
    IemRequestError,
    IemTimeout,
    IemTransientError,
    is_certificate_failure,
)
from edm_tui.interspire.limiter import AdaptiveLimiter, LimiterStats
from edm_tui.interspire.stream import SubscriberStreamParser
from edm_tui.interspire.xmlapi import (
    ACTIVATE_SUBSCRIBER,
    ADD_SUBSCRIBER,
    CHANGE_SUBSCRIBER_CONFIRM,
    GET_CUSTOM_FIELDS,
    GET_LISTS,
    GET_SUBSCRIBERS,
    SAVE_SUBSCRIBER_CUSTOM_FIELD,
    TOKEN_CHECK,
    UNSUBSCRIBE_SUBSCRIBER,
    AddResult,
    DetailValue,
    IemField,
    IemList,
    Response,
    add_result_from_response,
    add_subscriber_details,
    build_request,
    check_custom_field_saved,
    check_success,
    custom_fields_from_response,
    lists_from_response,
    parse_response,
    subscriber_search_details,
    subscribers_from_response,
    token_user_from_response,
)
from edm_tui.sync.model import Attempts, IemRow

__all__ = ["AddResult", "IemClient", "IemField", "IemList"]

logger = logging.getLogger("edm_sync.iem")

_CONNECT_TIMEOUT = 10.0  # seconds
# AsyncClient would add Accept-Encoding and a User-Agent; a large list read gains from gzip.
_REQUEST_HEADERS = {
    "Content-Type": "text/xml; charset=utf-8",
    "Accept": "text/xml",
    "Accept-Encoding": "gzip, deflate",
    "User-Agent": f"edm-sync httpx/{httpx.__version__}",
}
_MAX_BACKOFF = 30.0  # seconds
_REDACTED = "[token]"

T = TypeVar("T")


class IemClient:
    """Client for one IEM installation, shared by all concurrent calls of a run.

    An adaptive limit (`edm_tui.interspire.limiter`) decides how many requests are in
    flight: between 1 and `concurrency`, lower while IEM times out, returns 5xx or HTML
    error pages, or slows down, and back up while calls succeed at a steady latency.
    `timeout` is the read timeout in seconds, and connecting has its own 10 s limit. Each
    call except `iter_subscribers` makes up to `retries` more HTTP attempts after a
    transient failure, waiting a random time up to `backoff * 2**n` seconds (at most 30 s)
    before retry n + 1.
    """

    def __init__(
        self,
        url: str,
        username: str,
        token: str,
        *,
        timeout: float = 60.0,
        concurrency: int = 8,
        retries: int = 3,
        backoff: float = 0.5,
        verify: bool = True,
    ) -> None:
        _validate_settings(url, username, token, timeout, concurrency, retries, backoff)
        self._url = url
        self._username = username
        self._token = token
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._limiter = AdaptiveLimiter(concurrency, is_overload=is_overload)
        # The requests go straight to httpx's transport, which keeps the connection pool. IEM uses
        # no cookies, auth or redirects, and skipping AsyncClient's layers for them saved about
        # 0.1 ms of CPU time per call (httpx 0.29, measured as in docs/performance.md).
        self._transport = httpx.AsyncHTTPTransport(
            verify=verify,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._request_url = httpx.URL(url)
        self._request_extensions = {"timeout": httpx.Timeout(timeout, connect=_CONNECT_TIMEOUT).as_dict()}

    def __repr__(self) -> str:
        return f"IemClient(url={_display_url(self._url)!r}, username={self._username!r})"

    async def __aenter__(self) -> IemClient:
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections and log how the concurrency limit ended."""
        self._limiter.log_summary()
        await self._transport.aclose()

    @property
    def concurrency_limit(self) -> int:
        """The number of requests the client lets into flight now (1 to `concurrency`)."""
        return self._limiter.limit

    def limiter_stats(self) -> LimiterStats:
        """Return the limit, the requests in flight and the HTTP attempts finished so far."""
        return self._limiter.stats()

    # Reads

    async def test_token(self) -> dict[str, str]:
        """Check the XML username and token and return {"userid", "username"}.

        Raises IemAuthError when IEM rejects them.
        """
        return await self._request("authentication", TOKEN_CHECK, {}, token_user_from_response)

    async def get_lists(self) -> list[IemList]:
        """Return every list visible to the XML user, or [] when there is none.

        Uses lists/GetLists with perpage=all, because its default page size is 10. Builds
        without that method return "Invalid request type", and then user/GetLists is used.
        """
        try:
            return await self._request(
                "lists", GET_LISTS, {"perpage": "all"}, lists_from_response
            )
        except IemRequestError as error:
            if "invalid request type" not in error.message.lower():
                raise
            logger.info("IEM has no lists/GetLists; falling back to user/GetLists")
        return await self._request("user", GET_LISTS, {}, lists_from_response)

    async def get_custom_fields(self, list_id: int) -> list[IemField]:
        """Return the custom fields of one list, or [] when it has none."""
        return await self._request(
            "lists", GET_CUSTOM_FIELDS, {"listids": list_id}, custom_fields_from_response
        )

    async def iter_subscribers(self, list_id: int) -> AsyncIterator[IemRow]:
        """Stream every row of one list, of any status, from a single GetSubscribers call.

        Nothing is retried here, because rows already yielded cannot be taken back: on
        IemTransientError the caller restarts the whole read. The call occupies one
        concurrency slot until the iteration ends, so close the iterator when stopping
        early, for example with `contextlib.aclosing`. Its duration gives the adaptive limit
        no latency sample, because it grows with the list.
        """
        body = self._build_body("subscribers", GET_SUBSCRIBERS, subscriber_search_details(list_id))
        parser = SubscriberStreamParser(list_id=list_id)
        started = time.monotonic()
        row_count = 0

        try:
            async with self._limiter.slot(measure=False):
                async with self._open_stream(body) as chunks:
                    async for chunk in chunks:
                        for row in parser.feed(chunk):
                            row_count += 1
                            yield row
                for row in parser.close():
                    row_count += 1
                    yield row
        except IemError as error:
            raise self._finish(error, GET_SUBSCRIBERS, attempts=1)

        logger.info(
            "IEM GetSubscribers returned %d rows for list %d in %.1f s",
            row_count,
            list_id,
            time.monotonic() - started,
        )

    async def find_subscriber(self, list_id: int, email: str) -> IemRow | None:
        """Return the row of `email` on one list, of any status, or None.

        IEM searches `Email` as a substring, so the rows are filtered here for an exact,
        case-insensitive match. When IEM contains several rows that differ only in case (old
        PostgreSQL installs), the first one is returned.
        """
        wanted = email.strip().lower()
        rows = await self._request(
            "subscribers",
            GET_SUBSCRIBERS,
            subscriber_search_details(list_id, email.strip()),
            lambda response: subscribers_from_response(response, list_id=list_id),
        )
        for row in rows:
            if row.list_id == list_id and row.email.strip().lower() == wanted:
                return row
        return None

    # Writes

    async def add_subscriber(
        self,
        list_id: int,
        email: str,
        *,
        confirmed: bool = True,
        add_to_autoresponders: bool,
        custom_fields: dict[int, str] | None = None,
        counter: Attempts | None = None,
    ) -> AddResult:
        """Add `email` to a list in HTML format; custom fields with blank values are left out.

        When the list already has a row for the address, whatever its status, the result
        has `already_exists=True` instead of an error. A retry after a lost response
        can return that too, so the caller must look the row up either way.
        Raises IemRejected for an invalid field value or an unknown list or field id.
        """
        details = add_subscriber_details(
            list_id,
            email,
            confirmed=confirmed,
            add_to_autoresponders=add_to_autoresponders,
            custom_fields=custom_fields,
        )
        return await self._request(
            "subscribers", ADD_SUBSCRIBER, details, add_result_from_response, counter
        )

    async def activate(self, list_id: int, email: str, *, counter: Attempts | None = None) -> None:
        """Clear the unsubscribe and bounce state of `email` on one list.

        The subscriber id, the confirmed flag and the custom fields stay as they are.
        """
        details = {"emailaddress": email, "listid": list_id}
        await self._request(
            "subscribers",
            ACTIVATE_SUBSCRIBER,
            details,
            _success_checker(ACTIVATE_SUBSCRIBER),
            counter,
        )

    async def unsubscribe(
        self, list_id: int, email: str, *, counter: Attempts | None = None
    ) -> None:
        """Unsubscribe `email` from one list at once, without a confirmation email.

        IEM shifts the list's counters on every call, even for a row that is already
        unsubscribed, so call this only for rows that are not unsubscribed.
        """
        details = {"emailaddress": email, "listid": list_id}
        await self._request(
            "subscribers",
            UNSUBSCRIBE_SUBSCRIBER,
            details,
            _success_checker(UNSUBSCRIBE_SUBSCRIBER),
            counter,
        )

    async def confirm(
        self, list_id: int, subscriber_id: int, *, counter: Attempts | None = None
    ) -> None:
        """Mark a subscriber as confirmed.

        IEM reports success even when no row has this subscriber id.
        """
        details = {"status": "confirm", "listid": list_id, "subscriberid": subscriber_id}
        await self._request(
            "subscribers",
            CHANGE_SUBSCRIBER_CONFIRM,
            details,
            _success_checker(CHANGE_SUBSCRIBER_CONFIRM),
            counter,
        )

    async def save_custom_field(
        self,
        subscriber_id: int,
        field_id: int,
        value: str,
        *,
        counter: Attempts | None = None,
    ) -> None:
        """Replace one custom field value of a subscriber. An empty value clears it.

        IEM does not check the value against the field type here. Raises IemRejected when
        IEM reports that the value was not saved.
        """
        details = {"subscriberids": subscriber_id, "fieldid": field_id, "data": value}

        def check_saved(response: Response) -> None:
            check_custom_field_saved(response, subscriber_id=subscriber_id, field_id=field_id)

        await self._request(
            "subscribers", SAVE_SUBSCRIBER_CUSTOM_FIELD, details, check_saved, counter
        )

    # HTTP and retries

    async def _request(
        self,
        requesttype: str,
        method: str,
        details: Mapping[str, DetailValue],
        read_result: Callable[[Response], T],
        counter: Attempts | None = None,
    ) -> T:
        """Send one call, retrying transient failures, and return `read_result(response)`."""
        body = self._build_body(requesttype, method, details)
        attempts = 0
        while True:
            attempts += 1
            if counter is not None:
                counter.n += 1
            try:
                # Parsing stays inside the slot, so that an HTML error page counts as overload.
                async with self._limiter.slot():
                    response = parse_response(await self._post(body))
                return read_result(response)
            except IemTransientError as error:
                if attempts > self._retries:
                    raise self._finish(error, method, attempts)
                delay = random.uniform(0, min(_MAX_BACKOFF, self._backoff * 2 ** (attempts - 1)))
                logger.warning(
                    "IEM %s attempt %d of %d failed with %s: %s; retrying in %.2f s",
                    method,
                    attempts,
                    self._retries + 1,
                    type(error).__name__,
                    self._redact(error.message),
                    delay,
                )
                await asyncio.sleep(delay)
            except IemError as error:
                raise self._finish(error, method, attempts)

    def _build_body(
        self, requesttype: str, method: str, details: Mapping[str, DetailValue]
    ) -> bytes:
        try:
            return build_request(self._username, self._token, requesttype, method, details)
        except ValueError as error:
            # A value XML cannot carry (such as a control character in an email address)
            # would fail on every attempt, so it is a permanent refusal of this item.
            raise IemRejected(str(error), method=method) from None

    async def _post(self, body: bytes) -> bytes:
        """Send one request and return the complete body of a 2xx response."""
        async with self._open_stream(body) as chunks:
            parts = [chunk async for chunk in chunks]
        return b"".join(parts)

    def _open_stream(self, body: bytes) -> _ResponseStream:
        request = httpx.Request("POST", self._request_url, headers=_REQUEST_HEADERS, content=body,
                                extensions=self._request_extensions)
        return _ResponseStream(self._transport, request, self._url, self._timeout)

    def _finish(self, error: IemError, method: str, attempts: int) -> IemError:
        """Fill in method and attempts, and remove the token from the message."""
        if error.method is None:
            error.method = method
        error.attempts = attempts
        redacted = self._redact(error.message)
        if redacted != error.message:
            error.message = redacted
            error.args = (redacted,)
        return error

    def _redact(self, text: str) -> str:
        if len(self._token) < 6:
            return text  # too short to tell apart from ordinary text; IEM tokens are 40 characters
        return text.replace(self._token, _REDACTED)


class _ResponseStream:
    """Context manager that POSTs a body and yields the response body in chunks.

    Errors before the response headers become IemTimeout or IemConnectionError. A non-2xx
    status becomes IemHttpError. Errors while the body arrives become IemTimeout, or
    IemBadResponse because the body is then truncated.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport, request: httpx.Request, url: str,
                 timeout: float) -> None:
        self._transport = transport
        self._request = request
        self._url = url
        self._timeout = timeout
        self._response: httpx.Response | None = None
        self._chunk_iterator: AsyncGenerator[bytes, None] | None = None

    async def __aenter__(self) -> AsyncIterator[bytes]:
        try:
            self._response = await self._transport.handle_async_request(self._request)
            self._response.request = self._request
        except httpx.TimeoutException as error:
            raise IemTimeout(_describe_timeout(error, self._timeout)) from error
        except httpx.TransportError as error:
            if is_certificate_failure(error):
                raise IemCertificateError(
                    f"the TLS certificate of {_display_url(self._url)} could not be verified: {error}"
                ) from error
            raise IemConnectionError(
                f"request to IEM failed: {type(error).__name__}: {error}"
            ) from error

        try:
            _check_status(self._response)
        except IemHttpError:
            await self._response.aclose()
            raise
        self._chunk_iterator = self._chunks(self._response)
        return self._chunk_iterator

    async def __aexit__(self, *_exc_info: object) -> None:
        if self._chunk_iterator is not None:
            await self._chunk_iterator.aclose()
        if self._response is not None:
            await self._response.aclose()

    async def _chunks(self, response: httpx.Response) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.TimeoutException as error:
            raise IemTimeout(_describe_timeout(error, self._timeout)) from error
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.DecodingError) as error:
            raise IemBadResponse(
                f"response body is truncated: {type(error).__name__}: {error}"
            ) from error
        except httpx.TransportError as error:
            raise IemConnectionError(
                f"reading the IEM response failed: {type(error).__name__}: {error}"
            ) from error


def is_overload(error: BaseException) -> bool:
    """Return whether an error means that IEM, or the way to it, is overloaded.

    Timeouts, connection errors, unusable bodies (HTML error pages, empty or truncated
    responses) and HTTP 429 and 5xx count. Redirects and other 4xx statuses do not, because
    sending fewer requests does not fix them.
    """
    if isinstance(error, IemHttpError):
        return error.status_code == 429 or error.status_code >= 500
    return isinstance(error, IemTransientError)


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        raise IemHttpError(
            f"IEM returned HTTP {status} with a redirect to {location!r}, which is not "
            "followed; an IEM upgrade or installation may be pending",
            status_code=status,
        )
    raise IemHttpError(
        f"IEM returned HTTP {status} {response.reason_phrase}".rstrip(), status_code=status
    )


def _describe_timeout(error: httpx.TimeoutException, timeout: float) -> str:
    if isinstance(error, httpx.ConnectTimeout):
        return f"connecting to IEM timed out after {_CONNECT_TIMEOUT:g} s"
    if isinstance(error, httpx.PoolTimeout):
        return f"no free connection to IEM within {timeout:g} s"
    if isinstance(error, httpx.WriteTimeout):
        return f"sending the request to IEM timed out after {timeout:g} s"
    return f"IEM sent no data for {timeout:g} s (read timeout)"


def _success_checker(method: str) -> Callable[[Response], None]:
    def check(response: Response) -> None:
        check_success(response, method)

    return check


def _display_url(url: str) -> str:
    """Return the URL without any user name or password."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=host).geturl()


def _validate_settings(
    url: str,
    username: str,
    token: str,
    timeout: float,
    concurrency: int,
    retries: int,
    backoff: float,
) -> None:
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"IEM URL must start with http:// or https://, got {_display_url(url)!r}")
    # IEM treats an empty value and "0" as missing and returns a format error.
    if username.strip() in ("", "0"):
        raise ValueError("IEM XML username is missing")
    if token.strip() in ("", "0"):
        raise ValueError("IEM XML token is missing")
    try:
        build_request(username, token, "authentication", TOKEN_CHECK, {})
    except ValueError as error:
        # The message names the element, never its value.
        raise ValueError(f"invalid IEM XML credentials: {error}") from None
    if timeout <= 0:
        raise ValueError(f"IEM timeout must be positive, got {timeout}")
    if concurrency < 1:
        raise ValueError(f"IEM concurrency must be at least 1, got {concurrency}")
    if retries < 0:
        raise ValueError(f"IEM retries must not be negative, got {retries}")
    if backoff < 0:
        raise ValueError(f"IEM backoff must not be negative, got {backoff}")
