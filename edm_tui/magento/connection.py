"""Opening and closing aiomysql connections with the session settings the adapter relies on."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import aiomysql
import pymysql
from pymysql.constants import CLIENT

from edm_tui.magento.errors import ConnectionTarget, translate_error

logger = logging.getLogger("edm_sync.magento")

# Strict mode makes the server reject an over-long or invalid value instead of truncating or
# coercing it, which Magento's own connections (sql_mode '') would do silently.
SESSION_SQL_MODE = (
    "STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
    "NO_ENGINE_SUBSTITUTION"
)

# TIMESTAMP columns are converted to and from the session time zone, and Magento stores UTC.
_SESSION_SETUP = f"SET time_zone = '+00:00', sql_mode = '{SESSION_SQL_MODE}'"

# While a streamed result is open, the server waits this long for the client to read the next
# rows before it drops the connection (the server default is 60 s).
STREAMING_NET_WRITE_TIMEOUT_SECONDS = 600


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Everything needed to open another connection to the same database."""

    target: ConnectionTarget
    password: str = field(repr=False)
    connect_timeout: float


async def open_connection(settings: ConnectionSettings, *, streaming: bool) -> aiomysql.Connection:
    """Open a connection in UTC, strict sql_mode, utf8mb4 and autocommit.

    A streaming connection returns its rows unbuffered (SSCursor), so it must not be used for
    anything else until the result has been read to the end. UPDATE statements on any
    connection report matched rows rather than changed rows (CLIENT.FOUND_ROWS).
    """
    target = settings.target
    setup = _SESSION_SETUP
    if streaming:
        setup += f", net_write_timeout = {STREAMING_NET_WRITE_TIMEOUT_SECONDS}"

    try:
        # aiomysql applies connect_timeout to the TCP connect only, so the handshake and the
        # session setup get the same limit from here.
        async with asyncio.timeout(settings.connect_timeout):
            return await aiomysql.connect(
                host=target.host,
                port=target.port,
                unix_socket=target.unix_socket,
                user=target.user,
                password=settings.password,
                db=target.database,
                charset="utf8mb4",
                autocommit=True,
                init_command=setup,
                client_flag=CLIENT.FOUND_ROWS,
                connect_timeout=settings.connect_timeout,
                cursorclass=aiomysql.SSCursor if streaming else aiomysql.Cursor,
            )
    except (pymysql.err.Error, OSError) as error:
        raise translate_error(error, target) from error


async def close_connection(connection: aiomysql.Connection, *, graceful: bool) -> None:
    """Close a connection, politely (COM_QUIT) when it is idle, else by dropping the socket.

    Dropping the socket is the only safe way out of an unread streamed result or an
    interrupted query. The server then rolls back any open transaction and releases the
    session's locks.
    """
    if connection.closed or not graceful:
        # aiomysql may have closed the transport already (it does on cancellation), but the
        # socket itself closes in a callback of the next loop iteration. Yield once so the
        # server detects the disconnect even if the caller blocks the loop next.
        connection.close()
        await asyncio.sleep(0)
        return
    try:
        await connection.ensure_closed()
    except (pymysql.err.Error, OSError) as error:
        logger.debug("Closing the MySQL connection failed, dropping it: %s", error)
        connection.close()
        await asyncio.sleep(0)
