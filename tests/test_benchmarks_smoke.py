"""benchmarks/sync_scale.py --quick still runs end to end and prints every figure.

The figures of a quick run are not meaningful (fixed costs dominate at 400 subscribers), so
only their presence, a verdict on each line and the checks of the data are asserted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "sync_scale.py"
sys.path.insert(0, str(REPO / "benchmarks"))

from sync_scale import FIGURES


def figure_lines(output: str) -> dict[str, str]:
    """Map each figure name to its printed line."""
    lines: dict[str, str] = {}
    for line in output.splitlines():
        for name in FIGURES:
            if line.startswith(name + " "):
                lines[name] = line
    return lines


def test_sync_scale_quick_prints_every_figure():
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], check=False, capture_output=True, text=True, cwd=REPO,
        stdin=subprocess.DEVNULL, timeout=60,
    )
    lines = figure_lines(completed.stdout)

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert sorted(lines) == sorted(FIGURES), completed.stdout
    for name, line in lines.items():
        assert line.rstrip().endswith(("PASS", "FAIL", "INFO")), name
    assert lines["initial sync IEM calls"].rstrip().endswith("PASS")
    assert lines["no changes: IEM calls"].rstrip().endswith("PASS")
    assert lines["1% changes: both sides agree"].rstrip().endswith("PASS")
    assert lines["adaptive: all writes landed"].rstrip().endswith("PASS")
