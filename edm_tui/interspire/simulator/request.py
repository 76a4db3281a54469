"""Parse an xml.php request the way IEM 6.1.x does.

IEM reads the form field `xml` (PHP `$_POST['xml']`) and falls back to the raw request body,
parses it with SimpleXML, checks five required children with PHP `empty()` and converts
`<details>` into PHP arrays (`CreateFunctionParams`). This module reproduces those steps,
including PHP's form decoding (`+` becomes a space) and SimpleXML's notion of an empty
element, which depends on the kind of child nodes libxml builds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from xml.parsers import expat

from edm_tui.interspire.simulator import php

NO_DATA_MESSAGE = "No data has been given to the XML-API."
INVALID_XML_MESSAGE = (
    "The XML you provided is not valid. Please check your XML document and try again."
)
REQUIRED_FIELD_MESSAGE = "The XML format you have sent is invalid. The following field is required: {}"
REQUIRED_FIELDS = ("username", "usertoken", "requesttype", "requestmethod", "details")

_WORD_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_PERCENT_ESCAPE_RE = re.compile(rb"%([0-9A-Fa-f]{2})")


class RequestError(Exception):
    """A request that IEM rejects before authentication, with IEM's error message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ----- XML tree ---------------------------------------------------------------------------


@dataclass
class TextNode:
    """A non-element child node: `text`, `cdata`, `comment` or `pi` (processing instruction)."""

    kind: str
    content: str


@dataclass
class ElementNode:
    """An XML element with its child nodes in document order; attributes are dropped."""

    tag: str
    children: list[ElementNode | TextNode] = field(default_factory=list)

    def elements(self) -> list[ElementNode]:
        """Return the child elements, as SimpleXML `children()` does."""
        return [child for child in self.children if isinstance(child, ElementNode)]

    def first(self, tag: str) -> ElementNode | None:
        """Return the first child element named `tag`, as SimpleXML `$node->tag` does."""
        for child in self.children:
            if isinstance(child, ElementNode) and child.tag == tag:
                return child
        return None

    def string_value(self) -> str:
        """Return the SimpleXML `(string)` cast: direct text and CDATA children, joined."""
        return "".join(
            child.content
            for child in self.children
            if isinstance(child, TextNode) and child.kind in ("text", "cdata")
        )

    def is_php_empty(self) -> bool:
        """Apply PHP `empty($xml->tag)` to this element.

        SimpleXML calls an element empty when it has no child node at all, or when its only
        child is a text node whose content is "" or "0". Whitespace-only text, CDATA or any
        child element makes it non-empty.
        """
        if not self.children:
            return True
        if len(self.children) != 1:
            return False
        only = self.children[0]
        return isinstance(only, TextNode) and only.kind == "text" and only.content in ("", "0")


def parse_document(data: bytes) -> ElementNode:
    """Parse an XML document into an element tree; raise RequestError when it is not valid.

    Adjacent character data is merged into one text node and CDATA sections stay separate
    nodes, as in a libxml tree.
    """
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[ElementNode] = []
    roots: list[ElementNode] = []
    in_cdata = False

    def start_element(tag: str, _attributes: dict[str, str]) -> None:
        node = ElementNode(tag)
        if stack:
            stack[-1].children.append(node)
        else:
            roots.append(node)
        stack.append(node)

    def end_element(_tag: str) -> None:
        stack.pop()

    def character_data(text: str) -> None:
        if not stack:
            return
        children = stack[-1].children
        kind = "cdata" if in_cdata else "text"
        if children and isinstance(children[-1], TextNode) and children[-1].kind == kind:
            children[-1].content += text
        else:
            children.append(TextNode(kind, text))

    def start_cdata() -> None:
        nonlocal in_cdata
        in_cdata = True
        if stack:
            stack[-1].children.append(TextNode("cdata", ""))

    def end_cdata() -> None:
        nonlocal in_cdata
        in_cdata = False

    def comment(text: str) -> None:
        if stack:
            stack[-1].children.append(TextNode("comment", text))

    def processing_instruction(target: str, data_text: str) -> None:
        if stack:
            stack[-1].children.append(TextNode("pi", f"{target} {data_text}"))

    parser.StartElementHandler = start_element
    parser.EndElementHandler = end_element
    parser.CharacterDataHandler = character_data
    parser.StartCdataSectionHandler = start_cdata
    parser.EndCdataSectionHandler = end_cdata
    parser.CommentHandler = comment
    parser.ProcessingInstructionHandler = processing_instruction
    try:
        parser.Parse(data, True)
    except (expat.ExpatError, ValueError) as error:
        raise RequestError(INVALID_XML_MESSAGE) from error
    if not roots:
        raise RequestError(INVALID_XML_MESSAGE)
    return roots[0]


# ----- Body extraction --------------------------------------------------------------------


def php_urldecode(data: bytes) -> bytes:
    """Decode like PHP `urldecode()`: `+` is a space and malformed `%` escapes stay as they are."""
    return _PERCENT_ESCAPE_RE.sub(lambda match: bytes([int(match.group(1), 16)]), data.replace(b"+", b" "))


def parse_php_form(body: bytes) -> dict[bytes, bytes | list[bytes]]:
    """Decode an `application/x-www-form-urlencoded` body into PHP `$_POST`.

    Pairs are split on `&` and at the first `=`; a later duplicate key wins. A key written
    with brackets (`xml[]`) becomes an array, which IEM then treats as missing.
    """
    post: dict[bytes, bytes | list[bytes]] = {}
    for pair in body.split(b"&"):
        if not pair:
            continue
        raw_key, _separator, raw_value = pair.partition(b"=")
        key = php_urldecode(raw_key).lstrip(b" ")
        value = php_urldecode(raw_value)
        bracket = key.find(b"[")
        if bracket > 0 and b"]" in key[bracket:]:
            name = key[:bracket].replace(b" ", b"_").replace(b".", b"_")
            existing = post.get(name)
            if isinstance(existing, list):
                existing.append(value)
            else:
                post[name] = [value]
            continue
        post[key.replace(b" ", b"_").replace(b".", b"_")] = value
    return post


def parse_multipart_form(content_type: str, body: bytes) -> dict[bytes, bytes | list[bytes]]:
    """Decode the non-file fields of a `multipart/form-data` body into PHP `$_POST`."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body
    )
    post: dict[bytes, bytes | list[bytes]] = {}
    if not message.is_multipart():
        return post
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            continue
        payload = part.get_payload(decode=True)
        post[name.encode("utf-8")] = payload if isinstance(payload, bytes) else b""
    return post


def media_type(content_type: str | None) -> str:
    """Return the lower-cased media type of a Content-Type header, without parameters."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].split(",", 1)[0].strip().lower()


def extract_xml(content_type: str | None, raw_body: bytes) -> bytes:
    """Return the XML text IEM would parse, or raise RequestError("No data ...").

    The form field `xml` wins when it is present and not PHP-empty; otherwise the raw body
    is used. PHP does not expose the raw body of a multipart request.
    """
    kind = media_type(content_type)
    post: dict[bytes, bytes | list[bytes]] = {}
    input_stream = raw_body
    if kind == "application/x-www-form-urlencoded":
        post = parse_php_form(raw_body)
    elif kind == "multipart/form-data":
        post = parse_multipart_form(content_type or "", raw_body)
        input_stream = b""

    field_value = post.get(b"xml", b"")
    xml_text = field_value.strip(php.PHP_TRIM_BYTES) if isinstance(field_value, bytes) else b""
    if xml_text in (b"", b"0"):
        xml_text = input_stream
    xml_text = xml_text.strip(php.PHP_TRIM_BYTES)
    if xml_text in (b"", b"0"):
        raise RequestError(NO_DATA_MESSAGE)
    return xml_text


# ----- Envelope ---------------------------------------------------------------------------


def replace_non_word(text: str) -> str:
    """Apply PHP `preg_replace('/[^\\w]/', '_', ...)` without the `u` flag.

    PCRE then works on bytes, so every byte of a non-ASCII character becomes one `_`.
    """
    return "".join(
        character if character in _WORD_CHARACTERS else "_" * len(character.encode("utf-8", "replace"))
        for character in text
    )


@dataclass
class Envelope:
    """The parsed request envelope.

    `requesttype` and `requestmethod` already have non-word characters replaced by `_`, but
    keep their case and are not trimmed, as in IEM.
    """

    username: str
    usertoken: str
    requesttype: str
    requestmethod: str
    details: ElementNode


def parse_envelope(content_type: str | None, raw_body: bytes) -> Envelope:
    """Run IEM's pre-authentication checks and return the envelope, or raise RequestError."""
    root = parse_document(extract_xml(content_type, raw_body))
    fields: dict[str, ElementNode] = {}
    for name in REQUIRED_FIELDS:
        element = root.first(name)
        if element is None or element.is_php_empty():
            raise RequestError(REQUIRED_FIELD_MESSAGE.format(name))
        fields[name] = element
    return Envelope(
        username=fields["username"].string_value(),
        usertoken=fields["usertoken"].string_value(),
        requesttype=replace_non_word(fields["requesttype"].string_value()),
        requestmethod=replace_non_word(fields["requestmethod"].string_value()),
        details=fields["details"],
    )


def probe_method(content_type: str | None, raw_body: bytes) -> str | None:
    """Return the request method name of a request, or None when IEM would reject it first."""
    try:
        return parse_envelope(content_type, raw_body).requestmethod
    except RequestError:
        return None


# ----- Details binding --------------------------------------------------------------------


def create_function_params(
    node: ElementNode, add_subscriber: bool, notices: list[str] | None = None
) -> dict[str, object]:
    """Convert `<details>` to PHP arrays like IEM's `CreateFunctionParams`.

    A leaf becomes its trimmed text, repeated leaves become a list, an element with children
    becomes a dict (keys are case-sensitive) and a repeated complex element replaces the
    earlier one. For subscribers/AddSubscriberToList (`add_subscriber`), complex children
    with more than one key are collected into a list instead, which is how several
    `<customfields><item>` entries survive. `notices` receives the names of missing
    `value` keys that PHP reports as "Undefined index" in that mode.
    """
    result: dict[str, object] = {}
    for child in node.elements():
        key = child.tag.strip(php.PHP_TRIM_CHARACTERS)
        if not child.elements():
            text = php.trim(child.string_value())
            if key not in result:
                result[key] = text
                continue
            existing = result[key]
            if isinstance(existing, (list, dict)):
                php.array_append(existing, text)
            else:
                result[key] = [existing, text]
            continue

        existing = result.get(key)
        if key not in result:
            result[key] = []
        elif not isinstance(existing, (list, dict)):
            result[key] = [existing]
        nested = create_function_params(child, add_subscriber, notices)
        if add_subscriber and len(nested) > 1:
            if "value" not in nested and notices is not None:
                notices.append("value")
            value = nested.get("value")
            if isinstance(value, list) and value and isinstance(value[0], (list, dict)) and len(value[0]) > 1:
                nested["value"] = value[0]
            target = result[key]
            assert isinstance(target, (list, dict))
            php.array_append(target, nested)
        else:
            result[key] = nested
    return result
