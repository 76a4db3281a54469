"""Plain data shared by the engine and the adapters.

Times are Unix seconds (UTC) everywhere in the engine. Magento's `change_status_at` is
converted on read; IEM already speaks Unix time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum


class MagentoStatus(IntEnum):
    """`newsletter_subscriber.subscriber_status` codes of Magento 2.4."""

    SUBSCRIBED = 1
    NOT_ACTIVE = 2  # waiting for the newsletter double opt-in link
    UNSUBSCRIBED = 3
    UNCONFIRMED = 4  # the customer account itself is not confirmed yet


@dataclass(frozen=True, slots=True)
class MagentoRow:
    """One `newsletter_subscriber` row joined with its store and customer."""

    subscriber_id: int
    email: str | None  # as stored; None or blank rows are reported, never synced
    store_id: int | None
    website_id: int | None  # None when the row's store is missing (store_id NULL)
    customer_id: int
    status: int
    changed_at: int | None  # change_status_at; None is older than anything
    firstname: str | None = None
    lastname: str | None = None
    name_error: str | None = None  # why a name could not be read (invalid UTF-8, ...)


@dataclass(frozen=True, slots=True)
class IemRow:
    """One row of an IEM list, as GetSubscribers returns it."""

    subscriber_id: int
    email: str
    list_id: int
    confirmed: bool
    subscribedate: int
    unsubscribed: int  # Unix time of the unsubscribe, 0 when not unsubscribed
    bounced: int  # Unix time of the bounce, 0 when not bounced


class Direction(str, Enum):
    TO_IEM = "to_iem"
    TO_MAGENTO = "to_magento"


class Action(str, Enum):
    """Everything a run can write, one value per kind of write."""

    ADD = "add"  # AddSubscriberToList
    CONFIRM = "confirm"  # ChangeSubscriberConfirm to confirmed
    ACTIVATE = "activate"  # ActivateSubscriber (+ confirm when unconfirmed)
    UNSUBSCRIBE_IEM = "unsubscribe_iem"  # UnsubscribeSubscriber
    UPDATE_NAMES = "update_names"  # SaveSubscriberCustomField
    SUBSCRIBE_MAGENTO = "subscribe_magento"  # Magento rows -> 1
    UNSUBSCRIBE_MAGENTO = "unsubscribe_magento"  # Magento rows -> 3
    CREATE_GUEST = "create_guest"  # new guest row in Magento

    @property
    def direction(self) -> Direction:
        if self in (Action.SUBSCRIBE_MAGENTO, Action.UNSUBSCRIBE_MAGENTO, Action.CREATE_GUEST):
            return Direction.TO_MAGENTO
        return Direction.TO_IEM

    @property
    def unsubscribes(self) -> bool:
        return self in (Action.UNSUBSCRIBE_IEM, Action.UNSUBSCRIBE_MAGENTO)


class Outcome(str, Enum):
    PENDING = "pending"  # intent recorded, write not confirmed yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # the guard found a concurrent change; the next run decides
    INTERRUPTED = "interrupted"  # the run died between intent and outcome


@dataclass(slots=True)
class Attempts:
    """Counts the HTTP attempts one logical IEM call took (retries included)."""

    n: int = 0
