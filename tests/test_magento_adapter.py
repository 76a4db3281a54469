"""The Magento adapter, schema and sample shop against a real MariaDB or MySQL server."""

from __future__ import annotations

import asyncio
import calendar
import logging
import re
import socket
import time
import tracemalloc
from collections.abc import Iterator

import pymysql
import pytest

from edm_tui.magento.connection import ConnectionSettings, SESSION_SQL_MODE, open_connection
from edm_tui.magento.db import MagentoDatabase, run_lock_name
from edm_tui.magento.errors import (
    ConnectionTarget,
    InvalidRecord,
    MagentoAuthError,
    MagentoConnectionError,
    MagentoSchemaError,
)
from edm_tui.magento.sampledata import (
    generate_iem_list,
    generate_shop,
    iem_list_counts,
    load_shop,
)
from edm_tui.magento.schema import render_schema_statements
from edm_tui.sync.model import MagentoRow
from tests.mariadb_support import (
    adapter_params,
    admin_params,
    connect,
    foreign_key_names,
    insert_customer,
    insert_queue,
    insert_queue_link,
    insert_subscriber,
    read_queue_links,
    read_subscribers,
    table_names,
    temporary_database,
    temporary_user,
    unique_name,
    unused_tcp_port,
)

PREFIX = "m2_"
NEWSLETTER_TABLES = [
    "customer_entity",
    "newsletter_queue",
    "newsletter_queue_link",
    "newsletter_subscriber",
    "newsletter_template",
    "store",
    "store_group",
    "store_website",
]
CONFIRM_CODE = "0123456789abcdefghijklmnopqrstuv"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return calendar.timegm((year, month, day, hour, minute, second))


def parse_utc(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


@pytest.fixture
def database() -> Iterator[str]:
    with temporary_database((PREFIX,)) as name:
        yield name


@pytest.fixture
def writer(database: str) -> Iterator[pymysql.Connection]:
    connection = connect(database)
    yield connection
    connection.close()


async def open_adapter(database: str, table_prefix: str = PREFIX, **overrides) -> MagentoDatabase:
    params = adapter_params() | overrides
    return await MagentoDatabase.connect(**params, database=database, table_prefix=table_prefix)


def query(connection: pymysql.Connection, sql: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


def error_chain_text(error: BaseException) -> str:
    parts = []
    current: BaseException | None = error
    while current is not None:
        parts.append(f"{current!s} {current!r} {current.args!r}")
        current = current.__cause__ or current.__context__
    return " ".join(parts)


# --- Schema ----------------------------------------------------------------------------------


def test_schema_loads_without_prefix() -> None:
    with temporary_database(("",)) as name:
        connection = connect(name)
        try:
            assert table_names(connection) == NEWSLETTER_TABLES
            assert query(connection, "SELECT website_id, code, default_group_id FROM store_website ORDER BY 1") == [
                (0, "admin", 0),
                (1, "base", 1),
                (2, "second", 2),
            ]
            assert query(connection, "SELECT group_id, website_id, default_store_id FROM store_group ORDER BY 1") == [
                (0, 0, 0),
                (1, 1, 1),
                (2, 2, 3),
            ]
            assert query(connection, "SELECT store_id, code, website_id, group_id FROM store ORDER BY 1") == [
                (0, "admin", 0, 0),
                (1, "default", 1, 1),
                (2, "default_fr", 1, 1),
                (3, "second_default", 2, 2),
            ]
            assert len(foreign_key_names(connection)) == 9
        finally:
            connection.close()


def test_schema_two_prefixes_share_database() -> None:
    with temporary_database(("m2_", "shop_b_")) as name:
        connection = connect(name)
        try:
            expected = sorted([f"m2_{table}" for table in NEWSLETTER_TABLES]
                              + [f"shop_b_{table}" for table in NEWSLETTER_TABLES])
            assert table_names(connection) == expected
            assert len(set(foreign_key_names(connection))) == 18
            assert query(connection, "SELECT COUNT(*) FROM shop_b_store") == [(4,)]

            # Each prefix's foreign keys point at its own store table.
            insert_subscriber(connection, "a@example.test", 2, 1, table_prefix="m2_")
            insert_subscriber(connection, "b@example.test", 2, 1, table_prefix="shop_b_")
            query(connection, "DELETE FROM m2_store WHERE store_id = 2")
            assert query(connection, "SELECT store_id FROM m2_newsletter_subscriber") == [(None,)]
            assert query(connection, "SELECT store_id FROM shop_b_newsletter_subscriber") == [(2,)]
            with pytest.raises(pymysql.err.IntegrityError):
                insert_subscriber(connection, "c@example.test", 9, 1, table_prefix="shop_b_")
        finally:
            connection.close()


def test_schema_longest_prefix_fits_identifier_limit() -> None:
    prefix = "abcdefghij_klmnopqr_"
    with temporary_database((prefix,)) as name:
        connection = connect(name)
        try:
            assert table_names(connection) == sorted(prefix + table for table in NEWSLETTER_TABLES)
            names = foreign_key_names(connection)
            assert len(set(names)) == 9
            assert max(len(fk_name) for fk_name in names) <= 64
        finally:
            connection.close()


def test_schema_rejects_invalid_prefix() -> None:
    with pytest.raises(ValueError, match="letters, digits and underscores"):
        render_schema_statements("m2-")
    with pytest.raises(ValueError, match="maximum is 20"):
        render_schema_statements("a" * 21)


# --- Connecting ------------------------------------------------------------------------------


async def test_connect_rejects_invalid_prefix_before_connecting() -> None:
    with pytest.raises(ValueError, match="letters, digits and underscores"):
        await MagentoDatabase.connect(user="nobody", database="none", port=1, table_prefix="m2`")
    with pytest.raises(ValueError, match="maximum is 20"):
        await MagentoDatabase.connect(user="nobody", database="none", port=1, table_prefix="a" * 21)


async def test_table_quotes_prefixed_name(database: str) -> None:
    async with await open_adapter(database) as db:
        assert db.table("newsletter_subscriber") == "`m2_newsletter_subscriber`"
        with pytest.raises(ValueError):
            db.table("store`; DROP TABLE x")


async def test_sessions_use_utc_strict_utf8mb4_autocommit(database: str) -> None:
    params = admin_params()
    target = ConnectionTarget(params["host"], params["port"], params.get("unix_socket"), params["user"], database)
    settings = ConnectionSettings(target=target, password=params["password"], connect_timeout=5)
    for streaming in (False, True):
        connection = await open_connection(settings, streaming=streaming)
        try:
            cursor = await connection.cursor()
            await cursor.execute(
                "SELECT @@session.time_zone, @@session.sql_mode,"
                " @@session.character_set_connection, @@session.autocommit"
            )
            [(time_zone, sql_mode, charset, autocommit)] = list(await cursor.fetchall())
            assert time_zone == "+00:00"
            assert set(sql_mode.split(",")) == set(SESSION_SQL_MODE.split(","))
            assert charset == "utf8mb4"
            assert autocommit == 1
        finally:
            connection.close()


async def test_connect_refused_names_host_and_port() -> None:
    port = unused_tcp_port()
    password = "s3cret-refused-pw"
    with pytest.raises(MagentoConnectionError) as caught:
        await MagentoDatabase.connect(
            host="127.0.0.1", port=port, user="root", password=password,
            database="edm_test_none", connect_timeout=3,
        )
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "Check that MariaDB or MySQL is running" in str(caught.value)
    assert password not in error_chain_text(caught.value)


async def test_connect_silent_server_times_out() -> None:
    # A listening socket that never accepts: the TCP connect succeeds, the MySQL greeting
    # never comes.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(MagentoConnectionError) as caught:
            await MagentoDatabase.connect(
                port=port, user="root", password="s3cret-silent-pw",
                database="edm_test_none", connect_timeout=0.5,
            )
        assert time.monotonic() - started < 5
    assert f"127.0.0.1:{port}: connection timed out" in str(caught.value)
    assert "s3cret-silent-pw" not in error_chain_text(caught.value)


async def test_connect_missing_socket_names_socket() -> None:
    with pytest.raises(MagentoConnectionError) as caught:
        await MagentoDatabase.connect(
            unix_socket="/nonexistent/edm-test/mysqld.sock", user="root",
            password="s3cret-socket-pw", database="edm_test_none", connect_timeout=3,
        )
    assert "socket /nonexistent/edm-test/mysqld.sock" in str(caught.value)
    assert "s3cret-socket-pw" not in error_chain_text(caught.value)


async def test_connect_wrong_password_raises_auth_error(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="edm_sync.magento")
    with temporary_user(database, {"*": "SELECT"}) as (user, password):
        wrong_password = password + "-wrong"
        with pytest.raises(MagentoAuthError) as caught:
            await open_adapter(database, user=user, password=wrong_password)
        message = str(caught.value)
        assert f"user '{user}'" in message
        assert f"database '{database}'" in message
        assert wrong_password not in error_chain_text(caught.value)

        async with await open_adapter(database, user=user, password=password) as db:
            assert await db.website_ids() == [1, 2]
    assert password not in caplog.text
    assert f"as {user}" in caplog.text


async def test_connect_database_without_access_raises_auth_error(database: str) -> None:
    other = unique_name()
    with temporary_user(database, {"*": "SELECT"}) as (user, password):
        with pytest.raises(MagentoAuthError) as caught:
            await open_adapter(other, user=user, password=password)
    assert f"no access to database '{other}'" in str(caught.value)
    assert password not in error_chain_text(caught.value)


async def test_connect_unknown_database_raises_schema_error() -> None:
    name = unique_name()
    with pytest.raises(MagentoSchemaError) as caught:
        await open_adapter(name)
    assert f"Database '{name}' does not exist" in str(caught.value)


async def test_killed_connection_raises_connection_error(database: str, writer: pymysql.Connection) -> None:
    db = await open_adapter(database)
    try:
        assert await db.acquire_run_lock() is True
        [(connection_id,)] = query(writer, f"SELECT IS_USED_LOCK('{db.run_lock_name}')")
        query(writer, f"KILL {connection_id}")
        with pytest.raises(MagentoConnectionError, match="Lost the connection"):
            await db.website_ids()
    finally:
        await db.close()


async def test_server_info_names_version(database: str) -> None:
    async with await open_adapter(database) as db:
        info = await db.server_info()
    connection = connect()
    [(version,)] = query(connection, "SELECT VERSION()")
    connection.close()
    assert info.startswith(version)


# --- Reading ---------------------------------------------------------------------------------


async def test_iter_rows_returns_exact_rows(database: str) -> None:
    # The writer's session runs at +02:00: the server stores the instants in UTC, and the
    # adapter must return them as UTC Unix seconds.
    writer = connect(database, time_zone="+02:00")
    try:
        insert_customer(writer, "eva@example.test", 1, "Éva", "Kovács", entity_id=7, table_prefix=PREFIX)
        insert_customer(writer, "zoe@example.test", 2, "Zoë 🌸", "𝔊ödöllő", entity_id=8, table_prefix=PREFIX)
        rows = [
            ("eva@example.test", 1, 1, "2024-03-01 12:00:00", 7),
            (" Zoe@Example.test ", 3, 3, "2024-07-01 00:30:00", 8),
            ("guest@example.test", 2, 2, None, 0),
            ("admin@example.test", 0, 1, "2024-01-01 00:00:00", 0),
            ("orphan@example.test", None, 3, None, 99),
            ("", 1, 1, None, 0),
            (None, 1, 0, None, 0),
        ]
        ids = [
            insert_subscriber(writer, email, store_id, status, changed_at, customer_id, table_prefix=PREFIX)
            for email, store_id, status, changed_at, customer_id in rows
        ]
    finally:
        writer.close()

    async with await open_adapter(database) as db:
        result = [row async for row in db.iter_rows()]

    assert result == [
        MagentoRow(ids[0], "eva@example.test", 1, 1, 7, 1, utc(2024, 3, 1, 10), "Éva", "Kovács"),
        MagentoRow(ids[1], " Zoe@Example.test ", 3, 2, 8, 3, utc(2024, 6, 30, 22, 30), "Zoë 🌸", "𝔊ödöllő"),
        MagentoRow(ids[2], "guest@example.test", 2, 1, 0, 2, None),
        MagentoRow(ids[3], "admin@example.test", 0, 0, 0, 1, utc(2023, 12, 31, 22)),
        MagentoRow(ids[4], "orphan@example.test", None, None, 99, 3, None),
        MagentoRow(ids[5], "", 1, 1, 0, 1, None),
        MagentoRow(ids[6], None, 1, 1, 0, 0, None),
    ]


async def test_iter_rows_reports_invalid_utf8_name(database: str, writer: pymysql.Connection) -> None:
    # A table converted from an old install can keep a latin1 column, which accepts any
    # byte, so names in it may hold bytes that are not UTF-8.
    query(writer, f"ALTER TABLE {PREFIX}customer_entity MODIFY firstname varchar(255) CHARACTER SET latin1")
    insert_customer(writer, "rene@example.test", 1, b"Ren\xe9", "Dupont", entity_id=42, table_prefix=PREFIX)
    insert_customer(writer, "zoe@example.test", 1, "Zoë".encode(), "O'Brien-Łukasz", entity_id=43, table_prefix=PREFIX)
    first = insert_subscriber(writer, "rene@example.test", 1, 1, utc(2024, 1, 2), 42, table_prefix=PREFIX)
    second = insert_subscriber(writer, "zoe@example.test", 1, 1, utc(2024, 1, 3), 43, table_prefix=PREFIX)
    third = insert_subscriber(writer, "guest@example.test", 2, 1, utc(2024, 1, 4), table_prefix=PREFIX)

    async with await open_adapter(database) as db:
        result = [row async for row in db.iter_rows()]

    assert result == [
        MagentoRow(first, "rene@example.test", 1, 1, 42, 1, utc(2024, 1, 2), None, "Dupont",
                   name_error="firstname of customer 42 is not valid UTF-8"),
        MagentoRow(second, "zoe@example.test", 1, 1, 43, 1, utc(2024, 1, 3), "Zoë", "O'Brien-Łukasz"),
        MagentoRow(third, "guest@example.test", 2, 1, 0, 1, utc(2024, 1, 4)),
    ]


async def test_iter_rows_streams_in_bounded_memory(database: str, writer: pymysql.Connection) -> None:
    row_count = 60_000
    query(
        writer,
        f"INSERT INTO {PREFIX}newsletter_subscriber"
        " (store_id, change_status_at, customer_id, subscriber_email, subscriber_status)"
        " SELECT 1 + seq % 3, FROM_UNIXTIME(1700000000 + seq), 0,"
        f" CONCAT('user', seq, '@example.test'), 1 FROM seq_1_to_{row_count}",
    )

    async with await open_adapter(database) as db:
        count = 0
        previous_id = 0
        tracemalloc.start()
        try:
            async for row in db.iter_rows():
                count += 1
                assert row.subscriber_id > previous_id
                previous_id = row.subscriber_id
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    assert count == row_count
    # Holding all 60 000 rows at once takes about 15 MB, streaming them under 1 MB.
    assert peak < 5 * 1024 * 1024


async def test_iter_rows_closed_early_leaves_adapter_usable(database: str, writer: pymysql.Connection) -> None:
    for number in range(3):
        insert_subscriber(writer, f"user{number}@example.test", 1, 1, table_prefix=PREFIX)
    query(
        writer,
        f"INSERT INTO {PREFIX}newsletter_subscriber (store_id, subscriber_email, subscriber_status)"
        " SELECT 1, CONCAT('bulk', seq, '@example.test'), 1 FROM seq_1_to_5000",
    )
    async with await open_adapter(database) as db:
        rows = db.iter_rows()
        first = await anext(rows)
        await rows.aclose()
        assert first.email == "user0@example.test"
        assert await db.acquire_run_lock() is True
        assert len([row async for row in db.iter_rows()]) == 5003


async def test_iter_rows_leaves_writes_and_lock_free(database: str, writer: pymysql.Connection) -> None:
    query(
        writer,
        f"INSERT INTO {PREFIX}newsletter_subscriber (store_id, subscriber_email, subscriber_status)"
        " SELECT 1, CONCAT('bulk', seq, '@example.test'), 1 FROM seq_1_to_5000",
    )
    async with await open_adapter(database) as db:
        count = 0
        async for row in db.iter_rows():
            count += 1
            if count == 1:
                assert await db.acquire_run_lock() is True
                assert await db.set_status(5000, 1, 3) is True
                assert await db.insert_guest("during-read@example.test", 2) > 5000
        last = row

    # The stream reads one consistent snapshot, taken before the writes.
    assert count == 5000
    assert last.status == 1
    assert read_subscribers(writer, table_prefix=PREFIX)[4999][5] == 3


async def test_cancelled_write_rolls_back_and_releases_lock(
    database: str, writer: pymysql.Connection
) -> None:
    first = insert_subscriber(writer, "ann@example.test", 1, 1, "2024-01-01 00:00:00", table_prefix=PREFIX)
    query(writer, f"CREATE TRIGGER {PREFIX}slow BEFORE UPDATE ON {PREFIX}newsletter_subscriber"
                  " FOR EACH ROW SET @edm_test_pause = SLEEP(1)")
    before = read_subscribers(writer, table_prefix=PREFIX)

    db = await open_adapter(database)
    try:
        assert await db.acquire_run_lock() is True
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await db.set_status(first, 1, 3)
        with pytest.raises(MagentoConnectionError, match="is closed"):
            await db.website_ids()
    finally:
        await db.close()

    # The server ends the session once the statement returns: the update is rolled back and
    # the lock is free.
    assert query(writer, f"SELECT GET_LOCK('{db.run_lock_name}', 10)") == [(1,)]
    query(writer, f"SELECT RELEASE_LOCK('{db.run_lock_name}')")
    assert read_subscribers(writer, table_prefix=PREFIX) == before


async def test_default_store_ids_and_website_ids(
    database: str, writer: pymysql.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    async with await open_adapter(database) as db:
        assert await db.default_store_ids() == {1: 1, 2: 3}
        assert await db.website_ids() == [1, 2]

        # Store view 3 belongs to website 2, so it cannot be website 1's default.
        query(writer, f"UPDATE {PREFIX}store_group SET default_store_id = 3 WHERE group_id = 1")
        assert await db.default_store_ids() == {2: 3}
    assert "Website 1 of Magento database" in caplog.text


# --- Writing ---------------------------------------------------------------------------------


@pytest.fixture
def two_subscribers(writer: pymysql.Connection) -> dict[str, int]:
    first = insert_subscriber(writer, "ann@example.test", 1, 1, "2024-01-01 00:00:00", 5, table_prefix=PREFIX)
    second = insert_subscriber(writer, "bob@example.test", 3, 1, "2024-02-01 00:00:00", table_prefix=PREFIX)
    queue = insert_queue(writer, table_prefix=PREFIX)
    insert_queue_link(writer, queue, first, table_prefix=PREFIX)
    insert_queue_link(writer, queue, first, "2024-05-01 10:00:00", table_prefix=PREFIX)
    insert_queue_link(writer, queue, second, table_prefix=PREFIX)
    return {"first": first, "second": second, "queue": queue}


async def test_set_status_unsubscribe_removes_unsent_links(
    database: str, writer: pymysql.Connection, two_subscribers: dict[str, int]
) -> None:
    first, second, queue = two_subscribers["first"], two_subscribers["second"], two_subscribers["queue"]
    async with await open_adapter(database) as db:
        before = int(time.time())
        assert await db.set_status(first, 1, 3) is True
        after = int(time.time())

    rows = read_subscribers(writer, table_prefix=PREFIX)
    assert before <= parse_utc(rows[0][2]) <= after
    assert rows == [
        (first, 1, rows[0][2], 5, "ann@example.test", 3, CONFIRM_CODE),
        (second, 3, "2024-02-01 00:00:00", 0, "bob@example.test", 1, CONFIRM_CODE),
    ]
    assert read_queue_links(writer, table_prefix=PREFIX) == [
        (2, queue, first, "2024-05-01 10:00:00"),
        (3, queue, second, None),
    ]


async def test_set_status_guard_rejects_changed_row(
    database: str, writer: pymysql.Connection, two_subscribers: dict[str, int]
) -> None:
    first = two_subscribers["first"]
    query(writer, f"UPDATE {PREFIX}newsletter_subscriber SET subscriber_status = 2 WHERE subscriber_id = {first}")
    subscribers_before = read_subscribers(writer, table_prefix=PREFIX)
    links_before = read_queue_links(writer, table_prefix=PREFIX)

    async with await open_adapter(database) as db:
        assert await db.set_status(first, 1, 3) is False
        assert await db.set_status(999_999, 1, 3) is False

    assert read_subscribers(writer, table_prefix=PREFIX) == subscribers_before
    assert read_queue_links(writer, table_prefix=PREFIX) == links_before


async def test_set_status_subscribe_keeps_queue_links(
    database: str, writer: pymysql.Connection, two_subscribers: dict[str, int]
) -> None:
    first, second = two_subscribers["first"], two_subscribers["second"]
    query(writer, f"UPDATE {PREFIX}newsletter_subscriber SET subscriber_status = 3 WHERE subscriber_id = {first}")
    links_before = read_queue_links(writer, table_prefix=PREFIX)

    async with await open_adapter(database) as db:
        before = int(time.time())
        assert await db.set_status(first, 3, 1) is True
        after = int(time.time())

    rows = read_subscribers(writer, table_prefix=PREFIX)
    assert before <= parse_utc(rows[0][2]) <= after
    assert rows == [
        (first, 1, rows[0][2], 5, "ann@example.test", 1, CONFIRM_CODE),
        (second, 3, "2024-02-01 00:00:00", 0, "bob@example.test", 1, CONFIRM_CODE),
    ]
    assert read_queue_links(writer, table_prefix=PREFIX) == links_before


async def test_set_status_rejects_unchanged_or_unknown_status(database: str) -> None:
    async with await open_adapter(database) as db:
        with pytest.raises(ValueError, match="equals expected_status"):
            await db.set_status(1, 3, 3)
        with pytest.raises(ValueError, match="Invalid new_status 7"):
            await db.set_status(1, 1, 7)


async def test_insert_guest_writes_guest_row(database: str, writer: pymysql.Connection) -> None:
    email_150 = "a" * 137 + "@example.test"
    assert len(email_150) == 150
    async with await open_adapter(database) as db:
        before = int(time.time())
        first = await db.insert_guest("New.Guest@Example.test", 3)
        second = await db.insert_guest(email_150, 2, status=2)
        after = int(time.time())

    rows = read_subscribers(writer, table_prefix=PREFIX)
    for row in rows:
        assert before <= parse_utc(row[2]) <= after
        assert re.fullmatch(r"[a-z0-9]{32}", row[6])
    assert rows[0][6] != rows[1][6]
    assert rows == [
        (first, 3, rows[0][2], 0, "New.Guest@Example.test", 1, rows[0][6]),
        (second, 2, rows[1][2], 0, email_150, 2, rows[1][6]),
    ]


async def test_insert_guest_rejects_long_email(database: str, writer: pymysql.Connection) -> None:
    insert_subscriber(writer, "existing@example.test", 1, 1, "2024-01-01 00:00:00", table_prefix=PREFIX)
    before = read_subscribers(writer, table_prefix=PREFIX)
    email_151 = "a" * 138 + "@example.test"

    db = await open_adapter(database)
    try:
        with pytest.raises(InvalidRecord, match="151 characters long.*at most 150"):
            await db.insert_guest(email_151, 1)
        with pytest.raises(InvalidRecord, match="empty"):
            await db.insert_guest("  ", 1)
        with pytest.raises(InvalidRecord, match="rejected the record"):
            await db.insert_guest("unknown-store@example.test", 9)
    finally:
        await db.close()

    # The address is checked before anything reaches the server: this adapter is closed.
    with pytest.raises(InvalidRecord, match="151 characters long"):
        await db.insert_guest(email_151, 1)

    assert read_subscribers(writer, table_prefix=PREFIX) == before


# --- Run lock --------------------------------------------------------------------------------


async def test_run_lock_refuses_second_session(database: str) -> None:
    first = await open_adapter(database)
    second = await open_adapter(database)
    other_prefix = await open_adapter(database, table_prefix="shop_b_")
    try:
        assert await first.acquire_run_lock() is True
        assert await first.acquire_run_lock() is True
        assert await second.acquire_run_lock() is False
        assert await other_prefix.acquire_run_lock() is True

        await first.release_run_lock()
        assert await second.acquire_run_lock() is True

        # The server ends a closed session shortly after the client quits, not at once.
        await second.close()
        deadline = time.monotonic() + 5
        acquired = await first.acquire_run_lock()
        while not acquired and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            acquired = await first.acquire_run_lock()
        assert acquired is True
    finally:
        for db in (first, second, other_prefix):
            await db.close()


def test_run_lock_name_fits_limit() -> None:
    assert run_lock_name("shop", "m2_") == "edm_sync.shop.m2_"
    long_name = run_lock_name("d" * 64, "p" * 20)
    assert len(long_name) <= 64
    assert long_name != run_lock_name("d" * 64, "q" * 20)


# --- Checks ----------------------------------------------------------------------------------


async def test_check_tables_names_missing_tables(database: str, writer: pymysql.Connection) -> None:
    async with await open_adapter(database) as db:
        assert await db.check_tables() == []
    async with await open_adapter(database, table_prefix="") as db:
        assert await db.check_tables() == [
            "store", "store_website", "store_group", "customer_entity",
            "newsletter_subscriber", "newsletter_queue_link",
        ]

    query(writer, f"DROP TABLE {PREFIX}newsletter_queue_link")
    async with await open_adapter(database) as db:
        assert await db.check_tables() == [f"{PREFIX}newsletter_queue_link"]
        with pytest.raises(MagentoSchemaError, match="table prefix"):
            await db.check_write_rights()


async def test_check_write_rights_with_restricted_users(database: str, writer: pymysql.Connection) -> None:
    first = insert_subscriber(writer, "ann@example.test", 1, 1, "2024-01-01 00:00:00", table_prefix=PREFIX)
    before = read_subscribers(writer, table_prefix=PREFIX)

    with temporary_user(database, {"*": "SELECT"}) as (user, password):
        async with await open_adapter(database, user=user, password=password) as db:
            assert await db.check_tables() == []
            assert await db.check_write_rights() == [
                f"UPDATE on {PREFIX}newsletter_subscriber",
                f"INSERT on {PREFIX}newsletter_subscriber",
                f"DELETE on {PREFIX}newsletter_queue_link",
            ]
            with pytest.raises(MagentoAuthError, match=f"user '{user}' lacks a privilege"):
                await db.set_status(first, 1, 3)

    grants = {"*": "SELECT", f"{PREFIX}newsletter_subscriber": "UPDATE, INSERT"}
    with temporary_user(database, grants) as (user, password):
        async with await open_adapter(database, user=user, password=password) as db:
            assert await db.check_write_rights() == [f"DELETE on {PREFIX}newsletter_queue_link"]

    # Tables without any privilege are invisible to the user, so they count as missing.
    with temporary_user(database, {f"{PREFIX}newsletter_subscriber": "SELECT"}) as (user, password):
        async with await open_adapter(database, user=user, password=password) as db:
            assert await db.check_tables() == [
                f"{PREFIX}store", f"{PREFIX}store_website", f"{PREFIX}store_group",
                f"{PREFIX}customer_entity", f"{PREFIX}newsletter_queue_link",
            ]

    async with await open_adapter(database) as db:
        assert await db.check_write_rights() == []

    assert read_subscribers(writer, table_prefix=PREFIX) == before
    # The INSERT probe consumed no auto-increment value.
    assert insert_subscriber(writer, "next@example.test", 1, 1, table_prefix=PREFIX) == first + 1


async def test_triggers_lists_only_prefixed_table() -> None:
    with temporary_database(("m2_", "m2x")) as name:
        connection = connect(name)
        try:
            query(connection, "CREATE TRIGGER m2_audit AFTER UPDATE ON m2_newsletter_subscriber"
                              " FOR EACH ROW SET @edm_test_audit = 1")
            query(connection, "CREATE TRIGGER m2x_audit BEFORE INSERT ON m2xnewsletter_subscriber"
                              " FOR EACH ROW SET @edm_test_audit = 2")
        finally:
            connection.close()

        async with await open_adapter(name, table_prefix="m2_") as db:
            assert await db.triggers() == ["m2_audit (AFTER UPDATE)"]
        async with await open_adapter(name, table_prefix="m2x") as db:
            assert await db.triggers() == ["m2x_audit (BEFORE INSERT)"]
        async with await open_adapter(name, table_prefix="") as db:
            assert await db.triggers() == []


# --- Sample shop -----------------------------------------------------------------------------

STORE_WEBSITES = {1: 1, 2: 1, 3: 2}


def identity_groups(shop) -> dict[tuple[str, int], list]:
    groups: dict[tuple[str, int], list] = {}
    for row in shop.subscribers:
        website = STORE_WEBSITES.get(row.store_id)
        if website and row.email and row.email.strip():
            groups.setdefault((row.email.strip().lower(), website), []).append(row)
    return groups


def newest_row(rows: list):
    return sorted(rows, key=lambda row: (row.changed_at is not None, row.changed_at or 0,
                                         row.customer_id > 0, row.subscriber_id))[-1]


@pytest.fixture(scope="module")
def shop():
    return generate_shop(20_26)


def test_generate_shop_is_deterministic(shop) -> None:
    assert generate_shop(20_26) == shop
    assert generate_shop(20_27) != shop
    assert generate_iem_list(shop, 5) == generate_iem_list(generate_shop(20_26), 5)
    assert generate_iem_list(shop, 5) != generate_iem_list(shop, 6)


def test_generate_shop_counts_match_rows(shop) -> None:
    rows = shop.subscribers
    counts = shop.counts
    groups = identity_groups(shop)

    assert counts["subscriber_rows"] == len(rows) == 10_000
    assert [row.subscriber_id for row in rows] == list(range(1, 10_001))
    assert counts["customers"] == len(shop.customers)
    for status in range(5):
        assert counts[f"status_{status}_rows"] == len([row for row in rows if row.status == status])
    assert counts["store_0_rows"] == len([row for row in rows if row.store_id == 0]) == 5
    assert counts["store_null_rows"] == len([row for row in rows if row.store_id is None]) == 5
    assert counts["null_changed_at_rows"] == len([row for row in rows if row.changed_at is None])
    assert counts["padded_emails"] == len([row for row in rows if row.email and row.email != row.email.strip()])
    assert counts["blank_email_rows"] == len([row for row in rows if not (row.email or "").strip()]) == 3
    assert counts["identities"] == len(groups)
    assert counts["duplicate_rows"] == sum(len(group) - 1 for group in groups.values()) == 40
    assert counts["customer_subscriber_rows"] == len([row for row in rows if row.customer_id])
    for website in (1, 2):
        subscribed = [key for key, group in groups.items() if key[1] == website and newest_row(group).status == 1]
        assert counts[f"subscribed_identities_website_{website}"] == len(subscribed)
    links = shop.queue_links
    assert counts["queue_links_sent"] == len([link for link in links if link.sent_at]) == 50
    assert counts["queue_links_unsent"] == len([link for link in links if link.sent_at is None]) == 30


def test_generate_shop_composition(shop) -> None:
    rows = shop.subscribers
    counts = shop.counts
    customers = {customer.entity_id: customer for customer in shop.customers}
    in_scope = [row for row in rows if STORE_WEBSITES.get(row.store_id)]

    assert 200 <= counts["status_3_rows"] <= 300
    assert counts["status_2_rows"] == 100
    assert counts["status_4_rows"] == 100
    assert counts["status_0_rows"] == 5
    assert 500 <= counts["mixed_case_emails"] <= 1200
    assert 0.55 <= counts["customer_subscriber_rows"] / len(in_scope) <= 0.65
    assert all(customers[row.customer_id].confirmation for row in rows if row.status == 4)
    emails = [row.email for row in rows if row.email]
    assert all(len(email) <= 150 for email in emails)
    assert all(email.strip().lower().endswith(".example") for email in emails)
    unsubscribed_times = [row.changed_at for row in rows if row.status == 3 and row.changed_at]
    assert min(unsubscribed_times) >= shop.reference_time - 2 * 365 * 86_400
    all_names = {customer.firstname for customer in shop.customers} | {c.lastname for c in shop.customers}
    assert {"Éva", "Ödön", "Szűcs", "Lőrinc"} <= all_names
    assert any("Ł" in name or "ë" in name for name in all_names)


async def test_load_shop_matches_counts_and_adapter_rows(shop) -> None:
    name = unique_name()
    try:
        started = time.monotonic()
        load_shop(admin_params(), name, shop, table_prefix=PREFIX)
        assert time.monotonic() - started < 10

        connection = connect(name)
        try:
            table = f"{PREFIX}newsletter_subscriber"
            assert query(connection, f"SELECT COUNT(*) FROM {table}") == [(shop.counts["subscriber_rows"],)]
            assert query(connection, f"SELECT COUNT(*) FROM {PREFIX}customer_entity") == [(shop.counts["customers"],)]
            assert query(connection, f"SELECT subscriber_status, COUNT(*) FROM {table} GROUP BY 1 ORDER BY 1") == [
                (status, shop.counts[f"status_{status}_rows"]) for status in range(5)
            ]
            assert query(connection, f"SELECT COUNT(*) FROM {table} WHERE store_id IS NULL") == [(5,)]
            assert query(connection, f"SELECT COUNT(*) FROM {table} WHERE change_status_at IS NULL") == [
                (shop.counts["null_changed_at_rows"],)
            ]
            assert query(connection, f"SELECT COUNT(*) FROM {PREFIX}newsletter_queue_link"
                                     " WHERE letter_sent_at IS NULL") == [(shop.counts["queue_links_unsent"],)]
        finally:
            connection.close()

        async with await open_adapter(name) as db:
            result = [row async for row in db.iter_rows()]
        customers = {customer.entity_id: customer for customer in shop.customers}
        assert result == [
            MagentoRow(
                row.subscriber_id, row.email, row.store_id, {0: 0, **STORE_WEBSITES}.get(row.store_id),
                row.customer_id, row.status, row.changed_at,
                customers[row.customer_id].firstname if row.customer_id else None,
                customers[row.customer_id].lastname if row.customer_id else None,
            )
            for row in shop.subscribers
        ]
    finally:
        connection = connect()
        query(connection, f"DROP DATABASE IF EXISTS `{name}`")
        connection.close()


def test_generate_iem_list_composition_and_brake(shop) -> None:
    rows = generate_iem_list(shop, 5)
    keys = {"subscriberid", "listid", "emailaddress", "format", "confirmed", "subscribedate",
            "requestdate", "unsubscribed", "bounced", "confirmcode", "customfields"}
    assert all(set(row) == keys for row in rows)
    assert all(set(row["customfields"]) == {"2", "3"} for row in rows)
    assert [row["subscriberid"] for row in rows] == list(range(1, len(rows) + 1))
    assert all(row["confirmed"] in ("0", "1") for row in rows)
    assert all(row["format"] in ("h", "t") for row in rows)
    for list_id in (1, 2):
        emails = [row["emailaddress"].lower() for row in rows if row["listid"] == list_id]
        assert len(emails) == len(set(emails))

    counts = iem_list_counts(rows)
    assert counts["list_1_bounced"] + counts["list_2_bounced"] == 40
    assert 60 <= counts["list_1_active_unconfirmed"] + counts["list_2_active_unconfirmed"] <= 100

    groups = identity_groups(shop)
    iem = {(row["emailaddress"].lower(), row["listid"]): row for row in rows}
    magento_keys = {(email, website) for email, website in groups}
    iem_only_active = [row for key, row in iem.items()
                       if key not in magento_keys and not row["unsubscribed"] and not row["bounced"]]
    assert len(iem_only_active) == 150

    for website in (1, 2):
        subscribed = 0
        magento_unsubscribes = 0
        iem_unsubscribes = 0
        for (email, group_website), group in groups.items():
            if group_website != website:
                continue
            chosen = newest_row(group)
            remote = iem.get((email, website))
            if chosen.status == 1:
                subscribed += 1
                left_at = remote and (remote["unsubscribed"] or remote["bounced"])
                if left_at and left_at > (chosen.changed_at or 0):
                    magento_unsubscribes += 1
            if chosen.status == 3 and remote and not remote["unsubscribed"] and not remote["bounced"]:
                if chosen.changed_at and chosen.changed_at > remote["subscribedate"]:
                    iem_unsubscribes += 1
        iem_active = len([row for row in rows if row["listid"] == website
                          and not row["unsubscribed"] and not row["bounced"]])
        assert 0.55 <= iem_active / subscribed <= 0.7
        assert magento_unsubscribes / subscribed < 0.05
        assert 0 < iem_unsubscribes / iem_active < 0.05
