"""Byte-exact xml.php output in the two dialects the simulator offers.

`legacy` is IEM 6.1.x: the payload goes through `CreateOutput`, which wraps every nested
array in `<item>` and pretty-prints with `FormatXML` (tabs and blank lines). `modern` is the
later 6.2+/8.x controller: nested arrays get an `<items>` wrapper and the payload is
round-tripped through SimpleXML, which writes it on one line with self-closing empty
elements and non-ASCII characters as `&#x..;` references.

GetSubscribers results are written in chunks so that a million rows never become one string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from edm_tui.interspire.simulator import php
from edm_tui.interspire.simulator.context import SubscriberListing

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" ?>'
SUCCESS_HEAD = XML_DECLARATION + "\n<response>\n<status>SUCCESS</status>\n<data>"
SUCCESS_TAIL = "</data></response>\n"
FAILED_HEAD = XML_DECLARATION + "\n<response>\n<status>FAILED</status>\n<errormessage>"
FAILED_TAIL = "</errormessage>\n</response>\n"

DIALECTS = ("legacy", "modern")
ROWS_PER_CHUNK = 1000

_TAG_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_XML_INVALID_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_NON_ASCII_RE = re.compile("[^\x00-\x7f]")


class RenderFatal(Exception):
    """The modern dialect's SimpleXML round trip failed; PHP stops with a fatal error."""


# ----- envelopes ----------------------------------------------------------------------------


def failure_envelope(message: object) -> str:
    """Return a FAILED response; an array message is concatenated as PHP's `echo` loop does."""
    if php.is_array(message):
        text = "".join(php.htmlspecialchars(item) for item in php.array_values(message))
    else:
        text = php.htmlspecialchars(message)
    return FAILED_HEAD + text + FAILED_TAIL


def success_envelope(payload: str) -> str:
    """Return a SUCCESS response around a payload produced by `create_output`."""
    return SUCCESS_HEAD + payload.strip(php.PHP_TRIM_CHARACTERS) + SUCCESS_TAIL


def create_output(data: object, dialect: str) -> str:
    """Render a PHP value as the `<data>` payload of the given dialect (before trimming)."""
    if isinstance(data, SubscriberListing):
        data = data.to_php()
    if not php.is_array(data):
        # Both dialects print scalars through htmlspecialchars without a round trip.
        return php.htmlspecialchars(data) + "\n"
    if dialect == "modern":
        return "".join(_modern_elements(data))
    return _legacy_create_output(data)


# ----- legacy dialect -----------------------------------------------------------------------


def _is_numeric_key(key: object) -> bool:
    return isinstance(key, int) or php.is_numeric(key)


def _legacy_create_output(value: object) -> str:
    """Build the markup like IEM 6.1's `CreateOutput`, then pretty-print it with `format_xml`."""
    if not php.is_array(value):
        return php.htmlspecialchars(value) + "\n"
    parts: list[str] = []
    for name, data in php.array_items(value):
        tag = php.htmlspecialchars("item" if _is_numeric_key(name) else name)
        if not php.is_array(data):
            parts.append(f"<{tag}>{php.htmlspecialchars(data)}</{tag}>")
            continue
        parts.append(f"<{tag}>")
        for key, item in php.array_items(data):
            if php.is_array(item):
                # Nested arrays are always wrapped in <item>, whatever their key.
                parts.append("<item>" + _legacy_create_output(item) + "</item>")
                continue
            child = php.htmlspecialchars("item" if _is_numeric_key(key) else key)
            parts.append(f"<{child}>{php.htmlspecialchars(item)}</{child}>")
        parts.append(f"</{tag}>")
    return format_xml("".join(parts))


def format_xml(xml: str) -> str:
    """Pretty-print markup exactly like IEM 6.1's `FormatXML`.

    Each opening tag starts a new line indented by one tab per open ancestor. A closing tag
    stays on the line of its text unless it directly follows another closing tag. Text is
    copied unchanged, including the newlines an inner `FormatXML` call already added, which
    is where the blank lines of nested items come from. Tag names are read as runs of ASCII
    letters and digits, as in IEM. CDATA handling is omitted because escaped output never
    contains `<![CDATA[`.
    """
    out: list[str] = []
    open_tags: list[str] = []
    last_action = ""
    position = 0
    length = len(xml)
    while position < length:
        if xml[position] != "<" or xml.startswith("<?", position):
            next_tag = xml.find("<", position + 1)
            end = length if next_tag == -1 else next_tag
            out.append(xml[position:end])
            position = end
            continue

        closing = xml.startswith("</", position)
        cursor = position + (2 if closing else 1)
        name_start = cursor
        while cursor < length and xml[cursor] in _TAG_NAME_CHARACTERS:
            cursor += 1
        name = xml[name_start:cursor]

        if closing:
            cursor = xml.find(">", cursor)
            tag_text = xml[position : cursor + 1]
            if last_action == "closed":
                out.append("\n" + "\t" * max(len(open_tags) - 1, 0) + tag_text)
            else:
                out.append(tag_text)
            if name in open_tags:
                del open_tags[len(open_tags) - 1 - open_tags[::-1].index(name)]
            last_action = "closed"
            position = cursor + 1
            continue

        self_closing = False
        while cursor < length and xml[cursor] != ">":
            if xml.startswith("/>", cursor):
                self_closing = True
                break
            cursor += 1
        if self_closing:
            out.append("\n" + "\t" * len(open_tags) + xml[position : cursor + 2])
            position = cursor + 2
        else:
            out.append("\n" + "\t" * len(open_tags) + xml[position : cursor + 1])
            open_tags.append(name)
            position = cursor + 1
        last_action = "opened"
    return "".join(out)


# ----- modern dialect -----------------------------------------------------------------------


def _modern_text(value: object) -> str:
    """Escape text as libxml writes it after parsing: &, <, > escaped and non-ASCII as &#x..;."""
    if type(value) is int:
        return str(value)
    text = php.to_string(value)
    ascii_only = text.isascii()
    if not ascii_only and not php.htmlspecialchars(text):
        return ""  # htmlspecialchars blanks text that is not valid UTF-8.
    if _XML_INVALID_RE.search(text):
        raise RenderFatal(f"character not allowed in XML in {text!r}")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")  # XML parsers normalise line ends.
    if "&" in text or "<" in text or ">" in text:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if ascii_only:
        return text
    return _NON_ASCII_RE.sub(lambda match: f"&#x{ord(match.group(0)):X};", text)


def _modern_element(tag: str, content: str) -> str:
    return f"<{tag}>{content}</{tag}>" if content else f"<{tag}/>"


def _modern_elements(value: Any) -> list[str]:
    """Build the markup like the 6.2+ `CreateOutput` and serialise it as SimpleXML's `asXML()` would.

    Scalar children come first; nested arrays follow inside one `<items>` element and keep
    their own key as tag name (numeric keys become `item`).
    """
    elements = []
    for name, data in php.array_items(value):
        tag = "item" if _is_numeric_key(name) else php.to_string(name)
        if not php.is_array(data):
            elements.append(_modern_element(tag, _modern_text(data)))
            continue
        children = []
        nested = []
        for key, item in php.array_items(data):
            if php.is_array(item):
                nested.extend(_modern_elements({key: item}))
                continue
            child = "item" if _is_numeric_key(key) else php.to_string(key)
            children.append(_modern_element(child, _modern_text(item)))
        if nested:
            children.append("<items>" + "".join(nested) + "</items>")
        elements.append(_modern_element(tag, "".join(children)))
    return elements


# ----- GetSubscribers in chunks ---------------------------------------------------------------


def listing_chunks(listing: SubscriberListing, dialect: str) -> Iterator[str]:
    """Yield the `<data>` payload of a GetSubscribers result piece by piece.

    The legacy layout equals `FormatXML` applied twice (once per row, once for the whole
    payload): every row field sits on its own line after a blank line.
    """
    key = listing.key
    columns = listing.columns
    if dialect == "modern":
        yield _modern_element("count", _modern_text(listing.count))
        if not listing.rows:
            yield f"<{key}/>"
            return
        yield f"<{key}><items>"
        for start in range(0, len(listing.rows), ROWS_PER_CHUNK):
            yield "".join(
                "<item>"
                + "".join(_modern_element(column, _modern_text(value)) for column, value in zip(columns, row))
                + "</item>"
                for row in listing.rows[start : start + ROWS_PER_CHUNK]
            )
        yield f"</items></{key}>"
        return

    yield f"<count>{php.htmlspecialchars(listing.count)}</count>\n<{key}>"
    if not listing.rows:
        yield f"</{key}>"
        return
    for start in range(0, len(listing.rows), ROWS_PER_CHUNK):
        yield "".join(
            "\n\t<item>"
            + "".join(f"\n\n\t\t<{column}>{_legacy_text(value)}</{column}>" for column, value in zip(columns, row))
            + "\n\t</item>"
            for row in listing.rows[start : start + ROWS_PER_CHUNK]
        )
    yield f"\n</{key}>"


def _legacy_text(value: object) -> str:
    return str(value) if type(value) is int else php.htmlspecialchars(value)


# ----- response container ---------------------------------------------------------------------


@dataclass
class ApiResponse:
    """An xml.php response: HTTP status, content type and body text.

    `prefix` contains PHP notices printed before the XML. A large body is produced by `stream`,
    which can be called more than once (fault injection measures the length first).
    """

    status: int = 200
    content_type: str = "text/xml"
    prefix: str = ""
    body: str = ""
    stream: Callable[[], Iterator[str]] | None = None

    def text_chunks(self) -> Iterator[str]:
        """Yield the body text, prefix first."""
        if self.prefix:
            yield self.prefix
        if self.stream is None:
            yield self.body
        else:
            yield from self.stream()

    def byte_chunks(self) -> Iterator[bytes]:
        """Yield the UTF-8 body in chunks, skipping empty ones."""
        for chunk in self.text_chunks():
            if chunk:
                yield chunk.encode("utf-8", "surrogatepass")

    def is_small(self) -> bool:
        """Return whether the whole body is already in memory."""
        return self.stream is None

    def to_bytes(self) -> bytes:
        """Return the whole body; only for small responses and tests."""
        return b"".join(self.byte_chunks())


def outcome_response(success: bool, data: object, dialect: str, prefix: str = "") -> ApiResponse:
    """Render a SUCCESS or FAILED outcome; raise RenderFatal when the modern round trip fails."""
    if not success:
        return ApiResponse(prefix=prefix, body=failure_envelope(data))
    if isinstance(data, SubscriberListing):
        listing = data
        if dialect == "modern":
            # The SimpleXML round trip happens before PHP prints the payload, so an invalid
            # character anywhere fails the whole response.
            for row in listing.rows:
                for value in row:
                    if isinstance(value, str):
                        _modern_text(value)

        def stream() -> Iterator[str]:
            yield SUCCESS_HEAD
            yield from listing_chunks(listing, dialect)
            yield SUCCESS_TAIL

        return ApiResponse(prefix=prefix, stream=stream)
    return ApiResponse(prefix=prefix, body=success_envelope(create_output(data, dialect)))
