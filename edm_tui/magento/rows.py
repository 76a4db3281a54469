"""The subscriber query and the conversion of its records into MagentoRow values."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from edm_tui.sync.model import MagentoRow


def subscriber_rows_query(table: Callable[[str], str]) -> str:
    """Return the one query that reads every subscriber row with its website and names.

    `table` maps a logical table name to the quoted, prefixed name. Rows whose store_id is
    NULL, or names a missing store, get website_id NULL. Names are read as the stored bytes and
    decoded per row, so one name that is not valid UTF-8 cannot fail the whole result.
    UNIX_TIMESTAMP() of a TIMESTAMP column returns the stored instant whatever the session
    time zone is.
    """
    subscriber = table("newsletter_subscriber")
    store = table("store")
    customer = table("customer_entity")
    return (
        "SELECT s.subscriber_id, s.subscriber_email, s.store_id, st.website_id,"
        " s.customer_id, s.subscriber_status, UNIX_TIMESTAMP(s.change_status_at),"
        " CAST(c.firstname AS BINARY), CAST(c.lastname AS BINARY)"
        f" FROM {subscriber} AS s"
        f" LEFT JOIN {store} AS st ON st.store_id = s.store_id"
        f" LEFT JOIN {customer} AS c ON c.entity_id = s.customer_id AND s.customer_id <> 0"
        " ORDER BY s.subscriber_id"
    )


def decode_name(raw: bytes | None, field: str, customer_id: int) -> tuple[str | None, str | None]:
    """Decode a stored name strictly as UTF-8 and return (name, error).

    Invalid bytes give (None, a reason that names the field and the customer id).
    NOTE: the bytes are those of the column's charset. A latin1 column (left by an old
    install) with correctly converted non-ASCII text therefore gives an error, not the name.
    """
    if raw is None:
        return None, None
    try:
        return bytes(raw).decode("utf-8"), None
    except UnicodeDecodeError:
        return None, f"{field} of customer {customer_id} is not valid UTF-8"


def decode_email(raw: str | bytes | None) -> str | None:
    """Return the stored email as text, or None when it cannot be read.

    The server converts a text column to the session's utf8mb4, so it arrives as str. A
    binary column (VARBINARY, BLOB, CHARACTER SET binary) arrives as bytes, which are decoded
    strictly as UTF-8. Bytes that are not UTF-8 give None, so the row is counted as an invalid
    email like NULL, because any guessed spelling would be another address.
    """
    if raw is None or isinstance(raw, str):
        return raw
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None


def row_from_record(record: Sequence[Any]) -> MagentoRow:
    """Convert one record of subscriber_rows_query() into a MagentoRow."""
    (
        subscriber_id,
        email,
        store_id,
        website_id,
        customer_id,
        status,
        changed_at,
        raw_firstname,
        raw_lastname,
    ) = record

    firstname, firstname_error = decode_name(raw_firstname, "firstname", customer_id)
    lastname, lastname_error = decode_name(raw_lastname, "lastname", customer_id)
    errors = [error for error in (firstname_error, lastname_error) if error]

    # A zero TIMESTAMP ('0000-00-00 00:00:00', which Magento's non-strict sessions can write)
    # gives 0 and means "never set", like NULL.
    return MagentoRow(
        subscriber_id=int(subscriber_id),
        email=decode_email(email),
        store_id=None if store_id is None else int(store_id),
        website_id=None if website_id is None else int(website_id),
        customer_id=int(customer_id),
        status=int(status),
        changed_at=int(changed_at) if changed_at else None,
        firstname=firstname,
        lastname=lastname,
        name_error="; ".join(errors) if errors else None,
    )
