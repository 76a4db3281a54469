"""The systemd notification protocol (sd_notify(3)) without libsystemd.

Each notification is one datagram of newline-separated `KEY=value` assignments sent to the
AF_UNIX socket named by `$NOTIFY_SOCKET`: a filesystem path, or `@name` for an abstract socket.
Outside systemd the variable is unset and every call is a no-op, so the daemon can call these
methods unconditionally.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("edm_sync.notify")

# Errors that mean no socket exists at $NOTIFY_SOCKET (systemd stopped, or a stale variable).
_SOCKET_GONE = frozenset({errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR})


def _socket_address(value: str) -> str | bytes | None:
    """Convert `$NOTIFY_SOCKET` to a sendto() address, or None when it is not usable."""
    # NOTE: the vsock:CID:PORT form that newer systemd versions pass into virtual machines is
    # not supported and disables notifications.
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        # An abstract socket name starts with a NUL byte in place of the "@".
        return b"\0" + value[1:].encode()
    return None


def _watchdog_usec(environ: Mapping[str, str], pid: int) -> int | None:
    """Return `$WATCHDOG_USEC` when the watchdog is set and meant for process `pid`."""
    usec_text = environ.get("WATCHDOG_USEC", "")
    if not usec_text:
        return None
    try:
        usec = int(usec_text)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; the watchdog is disabled", usec_text)
        return None
    if usec <= 0:
        return None

    # sd_watchdog_enabled(3): WATCHDOG_PID, when set, names the one process that must ping.
    pid_text = environ.get("WATCHDOG_PID", "")
    if pid_text:
        try:
            watchdog_pid = int(pid_text)
        except ValueError:
            log.warning("WATCHDOG_PID=%r is not an integer; the watchdog is disabled", pid_text)
            return None
        if watchdog_pid != pid:
            return None
    return usec


class Notifier:
    """Sender of service state notifications to systemd (ready, status, watchdog, stop, reload).

    `environ` defaults to `os.environ` and `pid` to this process's id; both are read once, here.
    No method raises: a failed send is logged and reported by a False return value.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, *, pid: int | None = None) -> None:
        if environ is None:
            environ = os.environ
        if pid is None:
            pid = os.getpid()

        self.socket_name = environ.get("NOTIFY_SOCKET", "")
        self._address = _socket_address(self.socket_name) if self.socket_name else None
        if self.socket_name and self._address is None:
            log.warning("NOTIFY_SOCKET=%r is neither an absolute path nor an @abstract name; "
                        "systemd notifications are disabled", self.socket_name)

        usec = _watchdog_usec(environ, pid)
        self.watchdog_usec = usec if self._address is not None else None
        self._socket: socket.socket | None = None
        self._logged_errors: set[int] = set()
        self.failed_sends = 0

    @property
    def enabled(self) -> bool:
        """Whether a usable notification socket was named in the environment."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of `$WATCHDOG_USEC`), or None without a watchdog."""
        if self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def ready(self, status: str | None = None) -> bool:
        """Report that startup or a reload is finished, optionally with a new status line."""
        if status is None:
            return self.send("READY=1")
        return self.send("READY=1", "STATUS=" + _one_line(status))

    def status(self, text: str) -> bool:
        """Set the line that `systemctl status` shows. Line breaks become spaces."""
        return self.send("STATUS=" + _one_line(text))

    def stopping(self) -> bool:
        """Report that shutdown has begun."""
        return self.send("STOPPING=1")

    def reloading(self) -> bool:
        """Report that a configuration reload has begun. Call `ready()` when it is done.

        systemd 253 and newer require MONOTONIC_USEC with RELOADING=1 for Type=notify-reload.
        Older versions ignore it as an unknown key.
        """
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={now_usec}")

    def watchdog(self) -> bool:
        """Send one watchdog ping, unless the watchdog is not meant for this process."""
        if self.watchdog_usec is None:
            return False
        return self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask systemd to wait `seconds` more for the current start, reload or stop to finish."""
        return self.send(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}")

    def send(self, *assignments: str) -> bool:
        """Send `KEY=value` assignments as one datagram and return whether it was sent."""
        if self._address is None:
            return False
        payload = "\n".join(assignments).encode("utf-8", errors="replace")
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Non-blocking, so a full receive queue in systemd drops the message with
                # EAGAIN instead of blocking the event loop.
                self._socket.setblocking(False)
            self._socket.sendto(payload, self._address)
        except OSError as error:
            self._report_failure(error, payload)
            return False
        return True

    def close(self) -> None:
        """Close the sending socket. A later send opens a new one."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _report_failure(self, error: OSError, payload: bytes) -> None:
        self.failed_sends += 1
        code = error.errno or 0
        if code in self._logged_errors:
            return
        self._logged_errors.add(code)
        first_key = payload.split(b"=", 1)[0].decode("ascii", errors="replace")
        if code in _SOCKET_GONE:
            log.debug("systemd notification socket %s is not available (%s); "
                      "further failures with this error are not logged", self.socket_name, error)
        else:
            log.warning("sending %s to systemd notification socket %s failed: %s; "
                        "further failures with this error are not logged",
                        first_key, self.socket_name, error)


def _one_line(text: str) -> str:
    # systemd reads one assignment per line and rejects datagrams that contain NUL bytes.
    return " ".join(text.replace("\0", " ").splitlines())


async def watchdog_loop(notifier: Notifier, is_healthy: Callable[[], bool]) -> None:
    """Ping the systemd watchdog every `notifier.watchdog_interval` seconds while healthy.

    The pings come from the event loop itself, so a blocked loop also stops them. The loop ends
    at the first failed health check (an exception counts as a failure): systemd then applies
    the unit's watchdog action, a restart under Restart=on-failure, after WatchdogSec.
    Returns at once when the watchdog is not enabled for this process.
    """
    interval = notifier.watchdog_interval
    if interval is None:
        return

    while True:
        try:
            healthy = is_healthy()
        except Exception:  # noqa: BLE001 - a broken health check must end the pings, not the daemon
            log.exception("watchdog health check raised; stopping watchdog pings")
            return
        if not healthy:
            log.error("health check failed; stopping watchdog pings, so systemd will restart "
                      "the service after WatchdogSec")
            return
        notifier.watchdog()
        await asyncio.sleep(interval)
