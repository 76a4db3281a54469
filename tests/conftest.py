"""Shared fixtures: a fresh MariaDB database and a fresh IEM simulator per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import mariadb_support as mdb
from tests.daemon_support import DaemonProcess, NotifyListener, write_daemon_config
from tests.sync_support import Bench, base_state


@pytest.fixture
def database() -> Iterator[str]:
    name = mdb.create_database()
    try:
        yield name
    finally:
        mdb.drop_database(name)


@pytest.fixture
def dialect() -> str:
    """The simulator's output dialect; modules that test both override this with params."""
    return "legacy"


@pytest.fixture
def daemon(bench: Bench) -> Iterator[DaemonProcess]:
    """A daemon process on the bench, not started yet; stopped at the end of the test."""
    socket_path = bench.tmp / "d.sock"
    notify = NotifyListener(bench.tmp / "notify.sock")
    process = DaemonProcess(bench, write_daemon_config(bench, socket_path), socket_path, notify,
                            bench.tmp / "daemon.log")
    try:
        yield process
    finally:
        process.stop()
        notify.close()


@pytest.fixture
def bench(database: str, tmp_path: Path, dialect: str) -> Iterator[Bench]:
    from edm_tui.interspire.simulator import start_simulator

    with start_simulator(auth_delay=0, dialect=dialect) as simulator:
        bench = Bench(database, simulator.base, simulator.url, tmp_path, sim=simulator)
        bench.put_state(base_state())
        yield bench
