"""Test helpers for a real MariaDB or MySQL server (synchronous PyMySQL).

Tests create their own databases, named `edm_test_<random>`, load the Magento schema with a
table prefix, insert rows with the helpers below and read tables back as plain tuples.

The server defaults to root without a password on 127.0.0.1:3306. EDM_TEST_MYSQL_HOST,
EDM_TEST_MYSQL_PORT, EDM_TEST_MYSQL_USER, EDM_TEST_MYSQL_PASSWORD and EDM_TEST_MYSQL_SOCKET
override that. The user needs CREATE, DROP, CREATE USER and GRANT OPTION.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pymysql

from edm_tui.magento.schema import quoted_table_name, render_schema_statements

DATABASE_NAME_PREFIX = "edm_test_"


def admin_params() -> dict[str, Any]:
    """Return PyMySQL connect arguments for the administrative test user."""
    params: dict[str, Any] = {
        "host": os.environ.get("EDM_TEST_MYSQL_HOST", "127.0.0.1"),
        "port": int(os.environ.get("EDM_TEST_MYSQL_PORT", "3306")),
        "user": os.environ.get("EDM_TEST_MYSQL_USER", "root"),
        "password": os.environ.get("EDM_TEST_MYSQL_PASSWORD", ""),
    }
    socket_path = os.environ.get("EDM_TEST_MYSQL_SOCKET")
    if socket_path:
        params["unix_socket"] = socket_path
    return params


def adapter_params() -> dict[str, Any]:
    """Return the same server and user as keyword arguments for MagentoDatabase.connect."""
    params = admin_params()
    return {
        "host": params["host"],
        "port": params["port"],
        "user": params["user"],
        "password": params["password"],
        "unix_socket": params.get("unix_socket"),
    }


def connect(database: str | None = None, *, time_zone: str = "+00:00") -> pymysql.Connection:
    """Open an autocommit utf8mb4 connection in strict mode and the given session time zone."""
    connection = pymysql.connect(
        **admin_params(), database=database, charset="utf8mb4", autocommit=True
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SET time_zone = %s, sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
            (time_zone,),
        )
    return connection


def unique_name(prefix: str = DATABASE_NAME_PREFIX) -> str:
    return prefix + secrets.token_hex(6)


def load_schema(database: str, table_prefix: str = "") -> None:
    """Create the Magento newsletter tables and seed rows with a table prefix."""
    connection = connect(database)
    try:
        with connection.cursor() as cursor:
            for statement in render_schema_statements(table_prefix):
                cursor.execute(statement)
    finally:
        connection.close()


def create_database(table_prefixes: tuple[str, ...] = ("",)) -> str:
    """Create a uniquely named database, load the schema once per prefix, return its name."""
    name = unique_name()
    connection = connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            )
    finally:
        connection.close()
    for table_prefix in table_prefixes:
        load_schema(name, table_prefix)
    return name


def drop_database(name: str) -> None:
    if not name.startswith(DATABASE_NAME_PREFIX):
        raise ValueError(
            f"Not dropping {name!r}: only databases named {DATABASE_NAME_PREFIX}* are dropped."
        )
    connection = connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        connection.close()


@contextlib.contextmanager
def temporary_database(table_prefixes: tuple[str, ...] = ("",)) -> Iterator[str]:
    name = create_database(table_prefixes)
    try:
        yield name
    finally:
        drop_database(name)


@contextlib.contextmanager
def temporary_user(database: str, privileges: dict[str, str]) -> Iterator[tuple[str, str]]:
    """Create a user with a random password and the given grants; yield (user, password).

    `privileges` maps a table name (or `*`) in `database` to a privilege list such as
    `SELECT` or `SELECT, UPDATE`. The user exists for 127.0.0.1 and localhost, because the
    server may see a TCP connection from 127.0.0.1 under either name.
    """
    user = unique_name("edm_test_u")
    password = "pw-" + secrets.token_hex(12)
    hosts = ("127.0.0.1", "localhost")
    connection = connect()
    try:
        with connection.cursor() as cursor:
            for host in hosts:
                cursor.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", (password,))
                for table, privilege_list in privileges.items():
                    target = "*" if table == "*" else f"`{table}`"
                    cursor.execute(
                        f"GRANT {privilege_list} ON `{database}`.{target} TO '{user}'@'{host}'"
                    )
        yield user, password
    finally:
        with connection.cursor() as cursor:
            for host in hosts:
                cursor.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        connection.close()


def _timestamp_param(value: str | int | datetime | None) -> tuple[str, Any]:
    """Return an SQL expression and parameter for a TIMESTAMP value.

    A string or naive datetime is read in the connection's session time zone. An int is Unix
    seconds and an aware datetime is an instant, so both mean the same whatever the session
    time zone is.
    """
    if value is None:
        return "%s", None
    if isinstance(value, int):
        return "FROM_UNIXTIME(%s)", value
    if isinstance(value, datetime) and value.tzinfo is not None:
        return "FROM_UNIXTIME(%s)", int(value.timestamp())
    return "%s", value


def insert_subscriber(
    connection: pymysql.Connection,
    email: str | None,
    store_id: int | None,
    status: int,
    changed_at: str | int | datetime | None = None,
    customer_id: int = 0,
    *,
    confirm_code: str | None = "0123456789abcdefghijklmnopqrstuv",
    table_prefix: str = "",
) -> int:
    """Insert one newsletter_subscriber row and return its subscriber_id."""
    expression, changed_at_param = _timestamp_param(changed_at)
    table = quoted_table_name(table_prefix, "newsletter_subscriber")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (store_id, change_status_at, customer_id, subscriber_email,"
            " subscriber_status, subscriber_confirm_code)"
            f" VALUES (%s, {expression}, %s, %s, %s, %s)",
            (store_id, changed_at_param, customer_id, email, status, confirm_code),
        )
        return int(cursor.lastrowid)


def insert_customer(
    connection: pymysql.Connection,
    email: str,
    website_id: int,
    firstname: str | bytes | None,
    lastname: str | bytes | None,
    *,
    entity_id: int | None = None,
    store_id: int | None = None,
    table_prefix: str = "",
) -> int:
    """Insert one customer_entity row and return its entity_id.

    Names given as bytes are stored unchanged when the column's charset accepts them.
    """
    table = quoted_table_name(table_prefix, "customer_entity")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (entity_id, website_id, email, store_id, firstname, lastname)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (entity_id, website_id, email, store_id, firstname, lastname),
        )
        return int(cursor.lastrowid)


def insert_queue(connection: pymysql.Connection, *, table_prefix: str = "") -> int:
    """Insert a newsletter template and one queue for it; return the queue_id."""
    template_table = quoted_table_name(table_prefix, "newsletter_template")
    queue_table = quoted_table_name(table_prefix, "newsletter_queue")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {template_table} (template_code, template_subject) VALUES (%s, %s)",
            ("test", "Test newsletter"),
        )
        template_id = cursor.lastrowid
        cursor.execute(
            f"INSERT INTO {queue_table} (template_id, newsletter_subject) VALUES (%s, %s)",
            (template_id, "Test newsletter"),
        )
        return int(cursor.lastrowid)


def insert_queue_link(
    connection: pymysql.Connection,
    queue_id: int,
    subscriber_id: int,
    sent_at: str | int | datetime | None = None,
    *,
    table_prefix: str = "",
) -> int:
    """Insert one newsletter_queue_link row (sent_at None means not sent yet)."""
    expression, sent_at_param = _timestamp_param(sent_at)
    table = quoted_table_name(table_prefix, "newsletter_queue_link")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (queue_id, subscriber_id, letter_sent_at)"
            f" VALUES (%s, %s, {expression})",
            (queue_id, subscriber_id, sent_at_param),
        )
        return int(cursor.lastrowid)


def utc_text(unix_seconds: int | None) -> str | None:
    if unix_seconds is None:
        return None
    return datetime.fromtimestamp(unix_seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def read_subscribers(connection: pymysql.Connection, *, table_prefix: str = "") -> list[tuple]:
    """Return every newsletter_subscriber row as a tuple, sorted by subscriber_id.

    Tuples are (subscriber_id, store_id, change_status_at, customer_id, subscriber_email,
    subscriber_status, subscriber_confirm_code), with change_status_at as UTC
    `YYYY-MM-DD HH:MM:SS` text whatever the session time zone is.
    """
    table = quoted_table_name(table_prefix, "newsletter_subscriber")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT subscriber_id, store_id, UNIX_TIMESTAMP(change_status_at), customer_id,"
            " subscriber_email, subscriber_status, subscriber_confirm_code"
            f" FROM {table} ORDER BY subscriber_id"
        )
        return [
            (row[0], row[1], utc_text(None if row[2] is None else int(row[2])), *row[3:])
            for row in cursor.fetchall()
        ]


def read_queue_links(connection: pymysql.Connection, *, table_prefix: str = "") -> list[tuple]:
    """Return every newsletter_queue_link row as (queue_link_id, queue_id, subscriber_id,
    letter_sent_at as UTC text), sorted by queue_link_id."""
    table = quoted_table_name(table_prefix, "newsletter_queue_link")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT queue_link_id, queue_id, subscriber_id, UNIX_TIMESTAMP(letter_sent_at)"
            f" FROM {table} ORDER BY queue_link_id"
        )
        return [
            (row[0], row[1], row[2], utc_text(None if row[3] is None else int(row[3])))
            for row in cursor.fetchall()
        ]


def table_names(connection: pymysql.Connection) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SHOW TABLES")
        return sorted(name for (name,) in cursor.fetchall())


def foreign_key_names(connection: pymysql.Connection) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS"
            " WHERE CONSTRAINT_SCHEMA = DATABASE()"
        )
        return sorted(name for (name,) in cursor.fetchall())


def unused_tcp_port() -> int:
    """Return a local TCP port that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

