"""Helpers for tests that talk to the IEM simulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import xmltodict

from edm_tui.interspire.simulator import DEFAULT_TOKEN, DEFAULT_USERNAME, SimulatorHandle, start_simulator

XML_HEADERS = {"Content-Type": "text/xml; charset=utf-8"}


def envelope(
    requesttype: str,
    requestmethod: str,
    details: str = " ",
    *,
    username: str = DEFAULT_USERNAME,
    token: str = DEFAULT_TOKEN,
    root: str = "xmlrequest",
) -> str:
    """Build a request document; `details` is inserted as raw XML inside `<details>`."""
    return (
        f"<{root}><username>{username}</username><usertoken>{token}</usertoken>"
        f"<requesttype>{requesttype}</requesttype><requestmethod>{requestmethod}</requestmethod>"
        f"<details>{details}</details></{root}>"
    )


def parse(response: httpx.Response) -> dict[str, Any]:
    """Parse an xml.php response the way a careful client does, returning the `<response>` dict.

    PHP notices printed before the XML are skipped.
    """
    content = response.content
    start = content.find(b"<?xml")
    return xmltodict.parse(content[max(start, 0) :], force_list=("item",))["response"]


class IemSession:
    """An httpx client bound to one running simulator."""

    def __init__(self, handle: SimulatorHandle) -> None:
        self.handle = handle
        self.http = httpx.Client(timeout=10, follow_redirects=False)

    def post(self, body: str | bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        """POST a raw body to xml.php."""
        content = body.encode("utf-8") if isinstance(body, str) else body
        return self.http.post(self.handle.url, content=content, headers=headers or XML_HEADERS)

    def call(self, requesttype: str, requestmethod: str, details: str = " ", **envelope_options: Any) -> httpx.Response:
        """POST one API request with the default credentials."""
        return self.post(envelope(requesttype, requestmethod, details, **envelope_options))

    def result(self, requesttype: str, requestmethod: str, details: str = " ") -> dict[str, Any]:
        """POST one API request and return the parsed `<response>`."""
        return parse(self.call(requesttype, requestmethod, details))

    def add(self, email: str, listid: int | str = 1, extra: str = "") -> dict[str, Any]:
        """Add a subscriber with AddSubscriberToList and return the parsed response."""
        return self.result(
            "subscribers",
            "AddSubscriberToList",
            f"<emailaddress>{email}</emailaddress><mailinglist>{listid}</mailinglist>{extra}",
        )

    def sim_state(self) -> dict[str, Any]:
        """Return `GET /_sim/state` as JSON."""
        response = self.http.get(self.handle.base + "/_sim/state")
        response.raise_for_status()
        return response.json()

    def configure(self, **changes: Any) -> httpx.Response:
        """POST to `/_sim/config`."""
        return self.http.post(self.handle.base + "/_sim/config", json=changes)

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()


@contextmanager
def running_simulator(**options: Any) -> Iterator[IemSession]:
    """Start a simulator with no login delay (unless given) and yield a session for it."""
    options.setdefault("auth_delay", 0)
    with start_simulator(**options) as handle:
        session = IemSession(handle)
        try:
            yield session
        finally:
            session.close()
