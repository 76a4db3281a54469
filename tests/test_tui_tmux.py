"""edm-tui in a real terminal: tmux runs the dashboard against a real daemon, keys go in as typed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon_support import DaemonProcess

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 100, 30

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class TmuxSession:
    """One detached tmux session on a private server socket, so no user session is touched."""

    def __init__(self, socket: Path, name: str = "edm-tui") -> None:
        self.socket = socket
        self.name = name

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        # The tmux server passes its environment on to the dashboard. COLUMNS and LINES would
        # override the pane's size in Rich and Textual, and pytest sets them to 80 and 24.
        env = {name: value for name, value in os.environ.items() if name not in ("COLUMNS", "LINES")}
        return subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True, text=True,
                              timeout=10, check=False, env=env)

    def start(self, command: list[str], env: dict[str, str]) -> None:
        settings = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
        started = self.tmux("new-session", "-d", "-s", self.name, "-x", str(WIDTH), "-y", str(HEIGHT),
                            "-c", str(ROOT), *settings, *command)
        assert started.returncode == 0, started.stderr

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.name).stdout

    def send(self, key: str) -> None:
        self.tmux("send-keys", "-t", self.name, key)

    def alive(self) -> bool:
        return self.tmux("has-session", "-t", self.name).returncode == 0

    def wait_for(self, condition: Callable[[str], bool], awaited: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if condition(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {awaited}; the screen was:\n{text}")

    def kill(self) -> None:
        self.tmux("kill-server")


def run_row(screen: str, run_id: int) -> str:
    """Return the line of the runs table that shows `run_id`, or "" when there is none."""
    for line in screen.splitlines():
        cells = line.strip("│ ").split()
        if cells and cells[0] == str(run_id) and len(cells) > 1 and cells[1][:2] == "20":
            return line
    return ""


def test_sync_in_real_terminal(daemon: DaemonProcess) -> None:
    for n in range(5):
        daemon.bench.add_row(f"tmux{n}@example.test", 1, 1_700_000_000)
    daemon.start()

    session = TmuxSession(daemon.bench.tmp / "tmux.sock")
    session.start([sys.executable, "-m", "edm_tui.app", "--socket", str(daemon.socket_path)],
                  {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TEXTUAL_ANIMATIONS": "none"})
    try:
        session.wait_for(lambda text: "Last 10 runs" in text and "Idle" in text, "the dashboard")

        session.send("s")
        screen = session.wait_for(lambda text: "✓ succeeded" in run_row(text, 1), "run 1 to succeed")
        assert "manual" in run_row(screen, 1)
        assert "Run 1 started." in screen

        session.send("q")
        deadline = time.monotonic() + 10
        while session.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not session.alive(), "the dashboard did not quit on q"
    finally:
        session.kill()

    assert len(daemon.bench.iem_rows()) == 5
