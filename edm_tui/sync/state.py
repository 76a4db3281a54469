"""The last synced state: what a run last saw or wrote for each identity."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SyncedState:
    email: str  # normalised
    website_id: int
    list_id: int
    magento_status: int | None  # None: the identity had no Magento row
    subscriber_ids: tuple[int, ...]
    iem_class: str  # IemClass value
    iem_confirmed: bool
    iem_subscriber_id: int | None
    firstname: str | None  # the names last pushed to IEM; None = never pushed
    lastname: str | None
    synced_at: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.email, self.website_id)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A permanent refusal, not retried until the Magento data of the identity changes."""

    email: str
    website_id: int
    action: str
    fingerprint: str
    message: str
