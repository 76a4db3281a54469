"""A daemon process shared by one test module, and a raw line-level client for its socket."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edm_tui.interspire.simulator import start_simulator
from tests import mariadb_support as mdb
from tests.daemon_support import DaemonProcess, NotifyListener, write_daemon_config
from tests.sync_support import Bench, base_state

HELLO = b'{"jsonrpc":"2.0","id":"hello","method":"hello","params":{"protocol":1,"client":"fuzz"}}\n'
READ_TIMEOUT = 10.0  # seconds


@contextmanager
def running_daemon(tmp: Path) -> Iterator[DaemonProcess]:
    """Start `edm-sync daemon` on a fresh database and simulator; stop and drop both at the end."""
    database = mdb.create_database()
    try:
        with start_simulator(auth_delay=0) as simulator:
            bench = Bench(database, simulator.base, simulator.url, tmp, sim=simulator)
            bench.put_state(base_state())
            socket_path = tmp / "d.sock"
            notify = NotifyListener(tmp / "notify.sock")
            process = DaemonProcess(bench, write_daemon_config(bench, socket_path), socket_path, notify,
                                    tmp / "daemon.log")
            process.start()
            try:
                yield process
            finally:
                process.stop()
                notify.close()
    finally:
        mdb.drop_database(database)


class RawClient:
    """A blocking socket client that sends bytes exactly as given and reads reply lines."""

    def __init__(self, path: Path, *, hello: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(READ_TIMEOUT)
        self.sock.connect(str(path))
        self.reader = self.sock.makefile("rb")
        if hello:
            self.send(HELLO)
            assert self.reply()["id"] == "hello"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> dict[str, Any]:
        """Return the next reply, skipping event notifications."""
        while True:
            line = self.reader.readline()
            assert line.endswith(b"\n"), f"connection closed or reply cut off: {line[:200]!r}"
            message = json.loads(line)
            if message.get("method") != "event":
                return message

    def call(self, request_id: Any, method: str, params: Any = None) -> dict[str, Any]:
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            request["params"] = params
        self.send(json.dumps(request).encode() + b"\n")
        return self.reply()

    def at_eof(self) -> bool:
        """Return whether the daemon has closed the connection (reading nothing more)."""
        return self.reader.readline() == b""

    def close(self) -> None:
        self.reader.close()
        self.sock.close()
