"""Streaming parser for GetSubscribers: rows come out as the bytes arrive.

GetSubscribers has no paging, so a large list is one huge answer. This parser keeps only the
row being read, whatever the size of the list.
"""

from __future__ import annotations

import codecs
from typing import Any
from xml.parsers import expat

from edm_tui.interspire.errors import IemBadResponse, classify_failure
from edm_tui.interspire.xmlapi import (
    DOCTYPE_MESSAGE,
    GET_SUBSCRIBERS,
    DoctypeFound,
    check_no_surrogates,
    declared_encoding,
    describe_decode_error,
    describe_expat_error,
    describe_non_xml,
    find_document_start,
    reject_doctype,
    shorten_repr,
    subscriber_row,
)
from edm_tui.sync.model import IemRow

_MAX_PREFIX_BYTES = 1 << 20  # maximum junk, such as PHP notices, accepted before the XML
_LIST_CONTAINERS = ("subscriberlist", "subscribers")


class SubscriberStreamParser:
    """Incremental parser that turns a GetSubscribers body into IemRow values.

    Feed byte chunks as they arrive. Each `<item>` under `subscriberlist` (with or without
    an `<items>` wrapper) becomes one row as soon as it ends. Only the current item is kept
    in memory, so memory stays flat however many rows the list has.

    FAILED with an empty or "0" errormessage yields no rows, and so does IEM's early-return
    `<subscribers>` shape. FAILED with any other message raises the classified error from
    `close()`. An empty, truncated, ill-formed or non-XML body raises IemBadResponse, from
    `feed()` as soon as that is certain and otherwise from `close()`.
    """

    def __init__(self, *, list_id: int | None = None) -> None:
        self._list_id = list_id
        self._prefix = bytearray()
        self._decoder: codecs.IncrementalDecoder | None = None
        self._parser: Any = None
        self._encoding = "utf-8"
        self._closed = False

        self._rows: list[IemRow] = []
        self._depth = 0
        self._path: list[str] = []
        self._capture = False
        self._text: list[str] = []
        self._item: dict[str, Any] | None = None
        self._item_depth = -1
        self._field_has_children = False
        self._status: str | None = None
        self._errormessage = ""
        self._saw_list = False

    def feed(self, chunk: bytes) -> list[IemRow]:
        """Parse one more chunk and return the rows it completed."""
        if self._closed:
            raise RuntimeError("SubscriberStreamParser.feed() called after close()")
        if self._parser is None:
            self._prefix += chunk
            chunk = self._take_document_start()
            if not chunk:
                return []
        self._parse(chunk, final=False)
        return self._take_rows()

    def close(self) -> list[IemRow]:
        """Finish parsing, check the envelope and return any remaining rows."""
        if self._closed:
            return []
        self._closed = True
        if self._parser is None:
            document = self._take_document_start(final=True)
            self._parse(document, final=False)
        self._parse(b"", final=True)

        if self._status is None:
            raise IemBadResponse("response has no <status>")
        if self._status == "FAILED":
            message = self._errormessage.strip()
            if message in ("", "0"):
                return []
            raise classify_failure(message, method=GET_SUBSCRIBERS)
        if self._status != "SUCCESS":
            raise IemBadResponse(f"response has an unknown status {shorten_repr(self._status)}")
        if not self._saw_list:
            raise IemBadResponse("GetSubscribers data has no subscriberlist")
        return self._take_rows()

    def _take_rows(self) -> list[IemRow]:
        rows, self._rows = self._rows, []
        return rows

    def _take_document_start(self, *, final: bool = False) -> bytes:
        """Return the buffered bytes from the XML start on once the parser is set up.

        Returns b"" while the start, or the whole XML declaration, has not arrived yet.
        """
        start = find_document_start(self._prefix)
        if start is None:
            if final or len(self._prefix) > _MAX_PREFIX_BYTES:
                raise IemBadResponse(describe_non_xml(bytes(self._prefix)))
            return b""

        document = bytes(self._prefix[start:])
        declaration_incomplete = document.startswith(b"<?xml") and b"?>" not in document
        if declaration_incomplete and not final:
            return b""

        self._prefix = bytearray()
        self._start_parser(declared_encoding(document))
        return document

    def _start_parser(self, encoding: str) -> None:
        self._encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)()
        parser = expat.ParserCreate()
        parser.buffer_text = True
        parser.StartDoctypeDeclHandler = reject_doctype
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartElementHandler = self._start_element
        parser.EndElementHandler = self._end_element
        parser.CharacterDataHandler = self._characters
        self._parser = parser

    def _parse(self, chunk: bytes, *, final: bool) -> None:
        assert self._decoder is not None
        try:
            text = self._decoder.decode(chunk, final)
        except UnicodeDecodeError as error:
            raise IemBadResponse(describe_decode_error(error, self._encoding)) from None
        check_no_surrogates(text, self._encoding)

        try:
            # pyexpat parses str input as UTF-8, overriding the declared encoding.
            self._parser.Parse(text, final)
        except DoctypeFound:
            raise IemBadResponse(DOCTYPE_MESSAGE) from None
        except expat.ExpatError as error:
            raise IemBadResponse(describe_expat_error(error)) from None

    # The handlers below track the element path. The envelope is
    # response > status | errormessage | data > subscriberlist > [items >] item > field.

    def _start_element(self, name: str, _attributes: dict[str, str]) -> None:
        depth = self._depth
        self._depth += 1
        if depth < 4:
            del self._path[depth:]
            self._path.append(name)

        if self._item is not None:
            self._capture = depth == self._item_depth + 1
            if depth > self._item_depth + 1:
                self._field_has_children = True
        elif name == "item" and self._is_list_item_position(depth):
            self._item = {}
            self._item_depth = depth
            self._capture = False
        else:
            self._capture = depth == 1 and name in ("status", "errormessage")
            if depth == 2 and name in _LIST_CONTAINERS and self._path[1] == "data":
                self._saw_list = True
        self._text.clear()

    def _is_list_item_position(self, depth: int) -> bool:
        path = self._path
        if depth == 3:
            return path[1] == "data" and path[2] == "subscriberlist"
        if depth == 4:
            return path[1] == "data" and path[2] == "subscriberlist" and path[3] == "items"
        return False

    def _characters(self, data: str) -> None:
        if self._capture:
            self._text.append(data)

    def _end_element(self, name: str) -> None:
        self._depth -= 1
        depth = self._depth
        text = "".join(self._text).strip() if self._capture else ""
        self._capture = False
        self._text.clear()

        if self._item is not None:
            if depth == self._item_depth + 1:
                # A field with child elements becomes {} so that subscriber_row() rejects it,
                # as it rejects the dict that parse_response() makes of such a field.
                self._item[name] = {} if self._field_has_children else text
                self._field_has_children = False
            elif depth == self._item_depth:
                self._rows.append(subscriber_row(self._item, list_id=self._list_id))
                self._item = None
            return

        if depth == 1 and name == "status":
            self._status = text
        elif depth == 1 and name == "errormessage":
            self._errormessage = text
