"""PHP value semantics that IEM's XML API depends on.

IEM passes every request value to its PHP API as a string (or an array of strings) and
relies on PHP's loose typing. These helpers reproduce the PHP 5/7 behaviour that IEM 6.1.x
ran on: `empty()`, `(int)` casts, `is_numeric()`, loose comparisons with 0, `trim()`,
`htmlspecialchars(..., ENT_QUOTES)` and `serialize()`.

PHP arrays are modelled as Python lists (consecutive integer keys) or dicts (any other keys);
tuples stand for the `array(bool, message)` pairs that many IEM methods return.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

PHP_TRIM_CHARACTERS = " \t\n\r\0\x0b"
PHP_TRIM_BYTES = b" \t\n\r\0\x0b"

_NUMERIC_RE = re.compile(r"[ \t\n\r\v\f]*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")
_LEADING_INT_RE = re.compile(r"[ \t\n\r\v\f]*([+-]?\d+)")
_LEADING_NUMBER_RE = re.compile(r"[ \t\n\r\v\f]*([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def is_array(value: object) -> bool:
    """Return whether `value` models a PHP array."""
    return isinstance(value, (list, tuple, dict))


def array_items(value: Any) -> Iterator[tuple[Any, Any]]:
    """Iterate a PHP array as (key, value) pairs in insertion order."""
    if isinstance(value, dict):
        return iter(value.items())
    return enumerate(value)


def array_values(value: Any) -> list[Any]:
    """Return the values of a PHP array, or `[value]` for a scalar."""
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def array_append(array: list[Any] | dict[Any, Any], value: Any) -> None:
    """Append like PHP `$array[] = $value`, which uses the next free integer key."""
    if isinstance(array, list):
        array.append(value)
        return
    integer_keys = [key for key in array if isinstance(key, int)]
    array[max(integer_keys) + 1 if integer_keys else 0] = value


def is_empty(value: object) -> bool:
    """Apply PHP `empty()`: null, false, 0, "", "0" and empty arrays are empty."""
    if value is None or value is False:
        return True
    if value is True:
        return False
    if isinstance(value, (int, float)):
        return value == 0
    if isinstance(value, str):
        return value in ("", "0")
    if is_array(value):
        return len(value) == 0  # type: ignore[arg-type]
    return False


def is_truthy(value: object) -> bool:
    """Apply PHP boolean conversion: "false" and "no" are true, "0" is false."""
    return not is_empty(value)


def is_numeric(value: object) -> bool:
    """Apply PHP 5/7 `is_numeric()`: leading whitespace is allowed, trailing is not."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        return _NUMERIC_RE.match(value) is not None
    return False


def intval(value: object) -> int:
    """Apply a PHP 5 `(int)` cast: the leading integer of a string, 0 when there is none."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        match = _LEADING_INT_RE.match(value)
        return int(match.group(1)) if match else 0
    if is_array(value):
        return 1 if value else 0  # type: ignore[arg-type]
    return 0


def to_number(value: object) -> float:
    """Convert a value to a number the way PHP 5/7 does before comparing it with an int."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = _LEADING_NUMBER_RE.match(value)
        return float(match.group(1)) if match else 0.0
    return 0.0


def is_at_most_zero(value: object) -> bool:
    """Evaluate PHP `$value <= 0` with PHP 5/7 loose comparison rules."""
    if is_array(value):
        return False  # PHP ranks any array above any number.
    if value is None:
        return True
    return to_number(value) <= 0


def check_int_vars(value: object) -> list[int]:
    """Keep the numeric entries of an id array as ints, like IEM's `CheckIntVars`.

    Comma-joined strings such as "1,2" are not numeric, so they are dropped.
    """
    if not is_array(value):
        return []
    return [intval(item) for item in array_values(value) if is_numeric(item)]


def trim(value: object) -> str:
    """Apply PHP `trim()`; arrays give an empty string (PHP returns null for them)."""
    if isinstance(value, str):
        return value.strip(PHP_TRIM_CHARACTERS)
    if is_array(value) or value is None:
        return ""
    return to_string(value).strip(PHP_TRIM_CHARACTERS)


def strtolower(value: object) -> str:
    """Apply PHP `strtolower()` in the C locale, which only folds ASCII letters."""
    if is_array(value):
        return ""
    return to_string(value).translate(_ASCII_LOWER)


def to_string(value: object) -> str:
    """Convert a value to a string as PHP string interpolation does."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, float):
        return repr(value) if value != int(value) else str(int(value))
    if is_array(value):
        return "Array"
    return str(value)


def htmlspecialchars(value: object) -> str:
    """Escape like PHP `htmlspecialchars($value, ENT_QUOTES, 'UTF-8')`.

    PHP returns an empty string for input that is not valid UTF-8; Python strings holding
    lone surrogates are the equivalent here.
    """
    text = to_string(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return ""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#039;")
    )


def serialize(value: object) -> str:
    """Encode a value with PHP `serialize()`; string lengths count UTF-8 bytes."""
    if value is None:
        return "N;"
    if isinstance(value, bool):
        return f"b:{int(value)};"
    if isinstance(value, int):
        return f"i:{value};"
    if isinstance(value, float):
        return f"d:{value!r};"
    if is_array(value):
        parts = [f"a:{len(value)}:{{"]  # type: ignore[arg-type]
        for key, item in array_items(value):
            parts.append(_serialize_key(key))
            parts.append(serialize(item))
        parts.append("}")
        return "".join(parts)
    text = to_string(value)
    return f's:{len(text.encode("utf-8"))}:"{text}";'


def _serialize_key(key: object) -> str:
    if isinstance(key, int) or (isinstance(key, str) and re.fullmatch(r"-?[1-9]\d*|0", key)):
        return f"i:{int(key)};"  # type: ignore[arg-type]
    return serialize(to_string(key))


def join_strings(values: Iterable[object]) -> str:
    """Concatenate values the way PHP `echo` does when it loops over an array."""
    return "".join(to_string(value) for value in values)
