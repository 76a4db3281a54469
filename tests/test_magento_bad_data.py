"""Bad Magento data in a full sync: the bad row is reported, every other subscriber syncs.

Each test stores good subscribers around one kind of bad row in a real MariaDB and runs a full
sync against the IEM simulator. It then checks the exact state of both sides, the run's counts
and its history items, and for rejected records what a second run does.
"""

from __future__ import annotations

from typing import Any

import pytest

from edm_tui.daemon.history import HistoryStore
from edm_tui.daemon.runner import RunResult
from tests.sync_support import Bench

T1 = 1_700_000_000
GOOD = ["good1@example.test", "good2@example.test"]


@pytest.fixture(params=["legacy", "modern"])
def dialect(request: pytest.FixtureRequest) -> str:
    return request.param


def _add_good(b: Bench) -> None:
    for email in GOOD:
        b.add_row(email, 1, T1)


def _iem(b: Bench) -> list[tuple[str, int, bool, dict[str, str]]]:
    """(email, list, active, custom fields) of every IEM row."""
    return sorted(
        (row["emailaddress"], row["listid"], not row["unsubscribed"] and not row["bounced"],
         {key: value for key, value in row["customfields"].items() if value})
        for row in b.iem_rows()
    )


def _items(b: Bench, result: RunResult) -> list[tuple[str, str, str, str | None, str | None]]:
    """(email, action, outcome, error class, error message) of every item of the run."""
    store = HistoryStore(b.config().storage.history_path)
    try:
        items = store.query_items(result.run_id)
    finally:
        store.db.close()
    return sorted((item.email, item.action, item.outcome, item.error_class, item.error_message) for item in items)


def _added(*emails: str) -> list[tuple[str, str, str, None, None]]:
    return [(email, "add", "succeeded", None, None) for email in emails]


def _summary(result: RunResult, *keys: str) -> dict[str, Any]:
    return {key: result.summary[key] for key in keys}


def _exec(b: Bench, statements: list[tuple[str, tuple[Any, ...]]], session: str | None = None) -> None:
    """Run statements on one connection, after an optional session statement."""
    connection = b.connect()
    try:
        with connection.cursor() as cursor:
            if session:
                cursor.execute(session)
            for statement, params in statements:
                cursor.execute(statement.replace("{p}", b.prefix), params)
    finally:
        connection.close()


# Emails ------------------------------------------------------------------------------------------


def test_binary_email_column_invalid_utf8(bench: Bench):
    b = bench
    b.sql("ALTER TABLE `{p}newsletter_subscriber` MODIFY subscriber_email varbinary(150)")
    _add_good(b)
    insert = ("INSERT INTO `{p}newsletter_subscriber` (store_id, change_status_at, subscriber_email, "
              "subscriber_status) VALUES (1, FROM_UNIXTIME(%s), %s, 1)")
    _exec(b, [(insert, (T1, b"bad\xff\xfe@example.test")), (insert, (T1, "ok\u00e9@example.test".encode()))])
    magento_before = b.magento()

    result = b.sync()

    assert result.status == "succeeded"
    assert result.counts == {"add": {"succeeded": 3}}
    assert _summary(result, "invalid_email", "out_of_scope") == {"invalid_email": 1, "out_of_scope": 0}
    assert _items(b, result) == _added(*GOOD, "ok\u00e9@example.test")
    assert _iem(b) == [(email, 1, True, {}) for email in sorted([*GOOD, "ok\u00e9@example.test"])]
    assert b.magento() == magento_before
    assert b.sync().counts == {}


def test_latin1_email_column(bench: Bench):
    b = bench
    b.sql("ALTER TABLE `{p}newsletter_subscriber` MODIFY subscriber_email varchar(150) CHARACTER SET latin1")
    _add_good(b)
    b.sql("INSERT INTO `{p}newsletter_subscriber` (store_id, change_status_at, subscriber_email, subscriber_status)"
          " VALUES (1, FROM_UNIXTIME(%s), _latin1 %s, 1)", (T1, b"ren\xe9e@example.test"))
    b.add_iem("\u0151r@example.test", subscribedate=T1)  # not in latin1, so Magento cannot store it
    magento_before = b.magento()

    result = b.sync()
    second = b.sync()

    assert result.status == "partial"
    assert result.counts == {"add": {"succeeded": 3}, "create_guest": {"failed": 1}}
    items = _items(b, result)
    assert items[:2] == _added(*GOOD)
    assert items[2] == ("ren\u00e9e@example.test", "add", "succeeded", None, None)
    assert items[3][:4] == ("\u0151r@example.test", "create_guest", "failed", "rejected")
    assert "Incorrect string value" in items[3][4]
    assert "subscriber_email" in items[3][4]
    assert _iem(b) == sorted([(email, 1, True, {}) for email in [*GOOD, "ren\u00e9e@example.test",
                                                                  "\u0151r@example.test"]])
    assert b.magento() == magento_before
    # A rejected record is not retried until its data changes.
    assert second.counts == {}
    assert second.summary["previously_rejected"] == 1


def test_over_long_emails_both_sides(bench: Bench):
    b = bench
    # Some shops widen the column, and the simulator accepts the longer address.
    b.sql("ALTER TABLE `{p}newsletter_subscriber` MODIFY subscriber_email varchar(255)")
    long_magento = "m" * 160 + "@example.test"
    long_iem = "i" * 160 + "@example.test"
    _add_good(b)
    b.add_row(long_magento, 1, T1)
    b.add_iem(long_iem, subscribedate=T1)
    magento_before = b.magento()

    result = b.sync()

    assert result.status == "partial"
    assert result.counts == {"add": {"succeeded": 3}, "create_guest": {"failed": 1}}
    assert _items(b, result) == sorted([
        *_added(*GOOD, long_magento),
        (long_iem, "create_guest", "failed", "invalid_data", "email is 173 characters long; Magento stores at most 150"),
    ])
    assert _iem(b) == sorted((email, 1, True, {}) for email in [*GOOD, long_magento, long_iem])
    assert b.magento() == magento_before


def test_null_empty_and_blank_emails(bench: Bench):
    b = bench
    _add_good(b)
    for email in (None, "", "   ", "\t"):
        b.add_row(email, 1, T1)
    magento_before = b.magento()

    result = b.sync()

    assert result.status == "succeeded"
    assert result.counts == {"add": {"succeeded": 2}}
    assert _summary(result, "invalid_email", "out_of_scope") == {"invalid_email": 4, "out_of_scope": 0}
    assert _items(b, result) == _added(*GOOD)
    assert _iem(b) == [(email, 1, True, {}) for email in GOOD]
    assert b.magento() == magento_before


def test_null_and_zero_store_are_out_of_scope(bench: Bench):
    b = bench
    _add_good(b)
    b.add_row("nostore@example.test", 1, T1, store_id=None)
    b.add_row("admin@example.test", 1, T1, store_id=0)
    b.add_row("admin-unsub@example.test", 3, T1, store_id=0)
    b.add_iem("admin-unsub@example.test", subscribedate=T1 - 10)
    magento_before = b.magento()

    result = b.sync()

    # The IEM-only address belongs to no identity in Magento's websites, so it becomes a guest.
    assert result.status == "succeeded"
    assert result.counts == {"add": {"succeeded": 2}, "create_guest": {"succeeded": 1}}
    assert _summary(result, "invalid_email", "out_of_scope") == {"invalid_email": 0, "out_of_scope": 3}
    assert _items(b, result) == sorted([*_added(*GOOD),
                                        ("admin-unsub@example.test", "create_guest", "succeeded", None, None)])
    assert _iem(b) == sorted((email, 1, True, {}) for email in [*GOOD, "admin-unsub@example.test"])
    rows = b.magento()
    assert rows[: len(magento_before)] == magento_before
    assert [row[1:] for row in rows[len(magento_before):]] == [("admin-unsub@example.test", 1, 1, 0)]


# Names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["varchar(255) CHARACTER SET latin1", "varbinary(255)"])
def test_name_not_utf8_fails_names_only(bench: Bench, column: str):
    b = bench
    b.sql(f"ALTER TABLE `{{p}}customer_entity` MODIFY firstname {column}")
    _add_good(b)
    b.sql("INSERT INTO `{p}customer_entity` (entity_id, website_id, email, firstname, lastname)"
          " VALUES (7, 1, 'named@example.test', _binary %s, 'Kov\u00e1cs')", (b"Bad\xff",))
    b.add_row("named@example.test", 1, T1, customer_id=7)
    magento_before = b.magento()

    result = b.sync()

    assert result.status == "partial"
    assert result.counts == {"add": {"succeeded": 3}, "update_names": {"failed": 1}}
    assert _items(b, result) == sorted([
        *_added(*GOOD, "named@example.test"),
        ("named@example.test", "update_names", "failed", "invalid_data", "firstname of customer 7 is not valid UTF-8"),
    ])
    assert _iem(b) == sorted([*((email, 1, True, {}) for email in GOOD),
                              ("named@example.test", 1, True, {"3": "Kov\u00e1cs"})])
    assert b.magento() == magento_before


def test_emoji_name_on_utf8mb4_table(bench: Bench):
    b = bench
    _add_good(b)
    b.add_customer("smile@example.test", 1, "Mos\u00e9ly \U0001F600", "\U0001F44D")
    b.add_row("smile@example.test", 1, T1, customer_id=1)

    result = b.sync()

    assert result.status == "succeeded"
    assert result.counts == {"add": {"succeeded": 3}}
    assert _iem(b) == sorted([*((email, 1, True, {}) for email in GOOD),
                              ("smile@example.test", 1, True, {"2": "Mos\u00e9ly \U0001F600", "3": "\U0001F44D"})])


def test_emoji_on_three_byte_utf8_tables(bench: Bench):
    b = bench
    b.sql("ALTER TABLE `{p}customer_entity` MODIFY firstname varchar(255) CHARACTER SET utf8mb3")
    b.sql("ALTER TABLE `{p}newsletter_subscriber` MODIFY subscriber_email varchar(150) CHARACTER SET utf8mb3")
    _add_good(b)
    # Magento's own sessions run with sql_mode '', where MariaDB stores "?" for the emoji.
    insert = ("INSERT INTO `{p}customer_entity` (entity_id, website_id, email, firstname, lastname)"
              " VALUES (8, 1, 'smile@example.test', %s, 'Ok')")
    _exec(b, [(insert, ("Smile\U0001F600",))], session="SET sql_mode = ''")
    b.add_row("smile@example.test", 1, T1, customer_id=8)
    b.add_iem("emoji\U0001F600@example.test", subscribedate=T1)
    magento_before = b.magento()

    result = b.sync()
    second = b.sync()

    assert b.sql("SELECT firstname FROM `{p}customer_entity` WHERE entity_id = 8") == [("Smile?",)]
    assert result.status == "partial"
    assert result.counts == {"add": {"succeeded": 3}, "create_guest": {"failed": 1}}
    items = _items(b, result)
    assert items[1:] == _added(*GOOD, "smile@example.test")
    assert items[0][:4] == ("emoji\U0001F600@example.test", "create_guest", "failed", "rejected")
    assert "Incorrect string value" in items[0][4]
    assert _iem(b) == sorted([*((email, 1, True, {}) for email in GOOD),
                              ("emoji\U0001F600@example.test", 1, True, {}),
                              ("smile@example.test", 1, True, {"2": "Smile?", "3": "Ok"})])
    assert b.magento() == magento_before
    # A rejected record is not retried until its data changes.
    assert second.counts == {}
    assert second.summary["previously_rejected"] == 1
