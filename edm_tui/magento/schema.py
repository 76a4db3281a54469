"""Table names with Magento's table prefix, and the test schema rendered for a prefix."""

from __future__ import annotations

import hashlib
import re
from importlib import resources

# Letters, digits and underscores only, so a prefixed name never needs escaping inside
# backticks. The length limit keeps every prefixed table name of the newsletter schema well
# inside MySQL's 64-character identifier limit.
TABLE_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_]*")
MAX_TABLE_PREFIX_LENGTH = 20

MAX_IDENTIFIER_LENGTH = 64

PREFIX_PLACEHOLDER = "{prefix}"

_LOGICAL_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
_CONSTRAINT_NAME_PATTERN = re.compile(r"CONSTRAINT `([^`]+)`")


def validate_table_prefix(prefix: str) -> str:
    """Return the prefix unchanged, or raise ValueError if Magento could not use it."""
    if not isinstance(prefix, str) or not TABLE_PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(
            f"Invalid table prefix {prefix!r}: use only letters, digits and underscores."
        )
    if len(prefix) > MAX_TABLE_PREFIX_LENGTH:
        raise ValueError(
            f"Invalid table prefix {prefix!r}: it is {len(prefix)} characters long, "
            f"the maximum is {MAX_TABLE_PREFIX_LENGTH}."
        )
    return prefix


def prefixed_name(prefix: str, logical_name: str) -> str:
    """Return the unquoted table name, for example `m2_newsletter_subscriber`."""
    validate_table_prefix(prefix)
    if not _LOGICAL_NAME_PATTERN.fullmatch(logical_name):
        raise ValueError(f"Invalid logical table name {logical_name!r}.")
    return prefix + logical_name


def quoted_table_name(prefix: str, logical_name: str) -> str:
    """Return the prefixed table name in backticks, ready to put into SQL."""
    return f"`{prefixed_name(prefix, logical_name)}`"


def shorten_constraint_name(name: str) -> str:
    """Return a foreign-key name that fits MySQL's 64-character identifier limit.

    Longer names become `FK_` followed by the upper-case MD5 of the full name, so distinct
    long names stay distinct.
    """
    if len(name) <= MAX_IDENTIFIER_LENGTH:
        return name
    return "FK_" + hashlib.md5(name.encode("utf-8")).hexdigest().upper()


def schema_sql_template() -> str:
    """Return the text of schema.sql with its `{prefix}` placeholders."""
    return resources.files("edm_tui.magento").joinpath("schema.sql").read_text(encoding="utf-8")


def render_schema_statements(prefix: str = "") -> list[str]:
    """Return the statements of schema.sql for one table prefix, in order, without comments.

    The statements include session settings (`SET NAMES`, `SET SESSION sql_mode`,
    `SET SESSION time_zone`), so run them on a connection used for loading only.
    """
    validate_table_prefix(prefix)
    text = schema_sql_template().replace(PREFIX_PLACEHOLDER, prefix)
    text = _CONSTRAINT_NAME_PATTERN.sub(
        lambda match: f"CONSTRAINT `{shorten_constraint_name(match.group(1))}`", text
    )

    # schema.sql keeps comments on lines of their own and ends every statement with a
    # semicolon at the end of a line, so a line-based split is exact for it.
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    statements = []
    current: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if current:
        raise ValueError("schema.sql ends with a statement that has no closing semicolon.")
    return statements
