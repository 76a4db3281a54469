"""The systemd unit file passes systemd's own checks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parent.parent / "systemd" / "edm-sync.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_verifies(tmp_path: Path) -> None:
    # The shipped unit starts /usr/bin/edm-sync; verify a copy that points at this checkout's command.
    command = Path(sys.executable).parent / "edm-sync"
    copy = tmp_path / "edm-sync.service"
    copy.write_text(UNIT.read_text().replace("/usr/bin/edm-sync", str(command)))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_exposure_stays_low() -> None:
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                          capture_output=True, text=True, timeout=60)
    line = [line for line in done.stdout.splitlines() if "Overall exposure level" in line][-1]
    exposure = float(line.split("level for")[1].split(":")[1].split()[0])
    assert exposure <= 1.5, line


def test_unit_essentials() -> None:
    text = UNIT.read_text()
    for setting in ("Type=notify", "User=edm-sync", "RuntimeDirectory=edm-sync", "StateDirectory=edm-sync",
                    "ConfigurationDirectory=edm-sync", "ProtectSystem=strict", "Restart=on-failure",
                    "ExecReload=", "WatchdogSec="):
        assert setting in text, setting
