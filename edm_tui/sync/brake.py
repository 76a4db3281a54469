"""The safety brake: a run that would unsubscribe too many people stops before writing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edm_tui.i18n import Translatable
from edm_tui.sync.identity import IemClass
from edm_tui.sync.model import Action
from edm_tui.sync.reconcile import Plan
from edm_tui.sync.state import SyncedState

MIN_LIMIT = 50
SHARE = 0.05


@dataclass(frozen=True, slots=True)
class BrakeReason:
    code: str  # "mass_unsubscribe" or "empty_list"
    side: str = ""  # "iem" or "magento" for mass unsubscribes
    count: int = 0
    limit: int = 0
    list_id: int = 0
    subscribed: int = 0

    def message(self) -> Translatable:
        if self.code == "empty_list":
            return Translatable(
                "IEM list {list_id} returned no subscribers, but the last sync saw {subscribed} "
                "active there; check the list in IEM before letting a run through"
            , list_id=self.list_id, subscribed=self.subscribed)
        side = "IEM" if self.side == "iem" else "Magento"
        return Translatable(
            "the run would unsubscribe {count} subscribers in {side}, more than the limit of "
            "{limit} (the larger of {minimum} and 5 percent of {subscribed} subscribed)"
        , count=self.count, side=side, limit=self.limit, minimum=MIN_LIMIT,
                 subscribed=self.subscribed)


def unsubscribe_limit(subscribed: int) -> int:
    return max(MIN_LIMIT, int(subscribed * SHARE))


def check_brake(
    plan: Plan,
    list_sizes: Mapping[int, int],
    last: Mapping[tuple[str, int], SyncedState] | Iterable[SyncedState] = (),
    *,
    active_before: Mapping[int, int] | None = None,
) -> BrakeReason | None:
    """Return the reason this plan must not run unattended, or None when it may.

    `active_before` (identities active in IEM at the last sync, by list) can be given instead
    of `last`, from which it is counted otherwise.
    """
    if active_before is None:
        states = last.values() if isinstance(last, Mapping) else last
        counted: dict[int, int] = {}
        for state in states:
            if state.iem_class == IemClass.ACTIVE.value:
                counted[state.list_id] = counted.get(state.list_id, 0) + 1
        active_before = counted

    for list_id, size in sorted(list_sizes.items()):
        if size == 0 and active_before.get(list_id, 0) > 0:
            return BrakeReason("empty_list", list_id=list_id, subscribed=active_before[list_id])

    limit = unsubscribe_limit(plan.subscribed_identities)
    counts = plan.counts()
    by_side = {
        "iem": counts.get(Action.UNSUBSCRIBE_IEM.value, 0),
        "magento": counts.get(Action.UNSUBSCRIBE_MAGENTO.value, 0),
    }
    for side, count in by_side.items():
        if count > limit:
            return BrakeReason("mass_unsubscribe", side=side, count=count, limit=limit,
                               subscribed=plan.subscribed_identities)
    return None
