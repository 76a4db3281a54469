"""Async client for the edm-sync daemon's Unix socket, used by the CLI and the dashboard.

docs/protocol.md describes the protocol. Responses are matched to requests by id, so
several calls may be in flight at once. Event notifications are queued for events().
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import platformdirs

from edm_tui import __version__
from edm_tui.i18n import N_, _

log = logging.getLogger("edm_sync.client")

PROTOCOL_VERSION = 1
SOCKET_NAME = "edm-sync.sock"
SYSTEM_SOCKET_PATH = Path("/run/edm-sync") / SOCKET_NAME  # the systemd unit's RuntimeDirectory
# The reasons below are shown to people (the dashboard's "daemon unavailable" screen, the
# command line), so they are translated; PERMISSION_DENIED opens every permission reason.
PERMISSION_DENIED = N_("permission denied")

# Error codes that the server sends with "id": null just before it closes the connection.
_CONNECTION_ERRORS = (-32010, -32011)  # too many clients, line too long
# Responses can be far larger than requests (e.g. 1000 run items), so the client's
# line limit is well above the server's 1 MiB request limit.
_MAX_RESPONSE_LINE = 64 * 1024 * 1024
_MAX_QUEUED_EVENTS = 10_000  # then the oldest are dropped; the seq gap shows it


class DaemonUnavailable(Exception):
    """The daemon cannot be reached, or the connection to it was lost.

    `not_running` is true when nothing listens on the socket, so starting the daemon helps.
    """

    def __init__(self, message: str, *, not_running: bool = False) -> None:
        super().__init__(message)
        self.not_running = not_running


class DaemonError(Exception):
    """An error response from the daemon; `code` identifies it, `message` is short English."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


def default_socket_path() -> Path:
    """Return the daemon's socket path.

    In order: $EDM_SYNC_SOCKET; $RUNTIME_DIRECTORY/edm-sync.sock (set by systemd for the
    service); /run/edm-sync/edm-sync.sock when it exists; else edm-sync.sock in the
    user's runtime directory (platformdirs.user_runtime_dir).
    """
    explicit = os.environ.get("EDM_SYNC_SOCKET")
    if explicit:
        return Path(explicit).expanduser()
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        # systemd separates several RuntimeDirectory= entries with ":".
        return Path(runtime.split(":")[0]) / SOCKET_NAME
    if SYSTEM_SOCKET_PATH.exists():
        return SYSTEM_SOCKET_PATH
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR (a root shell, a cron job) platformdirs warns and falls back
        # to a folder under /tmp, which is what we want here.
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_runtime_dir("edm-sync")) / SOCKET_NAME


class _EndOfEvents:
    """Queued after the last event when the client is closed."""


class DaemonClient:
    """A connection to the daemon. Create it with `await DaemonClient.connect(path)`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: Path) -> None:
        self.path = path
        self.hello: dict[str, Any] = {}
        self._reader = reader
        self._writer = writer
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: asyncio.Queue[dict[str, Any] | DaemonUnavailable | _EndOfEvents] = asyncio.Queue()
        self._failure: DaemonUnavailable | None = None
        self._read_task = asyncio.create_task(self._read_responses(), name="edm-sync-client-reader")

    @classmethod
    async def connect(cls, path: Path, *, client_name: str = "edm-sync", timeout: float = 5.0) -> DaemonClient:
        """Connect to the daemon at `path` and call hello; `hello` then contains its result.

        Raises DaemonUnavailable when the daemon cannot be reached within `timeout`
        seconds, and DaemonError when it rejects hello (e.g. -32004 unsupported protocol).
        """
        path = Path(path)
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path, limit=_MAX_RESPONSE_LINE)
                client = cls(reader, writer, path)
                try:
                    client.hello = await client.call(
                        "hello", protocol=PROTOCOL_VERSION, client=f"{client_name} {__version__}")
                except BaseException:
                    await client.close()
                    raise
        except FileNotFoundError:
            raise DaemonUnavailable(_("the daemon is not running: no socket at {path}").format(path=path),
                                    not_running=True) from None
        except ConnectionRefusedError:
            raise DaemonUnavailable(_("the daemon is not running: connection to {path} refused").format(path=path),
                                    not_running=True) from None
        except PermissionError:
            raise DaemonUnavailable(_permission_message(path)) from None
        except TimeoutError:
            raise DaemonUnavailable(
                _("timed out after {seconds} s connecting to the daemon at {path}; check it with "
                  "'systemctl status edm-sync'").format(seconds=f"{timeout:g}", path=path)) from None
        except OSError as exc:
            raise DaemonUnavailable(_("cannot connect to the daemon at {path}: {error}").format(
                path=path, error=exc.strerror or exc)) from None
        return client

    async def call(self, method: str, /, **params: Any) -> Any:
        """Call `method` with `params` and return its result.

        Raises DaemonError for an error response and DaemonUnavailable when the connection
        is lost before the response arrives. Cancelling the call leaves the connection usable.
        """
        if self._failure is not None:
            raise self._failure
        self._next_id += 1
        request_id = self._next_id
        request = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params:
            request["params"] = params
        line = json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"

        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(line)
            await self._writer.drain()
            return await future
        except (ConnectionError, OSError) as exc:
            raise self._lost(f"lost the connection to the daemon at {self.path} ({type(exc).__name__})") from None
        finally:
            self._pending.pop(request_id, None)

    async def subscribe(self, *topics: str) -> dict[str, Any]:
        """Subscribe to event `topics` (all when none are given); returns {"topics", "seq"}."""
        if topics:
            return await self.call("subscribe", topics=list(topics))
        return await self.call("subscribe")

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Yield event notifications ({"seq", "topic", "data"}) in arrival order.

        Ends after close(). Raises DaemonUnavailable when the connection is lost.
        """
        while True:
            item = await self._events.get()
            if isinstance(item, DaemonUnavailable | _EndOfEvents):
                self._events.put_nowait(item)  # for any other reader of events()
                if isinstance(item, DaemonUnavailable):
                    raise item
                return
            yield item

    async def close(self) -> None:
        """Close the connection; calls still waiting raise DaemonUnavailable."""
        if self._failure is None:
            self._fail(DaemonUnavailable(_("the connection to the daemon at {path} was closed").format(
                path=self.path)),
                       end_events=_EndOfEvents())
        self._read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._read_task
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def _read_responses(self) -> None:
        reason = "the daemon closed the connection"
        try:
            while True:
                line = await self._reader.readline()
                if not line.endswith(b"\n"):
                    break
                self._handle_line(line)
        except ValueError:
            reason = f"the daemon sent a line longer than {_MAX_RESPONSE_LINE} bytes"
        except OSError as exc:
            reason = f"lost the connection to the daemon ({type(exc).__name__})"
        self._lost(f"{reason} ({self.path}); it may have stopped or restarted: "
                   "check it with 'systemctl status edm-sync'")

    def _handle_line(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            log.warning("ignored a line from the daemon that is not JSON: %.80r", line)
            return
        if not isinstance(message, dict):
            log.warning("ignored a line from the daemon that is not an object: %.80r", line)
            return

        if "id" not in message:
            if message.get("method") == "event" and isinstance(message.get("params"), dict):
                self._queue_event(message["params"])
            return

        error = message.get("error")
        if message["id"] is None and isinstance(error, dict):
            # The server sends "id": null for a line it could not read as a request. The
            # two connection errors end the connection, so they fail every waiting call.
            failure = _daemon_error(error)
            if failure.code in _CONNECTION_ERRORS:
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(failure)
            else:
                log.warning("the daemon reported an error for no request: %s", failure)
            return

        future = self._pending.get(message["id"])
        if future is None or future.done():
            return  # the caller stopped waiting
        if isinstance(error, dict):
            future.set_exception(_daemon_error(error))
        else:
            future.set_result(message.get("result"))

    def _queue_event(self, params: dict[str, Any]) -> None:
        if self._events.qsize() >= _MAX_QUEUED_EVENTS:
            self._events.get_nowait()
        self._events.put_nowait(params)

    def _lost(self, message: str) -> DaemonUnavailable:
        if self._failure is None:
            self._fail(DaemonUnavailable(message), end_events=None)
        assert self._failure is not None
        return self._failure

    def _fail(self, failure: DaemonUnavailable, end_events: _EndOfEvents | None) -> None:
        """Wake every waiting call with `failure` and end events() with `end_events` or `failure`."""
        self._failure = failure
        for future in self._pending.values():
            if not future.done():
                future.set_exception(failure)
        self._events.put_nowait(end_events or failure)


def _daemon_error(error: dict[str, Any]) -> DaemonError:
    code = error.get("code")
    return DaemonError(code if isinstance(code, int) else -32603, str(error.get("message", "")), error.get("data"))


def _permission_message(path: Path) -> str:
    try:
        group = grp.getgrgid(path.stat().st_gid).gr_name
    except (OSError, KeyError):
        return _(PERMISSION_DENIED) + ": " + _(
            "opening {path}; ask an administrator for access to the daemon's socket").format(path=path)
    return _(PERMISSION_DENIED) + ": " + _(
        "opening {path}; the socket belongs to group '{group}': ask an administrator to add your user "
        "to it (usermod -aG {group} USER), then log in again").format(path=path, group=group)
