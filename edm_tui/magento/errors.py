"""Errors of the Magento adapter, and the mapping from MySQL client errors to them.

Messages name the server, the user and the database, and end with what to check. They
never contain the password. Our sentences are translated with gettext, but the reason from the
server or the operating system is shown as it came.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pymysql

from edm_tui.i18n import _


class MagentoError(Exception):
    """A Magento database operation failed."""


# --- Connection ------------------------------------------------------------------------------


class MagentoConnectionError(MagentoError):
    """The database server could not be reached, or the connection to it was lost."""


# --- Authentication and privileges -----------------------------------------------------------


class MagentoAuthError(MagentoError):
    """The server rejected the user, the password or a privilege the operation needs."""


# --- Schema ----------------------------------------------------------------------------------


class MagentoSchemaError(MagentoError):
    """The database, or a Magento table the sync needs, does not exist."""

    def __init__(self, message: str, missing_tables: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.missing_tables = missing_tables


# --- Data ------------------------------------------------------------------------------------


class InvalidRecord(MagentoError):
    """One record cannot be written as it is. Other records are not affected."""


# MySQL and MariaDB error codes, grouped by the exception they map to.
_CANNOT_CONNECT_CODES = frozenset({
    2002,  # CR_CONNECTION_ERROR: cannot connect through the Unix socket
    2003,  # CR_CONN_HOST_ERROR: cannot connect over TCP (aiomysql uses it for sockets too)
    2005,  # CR_UNKNOWN_HOST
    1040,  # ER_CON_COUNT_ERROR: too many connections
    1129,  # ER_HOST_IS_BLOCKED: too many failed connection attempts from this host
})
_CONNECTION_LOST_CODES = frozenset({
    1053,  # ER_SERVER_SHUTDOWN
    1927,  # ER_CONNECTION_KILLED (MariaDB)
    2006,  # CR_SERVER_GONE_ERROR
    2013,  # CR_SERVER_LOST
    2055,  # CR_SERVER_LOST_EXTENDED
    4031,  # ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8.0.24 and later)
})
_ACCESS_DENIED_CODE = 1045
_DATABASE_ACCESS_DENIED_CODE = 1044
_HOST_NOT_ALLOWED_CODE = 1130
_PRIVILEGE_CODES = frozenset({
    1142,  # ER_TABLEACCESS_DENIED_ERROR
    1143,  # ER_COLUMNACCESS_DENIED_ERROR
    1227,  # ER_SPECIFIC_ACCESS_DENIED_ERROR
    1370,  # ER_PROCACCESS_DENIED_ERROR
})
_UNKNOWN_DATABASE_CODE = 1049
_SCHEMA_CODES = frozenset({
    1146,  # ER_NO_SUCH_TABLE
    1054,  # ER_BAD_FIELD_ERROR: unknown column
})
_INVALID_RECORD_CODES = frozenset({
    1048,  # ER_BAD_NULL_ERROR
    1264,  # ER_WARN_DATA_OUT_OF_RANGE
    1292,  # ER_TRUNCATED_WRONG_VALUE: invalid date or number
    1366,  # ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: invalid string for the column's charset
    1406,  # ER_DATA_TOO_LONG
    1452,  # ER_NO_REFERENCED_ROW_2: foreign key, for example an unknown store_id
})


@dataclass(frozen=True, slots=True)
class ConnectionTarget:
    """The server address, user and database of a connection, which error messages name."""

    host: str
    port: int
    unix_socket: str | None
    user: str
    database: str

    @property
    def endpoint(self) -> str:
        if self.unix_socket:
            return f"socket {self.unix_socket}"
        return f"{self.host}:{self.port}"


def _reason(error: BaseException) -> str:
    """Return the operating-system reason behind a client error, or the server message."""
    cause = error.__cause__
    if isinstance(error, TimeoutError) or isinstance(cause, TimeoutError):
        return _("connection timed out")
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno)
    if isinstance(error, pymysql.err.Error) and len(error.args) >= 2 and error.args[1]:
        return str(error.args[1])
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)
    return str(error) or type(error).__name__


def _error_code(error: BaseException) -> int | None:
    if isinstance(error, pymysql.err.Error) and error.args and isinstance(error.args[0], int):
        return error.args[0]
    return None


def translate_error(error: BaseException, target: ConnectionTarget) -> MagentoError:
    """Return the most specific MagentoError for a PyMySQL, aiomysql or socket error."""
    code = _error_code(error)
    reason = _reason(error)
    where = target.endpoint
    user = target.user
    database = target.database

    lost_socket = isinstance(error, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError))
    if code in _CANNOT_CONNECT_CODES or (isinstance(error, OSError) and not lost_socket):
        if target.unix_socket:
            return MagentoConnectionError(
                _("Cannot connect to the MySQL server through socket {socket}: {reason}. Check that "
                  "the server is running and that the socket path is right.").format(
                    socket=target.unix_socket, reason=reason)
            )
        return MagentoConnectionError(
            _("Cannot connect to the MySQL server at {where}: {reason}. Check that MariaDB or "
              "MySQL is running there and that the host and port are right.").format(
                where=where, reason=reason)
        )
    interface_error = isinstance(error, pymysql.err.InterfaceError)
    if code in _CONNECTION_LOST_CODES or lost_socket or interface_error:
        return MagentoConnectionError(
            _("Lost the connection to the MySQL server at {where}: {reason}. The server may have "
              "restarted or closed an idle connection; connect again.").format(where=where, reason=reason)
        )
    if code == _ACCESS_DENIED_CODE:
        return MagentoAuthError(
            _("Access denied for MySQL user '{user}' at {where} (database '{database}'): "
              "check the user name and password.").format(user=user, where=where, database=database)
        )
    if code == _DATABASE_ACCESS_DENIED_CODE:
        return MagentoAuthError(
            _("MySQL user '{user}' has no access to database '{database}' at {where}: check the "
              "database name, or grant the user SELECT, INSERT and UPDATE on the Magento tables.").format(
                user=user, database=database, where=where)
        )
    if code == _HOST_NOT_ALLOWED_CODE:
        return MagentoAuthError(
            _("The MySQL server at {where} does not accept user '{user}' from this host "
              "(database '{database}'): create the user for this host or connect from another.").format(
                where=where, user=user, database=database)
        )
    if code in _PRIVILEGE_CODES:
        return MagentoAuthError(
            _("MySQL user '{user}' lacks a privilege in database '{database}' at {where}: "
              "{reason}.").format(user=user, database=database, where=where, reason=reason)
        )
    if code == _UNKNOWN_DATABASE_CODE:
        return MagentoSchemaError(
            _("Database '{database}' does not exist on the MySQL server at {where}: "
              "check the database name.").format(database=database, where=where)
        )
    if code in _SCHEMA_CODES:
        return MagentoSchemaError(
            _("The Magento schema in database '{database}' at {where} is incomplete: {reason}. "
              "Check the database name and the table prefix.").format(
                database=database, where=where, reason=reason)
        )
    if code in _INVALID_RECORD_CODES:
        return InvalidRecord(_("The MySQL server rejected the record: {reason}.").format(reason=reason))
    if code is not None:
        return MagentoError(
            _("MySQL error {code} in database '{database}' at {where}: {reason}.").format(
                code=code, database=database, where=where, reason=reason)
        )
    return MagentoError(
        _("Database operation failed in database '{database}' at {where}: {reason}.").format(
            database=database, where=where, reason=reason)
    )
