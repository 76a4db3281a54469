"""Identify the process at the other end of a Unix socket and decide what it may do.

The kernel records the peer's pid, uid and gid when it calls connect() (`SO_PEERCRED`,
see unix(7)). Supplementary groups are not part of that record, so they are read from
`/proc/<pid>/status` and, when that fails, from the group database for the peer's user.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import socket
import struct
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("edm_sync.rpc")

_UCRED = struct.Struct("3i")  # struct ucred: pid_t pid, uid_t uid, gid_t gid


@dataclass(frozen=True, slots=True)
class Peer:
    """Credentials of a connected client process."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int]  # supplementary group ids; may or may not include gid
    user: str  # login name, or the numeric uid when the user has no passwd entry

    def describe(self) -> str:
        """Return "pid 123 uid 1000 (alice)" for log lines."""
        return f"pid {self.pid} uid {self.uid} ({self.user})"


# Used when the credentials cannot be read: it matches no uid or group, so
# AccessPolicy.can_write() is false for it.
UNKNOWN_PEER = Peer(pid=0, uid=-1, gid=-1, groups=frozenset(), user="unknown")


def read_peer(sock: Any) -> Peer:
    """Read the credentials of the process connected to the Unix stream socket `sock`.

    `sock` is a socket.socket or asyncio's TransportSocket. Returns UNKNOWN_PEER, and
    logs a warning, when the kernel does not report credentials.
    """
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except (OSError, AttributeError) as exc:
        # AttributeError: the platform has no SO_PEERCRED (it is Linux-specific).
        log.warning("cannot read the client's credentials (%s); it gets read-only access",
                    type(exc).__name__)
        return UNKNOWN_PEER
    pid, uid, gid = _UCRED.unpack(raw)
    user = user_name(uid)
    return Peer(pid=pid, uid=uid, gid=gid, groups=peer_groups(pid, uid, gid, user), user=user)


def user_name(uid: int) -> str:
    """Return the login name of `uid`, or the number as text when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def peer_groups(pid: int, uid: int, gid: int, user: str) -> frozenset[int]:
    """Return the supplementary groups of process `pid`, which runs as `uid`.

    The groups come from the `Groups:` line of /proc/<pid>/status. That file is used
    only while its effective uid is still `uid` (SO_PEERCRED reports the effective uid),
    because the pid may have been reused after the client exited. Otherwise the groups are those the group database gives
    `user` (os.getgrouplist), which misses changes made by the process itself.
    """
    groups = _groups_from_proc(pid, uid)
    if groups is not None:
        return groups
    try:
        return frozenset(os.getgrouplist(user, gid))
    except (OSError, TypeError):
        # TypeError: no passwd entry, so `user` is a number and not a name.
        return frozenset({gid})


def _groups_from_proc(pid: int, uid: int) -> frozenset[int] | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            text = status.read()
    except OSError:
        return None

    effective_uid: int | None = None
    groups: frozenset[int] | None = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "Uid":  # real, effective, saved and filesystem uid
            effective_uid = int(value.split()[1])
        elif key == "Groups":
            groups = frozenset(int(number) for number in value.split())
    if effective_uid != uid:
        return None
    return groups


class AccessPolicy:
    """Decide which peers may call methods that change state (runs, configuration).

    Allowed are root, the uid the service runs as, and members of `admin_group`, by
    primary or supplementary group. The group name is resolved on every check, so a
    group created after the daemon started takes effect without a restart.
    """

    def __init__(self, service_uid: int, admin_group: str | None = None) -> None:
        self.service_uid = service_uid
        self.admin_group = admin_group
        self._missing_group_logged = False

    def can_write(self, peer: Peer) -> bool:
        if peer.uid < 0:
            return False
        if peer.uid == 0 or peer.uid == self.service_uid:
            return True
        admin_gid = self._admin_gid()
        if admin_gid is None:
            return False
        return peer.gid == admin_gid or admin_gid in peer.groups

    def describe_writers(self) -> str:
        """Name who may call write methods, for error replies and logs.

        Example: "root, the service user 'edm-sync' or members of group 'edm-admins'".
        """
        names = ["root"]
        if self.service_uid != 0:
            names.append(f"the service user '{user_name(self.service_uid)}'")
        if self.admin_group:
            names.append(f"members of group '{self.admin_group}'")
        if len(names) == 1:
            return names[0]
        return ", ".join(names[:-1]) + " or " + names[-1]

    def _admin_gid(self) -> int | None:
        if not self.admin_group:
            return None
        try:
            return grp.getgrnam(self.admin_group).gr_gid
        except KeyError:
            if not self._missing_group_logged:
                log.warning("admin group '%s' does not exist; only %s may change state",
                            self.admin_group, AccessPolicy(self.service_uid).describe_writers())
                self._missing_group_logged = True
            return None
