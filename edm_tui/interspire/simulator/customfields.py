"""Custom-field rules: loading a field by id, validating values and storing them.

The value checks imitate IEM's `CustomFields_API::ValidData`: a required field rejects an
empty value, dropdown, radio button and checkbox fields accept only their option keys and
number fields accept only numbers. IEM's per-type `CheckData` code is not public, so the
per-type checks are an approximation of it.
"""

from __future__ import annotations

import re
from typing import Any

from edm_tui.interspire.simulator import php
from edm_tui.interspire.simulator.state import SimulatorState, Subscriber

OPTION_TYPES = ("dropdown", "radiobutton", "checkbox")
_DATE_RE = re.compile(r"\s*(\d{1,2})/(\d{1,2})/(\d{4})\s*\Z")


def load_field(state: SimulatorState, fieldid: object) -> dict[str, Any] | None:
    """Load a field like `CustomFields_API::Load`: the id is cast with `(int)`, so "2abc" loads field 2."""
    number = php.intval(fieldid)
    if number <= 0:
        return None
    return state.custom_fields.get(number)


def option_keys(field: dict[str, Any]) -> list[str]:
    """Return the option keys of a dropdown, radio button or checkbox field.

    `options` may be a list of keys, a list of {"key", "label"} objects or a key-to-label
    object.
    """
    options = field.get("options") or []
    if isinstance(options, dict):
        return [str(key) for key in options]
    keys = []
    for option in options:
        if isinstance(option, dict):
            keys.append(str(option.get("key", option.get("value", ""))))
        else:
            keys.append(str(option))
    return keys


def option_labels(field: dict[str, Any]) -> list[str]:
    """Return the option labels in the order of `option_keys`."""
    options = field.get("options") or []
    if isinstance(options, dict):
        return [str(label) for label in options.values()]
    labels = []
    for option in options:
        if isinstance(option, dict):
            labels.append(str(option.get("label", option.get("key", ""))))
        else:
            labels.append(str(option))
    return labels


def is_valid_value(field: dict[str, Any], value: object) -> bool:
    """Check a value against a field like IEM's `ValidData`."""
    if bool(field.get("required")) and _equals_empty_string(value):
        return False
    fieldtype = field.get("fieldtype", "text")
    if fieldtype in ("text", "textarea"):
        return not php.is_array(value)
    if fieldtype == "number":
        return value == "" or php.is_numeric(value)
    if fieldtype in ("dropdown", "radiobutton"):
        return not php.is_array(value) and (value == "" or php.to_string(value) in option_keys(field))
    if fieldtype == "checkbox":
        keys = option_keys(field)
        chosen = [php.to_string(item) for item in php.array_values(value) if item != ""]
        if not chosen:
            return not bool(field.get("required"))
        return all(item in keys for item in chosen)
    return False  # date fields are handled by the caller, see parse_date_value


def parse_date_value(value: object) -> bool:
    """Return whether a date value has the dd/mm/yyyy form IEM's date `CheckData` accepts."""
    return isinstance(value, str) and _DATE_RE.match(value) is not None


def stored_value(data: object) -> Any:
    """Convert data the way `SaveSubscriberCustomField` stores it; None means "store nothing".

    A {dd, mm, yy} array becomes "dd/mm/yy" (zero-padded), any other array is kept as a
    list (IEM stores it PHP-serialised), and PHP-empty data ("" and "0" too) is not stored.
    """
    if isinstance(data, dict) and {"dd", "mm", "yy"} <= data.keys():
        text = f"{php.to_string(data['dd']):0>2}/{php.to_string(data['mm']):0>2}/{php.to_string(data['yy'])}"
        return None if text in ("//", "00/00/") else text
    if isinstance(data, dict):
        return php.serialize(data) if data else None
    if isinstance(data, (list, tuple)):
        return list(data) if data else None
    if php.is_empty(data):
        return None
    return php.to_string(data)


def save_value(row: Subscriber, fieldid: int, data: object) -> None:
    """Replace a row's value for one field; PHP-empty data only deletes the old value."""
    value = stored_value(data)
    fields = dict(row.customfields or {})
    fields.pop(str(fieldid), None)
    if value is not None:
        fields[str(fieldid)] = value
    row.customfields = fields or None


def output_value(value: Any) -> str:
    """Return a stored value as IEM outputs it: lists are PHP-serialised."""
    if isinstance(value, list):
        return php.serialize(value)
    return php.to_string(value)


def field_settings(field: dict[str, Any]) -> str:
    """Return the PHP-serialised `fieldsettings` column for a field."""
    if "fieldsettings" in field:
        return php.to_string(field["fieldsettings"])
    if field.get("fieldtype") in OPTION_TYPES:
        return php.serialize({"Key": option_keys(field), "Value": option_labels(field)})
    return php.serialize({})


def fields_for_lists(state: SimulatorState, listids: list[int]) -> list[dict[str, Any]]:
    """Return the fields attached to any of the lists, ordered by name case-insensitively.

    A field without a `lists` entry is attached to every list.
    """
    selected = set(listids)
    fields = [
        field
        for field in state.custom_fields.values()
        if field.get("lists") is None or selected.intersection(int(listid) for listid in field["lists"])
    ]
    return sorted(fields, key=lambda field: (str(field.get("name", "")).lower(), field["fieldid"]))


def _equals_empty_string(value: object) -> bool:
    """Evaluate PHP 5/7 `$value == ''`."""
    if value is None or value is False:
        return True
    if isinstance(value, str):
        return value == ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 0
    return False
