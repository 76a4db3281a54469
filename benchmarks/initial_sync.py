"""Benchmark of the initial sync alone: N new subscribers into an empty IEM list.

A shorter companion of sync_scale.py for comparing changes to the write path. It builds a
throwaway MariaDB database (`edm_test_<random>`) with N guest subscribers, starts the
simulator with --latency-ms L and --max-concurrency C, runs `edm-sync sync` once with
`interspire.concurrency` = C and prints the wall time, its ratio to the bound N x L / C and
the CPU time of the edm-sync process per add. With --uvloop the edm-sync process runs on
uvloop's event loop (uvloop must be installed; it is not a dependency of edm-sync).

Usage: .venv/bin/python benchmarks/initial_sync.py [--n N] [--latency-ms L] [--cap C] [--uvloop]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx
import tomlkit
from sync_memory import Simulator, fill_magento, state_chunks, write_config
from sync_scale import at_least, positive_milliseconds

from tests import mariadb_support as mdb

UVLOOP_MAIN = ("import asyncio, sys, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
               "from edm_tui.cli import main; sys.exit(main())")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=at_least(1), default=20_000, help="Magento subscribers (default 20000)")
    parser.add_argument("--latency-ms", type=positive_milliseconds, default=20.0,
                        help="simulator time per call, in ms (default 20)")
    parser.add_argument("--cap", type=at_least(1), default=16,
                        help="calls the simulator serves at once, and edm-sync's concurrency (default 16)")
    parser.add_argument("--uvloop", action="store_true", help="run edm-sync on uvloop's event loop")
    args = parser.parse_args()
    if args.uvloop:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            parser.error("--uvloop needs uvloop: .venv/bin/pip install uvloop")

    database = mdb.create_database()
    simulator = Simulator(args.latency_ms, args.cap)
    try:
        fill_magento(database, args.n)
        httpx.put(f"{simulator.base}/_sim/state", content=state_chunks(0), timeout=60).raise_for_status()
        with tempfile.TemporaryDirectory(prefix="edm-initial-") as folder:
            config = write_config(Path(folder) / "config.toml", database, simulator.url, Path(folder) / "state")
            data = tomlkit.parse(config.read_text(encoding="utf-8"))
            data["interspire"]["concurrency"] = args.cap  # type: ignore[index]
            config.write_text(tomlkit.dumps(data), encoding="utf-8")

            entry = ["-c", UVLOOP_MAIN] if args.uvloop else ["-m", "edm_tui.cli"]
            before = os.times()
            started = time.monotonic()
            completed = subprocess.run([sys.executable, *entry, "--config", str(config), "sync", "--json"],
                                       cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            seconds = time.monotonic() - started
            after = os.times()
        if completed.returncode != 0:
            print(completed.stderr[-2000:], file=sys.stderr)
            return 1
    finally:
        simulator.stop()
        mdb.drop_database(database)

    bound = args.n * args.latency_ms / 1000 / args.cap
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    print(f"N = {args.n}, L = {args.latency_ms:g} ms, C = {args.cap}{', uvloop' if args.uvloop else ''}: "
          f"{seconds:.1f} s = {seconds / bound:.3f} x the bound {bound:.1f} s; "
          f"edm-sync CPU {cpu / args.n * 1000:.2f} ms per add")
    return 0


if __name__ == "__main__":
    sys.exit(main())
