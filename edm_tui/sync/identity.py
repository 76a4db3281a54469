"""Identities, representative rows and the state classes of both sides."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from edm_tui.sync.model import IemRow, MagentoRow, MagentoStatus

log = logging.getLogger("edm_sync.engine")

Identity = tuple[str, int]  # (normalised email, website id)


def normalise_email(email: str) -> str:
    """Surrounding white space removed and lower-cased: the key both sides are matched on."""
    return email.strip().lower()


class MagentoClass(str, Enum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    PENDING_CONFIRMATION = "pending_confirmation"  # status 2: newsletter double opt-in
    PENDING_ACCOUNT = "pending_account"  # status 4, and unknown codes treated the same way
    ABSENT = "absent"


class IemClass(str, Enum):
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    ABSENT = "absent"


def magento_class(status: int | None) -> MagentoClass:
    if status is None:
        return MagentoClass.ABSENT
    if status == MagentoStatus.SUBSCRIBED:
        return MagentoClass.SUBSCRIBED
    if status == MagentoStatus.UNSUBSCRIBED:
        return MagentoClass.UNSUBSCRIBED
    if status == MagentoStatus.NOT_ACTIVE:
        return MagentoClass.PENDING_CONFIRMATION
    return MagentoClass.PENDING_ACCOUNT


def iem_class(row: IemRow | None) -> IemClass:
    if row is None:
        return IemClass.ABSENT
    if row.unsubscribed > 0:
        return IemClass.UNSUBSCRIBED
    if row.bounced > 0:
        return IemClass.BOUNCED
    return IemClass.ACTIVE


def iem_change_time(row: IemRow) -> int:
    """Return the time of the IEM row's current state: unsubscribe, bounce or subscribe time."""
    if row.unsubscribed > 0:
        return row.unsubscribed
    if row.bounced > 0:
        return row.bounced
    return row.subscribedate


def representative(rows: list[MagentoRow]) -> MagentoRow:
    """Return the row that represents an identity.

    Newest change_status_at first (NULL is oldest), then a customer's row over a guest's,
    then the highest subscriber_id.
    """
    return max(
        rows,
        key=lambda r: (
            r.changed_at is not None,
            r.changed_at or 0,
            r.customer_id > 0,
            r.subscriber_id,
        ),
    )


@dataclass(slots=True)
class MagentoScan:
    """Magento rows grouped by identity, plus what was left out and why."""

    identities: dict[Identity, list[MagentoRow]]
    out_of_scope: int = 0  # store_id 0 or NULL: belongs to no website
    invalid_email: int = 0  # NULL or blank email
    duplicates: int = 0  # identities with more than one row


OUT_OF_SCOPE = "out_of_scope"
INVALID_EMAIL = "invalid_email"


def magento_identity(row: MagentoRow) -> Identity | str:
    """Return the row's identity, or OUT_OF_SCOPE or INVALID_EMAIL when it is left out."""
    if not row.website_id:
        return OUT_OF_SCOPE
    if row.email is None or not row.email.strip():
        return INVALID_EMAIL
    return (normalise_email(row.email), row.website_id)


def group_magento_rows(rows: Iterable[MagentoRow]) -> MagentoScan:
    scan = MagentoScan(identities={})

    for row in rows:
        key = magento_identity(row)
        if key == OUT_OF_SCOPE:
            scan.out_of_scope += 1
        elif key == INVALID_EMAIL:
            scan.invalid_email += 1
        else:
            scan.identities.setdefault(key, []).append(row)  # type: ignore[arg-type]

    for key, group in scan.identities.items():
        if len(group) > 1:
            scan.duplicates += 1
            chosen = representative(group)
            log.debug(
                "identity %s on website %d has %d rows; representative subscriber_id %d",
                key[0], key[1], len(group), chosen.subscriber_id,
            )
    return scan


def index_iem_rows(rows: Iterable[IemRow]) -> dict[tuple[int, str], IemRow]:
    """IEM rows keyed by (list id, normalised email).

    IEM matches emails case-insensitively, so one list holds one row per normalised email;
    should a list still return two, the one with the lower subscriber id (the original) wins.
    """
    index: dict[tuple[int, str], IemRow] = {}
    for row in rows:
        key = (row.list_id, normalise_email(row.email))
        kept = index.get(key)
        if kept is None or row.subscriber_id < kept.subscriber_id:
            index[key] = row
    return index


def list_for_website(website_id: int, default_list: int, website_lists: Mapping[int, int]) -> int:
    return website_lists.get(website_id, default_list)
