"""Three-way reconciliation: both sides and the last synced state in, a plan of writes out.

Pure functions over plain data; no I/O. Each rule of the sync contract lives here:
which side changed, the conflict rule (the newer change wins, a tie goes to the
unsubscribe), pending statuses, deleted rows, names, and lists shared by several websites.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Mapping
from dataclasses import dataclass, field, replace

from edm_tui.sync.identity import (
    Identity,
    IemClass,
    MagentoClass,
    MagentoScan,
    iem_change_time,
    iem_class,
    list_for_website,
    magento_class,
    normalise_email,
    representative,
)
from edm_tui.sync.model import Action, IemRow, MagentoRow, MagentoStatus
from edm_tui.sync.state import Rejection, SyncedState


@dataclass(frozen=True, slots=True)
class SyncOptions:
    default_list: int
    website_lists: Mapping[int, int]
    websites: tuple[int, ...]  # customer-facing websites known in Magento
    default_store_ids: Mapping[int, int]  # website id -> its default store view
    now: int
    import_new_subscribers: bool = True
    bounced_is_unsubscribed: bool = True
    names_enabled: bool = True

    def list_of(self, website_id: int) -> int:
        return list_for_website(website_id, self.default_list, self.website_lists)


@dataclass(frozen=True, slots=True)
class Decision:
    """One write a run intends to make."""

    action: Action
    email: str  # the spelling written
    email_norm: str
    list_id: int
    website_id: int | None
    reason: str
    rows: tuple[tuple[int, int], ...] = ()  # (subscriber_id, status read) for Magento writes
    target_status: int | None = None
    store_id: int | None = None  # guest creation
    iem_subscriber_id: int | None = None
    iem_confirmed: bool = True
    firstname: str | None = None  # names to push; None leaves the field alone
    lastname: str | None = None
    fingerprint: str = ""
    changed_at: int | None = None  # Magento's change time, for conflicts found while writing

    @property
    def direction(self) -> str:
        return self.action.direction.value


@dataclass(slots=True)
class GroupPlan:
    """Everything to write for one (list, email), in order, and the states to record after."""

    list_id: int
    email_norm: str
    decisions: list[Decision]
    final_states: list[SyncedState]
    previous_names: dict[Identity, tuple[str | None, str | None]] = field(default_factory=dict)


@dataclass(slots=True)
class Plan:
    """A run's decisions and counts.

    A streamed plan (see `edm_tui.daemon.spill`) keeps only a sample of its groups and
    invalid decisions, so that its size does not grow with the shop. Its `totals` then contains the
    decision count of every action, and `truncated` is true.
    """

    groups: list[GroupPlan] = field(default_factory=list)
    settled: list[SyncedState] = field(default_factory=list)  # no write needed, record what was seen
    rejected: list[Decision] = field(default_factory=list)  # refused before; data unchanged
    invalid: list[tuple[Decision, str]] = field(default_factory=list)  # bad data, failed up front
    subscribed_identities: int = 0
    identities: int = 0
    out_of_scope: int = 0
    invalid_email: int = 0
    duplicates: int = 0
    pending: int = 0
    unknown_status: int = 0
    rejected_count: int | None = None  # len(rejected) of the whole plan; a streamed plan leaves rejected empty
    totals: dict[str, int] | None = None  # decisions by action of the whole plan, when groups is a sample
    truncated: bool = False

    @property
    def decisions(self) -> list[Decision]:
        # NOTE: of a truncated plan these are the sampled decisions only; counts() has the totals.
        return [d for g in self.groups for d in g.decisions]

    def counts(self) -> dict[str, int]:
        """Return the number of decisions by action value, of the whole plan."""
        if self.totals is not None:
            return dict(self.totals)
        counts: dict[str, int] = {}
        for decision in self.decisions:
            counts[decision.action.value] = counts.get(decision.action.value, 0) + 1
        return counts


# Verdicts of one identity, before the members of a shared list are merged.
WISH_NONE, WISH_SUBSCRIBE, WISH_UNSUBSCRIBE = 0, 1, 2


@dataclass(slots=True)
class _Member:
    key: Identity
    rows: list[MagentoRow]
    last: SyncedState | None
    rep: MagentoRow | None
    mclass: MagentoClass
    deleted: bool
    wish: int = WISH_NONE
    target: int | None = None
    reason: str = ""


def _fingerprint(rows: list[MagentoRow]) -> str:
    parts = [
        f"{r.subscriber_id}|{r.email}|{r.status}|{r.customer_id}|{r.firstname}|{r.lastname}"
        for r in sorted(rows, key=lambda r: r.subscriber_id)
    ]
    return hashlib.sha1("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _newer(a: int | None, b: int | None) -> bool:
    """True when time a is strictly newer than time b (None is older than anything)."""
    if a is None:
        return False
    return b is None or a > b


def _decide_member(
    m: _Member, iem: IemRow | None, icls: IemClass, list_id: int, options: SyncOptions
) -> None:
    """Fill in what this identity wants, following the sync rule table."""
    last = m.last
    first_time = last is None or last.list_id != list_id
    status = m.rep.status if m.rep else None
    m_changed = first_time or last.magento_status != status  # type: ignore[union-attr]
    i_changed = first_time or (
        last.iem_class != icls.value  # type: ignore[union-attr]
        or (icls is IemClass.ACTIVE and iem is not None and last.iem_confirmed != iem.confirmed)  # type: ignore[union-attr]
    )
    if not m_changed and not i_changed:
        return

    mt = m.rep.changed_at if m.rep else None
    it = iem_change_time(iem) if iem is not None else None
    unsubscribed_in_iem = icls is IemClass.UNSUBSCRIBED or (
        icls is IemClass.BOUNCED and options.bounced_is_unsubscribed
    )
    both = m_changed and i_changed

    if m.mclass is MagentoClass.SUBSCRIBED:
        if icls is IemClass.ABSENT:
            m.wish, m.reason = WISH_SUBSCRIBE, "new_in_magento" if first_time else "magento_changed"
        elif icls is IemClass.ACTIVE:
            if not iem.confirmed:  # type: ignore[union-attr]
                m.wish, m.reason = WISH_SUBSCRIBE, "not_confirmed_in_iem"
        elif unsubscribed_in_iem:
            # A resubscribe on the IEM side needs a Magento subscribe newer than the IEM
            # unsubscribe; when IEM alone changed its change is carried to Magento.
            if not (i_changed and not m_changed) and _newer(mt, it):
                m.wish, m.reason = WISH_SUBSCRIBE, "magento_newer" if both else "magento_changed"
            else:
                m.target = MagentoStatus.UNSUBSCRIBED
                m.reason = "iem_changed" if not m_changed else "iem_newer"

    elif m.mclass is MagentoClass.UNSUBSCRIBED:
        if icls is IemClass.ACTIVE:
            if not (m_changed and not i_changed) and _newer(it, mt):
                m.target = MagentoStatus.SUBSCRIBED
                m.reason = "iem_newer" if both else "iem_changed"
            else:
                m.wish = WISH_UNSUBSCRIBE
                m.reason = "magento_changed" if not i_changed else "magento_newer"

    elif m.mclass is MagentoClass.PENDING_CONFIRMATION:
        if icls is IemClass.ACTIVE and iem.confirmed and _newer(it, mt):  # type: ignore[union-attr]
            m.target, m.reason = MagentoStatus.SUBSCRIBED, "confirmed_in_iem"
        elif unsubscribed_in_iem and _newer(it, mt):
            m.target, m.reason = MagentoStatus.UNSUBSCRIBED, "iem_newer"

    elif m.mclass is MagentoClass.PENDING_ACCOUNT:
        if unsubscribed_in_iem and _newer(it, mt):
            m.target, m.reason = MagentoStatus.UNSUBSCRIBED, "iem_newer"

    elif m.deleted:
        if icls is IemClass.ACTIVE:
            m.wish, m.reason = WISH_UNSUBSCRIBE, "row_deleted"


def _rows_needing(rows: list[MagentoRow], target: int) -> tuple[tuple[int, int], ...]:
    return tuple((r.subscriber_id, r.status) for r in rows if r.status != target)


def _email_spelling(rows: list[MagentoRow], fallback: str) -> str:
    if rows:
        return (representative(rows).email or fallback).strip()
    return fallback.strip()


@dataclass(slots=True)
class GroupInput:
    """The Magento rows, IEM row, last synced states and rejections of one (list id, normalised email).

    `websites` are the websites of the group's identities (those with Magento rows or a last
    synced state), sorted. The mappings are keyed by website id.
    """

    list_id: int
    email: str
    websites: list[int]
    rows: Mapping[int, list[MagentoRow]]
    last: Mapping[int, SyncedState]
    iem: IemRow | None
    rejections: Mapping[int, Rejection]


class Reconciler:
    """Builds a plan from both sides and the last synced state, all held in memory."""

    def __init__(
        self,
        options: SyncOptions,
        scan: MagentoScan,
        iem_rows: Mapping[tuple[int, str], IemRow],
        last: Mapping[Identity, SyncedState],
        rejections: Mapping[Identity, Rejection] | None = None,
    ) -> None:
        self.options = options
        self.scan = scan
        self.iem_rows = iem_rows
        self.last = last
        self.rejections = rejections or {}
        self.planner = GroupPlanner(options, self._subscriber_ids_now())

    def _subscriber_ids_now(self) -> dict[int, str]:
        ids: dict[int, str] = {}
        for (email, _website), rows in self.scan.identities.items():
            for row in rows:
                ids[row.subscriber_id] = email
        return ids

    def plan(self) -> Plan:
        plan = Plan(
            out_of_scope=self.scan.out_of_scope,
            invalid_email=self.scan.invalid_email,
            duplicates=self.scan.duplicates,
        )

        groups: dict[tuple[int, str], set[int]] = {}
        for email, website in list(self.scan.identities) + list(self.last):
            groups.setdefault((self.options.list_of(website), email), set()).add(website)
        for key in self.iem_rows:
            groups.setdefault(key, set())

        for (list_id, email), websites in groups.items():
            self.planner.plan_group(plan, self._group_input(list_id, email, sorted(websites)))
        return plan

    def _group_input(self, list_id: int, email: str, websites: list[int]) -> GroupInput:
        rows = {w: self.scan.identities[(email, w)] for w in websites if (email, w) in self.scan.identities}
        last = {w: self.last[(email, w)] for w in websites if (email, w) in self.last}
        rejections = {w: r for w in (*websites, *self.options.websites, 0)
                      if (r := self.rejections.get((email, w))) is not None}
        return GroupInput(list_id, email, websites, rows, last, self.iem_rows.get((list_id, email)),
                          rejections)


class GroupPlanner:
    """Plans one group at a time.

    `subscriber_ids_now` contains the subscriber_id of every in-scope Magento row with an
    email address, across all groups: an identity whose rows are gone but whose subscriber_id
    still exists had its email address changed.
    """

    def __init__(self, options: SyncOptions, subscriber_ids_now: Container[int]) -> None:
        self.options = options
        self.moved_ids = subscriber_ids_now

    def plan_group(self, plan: Plan, group: GroupInput) -> None:
        """Add the group's counts, decisions and settled states to `plan`."""
        list_id, email = group.list_id, group.email
        iem = group.iem
        icls = iem_class(iem)
        members = [self._member(group, w) for w in group.websites]

        for m in members:
            plan.identities += 1
            if m.mclass is MagentoClass.SUBSCRIBED or (icls is IemClass.ACTIVE and m.rows):
                plan.subscribed_identities += 1
            if m.mclass in (MagentoClass.PENDING_CONFIRMATION, MagentoClass.PENDING_ACCOUNT):
                plan.pending += 1
                if m.rep is not None and m.rep.status not in (2, 4):
                    plan.unknown_status += 1
            _decide_member(m, iem, icls, list_id, self.options)

        if not members and icls is IemClass.ACTIVE:
            plan.identities += 1
            plan.subscribed_identities += 1

        decisions = self._iem_decisions(members, iem, icls, list_id, email)
        decisions += self._magento_decisions(members, list_id, email)
        decisions += self._guest_decision(members, iem, icls, list_id, email)
        decisions += self._names_decision(members, iem, decisions, list_id, email)

        planned = len(decisions)
        decisions = self._drop_rejected(plan, group, decisions)
        decisions = self._drop_invalid(plan, group, decisions)
        final = self._final_states(members, iem, icls, list_id, email, decisions)

        if decisions:
            plan.groups.append(
                GroupPlan(
                    list_id=list_id,
                    email_norm=email,
                    decisions=decisions,
                    final_states=final,
                    previous_names={
                        m.key: (m.last.firstname, m.last.lastname) if m.last else (None, None)
                        for m in members
                    },
                )
            )
        elif len(decisions) == planned:
            # Nothing dropped: record what was seen. A refused or invalid write keeps the old
            # state instead, so it is reconsidered once the Magento data changes.
            plan.settled.extend(s for s in final if group.last.get(s.website_id) != _without_time(s, group.last))

    def _member(self, group: GroupInput, website: int) -> _Member:
        email = group.email
        rows = group.rows.get(website, [])
        last = group.last.get(website)
        rep = representative(rows) if rows else None
        deleted = not rows and last is not None and last.magento_status is not None
        return _Member(
            key=(email, website),
            rows=rows,
            last=last,
            rep=rep,
            mclass=magento_class(rep.status if rep else None),
            deleted=deleted,
        )

    def _iem_decisions(
        self, members: list[_Member], iem: IemRow | None, icls: IemClass, list_id: int, email: str
    ) -> list[Decision]:
        subscribers = [m for m in members if m.wish == WISH_SUBSCRIBE]
        if subscribers:
            m = subscribers[0]
            spelling = _email_spelling(m.rows, email)
            fingerprint = _fingerprint(m.rows)
            if icls is IemClass.ABSENT:
                first, last = self._names_of(members)
                return [
                    Decision(Action.ADD, spelling, email, list_id, m.key[1], m.reason,
                             firstname=first, lastname=last, fingerprint=fingerprint,
                             changed_at=m.rep.changed_at if m.rep else None)
                ]
            if icls is IemClass.ACTIVE:
                return [
                    Decision(Action.CONFIRM, spelling, email, list_id, m.key[1], m.reason,
                             iem_subscriber_id=iem.subscriber_id, fingerprint=fingerprint)  # type: ignore[union-attr]
                ]
            return [
                Decision(Action.ACTIVATE, spelling, email, list_id, m.key[1], m.reason,
                         iem_subscriber_id=iem.subscriber_id, iem_confirmed=iem.confirmed,  # type: ignore[union-attr]
                         fingerprint=fingerprint)
            ]

        leavers = [m for m in members if m.wish == WISH_UNSUBSCRIBE]
        staying = [
            m for m in members
            if (m.mclass is MagentoClass.SUBSCRIBED and m.target is None)
            or m.target == MagentoStatus.SUBSCRIBED
        ]
        if leavers and not staying and icls is IemClass.ACTIVE:
            m = leavers[0]
            reason = m.reason
            if m.deleted and m.last is not None and any(
                sid in self.moved_ids for sid in m.last.subscriber_ids
            ):
                reason = "email_changed"
            spelling = iem.email.strip() if iem is not None else email  # type: ignore[union-attr]
            return [
                Decision(Action.UNSUBSCRIBE_IEM, spelling, email, list_id, m.key[1], reason,
                         iem_subscriber_id=iem.subscriber_id,  # type: ignore[union-attr]
                         fingerprint=_fingerprint(m.rows))
            ]
        return []

    def _magento_decisions(self, members: list[_Member], list_id: int, email: str) -> list[Decision]:
        decisions = []
        for m in members:
            if m.target is None:
                continue
            action = (
                Action.SUBSCRIBE_MAGENTO
                if m.target == MagentoStatus.SUBSCRIBED
                else Action.UNSUBSCRIBE_MAGENTO
            )
            decisions.append(
                Decision(action, _email_spelling(m.rows, email), email, list_id, m.key[1], m.reason,
                         rows=_rows_needing(m.rows, m.target), target_status=int(m.target),
                         fingerprint=_fingerprint(m.rows))
            )
        return decisions

    def _guest_decision(
        self, members: list[_Member], iem: IemRow | None, icls: IemClass, list_id: int, email: str
    ) -> list[Decision]:
        if icls is not IemClass.ACTIVE or not self.options.import_new_subscribers:
            return []
        if any(m.rows or m.deleted for m in members):
            return []
        websites = [w for w in self.options.websites if self.options.list_of(w) == list_id]
        if not websites:
            return []
        website = websites[0]
        store = self.options.default_store_ids.get(website)
        if store is None:
            return []
        return [
            Decision(Action.CREATE_GUEST, iem.email.strip(), email, list_id, website,  # type: ignore[union-attr]
                     "new_in_iem", store_id=store, target_status=int(MagentoStatus.SUBSCRIBED),
                     iem_subscriber_id=iem.subscriber_id)  # type: ignore[union-attr]
        ]

    def _name_speaker(self, members: list[_Member]) -> _Member | None:
        """Return the subscribed customer identity whose names are pushed for the group."""
        if not self.options.names_enabled:
            return None
        for m in members:
            rep = m.rep
            if rep is None or rep.customer_id <= 0:
                continue  # guests have no names; an unreadable name is None and left alone
            if m.mclass is not MagentoClass.SUBSCRIBED and m.target != MagentoStatus.SUBSCRIBED:
                continue
            return m
        return None

    def _names_of(self, members: list[_Member]) -> tuple[str | None, str | None]:
        """Names of the group's speaker, blanks as None: IEM names are never overwritten with blanks."""
        speaker = self._name_speaker(members)
        if speaker is None or speaker.rep is None:
            return (None, None)
        return (speaker.rep.firstname or None, speaker.rep.lastname or None)

    def _names_decision(
        self, members: list[_Member], iem: IemRow | None, decisions: list[Decision],
        list_id: int, email: str
    ) -> list[Decision]:
        if not self.options.names_enabled:
            return []
        if any(d.action is Action.UNSUBSCRIBE_IEM for d in decisions):
            return []  # an unsubscribed row needs no names

        bad = [m for m in members if m.rep is not None and m.rep.name_error
               and m.rep.customer_id > 0 and m.mclass is MagentoClass.SUBSCRIBED]
        if bad:
            m = bad[0]
            return [
                Decision(Action.UPDATE_NAMES, _email_spelling(m.rows, email), email, list_id,
                         m.key[1], "invalid_name", fingerprint=_fingerprint(m.rows))
            ]

        if any(d.action is Action.ADD for d in decisions):
            return []  # the add carries the names
        iem_active_after = iem is not None and (
            iem_class(iem) is IemClass.ACTIVE or any(d.action is Action.ACTIVATE for d in decisions)
        )
        if not iem_active_after:
            return []
        speaker = self._name_speaker(members)
        if speaker is None or speaker.rep is None:
            return []
        first, last = speaker.rep.firstname or None, speaker.rep.lastname or None
        pushed = (speaker.last.firstname, speaker.last.lastname) if speaker.last else (None, None)
        new_first = first if first is not None and first != pushed[0] else None
        new_last = last if last is not None and last != pushed[1] else None
        if new_first is None and new_last is None:
            return []
        return [
            Decision(Action.UPDATE_NAMES, _email_spelling(speaker.rows, email), email, list_id,
                     speaker.key[1], "names_changed", iem_subscriber_id=iem.subscriber_id,
                     firstname=new_first, lastname=new_last, fingerprint=_fingerprint(speaker.rows))
        ]

    def _drop_rejected(self, plan: Plan, group: GroupInput, decisions: list[Decision]) -> list[Decision]:
        kept = []
        for d in decisions:
            rejection = group.rejections.get(d.website_id or 0)
            if rejection and rejection.action == d.action.value and rejection.fingerprint == d.fingerprint:
                plan.rejected.append(d)
            else:
                kept.append(d)
        return kept

    def _drop_invalid(self, plan: Plan, group: GroupInput, decisions: list[Decision]) -> list[Decision]:
        """Bad data fails up front so that one bad record never stops the run."""
        kept = []
        for d in decisions:
            if d.action is Action.UPDATE_NAMES and d.reason == "invalid_name":
                rows = group.rows.get(d.website_id or 0, [])
                reason = next((r.name_error for r in rows if r.name_error), "invalid name")
                plan.invalid.append((d, reason))
            elif d.action is Action.CREATE_GUEST and len(d.email) > 150:
                plan.invalid.append(
                    (d, f"email is {len(d.email)} characters long; Magento stores at most 150")
                )
            else:
                kept.append(d)
        return kept

    def _final_states(
        self, members: list[_Member], iem: IemRow | None, icls: IemClass, list_id: int,
        email: str, decisions: list[Decision]
    ) -> list[SyncedState]:
        """Return the last synced state of each member once every decision has succeeded."""
        iem_cls, confirmed = icls.value, bool(iem.confirmed) if iem else False
        iem_id = iem.subscriber_id if iem else None
        names: dict[Identity, tuple[str | None, str | None]] = {}
        targets: dict[Identity, int] = {}

        for d in decisions:
            if d.action in (Action.ADD, Action.CONFIRM, Action.ACTIVATE):
                iem_cls, confirmed = IemClass.ACTIVE.value, True
            elif d.action is Action.UNSUBSCRIBE_IEM:
                iem_cls = IemClass.UNSUBSCRIBED.value
            elif d.action in (Action.SUBSCRIBE_MAGENTO, Action.UNSUBSCRIBE_MAGENTO):
                targets[(email, d.website_id or 0)] = d.target_status  # type: ignore[assignment]
            if d.action in (Action.ADD, Action.UPDATE_NAMES):
                names[(email, d.website_id or 0)] = (d.firstname, d.lastname)

        guest = next((d for d in decisions if d.action is Action.CREATE_GUEST), None)
        if guest is not None:
            targets[(email, guest.website_id or 0)] = int(MagentoStatus.SUBSCRIBED)
            if all(m.key != (email, guest.website_id) for m in members):
                members = members + [
                    _Member(key=(email, guest.website_id or 0), rows=[], last=None, rep=None,
                            mclass=MagentoClass.ABSENT, deleted=False)
                ]

        states = []
        for m in members:
            status = targets.get(m.key, m.rep.status if m.rep else None)
            old_first, old_last = (m.last.firstname, m.last.lastname) if m.last else (None, None)
            first, last = names.get(m.key, (None, None))
            states.append(
                SyncedState(
                    email=email,
                    website_id=m.key[1],
                    list_id=list_id,
                    magento_status=status,
                    subscriber_ids=tuple(sorted(r.subscriber_id for r in m.rows)),
                    iem_class=iem_cls,
                    iem_confirmed=confirmed,
                    iem_subscriber_id=iem_id,
                    firstname=first if first is not None else old_first,
                    lastname=last if last is not None else old_last,
                    synced_at=self.options.now,
                )
            )
        return states


def _without_time(state: SyncedState, last: Mapping[int, SyncedState]) -> SyncedState:
    """Return the state with the stored record time, so that only real changes compare unequal.

    `last` contains the group's last synced states by website id.
    """
    old = last.get(state.website_id)
    if old is None:
        return state
    return replace(state, synced_at=old.synced_at)


def reconcile(
    options: SyncOptions,
    scan: MagentoScan,
    iem_rows: Mapping[tuple[int, str], IemRow],
    last: Mapping[Identity, SyncedState],
    rejections: Mapping[Identity, Rejection] | None = None,
) -> Plan:
    return Reconciler(options, scan, iem_rows, last, rejections).plan()


__all__ = [
    "Decision",
    "GroupInput",
    "GroupPlan",
    "GroupPlanner",
    "Plan",
    "SyncOptions",
    "reconcile",
    "normalise_email",
]
