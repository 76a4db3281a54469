"""Direct-SQL adapter for Magento 2.4's newsletter tables (aiomysql).

MagentoDatabase reads every newsletter_subscriber row as MagentoRow values and carries out
the sync's writes the way Magento's own code would: guarded status changes that set
change_status_at, removal of unsent queue links on unsubscribe, and guest rows with a confirm
code. It keeps one connection for writes and the run lock, and opens a second one for each
streamed read, so that a long read never blocks a write.

Every session runs in UTC with a strict sql_mode. A lost connection raises
MagentoConnectionError, and the adapter does not reconnect by itself, because the run lock
belongs to the lost session. Open a new MagentoDatabase instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import string
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import aiomysql
import pymysql

from edm_tui.magento.connection import ConnectionSettings, close_connection, open_connection
from edm_tui.magento.errors import (
    ConnectionTarget,
    InvalidRecord,
    MagentoConnectionError,
    MagentoError,
    translate_error,
)
from edm_tui.magento.rows import row_from_record, subscriber_rows_query
from edm_tui.magento.schema import prefixed_name, quoted_table_name, validate_table_prefix
from edm_tui.sync.model import MagentoRow, MagentoStatus

logger = logging.getLogger("edm_sync.magento")

# The tables a sync reads or writes, by logical (unprefixed) name.
REQUIRED_TABLES = (
    "store",
    "store_website",
    "store_group",
    "customer_entity",
    "newsletter_subscriber",
    "newsletter_queue_link",
)

# newsletter_subscriber.subscriber_email is varchar(150).
MAX_EMAIL_LENGTH = 150

CONFIRM_CODE_LENGTH = 32
_CONFIRM_CODE_ALPHABET = string.ascii_lowercase + string.digits

MAX_LOCK_NAME_LENGTH = 64
_LOCK_NAME_PREFIX = "edm_sync."

# Rows fetched from the server per round trip while streaming.
_FETCH_BATCH_SIZE = 1000

# Unreadable emails logged one by one per read; the rest are only counted.
_MAX_LOGGED_BAD_EMAILS = 10

_TABLE_ACCESS_DENIED_CODE = 1142

# Statements that need one privilege each but match no row, so they change nothing.
_WRITE_PROBES = (
    ("UPDATE", "newsletter_subscriber", "UPDATE {table} SET subscriber_status = 0 WHERE 0"),
    (
        "INSERT",
        "newsletter_subscriber",
        "INSERT INTO {table} (subscriber_email) SELECT NULL FROM DUAL WHERE 0",
    ),
    ("DELETE", "newsletter_queue_link", "DELETE FROM {table} WHERE 0"),
)


def utc_now_text() -> str:
    """Return the current UTC time as a naive `YYYY-MM-DD HH:MM:SS` value for MySQL."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def new_confirm_code() -> str:
    """Return a random 32-character [a-z0-9] code, the format of Magento's confirm codes."""
    return "".join(secrets.choice(_CONFIRM_CODE_ALPHABET) for _ in range(CONFIRM_CODE_LENGTH))


def run_lock_name(database: str, table_prefix: str) -> str:
    """Return the GET_LOCK name for one Magento installation (database plus table prefix).

    Names that would exceed MySQL's 64-character limit are replaced by a SHA-1 of the
    database and prefix.
    """
    name = f"{_LOCK_NAME_PREFIX}{database}.{table_prefix}"
    if len(name) <= MAX_LOCK_NAME_LENGTH:
        return name
    digest = hashlib.sha1(f"{database}\0{table_prefix}".encode("utf-8")).hexdigest()
    return _LOCK_NAME_PREFIX + digest


def validate_email_for_write(email: str) -> None:
    """Raise InvalidRecord unless subscriber_email can store the address unchanged."""
    if not email or not email.strip():
        raise InvalidRecord("The email address is empty.")
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidRecord(
            f"The email address is {len(email)} characters long, but "
            f"newsletter_subscriber.subscriber_email accepts at most {MAX_EMAIL_LENGTH}."
        )
    try:
        email.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidRecord("The email address is not valid Unicode text.") from error


def _validate_status(status: int, argument: str) -> None:
    try:
        MagentoStatus(status)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in MagentoStatus)
        raise ValueError(f"Invalid {argument} {status!r}: use one of {allowed}.") from None


class MagentoDatabase:
    """One Magento installation: a database and a table prefix."""

    def __init__(
        self, settings: ConnectionSettings, table_prefix: str, writer: aiomysql.Connection
    ) -> None:
        self._settings = settings
        self._table_prefix = table_prefix
        self._writer = writer
        # aiomysql connections must not run two statements at once, and the engine may issue
        # writes from several tasks.
        self._writer_lock = asyncio.Lock()
        self._run_lock_name = run_lock_name(settings.target.database, table_prefix)
        self._holds_run_lock = False

    @classmethod
    async def connect(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 3306,
        user: str,
        password: str = "",
        database: str,
        unix_socket: str | None = None,
        table_prefix: str = "",
        connect_timeout: float = 10.0,
    ) -> MagentoDatabase:
        """Open the write connection and return the adapter.

        Raises ValueError for an invalid table prefix (before connecting), and
        MagentoConnectionError, MagentoAuthError or MagentoSchemaError (unknown database)
        when the server cannot be used.
        """
        validate_table_prefix(table_prefix)
        target = ConnectionTarget(
            host=host, port=port, unix_socket=unix_socket, user=user, database=database
        )
        settings = ConnectionSettings(
            target=target, password=password, connect_timeout=connect_timeout
        )
        writer = await open_connection(settings, streaming=False)
        logger.info(
            "Connected to Magento database %s at %s as %s (table prefix %r)",
            database,
            target.endpoint,
            user,
            table_prefix,
        )
        return cls(settings, table_prefix, writer)

    async def close(self) -> None:
        """Close the write connection, which also releases the run lock."""
        self._holds_run_lock = False
        if self._writer.closed:
            return
        async with self._writer_lock:
            await close_connection(self._writer, graceful=True)
        logger.info("Closed the connection to Magento database %s", self.database)

    async def __aenter__(self) -> MagentoDatabase:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        target = self._settings.target
        return (
            f"MagentoDatabase(database={target.database!r}, endpoint={target.endpoint!r}, "
            f"user={target.user!r}, table_prefix={self._table_prefix!r})"
        )

    @property
    def database(self) -> str:
        return self._settings.target.database

    @property
    def table_prefix(self) -> str:
        return self._table_prefix

    @property
    def run_lock_name(self) -> str:
        return self._run_lock_name

    def table(self, logical_name: str) -> str:
        """Return the prefixed table name in backticks, for example `m2_store`."""
        return quoted_table_name(self._table_prefix, logical_name)

    # --- Reading -----------------------------------------------------------------------------

    async def iter_rows(self) -> AsyncIterator[MagentoRow]:
        """Stream every newsletter_subscriber row, ordered by subscriber_id.

        One unbuffered query runs on a connection of its own, so memory stays bounded
        whatever the table size, and writes and the run lock stay usable meanwhile. The
        server drops the stream if the caller pauses for more than
        connection.STREAMING_NET_WRITE_TIMEOUT_SECONDS between rows. Closing the iterator
        early (`contextlib.aclosing`, or garbage collection after `break`) drops that
        connection.
        """
        query = subscriber_rows_query(self.table)
        connection = await open_connection(self._settings, streaming=True)
        finished = False
        count = 0
        bad_emails = 0
        try:
            cursor = await connection.cursor()
            try:
                await cursor.execute(query)
                while True:
                    records = await cursor.fetchmany(_FETCH_BATCH_SIZE)
                    if not records:
                        break
                    for record in records:
                        count += 1
                        row = row_from_record(record)
                        if row.email is None and record[1] is not None:
                            bad_emails += 1
                            self._log_bad_email(row.subscriber_id, record[1], bad_emails)
                        yield row
            except (pymysql.err.Error, OSError) as error:
                raise self._translate(error) from error
            finished = True
        finally:
            await close_connection(connection, graceful=finished)

        logger.info("Read %d newsletter_subscriber rows from %s", count, self.database)
        if bad_emails > _MAX_LOGGED_BAD_EMAILS:
            logger.warning(
                "%d newsletter_subscriber rows of %s have an email that is not valid UTF-8",
                bad_emails,
                self.database,
            )

    def _log_bad_email(self, subscriber_id: int, raw: bytes, seen: int) -> None:
        if seen <= _MAX_LOGGED_BAD_EMAILS:
            logger.warning(
                "newsletter_subscriber row %d of %s: subscriber_email %r is not valid UTF-8, "
                "so the row is counted as an invalid email and not synced; correct the address in Magento",
                subscriber_id,
                self.database,
                raw,
            )

    async def default_store_ids(self) -> dict[int, int]:
        """Return website_id -> its default store view, for every website except admin (0).

        The default store view is store_website.default_group_id -> store_group.default_store_id.
        A website whose default store view is missing or belongs to another website is left
        out, with a warning, because no guest row can be created there.
        """
        rows = await self._fetch_all(
            "SELECT w.website_id, s.store_id"
            f" FROM {self.table('store_website')} AS w"
            f" LEFT JOIN {self.table('store_group')} AS g"
            "   ON g.group_id = w.default_group_id AND g.website_id = w.website_id"
            f" LEFT JOIN {self.table('store')} AS s"
            "   ON s.store_id = g.default_store_id AND s.website_id = w.website_id"
            " WHERE w.website_id > 0"
            " ORDER BY w.website_id"
        )
        result = {}
        for website_id, store_id in rows:
            if store_id is None:
                logger.warning(
                    "Website %d of Magento database %s has no valid default store view",
                    website_id,
                    self.database,
                )
                continue
            result[int(website_id)] = int(store_id)
        return result

    async def website_ids(self) -> list[int]:
        """Return the ids of all websites except admin (0), in ascending order."""
        rows = await self._fetch_all(
            f"SELECT website_id FROM {self.table('store_website')}"
            " WHERE website_id > 0 ORDER BY website_id"
        )
        return [int(website_id) for (website_id,) in rows]

    # --- Writing -----------------------------------------------------------------------------

    async def set_status(self, subscriber_id: int, expected_status: int, new_status: int) -> bool:
        """Change one row's status if it still has expected_status, and return whether it did.

        See `set_statuses`, which this calls with one row.
        """
        missed = await self.set_statuses([(subscriber_id, expected_status)], new_status)
        return not missed

    async def set_statuses(self, rows: Sequence[tuple[int, int]], new_status: int) -> list[int]:
        """Change each (subscriber_id, expected_status) row to new_status in one transaction.

        Returns the ids that were not changed because the row is gone or someone changed its
        status meanwhile; the other rows still change. The rows of one address change together:
        a run cut between two separate UPDATEs would leave the second row behind, and the next
        run, reading the address as settled, would never finish it.

        change_status_at is set to the current UTC time in the same UPDATE. A change to 3
        (unsubscribed) also deletes the subscriber's unsent newsletter_queue_link rows, as
        Magento's unsubscribe does.
        """
        _validate_status(new_status, "new_status")
        for subscriber_id, expected_status in rows:
            if new_status == expected_status:
                raise ValueError(
                    f"new_status equals expected_status ({new_status}) for subscriber {subscriber_id}: "
                    "Magento sets change_status_at only when the status changes."
                )

        changed_at = utc_now_text()
        missed: list[int] = []
        removed_links = 0
        async with self._writer_session() as connection:
            await connection.begin()
            try:
                async with connection.cursor() as cursor:
                    for subscriber_id, expected_status in rows:
                        matched = await cursor.execute(
                            f"UPDATE {self.table('newsletter_subscriber')}"
                            " SET subscriber_status = %s, change_status_at = %s"
                            " WHERE subscriber_id = %s AND subscriber_status = %s",
                            (new_status, changed_at, subscriber_id, expected_status),
                        )
                        if matched == 0:
                            missed.append(subscriber_id)
                            logger.info(
                                "Subscriber %d not changed to status %d: its status is no longer %d"
                                " or the row is gone",
                                subscriber_id,
                                new_status,
                                expected_status,
                            )
                            continue
                        if new_status == MagentoStatus.UNSUBSCRIBED:
                            removed_links += await cursor.execute(
                                f"DELETE FROM {self.table('newsletter_queue_link')}"
                                " WHERE subscriber_id = %s AND letter_sent_at IS NULL",
                                (subscriber_id,),
                            )
                await connection.commit()
            except (pymysql.err.Error, OSError):
                await self._rollback_quietly(connection)
                raise

        logger.debug(
            "Subscribers %s changed to status %d (%d not changed), %d unsent queue links removed",
            ", ".join(str(subscriber_id) for subscriber_id, _status in rows),
            new_status,
            len(missed),
            removed_links,
        )
        return missed

    async def insert_guest(self, email: str, store_id: int, status: int = 1) -> int:
        """Insert a guest subscriber row (customer_id 0) and return its subscriber_id.

        The email is written exactly as given. It is checked before anything is sent to the
        server: an empty address or one longer than 150 characters raises InvalidRecord. An
        unknown store_id also raises InvalidRecord, because of the store foreign key.
        """
        validate_email_for_write(email)
        _validate_status(status, "status")

        async with self._writer_session() as connection:
            async with connection.cursor() as cursor:
                await cursor.execute(
                    f"INSERT INTO {self.table('newsletter_subscriber')}"
                    " (store_id, change_status_at, customer_id, subscriber_email,"
                    "  subscriber_status, subscriber_confirm_code)"
                    " VALUES (%s, %s, 0, %s, %s, %s)",
                    (store_id, utc_now_text(), email, status, new_confirm_code()),
                )
                subscriber_id = int(cursor.lastrowid)

        logger.debug("Inserted guest subscriber %d in store %d", subscriber_id, store_id)
        return subscriber_id

    # --- Run lock ----------------------------------------------------------------------------

    async def acquire_run_lock(self) -> bool:
        """Take the run lock without waiting and return whether this session holds it.

        The lock is a MySQL user-level lock (GET_LOCK) named after the database and the table
        prefix, so runs against the same installation exclude each other from any host. It
        belongs to the write connection and ends with it.
        """
        if self._holds_run_lock:
            return True
        rows = await self._fetch_all("SELECT GET_LOCK(%s, 0)", (self._run_lock_name,))
        result = rows[0][0]
        if result is None:
            raise MagentoError(f"GET_LOCK failed for run lock {self._run_lock_name!r}.")
        if result == 1:
            self._holds_run_lock = True
            logger.info("Acquired run lock %s", self._run_lock_name)
            return True

        holder = await self._fetch_all("SELECT IS_USED_LOCK(%s)", (self._run_lock_name,))
        logger.warning(
            "Run lock %s is held by MySQL connection %s, so another sync run is active",
            self._run_lock_name,
            holder[0][0],
        )
        return False

    async def release_run_lock(self) -> None:
        """Release the run lock if this session holds it."""
        if not self._holds_run_lock:
            return
        rows = await self._fetch_all("SELECT RELEASE_LOCK(%s)", (self._run_lock_name,))
        self._holds_run_lock = False
        if rows[0][0] != 1:
            logger.warning(
                "Run lock %s was not held by this connection when releasing it",
                self._run_lock_name,
            )
            return
        logger.info("Released run lock %s", self._run_lock_name)

    # --- Checks ------------------------------------------------------------------------------

    async def server_info(self) -> str:
        """Return the server version and its comment, e.g. `10.11.19-MariaDB (Debian 12)`."""
        rows = await self._fetch_all("SELECT VERSION(), @@version_comment")
        version, comment = rows[0]
        return f"{version} ({comment})" if comment else str(version)

    async def check_tables(self) -> list[str]:
        """Return the prefixed names of the required tables that are missing.

        A table on which the user has no privilege at all is invisible to it, so it is
        reported as missing too.
        """
        expected = [prefixed_name(self._table_prefix, name) for name in REQUIRED_TABLES]
        placeholders = ", ".join(["%s"] * len(expected))
        rows = await self._fetch_all(
            "SELECT TABLE_NAME FROM information_schema.TABLES"
            f" WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({placeholders})",
            expected,
        )
        # information_schema compares names case-insensitively, but table names are
        # case-sensitive on most Linux servers, so compare exactly here.
        present = {name for (name,) in rows}
        return [name for name in expected if name not in present]

    async def check_write_rights(self) -> list[str]:
        """Return the missing write privileges, e.g. `DELETE on m2_newsletter_queue_link`.

        Each privilege is probed with a statement that matches no row, inside a transaction
        that is rolled back, so nothing changes. Missing tables raise MagentoSchemaError.
        """
        missing = []
        async with self._writer_session() as connection:
            await connection.begin()
            try:
                async with connection.cursor() as cursor:
                    for privilege, logical_name, statement in _WRITE_PROBES:
                        try:
                            await cursor.execute(statement.format(table=self.table(logical_name)))
                        except pymysql.err.Error as error:
                            if not error.args or error.args[0] != _TABLE_ACCESS_DENIED_CODE:
                                raise
                            table = prefixed_name(self._table_prefix, logical_name)
                            missing.append(f"{privilege} on {table}")
            finally:
                if not connection.closed:
                    await self._rollback_quietly(connection)

        if missing:
            logger.warning(
                "MySQL user %s lacks privileges in %s: %s",
                self._settings.target.user,
                self.database,
                ", ".join(missing),
            )
        return missing

    async def triggers(self) -> list[str]:
        """Return the triggers on newsletter_subscriber as `name (TIMING EVENT)`.

        Direct SQL writes fire them, unlike Magento's PHP observers. NOTE: the server lists
        only triggers of tables on which the user has the TRIGGER privilege, so an empty list
        from a user without it proves nothing.
        """
        table_name = prefixed_name(self._table_prefix, "newsletter_subscriber")
        pattern = table_name.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
        async with self._writer_session() as connection:
            async with connection.cursor() as cursor:
                await cursor.execute("SHOW TRIGGERS LIKE %s", (pattern,))
                columns = [column[0] for column in cursor.description]
                records = await cursor.fetchall()

        name_index = columns.index("Trigger")
        timing_index = columns.index("Timing")
        event_index = columns.index("Event")
        return [
            f"{record[name_index]} ({record[timing_index]} {record[event_index]})"
            for record in records
        ]

    # --- Helpers -----------------------------------------------------------------------------

    def _translate(self, error: BaseException) -> MagentoError:
        return translate_error(error, self._settings.target)

    @asynccontextmanager
    async def _writer_session(self) -> AsyncIterator[aiomysql.Connection]:
        """Give one task the write connection, and translate its errors.

        A cancellation in the middle of a statement leaves the protocol state unknown, so it
        closes the connection: the server then rolls back the open transaction and releases
        the run lock.
        """
        async with self._writer_lock:
            if self._writer.closed:
                raise MagentoConnectionError(
                    f"The connection to Magento database {self.database} at "
                    f"{self._settings.target.endpoint} is closed: open a new MagentoDatabase."
                )
            try:
                yield self._writer
            except (pymysql.err.Error, OSError) as error:
                raise self._translate(error) from error
            except asyncio.CancelledError:
                await close_connection(self._writer, graceful=False)
                self._holds_run_lock = False
                raise

    async def _fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._writer_session() as connection:
            async with connection.cursor() as cursor:
                await cursor.execute(sql, params)
                return list(await cursor.fetchall())

    async def _rollback_quietly(self, connection: aiomysql.Connection) -> None:
        try:
            await connection.rollback()
        except (pymysql.err.Error, OSError) as error:
            logger.warning("Rollback on Magento database %s failed: %s", self.database, error)

