"""File and socket modes, and what a second real user may do through the daemon's socket.

Files that hold the token or subscriber data are private to the service's user: the
configuration file edm-sync writes (mode 0600), the history folder (0700) and its database
files (0600). The socket is 0660, so its group may read status and history, and members of
`[daemon] admin_group` may also start runs and change settings.
"""

from __future__ import annotations

import argparse
import asyncio
import grp
import json
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edm_tui.daemon.history import HistoryStore
from edm_tui.export import export_items, export_runs
from edm_tui.sandbox import _write_config as write_sandbox_config
from tests.daemon_support import DaemonProcess, add_subscribers
from tests.sync_support import TOKEN


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_config_set_writes_private_file(daemon: DaemonProcess) -> None:
    daemon.config_path.chmod(0o644)
    daemon.start()
    assert daemon.call("config.set", config={"interspire": {"list_id": 2}})["ok"] is True
    assert mode_of(daemon.config_path) == 0o600
    assert "list_id = 2" in daemon.config_path.read_text()
    leftovers = [p.name for p in daemon.config_path.parent.iterdir() if p.name.startswith(".config.toml.")]
    assert leftovers == []


def test_example_config_writes_no_file(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "edm_tui.cli", "example-config"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env={**os.environ, "LANG": "C.UTF-8"})
    assert done.returncode == 0
    assert "[interspire]" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_sandbox_config_is_private(tmp_path: Path) -> None:
    args = argparse.Namespace(mysql_host="127.0.0.1", mysql_port=3306, mysql_user="root",
                              mysql_password="", database="edm_sandbox")
    existing = tmp_path / "config.toml"
    existing.write_text("# older, readable by everyone\n")
    existing.chmod(0o644)
    path = write_sandbox_config(args, tmp_path, 8080)
    assert path == existing
    assert mode_of(path) == 0o600
    assert 'url = "http://127.0.0.1:8080/xml.php"' in path.read_text()


def test_socket_and_history_modes(daemon: DaemonProcess) -> None:
    add_subscribers(daemon.bench, 2)
    daemon.start()
    daemon.call("run")
    daemon.wait_idle()
    state = daemon.bench.tmp / "state"
    assert stat.S_ISSOCK(daemon.socket_path.stat().st_mode)
    assert mode_of(daemon.socket_path) == 0o660
    assert mode_of(state) == 0o700
    database_files = sorted(p.name for p in state.glob("history.sqlite3*"))
    assert "history.sqlite3" in database_files
    for name in database_files:
        assert mode_of(state / name) == 0o600, name


def test_csv_export_is_private(daemon: DaemonProcess) -> None:
    add_subscribers(daemon.bench, 2)
    daemon.start()
    daemon.call("run")
    daemon.wait_idle()
    folder = daemon.bench.tmp / "export"
    folder.mkdir()

    async def export() -> tuple[Path, Path]:
        client = await daemon.client()
        try:
            runs_path, _count = await export_runs(client.call, folder)
            items_path, _count = await export_items(client.call, folder, 1)
            return runs_path, items_path
        finally:
            await client.close()

    runs_path, items_path = asyncio.run(export())
    assert mode_of(runs_path) == 0o600
    assert mode_of(items_path) == 0o600
    assert "d0@example.test" in items_path.read_text()


# --- a second user: a member of the admin group may start runs ---


def call_as(user: pwd.struct_passwd, socket_path: Path, requests: list[tuple[str, dict[str, Any]]]) -> dict:
    """Send hello and `requests` from a forked child running as `user`; return the replies.

    The child keeps the user's groups from the group database, as a login would.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become the user, talk to the socket, report through the pipe
        try:
            os.setgroups(os.getgrouplist(user.pw_name, user.pw_gid))
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(socket_path))
            lines = sock.makefile("rb")
            sock.sendall(b'{"jsonrpc":"2.0","id":0,"method":"hello","params":{"protocol":1,"client":"t"}}\n')
            replies = {"hello": json.loads(lines.readline())}
            for number, (method, params) in enumerate(requests, start=1):
                request = {"jsonrpc": "2.0", "id": number, "method": method, "params": params}
                sock.sendall(json.dumps(request).encode() + b"\n")
                replies[method] = json.loads(lines.readline())
            os.write(write_end, json.dumps(replies).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        return json.loads(pipe.read())


@pytest.fixture
def admin_user() -> Iterator[tuple[pwd.struct_passwd, str]]:
    """A new system user in a new group; both are removed at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a user and act as it (useradd, setuid)")
    if shutil.which("useradd") is None or shutil.which("groupadd") is None:
        pytest.skip("useradd and groupadd are not on PATH")
    suffix = secrets.token_hex(3)
    group, name = f"edmadm{suffix}", f"edmop{suffix}"
    subprocess.run(["groupadd", "--system", group], check=True, capture_output=True, timeout=30)
    try:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--gid", "nogroup", "--groups", group, name], check=True, capture_output=True, timeout=30)
        try:
            yield pwd.getpwnam(name), group
        finally:
            subprocess.run(["userdel", name], check=True, capture_output=True, timeout=30)
    finally:
        subprocess.run(["groupdel", group], check=True, capture_output=True, timeout=30)


def test_admin_group_member_starts_run(daemon: DaemonProcess, admin_user: tuple[pwd.struct_passwd, str]) -> None:
    user, group = admin_user
    bench = daemon.bench
    add_subscribers(bench, 2)
    folder = Path(tempfile.mkdtemp(prefix="edm-sock-"))  # outside pytest's private 0700 folder
    folder.chmod(0o755)
    socket_path = folder / "d.sock"
    bench.write_config(daemon.config_path, schedule={"enabled": False},
                       daemon={"socket": str(socket_path), "socket_group": group, "admin_group": group})
    daemon.socket_path = socket_path
    try:
        daemon.start()
        assert grp.getgrgid(socket_path.stat().st_gid).gr_name == group
        assert mode_of(socket_path) == 0o660

        replies = call_as(user, socket_path, [("run", {}), ("config.get", {})])
        assert replies["hello"]["result"]["can_write"] is True
        assert replies["hello"]["result"]["user"] == user.pw_name
        assert replies["run"]["result"]["run_id"] == 1
        assert replies["config.get"]["result"]["config"]["interspire"]["token"] == "********"

        finished = daemon.wait_idle()["last_run"]
        assert (finished["id"], finished["trigger"], finished["status"]) == (1, "manual", "succeeded")
        assert sorted(bench.iem()) == ["d0@example.test", "d1@example.test"]
    finally:
        daemon.stop()
        shutil.rmtree(folder, ignore_errors=True)

    store = HistoryStore(bench.tmp / "state" / "history.sqlite3")
    try:
        assert [(r.id, r.trigger) for r in store.runs()] == [(1, "manual")]
    finally:
        store.close()
    assert TOKEN in daemon.config_path.read_text()
