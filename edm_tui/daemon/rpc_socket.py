"""Create, secure and remove the daemon's Unix socket file."""

from __future__ import annotations

import errno
import grp
import logging
import os
import socket
import stat
from pathlib import Path

log = logging.getLogger("edm_sync.rpc")

PROBE_TIMEOUT = 1.0  # seconds to wait for connect() when checking for a live server


class SocketSetupError(RuntimeError):
    """The socket file could not be created or given its mode and group."""


def bind_socket(path: Path, mode: int, group: str | None) -> socket.socket:
    """Return a Unix stream socket bound to `path`, with `mode` and `group`, not yet listening.

    Creates missing parent directories with mode 0755 and removes a stale socket file
    left by a daemon that died. Raises SocketSetupError when another server accepts
    connections on `path`, when `path` is not a socket, or when a step fails.
    Clients cannot connect before listen(), so the file's mode may be set after bind().
    """
    _make_parent_directories(path.parent)
    _remove_stale_socket(path)

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(os.fsencode(path))
        except OSError as exc:
            raise SocketSetupError(f"cannot bind the socket {path}: {exc.strerror or exc}") from exc
        try:
            os.chmod(path, mode)
            if group is not None:
                _set_group(path, group)
        except BaseException:
            _unlink_quietly(path)
            raise
    except BaseException:
        sock.close()
        raise
    return sock


def socket_identity(path: Path) -> tuple[int, int] | None:
    """Return (device, inode) of `path`, or None when it does not exist."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def remove_socket_file(path: Path, identity: tuple[int, int] | None) -> None:
    """Remove `path` if it is still the socket file with `identity`.

    A newer daemon may have replaced the file since, and its socket must stay.
    """
    if identity is not None and socket_identity(path) == identity:
        _unlink_quietly(path)


def _make_parent_directories(directory: Path) -> None:
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o755)
            os.chmod(directory, 0o755)  # mkdir's mode is reduced by the umask
        except FileExistsError:
            continue
        except OSError as exc:
            raise SocketSetupError(
                f"cannot create the socket directory {directory}: {exc.strerror or exc}") from exc
        log.info("created socket directory %s (mode 0755)", directory)


def _remove_stale_socket(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketSetupError(
            f"{path} exists and is not a socket; remove it or choose another socket path")

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(os.fsencode(path))
    except ConnectionRefusedError:
        pass  # no process listens: a daemon exited without removing its socket
    except TimeoutError as exc:
        raise SocketSetupError(
            f"another server on {path} accepts no connections (timed out after "
            f"{PROBE_TIMEOUT} s); stop it before starting this daemon") from exc
    except OSError as exc:
        raise SocketSetupError(f"cannot check whether {path} is in use: {exc.strerror or exc}") from exc
    else:
        raise SocketSetupError(
            f"another server is already listening on {path}; stop it first "
            "(systemctl stop edm-sync) or choose another socket path")
    finally:
        probe.close()

    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise SocketSetupError(
                f"cannot remove the stale socket {path}: {exc.strerror or exc}") from exc
    log.info("removed stale socket %s", path)


def _set_group(path: Path, group: str) -> None:
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise SocketSetupError(
            f"socket group '{group}' does not exist; create it (groupadd {group}) "
            "or change [daemon] socket_group") from None
    try:
        os.chown(path, -1, gid)
    except OSError as exc:
        raise SocketSetupError(
            f"cannot give the socket {path} to group '{group}': {exc.strerror or exc}; "
            f"the daemon must run as root or as a member of '{group}'") from exc


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove the socket %s: %s", path, exc.strerror or exc)
