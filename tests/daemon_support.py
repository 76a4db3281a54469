"""Runs `edm-sync daemon` as a real subprocess with a systemd notification socket."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edm_tui.client import DaemonClient
from tests.sync_support import Bench


@dataclass
class NotifyListener:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    path: Path
    sock: socket.socket = field(init=False)
    messages: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.05)

    def drain(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                return self.messages
            self.messages.extend(line for line in data.decode().split("\n") if line)

    def wait_for(self, prefix: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            self.drain()
            for message in self.messages[seen:]:
                if message.startswith(prefix):
                    return message
            seen = 0
            time.sleep(0.02)
        raise AssertionError(f"no {prefix!r} notification; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


@dataclass
class DaemonProcess:
    bench: Bench
    config_path: Path
    socket_path: Path
    notify: NotifyListener
    log_path: Path
    process: subprocess.Popen | None = None
    watchdog_usec: int | None = None

    def start(self) -> None:
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path), "PYTHONUNBUFFERED": "1"}
        env.pop("WATCHDOG_USEC", None)
        if self.watchdog_usec:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        self.notify.drain()  # messages of an earlier process (a READY=1 after a reload) must not count
        self.notify.messages.clear()
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edm_tui.cli", "--config", str(self.config_path), "daemon"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
        log.close()
        self.notify.wait_for("READY=1")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    async def client(self, name: str = "test") -> DaemonClient:
        return await DaemonClient.connect(self.socket_path, client_name=name)

    def call(self, method: str, **params: Any) -> Any:
        async def go() -> Any:
            client = await self.client()
            try:
                return await client.call(method, **params)
            finally:
                await client.close()

        return asyncio.run(go())

    def wait_idle(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.call("status")
            if status["state"] == "idle":
                return status
            time.sleep(0.1)
        raise AssertionError("the daemon stayed busy")


def add_subscribers(bench: Bench, count: int, *, prefix: str = "d", changed_at: int = 1_700_000_000) -> None:
    """Inserts `count` subscribed Magento rows: <prefix>0@example.test, <prefix>1@example.test, ..."""
    conn = bench.connect()
    try:
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO newsletter_subscriber (store_id, change_status_at, subscriber_email, "
                "subscriber_status, subscriber_confirm_code) VALUES (1, FROM_UNIXTIME(%s), %s, 1, 'c')",
                [(changed_at, f"{prefix}{n}@example.test") for n in range(count)])
    finally:
        conn.close()


def write_daemon_config(bench: Bench, socket_path: Path, **schedule: Any) -> Path:
    sections = {"schedule": {"interval": "24h", "catch_up_delay": "0s", "enabled": False, **schedule},
                "daemon": {"socket": str(socket_path)}}
    return bench.write_config(bench.tmp / "config.toml", **sections)
