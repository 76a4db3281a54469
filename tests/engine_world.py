"""An in-memory model of both sides for fast engine tests.

Writes follow what the real systems do (IEM's add, activate, unsubscribe and confirm; Magento's
guarded status update and guest insert), so the engine can be run again and again on the
result without a database or a server. The end-to-end tests check the same rules for real.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edm_tui.sync.identity import group_magento_rows, index_iem_rows
from edm_tui.sync.model import Action, IemRow, MagentoRow
from edm_tui.sync.reconcile import Plan, SyncOptions, reconcile
from edm_tui.sync.state import SyncedState

WEBSITE_STORES = {1: 1, 2: 3}


@dataclass
class World:
    magento: dict[int, MagentoRow] = field(default_factory=dict)
    iem: dict[int, IemRow] = field(default_factory=dict)
    last: dict[tuple[str, int], SyncedState] = field(default_factory=dict)
    now: int = 1_700_000_000
    website_lists: dict[int, int] = field(default_factory=lambda: {1: 1, 2: 2})
    import_new_subscribers: bool = True
    next_magento_id: int = 1000
    next_iem_id: int = 5000
    writes: list[tuple[str, str]] = field(default_factory=list)

    def add_magento(self, sid: int, email: str, status: int, changed_at: int | None = None,
                    store_id: int | None = 1, customer_id: int = 0, firstname: str | None = None,
                    lastname: str | None = None) -> None:
        website = {1: 1, 2: 1, 3: 2, 0: 0}.get(store_id) if store_id is not None else None
        self.magento[sid] = MagentoRow(sid, email, store_id, website, customer_id, status, changed_at,
                                       firstname, lastname)

    def add_iem(self, sid: int, email: str, list_id: int = 1, *, confirmed: bool = True,
                subscribedate: int = 1_600_000_000, unsubscribed: int = 0, bounced: int = 0) -> None:
        self.iem[sid] = IemRow(sid, email, list_id, confirmed, subscribedate, unsubscribed, bounced)

    def options(self) -> SyncOptions:
        return SyncOptions(default_list=1, website_lists=self.website_lists, websites=(1, 2),
                           default_store_ids=WEBSITE_STORES, now=self.now,
                           import_new_subscribers=self.import_new_subscribers)

    def plan(self) -> Plan:
        scan = group_magento_rows(self.magento.values())
        return reconcile(self.options(), scan, index_iem_rows(self.iem.values()), self.last)

    def iem_row(self, list_id: int, email: str) -> IemRow | None:
        for row in self.iem.values():
            if row.list_id == list_id and row.email.strip().lower() == email.strip().lower():
                return row
        return None

    def sync(self) -> Plan:
        """One run where every write succeeds; returns the plan it carried out."""
        self.now += 3600
        plan = self.plan()
        for state in plan.settled:
            self.last[state.key] = state
        for group in plan.groups:
            guest_ids = {}
            for d in group.decisions:
                self.writes.append((d.action.value, d.email_norm))
                new_id = self._apply(d)
                if new_id is not None:
                    guest_ids[d.website_id] = new_id
            for state in group.final_states:
                if state.website_id in guest_ids:
                    state = replace(state, subscriber_ids=(guest_ids[state.website_id],))
                self.last[state.key] = state
        return plan

    def _apply(self, d) -> int | None:  # noqa: ANN001 - a Decision
        now = self.now
        if d.action is Action.ADD:
            assert self.iem_row(d.list_id, d.email) is None, "a second add would duplicate the row"
            self.next_iem_id += 1
            self.add_iem(self.next_iem_id, d.email, d.list_id, confirmed=True, subscribedate=now)
        elif d.action is Action.CONFIRM:
            row = self.iem_row(d.list_id, d.email)
            self.iem[row.subscriber_id] = replace(row, confirmed=True)
        elif d.action is Action.ACTIVATE:
            row = self.iem_row(d.list_id, d.email)
            newest = max((r.changed_at or 0 for r in self.magento.values()
                          if r.email and r.email.strip().lower() == d.email_norm), default=0)
            assert newest > max(row.unsubscribed, row.bounced), "resubscribed a newer IEM unsubscribe"
            self.iem[row.subscriber_id] = replace(row, unsubscribed=0, bounced=0, confirmed=True)
        elif d.action is Action.UNSUBSCRIBE_IEM:
            row = self.iem_row(d.list_id, d.email)
            assert row.unsubscribed == 0, "unsubscribe called on an unsubscribed row"
            assert row.bounced == 0, "unsubscribe called on a bounced row"
            self.iem[row.subscriber_id] = replace(row, unsubscribed=now)
        elif d.action in (Action.SUBSCRIBE_MAGENTO, Action.UNSUBSCRIBE_MAGENTO):
            for sid, status in d.rows:
                row = self.magento[sid]
                assert row.status == status
                if d.action is Action.SUBSCRIBE_MAGENTO and status == 3:
                    iem = self.iem_row(d.list_id, d.email)
                    assert iem.subscribedate > (row.changed_at or 0), "resubscribed a newer Magento unsubscribe"
                self.magento[sid] = replace(row, status=d.target_status, changed_at=now)
        elif d.action is Action.CREATE_GUEST:
            self.next_magento_id += 1
            self.add_magento(self.next_magento_id, d.email, d.target_status, now, store_id=d.store_id)
            return self.next_magento_id
        return None
