"""The simulator's data: users, lists, custom fields and subscriber rows, plus persistence.

Like IEM's `list_subscribers` table there is one row per (list, email address), each with
its own subscriber id. Rows are indexed in memory by (list id, lower-cased email address)
and by subscriber id, so that no request other than GetSubscribers scans all rows. The
email index is case-insensitive because IEM compares addresses with MySQL's default
case-insensitive collation.

The JSON file layout is a public contract of the simulator (tests and the sandbox build and
read it); see `SimulatorState.iter_json_chunks`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_USERNAME = "admin"
# A fixed token so that sandbox configurations can be written ahead of time. It has the
# shape of a real IEM XML token (40 hexadecimal characters) and protects nothing.
DEFAULT_TOKEN = "5f2b3b8c1d0e4a6f9a7c2e1b0d3f4a5b6c7d8e9f"
DEFAULT_LISTS = ((1, "Newsletter"),)
DEFAULT_CUSTOM_FIELDS = ((2, "First name"), (3, "Last name"))
DEFAULT_CREATEDATE = 1700000000

CUSTOM_FIELD_TYPES = ("text", "textarea", "number", "dropdown", "checkbox", "radiobutton", "date")


class StateError(ValueError):
    """State JSON that does not have the expected layout."""


class Subscriber:
    """One row of IEM's `list_subscribers` table.

    `unsubscribed`, `bounced` and the dates are Unix times (0 when unset). `customfields`
    maps a field id (string) to a string, or to a list of strings for a checkbox field, and
    is None while the row has no custom-field data. `autoresponders` records whether
    AddSubscriberToList queued the row for autoresponders (None for rows created otherwise).
    """

    __slots__ = (
        "subscriberid",
        "listid",
        "emailaddress",
        "email_key",
        "format",
        "confirmed",
        "subscribedate",
        "requestdate",
        "confirmdate",
        "unsubscribed",
        "bounced",
        "confirmcode",
        "customfields",
        "autoresponders",
    )

    def __init__(
        self,
        subscriberid: int,
        listid: int,
        emailaddress: str,
        *,
        format: str = "t",
        confirmed: bool = False,
        subscribedate: int = 0,
        requestdate: int = 0,
        confirmdate: int = 0,
        unsubscribed: int = 0,
        bounced: int = 0,
        confirmcode: str = "",
        customfields: dict[str, Any] | None = None,
        autoresponders: bool | None = None,
    ) -> None:
        self.subscriberid = subscriberid
        self.listid = listid
        self.emailaddress = emailaddress
        self.email_key = email_key(emailaddress)
        self.format = format
        self.confirmed = confirmed
        self.subscribedate = subscribedate
        self.requestdate = requestdate
        self.confirmdate = confirmdate
        self.unsubscribed = unsubscribed
        self.bounced = bounced
        self.confirmcode = confirmcode
        self.customfields = customfields or None
        self.autoresponders = autoresponders

    @property
    def is_active(self) -> bool:
        """Whether IEM counts the row as active: neither unsubscribed nor bounced."""
        return self.unsubscribed == 0 and self.bounced == 0

    def to_json(self) -> dict[str, Any]:
        """Return the row in the state-file layout."""
        return row_values_to_json(self.values())

    def values(self) -> tuple[Any, ...]:
        """Copy the row's fields into a tuple, in the order `row_values_to_json` expects."""
        return (
            self.subscriberid,
            self.listid,
            self.emailaddress,
            self.format,
            self.confirmed,
            self.subscribedate,
            self.requestdate,
            self.unsubscribed,
            self.bounced,
            self.confirmcode,
            dict(self.customfields) if self.customfields else None,
            self.confirmdate,
            self.autoresponders,
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Subscriber:
        """Build a row from the state-file layout; raise StateError on a malformed row."""
        try:
            subscriberid = _require_int(data, "subscriberid")
            listid = _require_int(data, "listid")
            emailaddress = data["emailaddress"]
            if not isinstance(emailaddress, str):
                raise StateError(f"subscriber {subscriberid}: emailaddress must be a string")
            customfields = data.get("customfields") or None
            if customfields is not None and not isinstance(customfields, dict):
                raise StateError(f"subscriber {subscriberid}: customfields must be an object")
            confirmed = _as_bool(data.get("confirmed", False))
            subscribedate = int(data.get("subscribedate", 0))
            return cls(
                subscriberid,
                listid,
                emailaddress,
                format=str(data.get("format", "t")),
                confirmed=confirmed,
                subscribedate=subscribedate,
                requestdate=int(data.get("requestdate", subscribedate)),
                confirmdate=int(data.get("confirmdate", subscribedate if confirmed else 0)),
                unsubscribed=int(data.get("unsubscribed", 0)),
                bounced=int(data.get("bounced", 0)),
                confirmcode=str(data.get("confirmcode", "")),
                customfields={str(key): value for key, value in customfields.items()} if customfields else None,
                autoresponders=data.get("autoresponders"),
            )
        except KeyError as error:
            raise StateError(f"subscriber row is missing {error.args[0]!r}: {data!r}") from None
        except (TypeError, ValueError) as error:
            if isinstance(error, StateError):
                raise
            raise StateError(f"invalid subscriber row {data!r}: {error}") from None


def row_values_to_json(values: tuple[Any, ...]) -> dict[str, Any]:
    """Convert `Subscriber.values()` to the state-file layout of a row."""
    (subscriberid, listid, emailaddress, format_, confirmed, subscribedate, requestdate,
     unsubscribed, bounced, confirmcode, customfields, confirmdate, autoresponders) = values
    data: dict[str, Any] = {
        "subscriberid": subscriberid,
        "listid": listid,
        "emailaddress": emailaddress,
        "format": format_,
        "confirmed": confirmed,
        "subscribedate": subscribedate,
        "requestdate": requestdate,
        "unsubscribed": unsubscribed,
        "bounced": bounced,
        "confirmcode": confirmcode,
        "customfields": customfields or {},
        "confirmdate": confirmdate,
    }
    if autoresponders is not None:
        data["autoresponders"] = autoresponders
    return data


def email_key(emailaddress: str) -> str:
    """Return the case-insensitive index key of an email address."""
    lowered = emailaddress.lower()
    return emailaddress if lowered == emailaddress else lowered


def _as_bool(value: Any) -> bool:
    """Read a JSON flag that may also be written as 1/0 or "1"/"0"."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y")
    return bool(value)


def _require_int(data: dict[str, Any], key: str) -> int:
    if key not in data:
        raise StateError(f"missing {key!r} in {data!r}")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise StateError(f"{key} must be an integer, got {value!r}")
    return value


class SimulatorState:
    """All simulated IEM data with its indexes.

    Callers hold `lock` while they read or change anything, and call `mark_changed()` after a
    change so the saver writes the file.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users: list[dict[str, Any]] = []
        self.lists: dict[int, dict[str, Any]] = {}
        self.custom_fields: dict[int, dict[str, Any]] = {}
        self.next_subscriberid = 1
        self.rows_by_id: dict[int, Subscriber] = {}
        # listid -> email key -> row, or a list of rows when a list contains duplicates
        # (IEM inserts duplicates when AddSubscriberToList is given a list name).
        self._rows_by_list: dict[int, dict[str, Subscriber | list[Subscriber]]] = {}
        self.version = 0
        self._changed = threading.Condition(self.lock)

    # ----- construction ---------------------------------------------------------------

    @classmethod
    def seeded(
        cls,
        username: str = DEFAULT_USERNAME,
        token: str = DEFAULT_TOKEN,
        lists: Iterable[tuple[int, str]] | None = None,
        custom_fields: Iterable[tuple[int, str]] | None = None,
        createdate: int = DEFAULT_CREATEDATE,
    ) -> SimulatorState:
        """Create a fresh state with one admin user, lists and text custom fields.

        Without `lists` the state gets list 1 "Newsletter"; without `custom_fields` it gets
        the text fields 2 "First name" and 3 "Last name".
        """
        state = cls()
        state.users = [{"userid": 1, "username": username, "token": token, "status": 1, "admin": True}]
        for listid, name in lists if lists is not None else DEFAULT_LISTS:
            state.lists[listid] = _new_list(listid, name, createdate)
        fields = custom_fields if custom_fields is not None else DEFAULT_CUSTOM_FIELDS
        for fieldid, name in fields:
            state.custom_fields[fieldid] = {
                "fieldid": fieldid,
                "name": name,
                "fieldtype": "text",
                "required": False,
                "options": [],
            }
        return state

    @classmethod
    def from_json(cls, data: Any) -> SimulatorState:
        """Build a state from the state-file layout; raise StateError when it is malformed."""
        if not isinstance(data, dict):
            raise StateError("state must be a JSON object")
        state = cls()
        state.replace_from(data)
        return state

    @classmethod
    def load(cls, path: Path) -> SimulatorState:
        """Load a state file; subscriber rows are converted while the JSON is decoded."""
        with path.open("r", encoding="utf-8") as handle:
            data = json.load(handle, object_hook=decode_state_object)
        return cls.from_json(data)

    def replace_from(self, data: dict[str, Any]) -> None:
        """Replace all data with the contents of a state-file object."""
        users = data.get("users", [])
        lists = data.get("lists", [])
        fields = data.get("custom_fields", [])
        rows = data.get("subscribers", [])
        for name, value in (("users", users), ("lists", lists), ("custom_fields", fields), ("subscribers", rows)):
            if not isinstance(value, list):
                raise StateError(f"{name} must be a list")

        new_users = [_normalise_user(user) for user in users]
        new_lists = {}
        for entry in lists:
            normalised = _normalise_list(entry)
            new_lists[normalised["listid"]] = normalised
        new_fields = {}
        for entry in fields:
            normalised = _normalise_field(entry)
            new_fields[normalised["fieldid"]] = normalised
        new_rows = [row if isinstance(row, Subscriber) else Subscriber.from_json(_as_dict(row)) for row in rows]

        # Index into a separate object first, so that a rejected document changes nothing.
        staged = SimulatorState()
        for row in new_rows:
            if row.subscriberid in staged.rows_by_id:
                raise StateError(f"duplicate subscriberid {row.subscriberid}")
            staged._index(row)
        highest = max(staged.rows_by_id, default=0)
        try:
            next_subscriberid = max(int(data.get("next_subscriberid", highest + 1)), highest + 1)
        except (TypeError, ValueError):
            raise StateError(f"next_subscriberid must be an integer, got {data.get('next_subscriberid')!r}") from None

        with self.lock:
            self.users = new_users
            self.lists = new_lists
            self.custom_fields = new_fields
            self.rows_by_id = staged.rows_by_id
            self._rows_by_list = staged._rows_by_list
            self.next_subscriberid = next_subscriberid
            self._derive_missing_counters(lists)
            self.mark_changed()

    def _derive_missing_counters(self, raw_lists: list[Any]) -> None:
        """Fill in list counters that the loaded JSON does not contain, counting the rows."""
        provided = {entry["listid"]: entry for entry in raw_lists if isinstance(entry, dict)}
        for listid, entry in self.lists.items():
            raw = provided.get(listid, {})
            missing = [key for key in ("subscribecount", "unsubscribecount", "bouncecount") if key not in raw]
            if not missing:
                continue
            unsubscribed = bounced = total = 0
            for row in self.list_rows(listid):
                total += 1
                unsubscribed += row.unsubscribed > 0
                bounced += row.bounced > 0
            derived = {
                "subscribecount": total - unsubscribed - bounced,
                "unsubscribecount": unsubscribed,
                "bouncecount": bounced,
            }
            for key in missing:
                entry[key] = derived[key]

    # ----- indexes --------------------------------------------------------------------

    def _index(self, row: Subscriber) -> None:
        self.rows_by_id[row.subscriberid] = row
        by_email = self._rows_by_list.setdefault(row.listid, {})
        existing = by_email.get(row.email_key)
        if existing is None:
            by_email[row.email_key] = row
        elif isinstance(existing, list):
            existing.append(row)
        else:
            by_email[row.email_key] = [existing, row]

    def _unindex(self, row: Subscriber) -> None:
        self.rows_by_id.pop(row.subscriberid, None)
        by_email = self._rows_by_list.get(row.listid, {})
        existing = by_email.get(row.email_key)
        if existing is row:
            del by_email[row.email_key]
        elif isinstance(existing, list):
            existing.remove(row)
            if len(existing) == 1:
                by_email[row.email_key] = existing[0]

    def find(self, listid: int, emailaddress: str) -> list[Subscriber]:
        """Return the rows of a list whose address matches case-insensitively."""
        found = self._rows_by_list.get(listid, {}).get(email_key(emailaddress))
        if found is None:
            return []
        return list(found) if isinstance(found, list) else [found]

    def list_rows(self, listid: int) -> Iterator[Subscriber]:
        """Iterate the rows of one list in insertion order."""
        for entry in self._rows_by_list.get(listid, {}).values():
            if isinstance(entry, list):
                yield from entry
            else:
                yield entry

    def all_rows(self) -> Iterator[Subscriber]:
        """Iterate every row in subscriber-id insertion order."""
        return iter(self.rows_by_id.values())

    def list_ids_with_rows(self) -> list[int]:
        """Return the ids of lists that have at least one row, including unknown lists."""
        return [listid for listid, rows in self._rows_by_list.items() if rows]

    def subscriber_count(self) -> int:
        """Return the number of subscriber rows."""
        return len(self.rows_by_id)

    # ----- changes --------------------------------------------------------------------

    def allocate_subscriberid(self) -> int:
        """Take the next subscriber id; like MySQL auto-increment, a rolled-back insert keeps it used."""
        subscriberid = self.next_subscriberid
        self.next_subscriberid += 1
        return subscriberid

    def insert(self, row: Subscriber) -> None:
        """Add a row to the indexes."""
        self._index(row)

    def delete(self, row: Subscriber) -> None:
        """Remove a row from the indexes."""
        self._unindex(row)

    def adjust_counter(self, listid: int, counter: str, delta: int) -> None:
        """Change a list counter like IEM's `UPDATE lists SET x = x + delta`; unknown lists are ignored."""
        entry = self.lists.get(listid)
        if entry is not None:
            entry[counter] = int(entry.get(counter, 0)) + delta

    def mark_changed(self) -> None:
        """Record a change so the saver writes the state file."""
        with self.lock:
            self.version += 1
            self._changed.notify_all()

    def wait_for_change(self, seen_version: int, timeout: float) -> int:
        """Block until the version differs from `seen_version` or `timeout` passes; return the version."""
        with self.lock:
            if self.version == seen_version:
                self._changed.wait(timeout)
            return self.version

    # ----- lookups --------------------------------------------------------------------

    def find_user(self, username: str) -> dict[str, Any] | None:
        """Return the user whose name matches case-insensitively, as a MySQL lookup would."""
        lowered = username.lower()
        for user in self.users:
            if str(user.get("username", "")).lower() == lowered:
                return user
        return None

    def find_list_ids_by_name(self, name: str) -> list[int]:
        """Return the ids of lists with this name, compared case-insensitively."""
        lowered = name.lower()
        return [listid for listid, entry in self.lists.items() if str(entry.get("name", "")).lower() == lowered]

    # ----- JSON -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Copy everything needed to write the JSON; rows are `Subscriber.values()` tuples.

        The lock is held only while the tuples are copied, so a large state does not block
        requests while it is being encoded.
        """
        with self.lock:
            return {
                "users": [dict(user) for user in self.users],
                "lists": [dict(entry) for entry in self.lists.values()],
                "custom_fields": [dict(entry) for entry in self.custom_fields.values()],
                "subscribers": [row.values() for row in self.rows_by_id.values()],
                "next_subscriberid": self.next_subscriberid,
            }

    def to_json(self) -> dict[str, Any]:
        """Return the whole state in the state-file layout."""
        snapshot = self.snapshot()
        snapshot["subscribers"] = [row_values_to_json(values) for values in snapshot["subscribers"]]
        return snapshot

    def iter_json_chunks(self, extra: dict[str, Any] | None = None, rows_per_chunk: int = 2000) -> Iterator[str]:
        """Serialise the state as JSON text in chunks, one subscriber row per line.

        Layout: `{"users": [...], "lists": [...], "custom_fields": [...], "subscribers": [...],
        "next_subscriberid": N}` followed by the keys of `extra`.
        """
        snapshot = self.snapshot()
        yield "{" + ", ".join(
            f"{json.dumps(key)}: {json.dumps(snapshot[key], ensure_ascii=False)}"
            for key in ("users", "lists", "custom_fields")
        )
        yield ',\n"subscribers": ['
        rows = snapshot["subscribers"]
        for start in range(0, len(rows), rows_per_chunk):
            lines = ",\n".join(
                json.dumps(row_values_to_json(values), ensure_ascii=False)
                for values in rows[start : start + rows_per_chunk]
            )
            yield ("\n" if start == 0 else ",\n") + lines
        yield f'],\n"next_subscriberid": {snapshot["next_subscriberid"]}'
        for key, value in (extra or {}).items():
            yield f",\n{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"
        yield "}\n"

    def save(self, path: Path) -> None:
        """Write the state file atomically: a temporary file in the same folder, then os.replace."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                for chunk in self.iter_json_chunks():
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class StateSaver:
    """Background thread that writes the state file after changes.

    Saves are at least `interval` seconds apart, and at least as far apart as the last save
    took, so a large state is not rewritten back to back.
    """

    def __init__(self, state: SimulatorState, path: Path, interval: float = 1.0) -> None:
        self.state = state
        self.path = Path(path)
        self.interval = interval
        self._saved_version = state.version
        self._stop = threading.Event()
        self._save_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="iem-simulator-saver", daemon=True)

    def start(self) -> None:
        """Start the saver thread."""
        self._thread.start()

    def save_now(self) -> None:
        """Write the file if anything changed since the last save."""
        with self._save_lock:
            version = self.state.version
            if version == self._saved_version and self.path.exists():
                return
            self.state.save(self.path)
            self._saved_version = version

    def stop(self) -> None:
        """Stop the thread and write any pending change."""
        self._stop.set()
        self.state.mark_changed()
        if self._thread.is_alive():
            self._thread.join()
        self.save_now()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.state.wait_for_change(self._saved_version, timeout=self.interval)
            if self._stop.is_set():
                return
            if self.state.version == self._saved_version:
                continue
            started = time.monotonic()
            try:
                self.save_now()
            except OSError:
                logger.exception("Failed to save simulator state to %s", self.path)
            self._stop.wait(max(self.interval, time.monotonic() - started))


# ----- normalisation of loaded entries -----------------------------------------------------


def decode_state_object(data: dict[str, Any]) -> Any:
    """`json.load` hook that turns subscriber rows into Subscriber objects as soon as they are decoded."""
    if "subscriberid" in data and "emailaddress" in data and "listid" in data:
        return Subscriber.from_json(data)
    return data


def _as_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StateError(f"expected a JSON object, got {value!r}")
    return value


def _new_list(listid: int, name: str, createdate: int, ownerid: int = 1) -> dict[str, Any]:
    return {
        "listid": listid,
        "name": name,
        "createdate": createdate,
        "ownerid": ownerid,
        "subscribecount": 0,
        "unsubscribecount": 0,
        "bouncecount": 0,
    }


def _normalise_user(entry: Any) -> dict[str, Any]:
    user = dict(_as_dict(entry))
    _require_int(user, "userid")
    if not isinstance(user.get("username"), str) or not isinstance(user.get("token"), str):
        raise StateError(f"user {user.get('userid')}: username and token must be strings")
    user.setdefault("status", 1)
    user.setdefault("admin", False)
    return user


def _normalise_list(entry: Any) -> dict[str, Any]:
    data = dict(_as_dict(entry))
    listid = _require_int(data, "listid")
    data.setdefault("name", f"List {listid}")
    data.setdefault("createdate", DEFAULT_CREATEDATE)
    data.setdefault("ownerid", 1)
    return data


def _normalise_field(entry: Any) -> dict[str, Any]:
    data = dict(_as_dict(entry))
    fieldid = _require_int(data, "fieldid")
    data.setdefault("name", f"Field {fieldid}")
    data.setdefault("fieldtype", "text")
    if data["fieldtype"] not in CUSTOM_FIELD_TYPES:
        raise StateError(f"custom field {fieldid}: fieldtype must be one of {', '.join(CUSTOM_FIELD_TYPES)}")
    data.setdefault("required", False)
    data.setdefault("options", [])
    return data
