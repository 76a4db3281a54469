"""Every rule of a sync run, end to end: real MariaDB, the IEM simulator over HTTP, both dialects.

Each test sets up both sides, runs a real sync and asserts the exact end state of both.
Times are Unix seconds; T1 < T2 < T3 are in the past, so runs happen after all of them.
"""

from __future__ import annotations

import time

import pytest

from tests.sync_support import Bench

T1 = 1_700_000_000
T2 = 1_700_003_600
T3 = 1_700_007_200


@pytest.fixture(params=["legacy", "modern"])
def dialect(request: pytest.FixtureRequest) -> str:
    return request.param


def iem_view(b: Bench, list_id: int = 1) -> list[tuple[str, str, bool]]:
    """(email, active|unsubscribed|bounced, confirmed) of every row of a list."""
    rows = []
    for row in b.iem(list_id).values():
        state = "active"
        if row["unsubscribed"]:
            state = "unsubscribed"
        elif row["bounced"]:
            state = "bounced"
        rows.append((row["emailaddress"], state, bool(row["confirmed"])))
    return sorted(rows)


def writes(b: Bench) -> list[str]:
    return [call["method"] for call in b.write_calls()]


def counts(result) -> dict[str, int]:  # noqa: ANN001
    return {action: by.get("succeeded", 0) for action, by in result.counts.items()}


# --- Magento subscribed ---


def test_subscribed_absent_is_added_with_names(bench: Bench) -> None:
    b = bench
    customer = b.add_customer("anna@example.test", 1, "Anna", "Kovács")
    sid = b.add_row("Anna@Example.test", 1, T1, customer_id=customer)
    b.add_row("guest@example.test", 1, T1)

    result = b.sync()

    assert result.status == "succeeded"
    assert result.exit_code == 0
    assert iem_view(b) == [("Anna@Example.test", "active", True), ("guest@example.test", "active", True)]
    rows = b.iem()
    assert rows["anna@example.test"]["customfields"] == {"2": "Anna", "3": "Kovács"}
    assert rows["guest@example.test"]["customfields"] == {}
    assert b.magento() == [(sid, "Anna@Example.test", 1, 1, customer), (sid + 1, "guest@example.test", 1, 1, 0)]


def test_first_run_skips_autoresponders(bench: Bench) -> None:
    b = bench
    b.add_row("first@example.test", 1, T1)
    b.sync()
    b.add_row("second@example.test", 1, T2)
    b.sync()
    rows = b.iem()
    assert rows["first@example.test"]["autoresponders"] is False
    assert rows["second@example.test"]["autoresponders"] is True


def test_autoresponders_off_by_config(bench: Bench) -> None:
    b = bench
    b.overrides = {"sync": {"add_to_autoresponders": False}}
    b.add_row("first@example.test", 1, T1)
    b.sync()
    b.add_row("second@example.test", 1, T2)
    b.sync()
    assert b.iem()["second@example.test"]["autoresponders"] is False


def test_subscribed_unconfirmed_is_confirmed(bench: Bench) -> None:
    b = bench
    b.add_row("u@example.test", 1, T2)
    b.add_iem("u@example.test", confirmed=False, subscribedate=T1)
    b.sync()
    assert iem_view(b) == [("u@example.test", "active", True)]
    assert writes(b) == ["ChangeSubscriberConfirm"]


def test_subscribed_vs_newer_iem_unsubscribe(bench: Bench) -> None:
    b = bench
    sid = b.add_row("t20@example.test", 1, T1)
    b.add_iem("t20@example.test", unsubscribed=T2)
    b.sync()
    assert b.status_of(sid) == 3
    assert iem_view(b) == [("t20@example.test", "unsubscribed", True)]
    assert writes(b) == []


def test_subscribed_newer_reactivates_without_second_add(bench: Bench) -> None:
    b = bench
    sid = b.add_row("t4@example.test", 1, T3)
    iem_id = b.add_iem("t4@example.test", unsubscribed=T2, confirmed=False)
    b.sync()
    assert b.status_of(sid) == 1
    assert iem_view(b) == [("t4@example.test", "active", True)]
    assert b.iem()["t4@example.test"]["subscriberid"] == iem_id
    assert writes(b) == ["ActivateSubscriber", "ChangeSubscriberConfirm"]


def test_bounced_treated_as_unsubscribe(bench: Bench) -> None:
    b = bench
    sid = b.add_row("b@example.test", 1, T1)
    b.add_iem("b@example.test", bounced=T2)
    b.sync()
    assert b.status_of(sid) == 3
    assert iem_view(b) == [("b@example.test", "bounced", True)]


def test_bounce_left_alone_when_configured(bench: Bench) -> None:
    b = bench
    b.overrides = {"sync": {"bounced_is_unsubscribed": False}}
    sid = b.add_row("b@example.test", 1, T1)
    b.add_iem("b@example.test", bounced=T2)
    b.sync()
    assert b.status_of(sid) == 1
    assert iem_view(b) == [("b@example.test", "bounced", True)]
    assert writes(b) == []


# --- Magento unsubscribed ---


def test_unsubscribed_newer_unsubscribes_iem(bench: Bench) -> None:
    b = bench
    sid = b.add_row("m@example.test", 3, T2)
    b.add_iem("m@example.test", subscribedate=T1)
    b.sync()
    assert b.status_of(sid) == 3
    assert iem_view(b) == [("m@example.test", "unsubscribed", True)]
    assert writes(b) == ["UnsubscribeSubscriber"]


def test_unsubscribed_older_resubscribed_from_iem(bench: Bench) -> None:
    b = bench
    sid = b.add_row("i@example.test", 3, T1)
    b.add_iem("i@example.test", subscribedate=T2)
    b.sync()
    assert b.status_of(sid) == 1
    assert b.changed_at_of(sid) >= int(time.time()) - 60
    assert iem_view(b) == [("i@example.test", "active", True)]


def test_unsubscribed_absent_never_added(bench: Bench) -> None:
    b = bench
    b.add_row("gone@example.test", 3, T1)
    b.sync()
    assert iem_view(b) == []
    assert writes(b) == []


# --- Magento absent ---


def test_iem_only_subscriber_becomes_guest(bench: Bench) -> None:
    b = bench
    b.add_iem("T5@Example.test", list_id=2, subscribedate=T1)
    result = b.sync()
    rows = b.sql("SELECT subscriber_email, store_id, customer_id, subscriber_status, "
                 "LENGTH(subscriber_confirm_code), subscriber_confirm_code REGEXP '^[a-z0-9]{32}$', "
                 "change_status_at IS NOT NULL FROM `{p}newsletter_subscriber`")
    assert rows == [("T5@Example.test", 3, 0, 1, 32, 1, 1)]
    assert counts(result) == {"create_guest": 1}
    assert iem_view(b, 2) == [("T5@Example.test", "active", True)]


def test_import_switch_off_creates_nothing(bench: Bench) -> None:
    b = bench
    b.overrides = {"sync": {"import_new_subscribers": False}}
    b.add_iem("t5@example.test", subscribedate=T1)
    b.sync()
    assert b.magento() == []


def test_absent_and_unsubscribed_in_iem_does_nothing(bench: Bench) -> None:
    b = bench
    b.add_iem("x@example.test", unsubscribed=T1)
    b.sync()
    assert b.magento() == []
    assert writes(b) == []


# --- pending ---


def test_pending_rows_never_pushed(bench: Bench) -> None:
    b = bench
    b.add_row("t2@example.test", 2, T1)
    b.add_row("t2b@example.test", 4, T1)
    b.add_row("t0@example.test", 0, T1)
    result = b.sync()
    assert iem_view(b) == []
    assert result.summary["pending"] == 3
    assert result.summary["unknown_status"] == 1


def test_pending_account_keeps_iem_subscription(bench: Bench) -> None:
    b = bench
    sid = b.add_row("t9@example.test", 4, T2, customer_id=9)
    b.add_iem("t9@example.test", subscribedate=T1)
    b.sync()
    assert b.status_of(sid) == 4
    assert iem_view(b) == [("t9@example.test", "active", True)]


def test_pending_confirmation_confirmed_in_iem(bench: Bench) -> None:
    b = bench
    sid = b.add_row("p@example.test", 2, T1)
    b.add_iem("p@example.test", subscribedate=T2, confirmed=True)
    b.sync()
    assert b.status_of(sid) == 1


def test_pending_unsubscribed_in_iem(bench: Bench) -> None:
    b = bench
    two = b.add_row("p2@example.test", 2, T1)
    four = b.add_row("p4@example.test", 4, T1)
    b.add_iem("p2@example.test", unsubscribed=T2)
    b.add_iem("p4@example.test", unsubscribed=T2)
    b.sync()
    assert (b.status_of(two), b.status_of(four)) == (3, 3)


def test_status_two_is_not_an_unsubscribe(bench: Bench) -> None:
    b = bench
    sid = b.add_row("t26@example.test", 1, T1)
    b.sync()
    b.sql("UPDATE `{p}newsletter_subscriber` SET subscriber_status = 2, change_status_at = NOW() "
          "WHERE subscriber_id = %s", (sid,))
    b.reset_stats()
    b.sync()
    assert iem_view(b) == [("t26@example.test", "active", True)]
    assert writes(b) == []


# --- later runs ---


def test_magento_unsubscribe_reaches_iem_once(bench: Bench) -> None:
    b = bench
    sid = b.add_row("t1@example.test", 1, T1)
    b.sync()
    b.sql("UPDATE `{p}newsletter_subscriber` SET subscriber_status = 3, change_status_at = UTC_TIMESTAMP() "
          "WHERE subscriber_id = %s", (sid,))
    b.reset_stats()
    b.sync()
    b.sync()
    assert iem_view(b) == [("t1@example.test", "unsubscribed", True)]
    assert writes(b) == ["UnsubscribeSubscriber"]


def test_status_change_without_timestamp_detected(bench: Bench) -> None:
    b = bench
    sid = b.add_row("t8@example.test", 1, T1)
    b.sync()
    b.sql("UPDATE `{p}newsletter_subscriber` SET subscriber_status = 3 WHERE subscriber_id = %s", (sid,))
    b.sync()
    assert iem_view(b) == [("t8@example.test", "unsubscribed", True)]


def test_iem_unsubscribe_reaches_magento_without_echo(bench: Bench) -> None:
    b = bench
    sid = b.add_row("t18@example.test", 1, T1)
    b.sync()
    b.set_iem("t18@example.test", unsubscribed=int(time.time()))
    b.reset_stats()
    first = b.sync()
    second = b.sync()
    assert b.status_of(sid) == 3
    assert writes(b) == []
    assert counts(first) == {"unsubscribe_magento": 1}
    assert second.counts == {}


def test_unsubscribe_drops_unsent_queue_links(bench: Bench) -> None:
    b = bench
    sid = b.add_row("q@example.test", 1, T1)
    b.sql("INSERT INTO `{p}newsletter_template` (template_id, template_code) VALUES (1, 'x')")
    b.sql("INSERT INTO `{p}newsletter_queue` (queue_id, template_id) VALUES (1, 1)")
    b.sql("INSERT INTO `{p}newsletter_queue_link` (queue_id, subscriber_id, letter_sent_at) VALUES "
          "(1, %s, NULL), (1, %s, '2024-01-01 10:00:00')", (sid, sid))
    b.add_iem("q@example.test", unsubscribed=T2)
    b.sync()
    links = b.sql("SELECT letter_sent_at IS NULL FROM `{p}newsletter_queue_link` WHERE subscriber_id = %s", (sid,))
    assert links == [(0,)]


def test_deleted_row_unsubscribes_not_deletes(bench: Bench) -> None:
    b = bench
    sid = b.add_row("t24@example.test", 1, T1)
    b.sync()
    b.sql("DELETE FROM `{p}newsletter_subscriber` WHERE subscriber_id = %s", (sid,))
    b.reset_stats()
    result = b.sync()
    assert iem_view(b) == [("t24@example.test", "unsubscribed", True)]
    assert writes(b) == ["UnsubscribeSubscriber"]
    assert counts(result) == {"unsubscribe_iem": 1}


def test_email_change_moves_subscription(bench: Bench) -> None:
    b = bench
    sid = b.add_row("old@example.test", 1, T1)
    b.sync()
    b.sql("UPDATE `{p}newsletter_subscriber` SET subscriber_email = 'new@example.test' WHERE subscriber_id = %s",
          (sid,))
    b.sync()
    assert iem_view(b) == [("new@example.test", "active", True), ("old@example.test", "unsubscribed", True)]


def test_remote_only_changes_found_by_full_read(bench: Bench) -> None:
    b = bench
    unsub = b.add_row("t6@example.test", 1, T1)
    gone = b.add_row("t6b@example.test", 1, T1)
    b.sync()
    b.sql("UPDATE `{p}newsletter_subscriber` SET subscriber_status = 3, change_status_at = UTC_TIMESTAMP() "
          "WHERE subscriber_id = %s", (unsub,))
    b.sql("DELETE FROM `{p}newsletter_subscriber` WHERE subscriber_id = %s", (gone,))
    b.sync()
    assert iem_view(b) == [("t6@example.test", "unsubscribed", True), ("t6b@example.test", "unsubscribed", True)]


def test_subscribe_while_daemon_was_off(bench: Bench) -> None:
    b = bench
    sid = b.add_row("t7@example.test", 3, T1)
    b.sync()
    b.sql("UPDATE `{p}newsletter_subscriber` SET subscriber_status = 1, change_status_at = UTC_TIMESTAMP() "
          "WHERE subscriber_id = %s", (sid,))
    b.sync()
    assert iem_view(b) == [("t7@example.test", "active", True)]


def test_iem_unsubscribe_later_than_magento_subscribe_wins(bench: Bench) -> None:
    b = bench
    sid = b.add_row("t19@example.test", 1, None)
    b.add_iem("t19@example.test", unsubscribed=T1)
    b.sync()
    assert b.status_of(sid) == 3
    assert iem_view(b) == [("t19@example.test", "unsubscribed", True)]


def test_null_change_time_rows_synced(bench: Bench) -> None:
    b = bench
    b.add_row("t17a@example.test", 1, None)
    b.add_row("t17b@example.test", 3, None)
    b.sync()
    assert iem_view(b) == [("t17a@example.test", "active", True)]


def test_names_updated_when_customer_renamed(bench: Bench) -> None:
    b = bench
    customer = b.add_customer("n@example.test", 1, "Eva", "Kiss")
    b.add_row("n@example.test", 1, T1, customer_id=customer)
    b.sync()
    b.sql("UPDATE `{p}customer_entity` SET firstname = 'Éva' WHERE entity_id = %s", (customer,))
    b.reset_stats()
    b.sync()
    assert b.iem()["n@example.test"]["customfields"] == {"2": "Éva", "3": "Kiss"}
    assert writes(b) == ["SaveSubscriberCustomField"]


def test_invalid_name_recorded_rest_synced(bench: Bench) -> None:
    b = bench
    b.sql("ALTER TABLE `{p}customer_entity` MODIFY firstname VARBINARY(255)")
    bad = b.add_customer("t21@example.test", 1, b"Ren\xe9", "Bad")
    zoe = b.add_customer("zoe@example.test", 1, "Zoë", "O'Brien-Łukasz")
    b.add_row("t21@example.test", 1, T1, customer_id=bad)
    b.add_row("zoe@example.test", 1, T1, customer_id=zoe)
    result = b.sync()
    assert result.status == "partial"
    assert result.exit_code == 1
    rows = b.iem()
    assert rows["zoe@example.test"]["customfields"] == {"2": "Zoë", "3": "O'Brien-Łukasz"}
    assert rows["t21@example.test"]["customfields"] == {"3": "Bad"}
    again = b.sync()
    assert again.status == "succeeded"
    assert again.summary["previously_rejected"] == 1


# --- duplicates, case, websites ---


def test_case_variants_are_one_identity(bench: Bench) -> None:
    b = bench
    b.add_row("Ann.T13@Example.test", 1, T1, customer_id=13)
    b.add_iem("ann.t13@example.test", subscribedate=T1)
    b.sync()
    assert iem_view(b) == [("ann.t13@example.test", "active", True)]
    assert writes(b) == []


def test_duplicate_rows_one_push_all_updated(bench: Bench) -> None:
    b = bench
    guest = b.add_row("t15@example.test", 1, T1, store_id=1)
    customer_row = b.add_row("t15@example.test", 1, T1, store_id=2, customer_id=15)
    b.sync()
    assert len(b.iem()) == 1
    b.set_iem("t15@example.test", unsubscribed=int(time.time()))
    b.sync()
    assert (b.status_of(guest), b.status_of(customer_row)) == (3, 3)


def test_website_scoped_lists(bench: Bench) -> None:
    b = bench
    first = b.add_row("t11@example.test", 1, T1, store_id=1)
    second = b.add_row("t11@example.test", 1, T1, store_id=3)
    b.sync()
    b.sql("UPDATE `{p}newsletter_subscriber` SET subscriber_status = 3, change_status_at = UTC_TIMESTAMP() "
          "WHERE subscriber_id = %s", (second,))
    b.sync()
    assert iem_view(b, 1) == [("t11@example.test", "active", True)]
    assert iem_view(b, 2) == [("t11@example.test", "unsubscribed", True)]
    assert b.status_of(first) == 1


def test_out_of_scope_rows_reported(bench: Bench) -> None:
    b = bench
    b.add_row("admin@example.test", 1, T1, store_id=0)
    b.add_row("orphan@example.test", 1, T1, store_id=None)
    b.add_row(None, 1, T1)
    result = b.sync()
    assert iem_view(b) == []
    assert (result.summary["out_of_scope"], result.summary["invalid_email"]) == (2, 1)


def test_long_iem_email_not_truncated(bench: Bench) -> None:
    b = bench
    email = "x" * 140 + "@example.test"
    b.add_iem(email, subscribedate=T1)
    result = b.sync()
    assert b.magento() == []
    assert result.counts == {"create_guest": {"failed": 1}}
    assert result.exit_code == 1


def test_table_prefix(bench: Bench) -> None:
    from tests import mariadb_support as mdb

    b = bench
    mdb.load_schema(b.database, "m2_")
    b.prefix = "m2_"
    b.add_row("prefixed@example.test", 1, T1)
    b.sync()
    assert iem_view(b) == [("prefixed@example.test", "active", True)]


def test_plus_and_ampersand_survive(bench: Bench) -> None:
    b = bench
    customer = b.add_customer("a+b@example.test", 1, "Tom & Jerry", "<O'Neil>")
    b.add_row("a+b@example.test", 1, T1, customer_id=customer)
    b.sync()
    row = b.iem()["a+b@example.test"]
    assert row["customfields"] == {"2": "Tom & Jerry", "3": "<O'Neil>"}


# --- second run writes nothing ---


def test_second_run_writes_nothing(bench: Bench) -> None:
    b = bench
    for n in range(20):
        b.add_row(f"s{n}@example.test", [1, 3, 2, 4][n % 4], T1 + n, customer_id=0)
    for n in range(10):
        b.add_iem(f"s{n}@example.test", subscribedate=T2, unsubscribed=T3 if n % 3 == 0 else 0)
    b.add_iem("iem-only@example.test", subscribedate=T2)
    b.sync()
    b.reset_stats()
    second = b.sync()
    assert second.counts == {}
    assert writes(b) == []
