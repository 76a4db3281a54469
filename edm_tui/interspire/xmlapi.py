"""Request building and response parsing for the IEM XML API, without any I/O.

IEM (Interspire Email Marketer) 6.x and later respond to every request with HTTP 200 and an
XML envelope whose `<status>` is SUCCESS or FAILED. Two output dialects exist:

* legacy (6.1.x and older): pretty-printed with tabs and blank lines, lists as `<item>`;
* modern (6.2+ and 8.x): one line, self-closing empty elements, non-ASCII text as `&#x...;`
  references, nested lists wrapped in `<items>`, and the token check wrapped in `<user>`.

Servers also put junk before the XML (a UTF-8 BOM, white space, PHP notice HTML), may declare
ISO-8859-1, and sometimes return an HTML error page, an empty body or a truncated one. This
module accepts all of these and turns anything unusable into `IemBadResponse`.
"""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias
from xml.parsers import expat

import xmltodict

from edm_tui.interspire.errors import IemBadResponse, IemRejected, classify_failure
from edm_tui.sync.model import IemRow

DetailValue: TypeAlias = (
    "str | int | bool | None | Mapping[str, DetailValue] | Sequence[DetailValue]"
)

# Request methods, spelled as IEM's PHP API names them.
TOKEN_CHECK = "xmlapitest"  # compared case-sensitively by IEM, so never "XmlApiTest"
GET_LISTS = "GetLists"
GET_CUSTOM_FIELDS = "GetCustomFields"
GET_SUBSCRIBERS = "GetSubscribers"
IS_SUBSCRIBER_ON_LIST = "IsSubscriberOnList"
ADD_SUBSCRIBER = "AddSubscriberToList"
ACTIVATE_SUBSCRIBER = "ActivateSubscriber"
UNSUBSCRIBE_SUBSCRIBER = "UnsubscribeSubscriber"
CHANGE_SUBSCRIBER_CONFIRM = "ChangeSubscriberConfirm"
SAVE_SUBSCRIBER_CUSTOM_FIELD = "SaveSubscriberCustomField"


@dataclass(frozen=True, slots=True)
class Response:
    """One parsed IEM response envelope.

    `data` is "" when empty, a str for scalars, a list for `<item>` sequences (with any
    `<items>` wrapper removed) and a dict otherwise. Every leaf value is a str.
    """

    status: Literal["SUCCESS", "FAILED"]
    data: Any
    errormessage: str

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS"


@dataclass(frozen=True, slots=True)
class IemList:
    """A contact list as GetLists returns it."""

    listid: int
    name: str
    subscribecount: int


@dataclass(frozen=True, slots=True)
class IemField:
    """A custom field as GetCustomFields returns it."""

    fieldid: int
    name: str
    fieldtype: str
    required: bool


@dataclass(frozen=True, slots=True)
class AddResult:
    """The outcome of AddSubscriberToList.

    `already_exists` is True when the list already had a row for the address, whatever its
    status. `subscriber_id` is then known only from IEM 6.1.4 and older, which return the
    existing id as the errormessage.
    """

    subscriber_id: int | None
    already_exists: bool


# ---------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------

_ELEMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
# Characters that XML 1.0 cannot carry, even as character references.
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def build_request(
    username: str,
    token: str,
    requesttype: str,
    requestmethod: str,
    details: Mapping[str, DetailValue],
) -> bytes:
    """Serialise one XML API request as UTF-8 bytes.

    In `details`, a None value is left out, a bool becomes 1 or 0, a mapping becomes nested
    elements and a list or tuple becomes repeated elements of the same name. IEM treats
    `<details/>` as missing, so an empty `details` is sent as `<details> </details>`.

    Raises ValueError for an invalid element name or a value containing a character that
    XML 1.0 cannot represent. The message names the element, never the value.
    """
    if requestmethod.lower() == TOKEN_CHECK:
        requestmethod = TOKEN_CHECK

    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<xmlrequest>']
    _append_element(parts, "username", username)
    _append_element(parts, "usertoken", token)
    # IEM loads admin/functions/api/<requesttype>.php, and that lookup is case-sensitive.
    _append_element(parts, "requesttype", requesttype.lower())
    _append_element(parts, "requestmethod", requestmethod)

    detail_parts: list[str] = []
    for name, value in details.items():
        _append_element(detail_parts, name, value)
    parts.append("<details>")
    parts.extend(detail_parts or [" "])
    parts.append("</details></xmlrequest>")

    return "".join(parts).encode("utf-8")


def _append_element(parts: list[str], name: str, value: DetailValue) -> None:
    if not _ELEMENT_NAME.match(name):
        raise ValueError(f"invalid XML element name {name!r}")
    if value is None:
        return

    if isinstance(value, Mapping):
        children: list[str] = []
        for child_name, child_value in value.items():
            _append_element(children, child_name, child_value)
        if children:
            parts.append(f"<{name}>{''.join(children)}</{name}>")
        return

    if isinstance(value, (list, tuple)):
        for element in value:
            _append_element(parts, name, element)
        return

    parts.append(f"<{name}>{_escape_text(name, _scalar_text(name, value))}</{name}>")


def _scalar_text(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, str)):
        return str(value)
    raise TypeError(f"value of <{name}> has unsupported type {type(value).__name__}")


def _escape_text(name: str, text: str) -> str:
    invalid = _INVALID_XML_CHARS.search(text)
    if invalid:
        code_point = ord(invalid.group())
        raise ValueError(
            f"value of <{name}> contains U+{code_point:04X}, which XML 1.0 cannot represent"
        )
    # A literal CR would reach IEM as LF after XML line-end normalisation.
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\r", "&#13;")
    )


def subscriber_search_details(list_id: int, email: str | None = None) -> dict[str, DetailValue]:
    """Return GetSubscribers details for every row of one list, of any status.

    `Email` is a substring (SQL LIKE) search, so callers must filter for an exact match.
    The top-level `listid` is for the XML security layer of IEM 8.x, which checks it on
    subscriber methods. The sednalabs/interspire-mcp client reports this, and it is not
    verified against a live 8.x. Older versions ignore unknown elements.
    """
    searchinfo: dict[str, DetailValue] = {"List": list_id}
    if email is not None:
        searchinfo["Email"] = email
    return {"searchinfo": searchinfo, "listid": list_id}


def add_subscriber_details(
    list_id: int,
    email: str,
    *,
    confirmed: bool,
    add_to_autoresponders: bool,
    custom_fields: Mapping[int, str] | None = None,
) -> dict[str, DetailValue]:
    """Return AddSubscriberToList details.

    Custom fields with an empty or blank value are left out: IEM would reject an empty
    value for a required field and roll back the whole add. IEM's default format is text,
    so "html" is always sent.
    """
    items = [
        {"fieldid": field_id, "value": value}
        for field_id, value in (custom_fields or {}).items()
        if value.strip()
    ]
    return {
        "emailaddress": email,
        "mailinglist": list_id,
        "listid": list_id,
        "format": "html",
        "confirmed": confirmed,
        "add_to_autoresponders": add_to_autoresponders,
        "customfields": {"item": items} if items else None,
    }


# ---------------------------------------------------------------------------------------
# Cleaning the body before parsing
# ---------------------------------------------------------------------------------------

_BOM = codecs.BOM_UTF8
_DOCUMENT_START = re.compile(rb"<\?xml[\s?]|<response[\s/>]")
_ENCODING_DECLARATION = re.compile(rb"""<\?xml\s[^>]*?encoding\s*=\s*["']([A-Za-z][\w.:-]*)["']""")
_HTML_MARKERS = (b"<html", b"<!doctype html", b"<head", b"<body")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(rb"<[^>]*>")
_EXCERPT_CHARS = 80
# Decoders such as UTF-7 can produce lone surrogates, which no XML parser accepts as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")
# IEM envelopes nest about six elements deep, so anything far deeper is not an IEM response.
MAX_DEPTH = 64
# Integers in IEM responses are MySQL INT columns or Unix times, and the sync state stores
# them in signed 64-bit SQLite columns.
_MAX_INT_DIGITS = 19
_MAX_INT = 2**63 - 1
# Expat messages that mean the input ended early (the error constants are the messages).
_TRUNCATION_ERRORS = {
    expat.errors.XML_ERROR_NO_ELEMENTS,
    expat.errors.XML_ERROR_UNCLOSED_TOKEN,
    expat.errors.XML_ERROR_PARTIAL_CHAR,
    expat.errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
}


def _strip_leading_junk(body: bytes) -> bytes:
    stripped = body.lstrip()
    while stripped.startswith(_BOM):
        stripped = stripped[len(_BOM) :].lstrip()
    return stripped


def find_document_start(body: bytes) -> int | None:
    """Return the offset of the first `<?xml` or `<response`, or None."""
    match = _DOCUMENT_START.search(body)
    return match.start() if match else None


def declared_encoding(document: bytes) -> str:
    """Return the codec name of the XML declaration at the start of `document`."""
    declaration_end = document.find(b"?>") if document.startswith(b"<?xml") else -1
    if declaration_end < 0:
        return "utf-8"
    match = _ENCODING_DECLARATION.match(document[: declaration_end + 2])
    if not match:
        return "utf-8"
    name = match.group(1).decode("ascii")
    try:
        # The declaration was found as ASCII bytes, so the encoding must decode ASCII. This
        # rejects unknown names, UTF-16 and UTF-32, and codecs that do not decode to text,
        # such as "base64" or "zlib" (bytes.decode() raises LookupError for those).
        if b"<?xml".decode(name) != "<?xml":
            raise LookupError(name)
    except (LookupError, UnicodeError):
        raise IemBadResponse(f"XML declaration names an unsupported encoding {name!r}") from None
    return codecs.lookup(name).name


def describe_non_xml(body: bytes) -> str:
    """Return a short description of a body that contains no XML document."""
    stripped = _strip_leading_junk(body)
    if not stripped:
        return "empty response body"

    head = stripped[:4096].lower()
    if any(marker in head for marker in _HTML_MARKERS):
        title = _TITLE.search(stripped)
        if title:
            return f"HTML page instead of XML (title: {_excerpt(title.group(1))!r})"
        return f"HTML page instead of XML (text: {_excerpt(_TAG.sub(b' ', stripped))!r})"

    return f"response is not XML (starts with {_excerpt(stripped)!r})"


def _excerpt(raw: bytes) -> str:
    text = html.unescape(raw.decode("utf-8", errors="replace"))
    text = " ".join(text.split())
    if len(text) > _EXCERPT_CHARS:
        return text[: _EXCERPT_CHARS - 3] + "..."
    return text


def describe_expat_error(error: expat.ExpatError) -> str:
    reason = expat.errors.messages[error.code] if error.code else str(error)
    where = f"line {error.lineno}, column {error.offset}"
    if reason in _TRUNCATION_ERRORS:
        return f"response body is truncated ({reason} at {where})"
    return f"response is not well-formed XML ({reason} at {where})"


class DoctypeFound(Exception):
    pass


def reject_doctype(*_args: object) -> None:
    raise DoctypeFound


DOCTYPE_MESSAGE = "response contains a DOCTYPE declaration, which IEM never sends"


class _DoctypeRejectingExpat:
    """Stand-in for the expat module whose parsers reject any DOCTYPE.

    Without a DOCTYPE no entity can be declared, so external entities and entity
    expansion bombs cannot occur.
    """

    ExpatError = expat.ExpatError

    @staticmethod
    def ParserCreate(  # noqa: N802 - the name xmltodict calls
        encoding: str | None = None, namespace_separator: str | None = None
    ) -> Any:
        parser = expat.ParserCreate(encoding, namespace_separator)
        parser.StartDoctypeDeclHandler = reject_doctype
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        return parser


def _decode(document: bytes, encoding: str) -> str:
    try:
        text = document.decode(encoding)
    except UnicodeDecodeError as error:
        raise IemBadResponse(describe_decode_error(error, encoding)) from None
    check_no_surrogates(text, encoding)
    return text


# Codecs (by codecs.lookup() name) whose strict decoders cannot produce a lone surrogate:
# UTF-8 rejects encoded surrogates, and these single-byte codecs map no byte into U+D800-U+DFFF.
_NO_SURROGATE_CODECS = frozenset({"utf-8", "ascii", "iso8859-1", "cp1252"})


def check_no_surrogates(text: str, encoding: str) -> None:
    """Raise IemBadResponse if decoded text contains a lone surrogate."""
    if codecs.lookup(encoding).name in _NO_SURROGATE_CODECS:
        return  # these decoders never produce one, and the search costs a pass over the text
    surrogate = _SURROGATE.search(text)
    if surrogate:
        raise IemBadResponse(
            f"response is not valid {encoding}: it decodes to the lone surrogate "
            f"U+{ord(surrogate.group()):04X}"
        )


def describe_decode_error(error: UnicodeDecodeError, encoding: str) -> str:
    if error.reason == "unexpected end of data":
        return "response body is truncated (it ends inside a multi-byte character)"
    return f"response is not valid {encoding}: byte 0x{error.object[error.start]:02x}"


# ---------------------------------------------------------------------------------------
# Whole responses
# ---------------------------------------------------------------------------------------


def parse_response(body: bytes) -> Response:
    """Parse one complete response body.

    Leading white space, BOMs and any text before the first `<?xml` or `<response` (such as
    PHP notices) are dropped. The body is decoded with the encoding of its XML declaration.
    Raises IemBadResponse with a short description for an empty, HTML, truncated,
    ill-formed or non-XML body, and for any DOCTYPE.
    """
    start = find_document_start(body)
    if start is None:
        raise IemBadResponse(describe_non_xml(body))
    document = body[start:]
    text = _decode(document, declared_encoding(document))

    try:
        # A str input makes xmltodict parse as UTF-8, overriding the declared encoding.
        parsed = xmltodict.parse(
            text, expat=_DoctypeRejectingExpat, force_list=("item",), disable_entities=True
        )
    except DoctypeFound:
        raise IemBadResponse(DOCTYPE_MESSAGE) from None
    except expat.ExpatError as error:
        raise IemBadResponse(describe_expat_error(error)) from None
    except ValueError:
        # xmltodict raises ValueError for an entity declaration.
        raise IemBadResponse(DOCTYPE_MESSAGE) from None

    root_name, root = next(iter(parsed.items()))
    if root_name != "response":
        raise IemBadResponse(f"root element is <{root_name}>, expected <response>")
    if not isinstance(root, dict):
        raise IemBadResponse("response element has no <status>")

    status = root.get("status")
    if status not in ("SUCCESS", "FAILED"):
        raise IemBadResponse(f"response has an unknown status {shorten_repr(status)}")
    errormessage = root.get("errormessage")
    if errormessage is None:
        errormessage = ""
    if not isinstance(errormessage, str):
        raise IemBadResponse("errormessage element has child elements")

    return Response(status=status, data=_normalise(root.get("data")), errormessage=errormessage)


def _normalise(value: Any, depth: int = 0) -> Any:
    """Map None to "", `{item: [...]}` and `{items: {item: [...]}}` to lists, recursively.

    Raises IemBadResponse when elements nest more than MAX_DEPTH levels below `<data>`.
    """
    if depth > MAX_DEPTH:
        raise IemBadResponse(f"response nests elements more than {MAX_DEPTH} levels deep")
    if value is None:
        return ""
    if isinstance(value, list):
        return [_normalise(element, depth) for element in value]
    if not isinstance(value, dict):
        return value

    # Attributes ("@name" keys) carry nothing in IEM responses.
    fields = {key: element for key, element in value.items() if not key.startswith("@")}
    if set(fields) == {"item"}:
        return _normalise(fields["item"], depth + 1)
    if set(fields) == {"items"}:
        inner = fields["items"]
        if inner is None:
            return []
        if isinstance(inner, dict) and set(inner) == {"item"}:
            return _normalise(inner["item"], depth + 2)
    return {key: _normalise(element, depth + 1) for key, element in fields.items()}


def _as_list(value: Any, description: str) -> list[Any]:
    if value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    raise IemBadResponse(f"{description} is {shorten_repr(value)}, expected a list of items")


def _as_mapping(value: Any, description: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise IemBadResponse(f"{description} is {shorten_repr(value)}, expected child elements")
    return value


def shorten_repr(value: Any) -> str:
    """Return repr(value), cut to _EXCERPT_CHARS characters for error messages."""
    text = repr(value)
    if len(text) > _EXCERPT_CHARS:
        return text[: _EXCERPT_CHARS - 3] + "..."
    return text


def _text(value: Any, description: str) -> str:
    """Return an element's text; an element with child elements raises IemBadResponse."""
    if not isinstance(value, str):
        raise IemBadResponse(f"{description} is {shorten_repr(value)}, expected text")
    return value


def _parse_int(text: Any, description: str) -> int:
    number = _digits_value(text)
    if number is None:
        raise IemBadResponse(
            f"{description} is {shorten_repr(text)}, expected a non-negative integer below 2**63"
        )
    return number


def _digits_value(text: Any) -> int | None:
    """Return the value of an ASCII digit string below 2**63, or None for anything else."""
    if not isinstance(text, str):
        return None
    stripped = text.strip()
    if not (stripped.isascii() and stripped.isdigit() and len(stripped) <= _MAX_INT_DIGITS):
        return None
    number = int(stripped)
    return number if number <= _MAX_INT else None


def _optional_int(text: Any, description: str) -> int:
    """Parse an integer where an empty element means 0."""
    if text == "":
        return 0
    return _parse_int(text, description)


def _is_negative_answer(response: Response) -> bool:
    """Return True for FAILED with an empty or "0" errormessage, IEM's "no" or "none"."""
    return not response.ok and response.errormessage.strip() in ("", "0")


def check_success(response: Response, method: str) -> None:
    """Raise the classified error unless the response is SUCCESS."""
    if not response.ok:
        raise classify_failure(response.errormessage, method=method)


# ---------------------------------------------------------------------------------------
# Results per method
# ---------------------------------------------------------------------------------------


def token_user_from_response(response: Response) -> dict[str, str]:
    """Return {"userid", "username"} from an xmlapitest response, in either dialect."""
    check_success(response, TOKEN_CHECK)
    data = _as_mapping(response.data, "xmlapitest data")
    if isinstance(data.get("user"), Mapping):
        data = data["user"]
    userid = data.get("userid")
    username = data.get("username")
    if not isinstance(userid, str) or not isinstance(username, str):
        raise IemBadResponse("xmlapitest data has no userid or username")
    return {"userid": userid, "username": username}


def lists_from_response(response: Response) -> list[IemList]:
    """Return the lists of a lists/GetLists or user/GetLists response, or [] for none."""
    if _is_negative_answer(response):
        return []
    check_success(response, GET_LISTS)

    lists = []
    for item in _as_list(response.data, "GetLists data"):
        item = _as_mapping(item, "GetLists item")
        lists.append(
            IemList(
                listid=_parse_int(item.get("listid"), "list listid"),
                name=_text(item.get("name", ""), "list name"),
                subscribecount=_optional_int(item.get("subscribecount", ""), "subscribecount"),
            )
        )
    return lists


def custom_fields_from_response(response: Response) -> list[IemField]:
    """Return the fields of a GetCustomFields response, or [] for none."""
    if _is_negative_answer(response):
        return []
    check_success(response, GET_CUSTOM_FIELDS)

    fields = []
    for item in _as_list(response.data, "GetCustomFields data"):
        item = _as_mapping(item, "GetCustomFields item")
        fields.append(
            IemField(
                fieldid=_parse_int(item.get("fieldid"), "custom field fieldid"),
                name=_text(item.get("name", ""), "custom field name"),
                fieldtype=_text(item.get("fieldtype", ""), "custom field fieldtype"),
                required=item.get("required") == "1",
            )
        )
    return fields


def subscriber_row(item: Mapping[str, Any], *, list_id: int | None = None) -> IemRow:
    """Convert one GetSubscribers `<item>` to an IemRow.

    `list_id` is used when the item has no `listid` element. `unsubscribed` and `bounced`
    are Unix times (0 when not set), and an empty element counts as 0.
    """
    listid_text = item.get("listid", "")
    if listid_text == "" and list_id is not None:
        row_list_id = list_id
    else:
        row_list_id = _parse_int(listid_text, "subscriber listid")

    return IemRow(
        subscriber_id=_parse_int(item.get("subscriberid"), "subscriberid"),
        email=_text(item.get("emailaddress", ""), "subscriber emailaddress"),
        list_id=row_list_id,
        confirmed=item.get("confirmed") == "1",
        subscribedate=_optional_int(item.get("subscribedate", ""), "subscribedate"),
        unsubscribed=_optional_int(item.get("unsubscribed", ""), "unsubscribed"),
        bounced=_optional_int(item.get("bounced", ""), "bounced"),
    )


def subscribers_from_response(response: Response, *, list_id: int | None = None) -> list[IemRow]:
    """Return the rows of a complete GetSubscribers response, or [] for none."""
    if _is_negative_answer(response):
        return []
    check_success(response, GET_SUBSCRIBERS)

    data = response.data
    if data == "":
        return []
    data = _as_mapping(data, "GetSubscribers data")
    if "subscriberlist" in data:
        items = _as_list(data["subscriberlist"], "subscriberlist")
    elif "subscribers" in data:
        # IEM returns this shape, always empty, when searchinfo is missing.
        items = []
    else:
        raise IemBadResponse("GetSubscribers data has no subscriberlist")

    return [
        subscriber_row(_as_mapping(item, "subscriber item"), list_id=list_id) for item in items
    ]


def subscriber_count_from_response(response: Response) -> int:
    """Return the count of a GetSubscribers countonly response (IEM sends 0 as FAILED "0")."""
    if _is_negative_answer(response):
        return 0
    check_success(response, GET_SUBSCRIBERS)
    return _parse_int(response.data, "subscriber count")


def subscriber_id_from_response(response: Response) -> int | None:
    """Return the subscriber id of an IsSubscriberOnList response, or None when not on it.

    With `return_listid` IEM returns `{subscriberid, listid}` instead of the bare id.
    """
    if _is_negative_answer(response):
        return None
    check_success(response, IS_SUBSCRIBER_ON_LIST)
    data = response.data
    if isinstance(data, Mapping):
        data = data.get("subscriberid")
    return _parse_int(data, "IsSubscriberOnList subscriberid")


_ALREADY_EXISTS = "already exists in the given list"


def add_result_from_response(response: Response) -> AddResult:
    """Return the new subscriber id of AddSubscriberToList, or an "already exists" result.

    IEM 6.1.5 and later report a duplicate as "<email> already exists in the given list".
    IEM 6.1.4 and older put the existing subscriber id, alone, in the errormessage.
    """
    if response.ok:
        return AddResult(
            subscriber_id=_parse_int(response.data, "new subscriber id"), already_exists=False
        )

    message = response.errormessage.strip()
    existing_id = _digits_value(message)
    if existing_id:
        return AddResult(subscriber_id=existing_id, already_exists=True)
    if _ALREADY_EXISTS in message.lower():
        return AddResult(subscriber_id=None, already_exists=True)
    raise classify_failure(message, method=ADD_SUBSCRIBER)


def check_custom_field_saved(response: Response, *, subscriber_id: int, field_id: int) -> None:
    """Raise IemRejected unless SaveSubscriberCustomField reported success.

    IEM reports a failed save only as FAILED with an empty errormessage.
    """
    if _is_negative_answer(response):
        raise IemRejected(
            f"IEM did not save custom field {field_id} for subscriber {subscriber_id}",
            method=SAVE_SUBSCRIBER_CUSTOM_FIELD,
        )
    check_success(response, SAVE_SUBSCRIBER_CUSTOM_FIELD)
