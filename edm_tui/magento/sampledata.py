"""A deterministic sample shop (Magento side) and matching IEM lists, for the sandbox and tests.

The shop is a Hungarian web shop on the two websites of schema.sql: website 1 with store
views 1 and 2, website 2 with store view 3. `generate_shop(seed)` returns pure data, the same
for the same arguments, and `load_shop()` writes it into a database. Every address uses the
reserved `.example` top-level domain (RFC 2606), so no message can reach a real mailbox.

Composition for the default 10 000 subscriber rows. Counts scale with `subscribers`, except
the 3 blank emails, and "about" figures are where the random draw lands. SampleShop.counts
contains the exact figures of a generated shop.

* about 70 % of the rows on website 1 (store view 1 or 2) and 30 % on website 2;
* about 60 % of the in-scope rows belong to customers with names: Hungarian names with
  accents (Kovács Éva, Szűcs Ödön, Nagy Ádám, ...) and some other accented European names
  (Zoë, Łukasz, François, O'Brien, Müller, ...). The rest are guests (customer_id 0), and
  about 15 % extra customers never subscribed;
* status 3 (unsubscribed): about 250 rows, 20 of them with change_status_at NULL, the
  others changed within the last two years;
* status 2 (newsletter not confirmed): 100 guest rows, status 4 (account not confirmed): 100
  customer rows with a pending customer_entity.confirmation, all among the newest rows;
* status 0: 5 old guest rows with change_status_at NULL;
* change_status_at NULL on about 180 more old status-1 rows created in the shop's first year;
* emails in several spellings: about 8 % mixed or upper case, about 30 guest rows with
  surrounding spaces, and 3 rows with an empty or NULL email;
* about 10 % of the website-2 identities reuse the email of a website-1 identity (one person
  subscribed on both websites, two identities);
* 40 duplicate rows: the same email in another case on the other store view of
  website 1, most with the same status, some with the opposite one;
* out of scope: 5 rows in the admin store (store_id 0) and 5 with store_id NULL;
* newsletter_queue_link: queue 1 was sent to 30 subscribers, queue 2 is sending, with 20
  letters sent and 30 unsent.

`generate_iem_list(shop, seed)` returns the IEM rows of list 1 (website 1) and list 2
(website 2), in the simulator's JSON row shape:

* about 60 % of the subscribed identities are active on their list, about 80 of them
  unconfirmed, and about 30 with an older last name in the custom fields;
* 250 IEM-side unsubscribes and 40 bounces of Magento-subscribed identities, dated
  after the Magento change, so a first sync sets those Magento rows to 3;
* 20 rows unsubscribed in IEM before the person subscribed again in Magento;
* about 30 % of the dated Magento unsubscribes are still active in IEM with an older
  subscribe date, so a first sync unsubscribes them in IEM, and about 40 % are already
  unsubscribed there;
* 10 Magento status-2 rows are active and confirmed in IEM with a newer date;
* 150 IEM-only active subscribers and 20 IEM-only unsubscribed rows, unknown to Magento.

The generator caps the unsubscribes of a first sync at 4 % of the subscribed identities per
website and side, below a 5 % safety brake. For the default size they come to about 3 % in
Magento and about 1.3 % in IEM (seeds 1, 99 and 2026).
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Mapping
from random import Random
from time import gmtime, strftime
from typing import Any

import pymysql

from edm_tui.magento.schema import quoted_table_name, render_schema_statements

# 2026-01-01 00:00:00 UTC. A fixed default keeps generate_shop() deterministic. Pass the current
# time as reference_time for a shop whose history ends now.
DEFAULT_REFERENCE_TIME = 1_767_225_600

DAY = 86_400
YEAR = 365 * DAY
SHOP_AGE = 6 * YEAR

WEBSITE_LISTS = {1: 1, 2: 2}  # website_id -> IEM list id
IEM_FIRSTNAME_FIELD = "2"
IEM_LASTNAME_FIELD = "3"

# Magento newsletter_queue.queue_status values.
QUEUE_STATUS_SENDING = 1
QUEUE_STATUS_SENT = 3

# The unsubscribe share of a first sync stays below this fraction of the subscribed
# identities on each side and website.
MAX_FIRST_SYNC_UNSUBSCRIBE_SHARE = 0.04

_BATCH_SIZE = 1000

HUNGARIAN_FIRSTNAMES = (
    "Éva", "Ödön", "Ádám", "Zsófia", "Bálint", "Gergő", "Réka", "Tünde", "Lőrinc", "Írisz",
    "Péter", "Katalin", "László", "Anna", "Zoltán", "Eszter", "István", "Júlia", "Dániel",
    "Noémi", "Gábor", "Krisztina", "Márton", "Boglárka", "Attila", "Orsolya", "Tamás", "Dóra",
    "Levente", "Nóra", "Csaba", "Emőke", "Botond", "Ildikó", "Ákos", "Győző", "Enikő", "Bence",
    "Hajnalka", "Zsolt", "Mónika", "Gyula", "Piroska", "Kristóf", "Lili", "Szilárd", "Ágnes",
)
HUNGARIAN_LASTNAMES = (
    "Kovács", "Szűcs", "Nagy", "Tóth", "Horváth", "Kiss", "Varga", "Molnár", "Farkas", "Papp",
    "Szabó", "Takács", "Juhász", "Lakatos", "Mészáros", "Oláh", "Simon", "Rácz", "Fekete",
    "Szilágyi", "Török", "Fehér", "Balogh", "Győri", "Vörös", "Bíró", "Pintér", "Sütő",
    "Kelemen", "Halász", "Gulyás", "Fodor", "Szőke", "Bartók", "Hegedűs", "Vámos", "Ördög",
)
OTHER_EUROPEAN_NAMES = (
    ("Zoë", "Martin"), ("Łukasz", "Nowak"), ("François", "Lefèvre"), ("Siobhán", "O'Brien"),
    ("Jürgen", "Müller"), ("Ana", "Núñez"), ("Małgorzata", "Wiśniewska"), ("Jiří", "Dvořák"),
    ("Chloé", "Dubois"), ("Björn", "Åström"), ("Seán", "O'Connor"), ("Ioana", "Popescu"),
    ("Matías", "Fernández"), ("Søren", "Jørgensen"), ("Zoë", "Łukasiewicz"), ("Renée", "Müller"),
)

# Reserved .example domains (RFC 2606) with the names of common providers, by weight.
EMAIL_DOMAINS = (
    ("freemail.example", 30), ("gmail.example", 30), ("citromail.example", 8),
    ("t-online.example", 8), ("outlook.example", 8), ("yahoo.example", 6),
    ("vipmail.example", 4), ("kft-iroda.example", 6),
)

_TRANSLITERATION = str.maketrans({
    "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae", "Æ": "AE", "'": "", " ": "",
})
_DATABASE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}")


@dataclasses.dataclass(frozen=True, slots=True)
class SampleCustomer:
    """One customer_entity row."""

    entity_id: int
    website_id: int
    store_id: int
    email: str
    firstname: str
    lastname: str
    created_at: int
    confirmation: str | None  # set while the account waits for email confirmation


@dataclasses.dataclass(frozen=True, slots=True)
class SampleSubscriber:
    """One newsletter_subscriber row. Times are Unix seconds (UTC)."""

    subscriber_id: int
    store_id: int | None
    customer_id: int
    email: str | None
    status: int
    changed_at: int | None
    confirm_code: str


@dataclasses.dataclass(frozen=True, slots=True)
class SampleQueue:
    """One newsletter_queue row, all sharing template 1."""

    queue_id: int
    subject: str
    status: int
    start_at: int
    finish_at: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class SampleQueueLink:
    """One newsletter_queue_link row. sent_at None is a letter not sent yet."""

    queue_link_id: int
    queue_id: int
    subscriber_id: int
    sent_at: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class SampleShop:
    """A generated shop: its rows and the counts that describe them."""

    seed: int
    reference_time: int
    customers: tuple[SampleCustomer, ...]
    subscribers: tuple[SampleSubscriber, ...]
    queues: tuple[SampleQueue, ...]
    queue_links: tuple[SampleQueueLink, ...]
    counts: Mapping[str, int]


# --- Shared helpers --------------------------------------------------------------------------


def normalise_email(email: str) -> str:
    """Return the identity form of an email: surrounding white space removed, lower case."""
    return email.strip().lower()


def store_website(store_id: int | None) -> int | None:
    """Return the website of a store view of schema.sql, or None for admin and NULL."""
    return {1: 1, 2: 1, 3: 2}.get(store_id) if store_id is not None else None


def _scaled(total: int, per_ten_thousand: int) -> int:
    """Return a count that is per_ten_thousand for 10 000 rows, scaled, at least 1."""
    return max(1, round(total * per_ten_thousand / 10_000))


def _ascii_slug(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATION))
    return "".join(char for char in decomposed if char.isascii() and char.isalnum()).lower()


def _weighted_domain(rng: Random) -> str:
    domains = [domain for domain, _ in EMAIL_DOMAINS]
    weights = [weight for _, weight in EMAIL_DOMAINS]
    return rng.choices(domains, weights)[0]


def _random_name(rng: Random) -> tuple[str, str]:
    if rng.random() < 0.85:
        return rng.choice(HUNGARIAN_FIRSTNAMES), rng.choice(HUNGARIAN_LASTNAMES)
    return rng.choice(OTHER_EUROPEAN_NAMES)


def _random_confirm_code(rng: Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(rng.choice(alphabet) for _ in range(32))


class _EmailFactory:
    """Builds unique, realistic addresses from names."""

    def __init__(self, rng: Random) -> None:
        self._rng = rng
        self._used: dict[str, None] = {}

    def reserve(self, email: str) -> None:
        self._used[normalise_email(email)] = None

    def new(self, firstname: str, lastname: str) -> str:
        rng = self._rng
        first = _ascii_slug(firstname)
        last = _ascii_slug(lastname)
        year = rng.randint(55, 99) if rng.random() < 0.7 else rng.randint(0, 9)
        patterns = (
            f"{first}.{last}",
            f"{last}.{first}",
            f"{first}{last}{year:02d}",
            f"{first[0]}{last}",
            f"{last}{first}{rng.randint(1, 999)}",
            f"{first}_{last}",
        )
        local = rng.choice(patterns)
        domain = _weighted_domain(rng)
        email = f"{local}@{domain}"
        suffix = 2
        while normalise_email(email) in self._used:
            email = f"{local}{suffix}@{domain}"
            suffix += 1
        self.reserve(email)
        return email


def _respell(email: str, rng: Random) -> str:
    """Return the same address in another letter case."""
    local, _, domain = email.partition("@")
    if email != email.lower():
        return email.lower()
    if rng.random() < 0.3:
        return email.upper()
    parts = re.split(r"([._])", local)
    return "".join(part.capitalize() for part in parts) + "@" + domain.capitalize()


def _pad(email: str, rng: Random) -> str:
    return rng.choice((f" {email}", f"{email} ", f"  {email}  ", f"\t{email}"))


# --- Shop generation -------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Draft:
    """A subscriber row under construction, before ids are assigned."""

    created_at: int
    store_id: int | None
    email: str | None
    status: int = 1
    changed_at: int | None = None
    is_customer: bool = False
    firstname: str = ""
    lastname: str = ""


def generate_shop(
    seed: int, subscribers: int = 10_000, *, reference_time: int = DEFAULT_REFERENCE_TIME
) -> SampleShop:
    """Generate a shop with `subscribers` newsletter_subscriber rows.

    The result depends only on the arguments. reference_time (Unix seconds) is the shop's
    "now": all change times lie before it.
    """
    if subscribers < 200:
        raise ValueError(f"subscribers is {subscribers}; use at least 200 for a meaningful shop.")

    rng = Random(seed)
    emails = _EmailFactory(rng)
    opened_at = reference_time - SHOP_AGE

    n_duplicates = _scaled(subscribers, 40)
    n_primary = subscribers - n_duplicates
    n_store_zero = _scaled(subscribers, 5)
    n_store_null = _scaled(subscribers, 5)
    n_blank = 3

    # Primary rows: one new identity each, created in time order.
    created_times = sorted(rng.randint(opened_at, reference_time - DAY) for _ in range(n_primary))
    drafts: list[_Draft] = []
    for created_at in created_times:
        store_id = rng.choices((1, 2, 3), weights=(50, 20, 30))[0]
        drafts.append(_Draft(created_at=created_at, store_id=store_id, email=None))

    shuffled = list(range(n_primary))
    rng.shuffle(shuffled)
    for index in shuffled[:n_store_zero]:
        drafts[index].store_id = 0
    for index in shuffled[n_store_zero : n_store_zero + n_store_null]:
        drafts[index].store_id = None
    out_of_scope = set(shuffled[: n_store_zero + n_store_null])
    in_scope = [index for index in range(n_primary) if index not in out_of_scope]

    _assign_people(drafts, in_scope, rng, emails)
    _assign_statuses(drafts, in_scope, rng, subscribers, reference_time)
    _share_emails_across_websites(drafts, in_scope, rng)
    _respell_emails(drafts, in_scope, rng, subscribers)
    _blank_emails(drafts, in_scope, rng, n_blank)
    duplicates = _make_duplicates(drafts, in_scope, rng, n_duplicates, reference_time)

    return _assemble(seed, reference_time, drafts + duplicates, rng, emails, subscribers)


def _assign_people(
    drafts: list[_Draft], in_scope: list[int], rng: Random, emails: _EmailFactory
) -> None:
    """Give every row a person and an address. About 60 % of in-scope rows are customers."""
    in_scope_set = set(in_scope)
    for index, draft in enumerate(drafts):
        firstname, lastname = _random_name(rng)
        draft.firstname = firstname
        draft.lastname = lastname
        draft.email = emails.new(firstname, lastname)
        draft.is_customer = index in in_scope_set and rng.random() < 0.6


def _assign_statuses(
    drafts: list[_Draft], in_scope: list[int], rng: Random, total: int, reference_time: int
) -> None:
    """Set status and change_status_at. Rows not picked here stay at status 1, changed when
    they were created."""
    opened_at = reference_time - SHOP_AGE
    for draft in drafts:
        draft.changed_at = draft.created_at

    # Pending rows are among the newest: status 4 waits for the customer account, status 2
    # for the newsletter confirmation link of a guest.
    n_pending = _scaled(total, 100)
    newest = sorted(in_scope, key=lambda index: drafts[index].created_at)[-6 * n_pending :]
    rng.shuffle(newest)
    for index in newest[:n_pending]:
        drafts[index].status = 4
        drafts[index].is_customer = True
    for index in newest[n_pending : 2 * n_pending]:
        drafts[index].status = 2
        drafts[index].is_customer = False
    pending = set(newest[: 2 * n_pending])

    first_year = [
        index for index in in_scope
        if index not in pending and drafts[index].created_at < opened_at + YEAR
    ]
    rng.shuffle(first_year)
    n_status_zero = _scaled(total, 5)
    n_null_unsubscribed = _scaled(total, 20)
    n_null_subscribed = _scaled(total, 180)
    zero_end = n_status_zero
    unsubscribed_end = zero_end + n_null_unsubscribed
    subscribed_end = unsubscribed_end + n_null_subscribed
    status_zero = first_year[:zero_end]
    null_unsubscribed = first_year[zero_end:unsubscribed_end]
    null_subscribed = first_year[unsubscribed_end:subscribed_end]
    for index in status_zero:
        drafts[index].status = 0
        drafts[index].changed_at = None
        drafts[index].is_customer = False
    for index in null_unsubscribed:
        drafts[index].status = 3
        drafts[index].changed_at = None
    for index in null_subscribed:
        drafts[index].changed_at = None
    assigned = pending | set(status_zero) | set(null_unsubscribed) | set(null_subscribed)

    # Dated unsubscribes happened within the last two years, after the row was created.
    candidates = [
        index for index in in_scope
        if index not in assigned and drafts[index].created_at < reference_time - 2 * DAY
    ]
    rng.shuffle(candidates)
    for index in candidates[: _scaled(total, 250) - n_null_unsubscribed]:
        draft = drafts[index]
        earliest = max(draft.created_at + DAY, reference_time - 2 * YEAR)
        draft.status = 3
        draft.changed_at = rng.randint(min(earliest, reference_time - DAY), reference_time - 3600)


def _share_emails_across_websites(drafts: list[_Draft], in_scope: list[int], rng: Random) -> None:
    """Let about 10 % of website-2 rows reuse the address of a website-1 row."""
    website_one = [index for index in in_scope if store_website(drafts[index].store_id) == 1]
    website_two = [index for index in in_scope if store_website(drafts[index].store_id) == 2]
    donors = rng.sample(website_one, k=min(len(website_one), len(website_two) // 10))
    for donor, index in zip(donors, website_two):
        drafts[index].email = drafts[donor].email
        drafts[index].firstname = drafts[donor].firstname
        drafts[index].lastname = drafts[donor].lastname


def _respell_emails(drafts: list[_Draft], in_scope: list[int], rng: Random, total: int) -> None:
    """Write about 8 % of addresses in mixed or upper case and pad some guest addresses."""
    for index in in_scope:
        if rng.random() < 0.08:
            drafts[index].email = _respell(drafts[index].email or "", rng)
    guests = [index for index in in_scope if not drafts[index].is_customer]
    for index in rng.sample(guests, k=min(len(guests), _scaled(total, 30))):
        drafts[index].email = _pad(drafts[index].email or "", rng)


def _blank_emails(drafts: list[_Draft], in_scope: list[int], rng: Random, count: int) -> None:
    """Give a few guest rows an empty or NULL email, as broken imports leave behind."""
    guests = [
        index for index in in_scope
        if not drafts[index].is_customer and drafts[index].status == 1
    ]
    for number, index in enumerate(rng.sample(guests, k=min(len(guests), count))):
        drafts[index].email = "" if number % 2 == 0 else None


def _make_duplicates(
    drafts: list[_Draft], in_scope: list[int], rng: Random, count: int, reference_time: int
) -> list[_Draft]:
    """Copy website-1 rows to the other store view of website 1, in another letter case.

    Most copies keep the status, and about 30 % have the opposite one. A copy of a customer's
    row is usually a guest row, sometimes a second row of the same customer.
    """
    candidates = [
        index for index in in_scope
        if drafts[index].store_id in (1, 2)
        and drafts[index].status in (1, 3)
        and drafts[index].email
        and drafts[index].created_at < reference_time - YEAR
    ]
    result = []
    for index in rng.sample(candidates, k=min(len(candidates), count)):
        original = drafts[index]
        created_at = rng.randint(original.created_at + DAY, reference_time - 300 * DAY)
        copy = _Draft(
            created_at=created_at,
            store_id=2 if original.store_id == 1 else 1,
            email=_respell(original.email.strip(), rng),
            status=original.status,
            changed_at=created_at,
            firstname=original.firstname,
            lastname=original.lastname,
        )
        if rng.random() < 0.3:
            copy.status = 1 if original.status == 3 else 3
        elif original.is_customer and rng.random() < 0.3:
            copy.is_customer = True  # the same customer account, found by email and website
        if copy.status == 3:
            earliest = max(created_at + DAY, reference_time - 2 * YEAR)
            copy.changed_at = rng.randint(earliest, reference_time - DAY)
        result.append(copy)
    return result


def _assemble(
    seed: int,
    reference_time: int,
    drafts: list[_Draft],
    rng: Random,
    emails: _EmailFactory,
    total: int,
) -> SampleShop:
    """Assign ids in creation order and build the customers, queues and counts."""
    order = sorted(range(len(drafts)), key=lambda index: (drafts[index].created_at, index))

    customers: list[SampleCustomer] = []
    customer_ids: dict[tuple[str, int], int] = {}
    subscriber_rows: list[SampleSubscriber] = []
    for subscriber_id, index in enumerate(order, start=1):
        draft = drafts[index]
        customer_id = 0
        if draft.is_customer and draft.email:
            website_id = store_website(draft.store_id) or 1
            key = (normalise_email(draft.email), website_id)
            if key not in customer_ids:
                customer_ids[key] = len(customers) + 1
                customers.append(
                    SampleCustomer(
                        entity_id=len(customers) + 1,
                        website_id=website_id,
                        store_id=draft.store_id or 1,
                        email=draft.email.strip(),
                        firstname=draft.firstname,
                        lastname=draft.lastname,
                        created_at=draft.created_at,
                        confirmation=_random_confirm_code(rng) if draft.status == 4 else None,
                    )
                )
            customer_id = customer_ids[key]
        subscriber_rows.append(
            SampleSubscriber(
                subscriber_id=subscriber_id,
                store_id=draft.store_id,
                customer_id=customer_id,
                email=draft.email,
                status=draft.status,
                changed_at=draft.changed_at,
                confirm_code=_random_confirm_code(rng),
            )
        )

    customers.extend(_customers_without_subscription(customers, rng, emails, reference_time))
    queues, links = _queues(subscriber_rows, rng, reference_time, total)
    shop = SampleShop(
        seed=seed,
        reference_time=reference_time,
        customers=tuple(customers),
        subscribers=tuple(subscriber_rows),
        queues=queues,
        queue_links=links,
        counts={},
    )
    return dataclasses.replace(shop, counts=count_shop(shop))


def _customers_without_subscription(
    customers: list[SampleCustomer], rng: Random, emails: _EmailFactory, reference_time: int
) -> list[SampleCustomer]:
    """Return about 15 % extra customers who never subscribed."""
    result = []
    next_id = len(customers) + 1
    for _ in range(round(len(customers) * 0.15)):
        firstname, lastname = _random_name(rng)
        store_id = rng.choice((1, 1, 2, 3))
        result.append(
            SampleCustomer(
                entity_id=next_id,
                website_id=store_website(store_id) or 1,
                store_id=store_id,
                email=emails.new(firstname, lastname),
                firstname=firstname,
                lastname=lastname,
                created_at=rng.randint(reference_time - SHOP_AGE, reference_time - DAY),
                confirmation=None,
            )
        )
        next_id += 1
    return result


def _queues(
    subscribers: list[SampleSubscriber], rng: Random, reference_time: int, total: int
) -> tuple[tuple[SampleQueue, ...], tuple[SampleQueueLink, ...]]:
    """Return two queues and their links: queue 1 was sent a month ago, and queue 2 started an
    hour ago and is partly sent."""
    sent_start = reference_time - 30 * DAY
    sending_start = reference_time - 3600
    queues = (
        SampleQueue(1, "Tavaszi akció", QUEUE_STATUS_SENT, sent_start, sent_start + 1800),
        SampleQueue(2, "Nyári újdonságok", QUEUE_STATUS_SENDING, sending_start, None),
    )
    recipients = [
        row for row in subscribers if row.status == 1 and store_website(row.store_id) == 1
    ]
    n_first = _scaled(total, 30)
    n_second_sent = _scaled(total, 20)
    n_second_unsent = _scaled(total, 30)
    chosen = rng.sample(recipients, k=n_first + n_second_sent + n_second_unsent)

    links = []
    for row in chosen[:n_first]:
        links.append((1, row.subscriber_id, sent_start + rng.randint(1, 1800)))
    for row in chosen[n_first : n_first + n_second_sent]:
        links.append((2, row.subscriber_id, sending_start + rng.randint(1, 1800)))
    for row in chosen[n_first + n_second_sent :]:
        links.append((2, row.subscriber_id, None))
    return queues, tuple(
        SampleQueueLink(queue_link_id, queue_id, subscriber_id, sent_at)
        for queue_link_id, (queue_id, subscriber_id, sent_at) in enumerate(links, start=1)
    )


# --- Identities and counts -------------------------------------------------------------------


def representative(rows: list[SampleSubscriber]) -> SampleSubscriber:
    """Return the representative row of an identity.

    The newest change_status_at wins (NULL is oldest), then a row with a customer, then the
    highest subscriber_id.
    """
    return max(
        rows,
        key=lambda row: (
            row.changed_at is not None,
            row.changed_at or 0,
            row.customer_id > 0,
            row.subscriber_id,
        ),
    )


def shop_identities(shop: SampleShop) -> dict[tuple[str, int], list[SampleSubscriber]]:
    """Group the in-scope rows with a non-blank email by (normalised email, website)."""
    groups: dict[tuple[str, int], list[SampleSubscriber]] = {}
    for row in shop.subscribers:
        website_id = store_website(row.store_id)
        if website_id is None or not row.email or not row.email.strip():
            continue
        groups.setdefault((normalise_email(row.email), website_id), []).append(row)
    return groups


def count_shop(shop: SampleShop) -> dict[str, int]:
    """Count the composition of a shop, in a stable order for printing."""
    rows = shop.subscribers
    identities = shop_identities(shop)
    in_scope_rows = sum(len(group) for group in identities.values())
    subscribed = {1: 0, 2: 0}
    for (_, website_id), group in identities.items():
        if representative(group).status == 1:
            subscribed[website_id] += 1
    emails_by_website: dict[str, set[int]] = {}
    for email, website_id in identities:
        emails_by_website.setdefault(email, set()).add(website_id)
    subscriber_emails = {normalise_email(row.email) for row in rows if row.email}
    subscribed_customer_ids = {row.customer_id for row in rows if row.customer_id}

    counts = {
        "subscriber_rows": len(rows),
        "customers": len(shop.customers),
        "customers_without_subscription": sum(
            1 for customer in shop.customers if customer.entity_id not in subscribed_customer_ids
        ),
        "customer_subscriber_rows": sum(1 for row in rows if row.customer_id > 0),
        "guest_subscriber_rows": sum(1 for row in rows if row.customer_id == 0),
    }
    for status in (0, 1, 2, 3, 4):
        counts[f"status_{status}_rows"] = sum(1 for row in rows if row.status == status)
    counts.update({
        "website_1_rows": sum(1 for row in rows if store_website(row.store_id) == 1),
        "website_2_rows": sum(1 for row in rows if store_website(row.store_id) == 2),
        "store_0_rows": sum(1 for row in rows if row.store_id == 0),
        "store_null_rows": sum(1 for row in rows if row.store_id is None),
        "blank_email_rows": sum(1 for row in rows if not row.email or not row.email.strip()),
        "null_changed_at_rows": sum(1 for row in rows if row.changed_at is None),
        "mixed_case_emails": sum(1 for row in rows if row.email and row.email != row.email.lower()),
        "padded_emails": sum(1 for row in rows if row.email and row.email != row.email.strip()),
        "identities": len(identities),
        "duplicate_rows": in_scope_rows - len(identities),
        "subscribed_identities_website_1": subscribed[1],
        "subscribed_identities_website_2": subscribed[2],
        "cross_website_emails": sum(
            1 for websites in emails_by_website.values() if len(websites) > 1
        ),
        "distinct_emails": len(subscriber_emails),
        "queue_links_sent": sum(1 for link in shop.queue_links if link.sent_at is not None),
        "queue_links_unsent": sum(1 for link in shop.queue_links if link.sent_at is None),
    })
    return counts


# --- IEM lists -------------------------------------------------------------------------------


def generate_iem_list(shop: SampleShop, seed: int) -> list[dict[str, Any]]:
    """Generate the IEM rows of list 1 (website 1) and list 2 (website 2) for a shop.

    Rows use the simulator's JSON shape: integer ids and Unix times, `confirmed` as "1" or
    "0", `format` "h" or "t", and `customfields` with the first name under "2" and the last
    name under "3" (empty for guests). They are ordered by subscriberid, which follows the
    request date, as IEM assigns it.
    """
    rng = Random(seed)
    reference_time = shop.reference_time
    total = len(shop.subscribers)
    names = {
        customer.entity_id: (customer.firstname, customer.lastname) for customer in shop.customers
    }
    identities = shop_identities(shop)

    rows: list[dict[str, Any]] = []
    for website_id, list_id in WEBSITE_LISTS.items():
        groups = [
            (email, group) for (email, group_website), group in identities.items()
            if group_website == website_id
        ]
        rows.extend(_iem_rows_for_website(
            groups, list_id, rng, reference_time, total, names, len(identities)
        ))
    rows.extend(_iem_only_rows(shop, rng, reference_time, total))

    rows.sort(key=lambda row: (row["requestdate"], row["listid"], row["emailaddress"]))
    for subscriber_id, row in enumerate(rows, start=1):
        row["subscriberid"] = subscriber_id
    return rows


def _iem_row(
    rng: Random,
    list_id: int,
    email: str,
    subscribed_at: int,
    *,
    confirmed: bool = True,
    unsubscribed: int = 0,
    bounced: int = 0,
    firstname: str = "",
    lastname: str = "",
) -> dict[str, Any]:
    request_at = subscribed_at - rng.randint(30, 900) if confirmed else subscribed_at
    return {
        "subscriberid": 0,
        "listid": list_id,
        "emailaddress": email,
        "format": "h" if rng.random() < 0.92 else "t",
        "confirmed": "1" if confirmed else "0",
        "subscribedate": subscribed_at,
        "requestdate": request_at,
        "unsubscribed": unsubscribed,
        "bounced": bounced,
        "confirmcode": f"{rng.getrandbits(128):032x}",
        "customfields": {IEM_FIRSTNAME_FIELD: firstname, IEM_LASTNAME_FIELD: lastname},
    }


def _iem_rows_for_website(
    groups: list[tuple[str, list[SampleSubscriber]]],
    list_id: int,
    rng: Random,
    reference_time: int,
    total: int,
    names: dict[int, tuple[str, str]],
    identity_count: int,
) -> list[dict[str, Any]]:
    """Return the rows of one list for the identities of its website."""
    opened_at = reference_time - SHOP_AGE
    share = len(groups) / max(1, identity_count)

    def scaled_here(per_ten_thousand: int) -> int:
        return max(1, round(_scaled(total, per_ten_thousand) * share))

    def person(row: SampleSubscriber) -> tuple[str, str]:
        return names.get(row.customer_id, ("", ""))

    def spelling(row: SampleSubscriber) -> str:
        email = (row.email or "").strip()
        return email.lower() if rng.random() < 0.05 else email

    def subscribe_time(row: SampleSubscriber, latest: int) -> int:
        if row.changed_at is None:
            return rng.randint(opened_at, opened_at + YEAR)
        return min(row.changed_at + rng.randint(60, DAY), latest)

    by_status: dict[int, list[SampleSubscriber]] = {1: [], 2: [], 3: []}
    for _, group in groups:
        chosen = representative(group)
        if chosen.status in by_status:
            by_status[chosen.status].append(chosen)
    subscribed = by_status[1]
    rng.shuffle(subscribed)

    # Unsubscribes and bounces that a first sync carries to Magento, capped below the brake
    # and shared out between the two in the ratio of their targets.
    target_unsubscribed = scaled_here(250)
    target_bounced = scaled_here(40)
    brake_cap = int(len(subscribed) * MAX_FIRST_SYNC_UNSUBSCRIBE_SHARE)
    target_total = target_unsubscribed + target_bounced
    n_unsubscribed = min(target_unsubscribed, brake_cap * target_unsubscribed // target_total)
    n_bounced = min(target_bounced, brake_cap - n_unsubscribed)
    n_reactivated = scaled_here(20)
    old_enough = [
        row for row in subscribed
        if row.changed_at is None or row.changed_at < reference_time - 2 * DAY
    ]
    leaving = old_enough[: n_unsubscribed + n_bounced]
    leaving_ids = {row.subscriber_id for row in leaving}
    reactivatable = [
        row for row in subscribed
        if row.subscriber_id not in leaving_ids
        and row.changed_at is not None
        and row.changed_at > opened_at + 200 * DAY
    ][:n_reactivated]
    used_ids = leaving_ids | {row.subscriber_id for row in reactivatable}
    remaining = [row for row in subscribed if row.subscriber_id not in used_ids]
    active = remaining[: round(len(subscribed) * 0.6)]

    rows = []
    for number, row in enumerate(leaving):
        firstname, lastname = person(row)
        subscribed_at = subscribe_time(row, reference_time - 3 * DAY)
        left_at = rng.randint(max(subscribed_at, row.changed_at or 0) + 3600, reference_time - 3600)
        is_bounce = number >= n_unsubscribed
        rows.append(_iem_row(
            rng, list_id, spelling(row), subscribed_at,
            unsubscribed=0 if is_bounce else left_at, bounced=left_at if is_bounce else 0,
            firstname=firstname, lastname=lastname,
        ))
    for row in reactivatable:
        firstname, lastname = person(row)
        subscribed_at = row.changed_at - rng.randint(100, 300) * DAY
        left_at = rng.randint(subscribed_at + DAY, row.changed_at - DAY)
        rows.append(_iem_row(
            rng, list_id, spelling(row), subscribed_at, unsubscribed=left_at,
            firstname=firstname, lastname=lastname,
        ))

    n_unconfirmed = scaled_here(80)
    n_old_names = scaled_here(30)
    old_names_given = 0
    for number, row in enumerate(active):
        firstname, lastname = person(row)
        if row.customer_id and old_names_given < n_old_names and rng.random() < 0.2:
            lastname = rng.choice([name for name in HUNGARIAN_LASTNAMES if name != lastname])
            old_names_given += 1
        rows.append(_iem_row(
            rng, list_id, spelling(row), subscribe_time(row, reference_time - 60),
            confirmed=number >= n_unconfirmed, firstname=firstname, lastname=lastname,
        ))

    # Magento unsubscribes: about 30 % still active in IEM (older), about 40 % in step.
    unsubscribed_rows = [row for row in by_status[3] if row.changed_at is not None]
    rng.shuffle(unsubscribed_rows)
    iem_cap = int(len(active) * MAX_FIRST_SYNC_UNSUBSCRIBE_SHARE)
    n_still_active = min(round(len(unsubscribed_rows) * 0.3), iem_cap)
    n_in_step = round(len(unsubscribed_rows) * 0.4)
    for row in unsubscribed_rows[:n_still_active]:
        firstname, lastname = person(row)
        subscribed_at = row.changed_at - rng.randint(30, 700) * DAY
        rows.append(_iem_row(
            rng, list_id, spelling(row), subscribed_at, firstname=firstname, lastname=lastname
        ))
    for row in unsubscribed_rows[n_still_active : n_still_active + n_in_step]:
        firstname, lastname = person(row)
        subscribed_at = row.changed_at - rng.randint(30, 700) * DAY
        rows.append(_iem_row(
            rng, list_id, spelling(row), subscribed_at,
            unsubscribed=min(row.changed_at + rng.randint(60, 3600), reference_time - 60),
            firstname=firstname, lastname=lastname,
        ))

    # Newsletter confirmations that reached IEM but not Magento.
    pending = [
        row for row in by_status[2]
        if row.changed_at is not None and row.changed_at < reference_time - DAY
    ]
    for row in pending[: scaled_here(10)]:
        confirmed_at = rng.randint(row.changed_at + 60, reference_time - 60)
        rows.append(_iem_row(rng, list_id, spelling(row), confirmed_at))
    return rows


def _iem_only_rows(
    shop: SampleShop, rng: Random, reference_time: int, total: int
) -> list[dict[str, Any]]:
    """Return subscribers that only IEM has: signed up through an IEM form."""
    emails = _EmailFactory(rng)
    for row in shop.subscribers:
        if row.email:
            emails.reserve(row.email)
    for customer in shop.customers:
        emails.reserve(customer.email)

    rows = []
    n_active = _scaled(total, 150)
    n_unsubscribed = _scaled(total, 20)
    for number in range(n_active + n_unsubscribed):
        firstname, lastname = _random_name(rng)
        list_id = 1 if rng.random() < 0.7 else 2
        subscribed_at = rng.randint(reference_time - 2 * YEAR, reference_time - DAY)
        with_names = rng.random() < 0.5
        unsubscribed = 0
        if number >= n_active:
            unsubscribed = rng.randint(subscribed_at + 3600, reference_time - 60)
        rows.append(_iem_row(
            rng, list_id, emails.new(firstname, lastname), subscribed_at, unsubscribed=unsubscribed,
            firstname=firstname if with_names else "", lastname=lastname if with_names else "",
        ))
    return rows


def iem_list_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Count IEM rows per list and state, in a stable order for printing."""
    counts: dict[str, int] = {}
    for list_id in sorted({row["listid"] for row in rows}):
        on_list = [row for row in rows if row["listid"] == list_id]
        active = [row for row in on_list if not row["unsubscribed"] and not row["bounced"]]
        counts[f"list_{list_id}_rows"] = len(on_list)
        confirmed = [row for row in active if row["confirmed"] == "1"]
        counts[f"list_{list_id}_active_confirmed"] = len(confirmed)
        counts[f"list_{list_id}_active_unconfirmed"] = len(active) - len(confirmed)
        counts[f"list_{list_id}_unsubscribed"] = sum(1 for row in on_list if row["unsubscribed"])
        counts[f"list_{list_id}_bounced"] = sum(1 for row in on_list if row["bounced"])
    return counts


# --- Loading ---------------------------------------------------------------------------------


def _utc_text(unix_seconds: int | None) -> str | None:
    if unix_seconds is None:
        return None
    return strftime("%Y-%m-%d %H:%M:%S", gmtime(unix_seconds))


def _insert_in_batches(cursor: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
    for start in range(0, len(rows), _BATCH_SIZE):
        cursor.executemany(sql, rows[start : start + _BATCH_SIZE])


def load_shop(
    conn_params: Mapping[str, Any], database: str, shop: SampleShop, table_prefix: str = ""
) -> None:
    """Create the database if needed, create the Magento tables and insert the shop.

    conn_params are PyMySQL connect arguments for a user that may create databases and
    tables: host, port, user, password and optionally unix_socket. The tables must not exist
    yet for this prefix. Rows are inserted in one transaction with multi-row INSERTs.
    """
    if not _DATABASE_NAME_PATTERN.fullmatch(database):
        raise ValueError(
            f"Invalid database name {database!r}: use 1 to 64 letters, digits or underscores."
        )

    def table(logical_name: str) -> str:
        return quoted_table_name(table_prefix, logical_name)

    connection = pymysql.connect(**conn_params, charset="utf8mb4", autocommit=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE DATABASE IF NOT EXISTS `{database}`"
                " CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            )
            connection.select_db(database)
            # The schema statements also set the session to UTC and strict mode.
            for statement in render_schema_statements(table_prefix):
                cursor.execute(statement)

            connection.begin()
            _insert_in_batches(
                cursor,
                f"INSERT INTO {table('customer_entity')} (entity_id, website_id, email, store_id,"
                " created_at, updated_at, firstname, lastname, confirmation)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        customer.entity_id, customer.website_id, customer.email, customer.store_id,
                        _utc_text(customer.created_at), _utc_text(customer.created_at),
                        customer.firstname, customer.lastname, customer.confirmation,
                    )
                    for customer in shop.customers
                ],
            )
            _insert_in_batches(
                cursor,
                f"INSERT INTO {table('newsletter_subscriber')} (subscriber_id, store_id,"
                " change_status_at, customer_id, subscriber_email, subscriber_status,"
                " subscriber_confirm_code) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        row.subscriber_id, row.store_id, _utc_text(row.changed_at), row.customer_id,
                        row.email, row.status, row.confirm_code,
                    )
                    for row in shop.subscribers
                ],
            )
            cursor.execute(
                f"INSERT INTO {table('newsletter_template')} (template_id, template_code,"
                " template_type, template_subject, template_sender_name, template_sender_email,"
                " added_at, modified_at) VALUES (1, 'havi_hirlevel', 2, 'Havi hírlevél',"
                " 'Minta Webáruház', 'hirlevel@minta-webaruhaz.example', %s, %s)",
                (_utc_text(shop.reference_time - SHOP_AGE),) * 2,
            )
            _insert_in_batches(
                cursor,
                f"INSERT INTO {table('newsletter_queue')} (queue_id, template_id, newsletter_type,"
                " newsletter_subject, queue_status, queue_start_at, queue_finish_at)"
                " VALUES (%s, 1, 2, %s, %s, %s, %s)",
                [
                    (queue.queue_id, queue.subject, queue.status, _utc_text(queue.start_at),
                     _utc_text(queue.finish_at))
                    for queue in shop.queues
                ],
            )
            _insert_in_batches(
                cursor,
                f"INSERT INTO {table('newsletter_queue_link')} (queue_link_id, queue_id,"
                " subscriber_id, letter_sent_at) VALUES (%s, %s, %s, %s)",
                [
                    (link.queue_link_id, link.queue_id, link.subscriber_id, _utc_text(link.sent_at))
                    for link in shop.queue_links
                ],
            )
            connection.commit()
    except BaseException:
        if connection.open:
            connection.rollback()
        raise
    finally:
        connection.close()
