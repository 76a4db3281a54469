"""TLS to IEM against the simulator serving HTTPS with a self-signed certificate.

Certificate checks are on by default: a self-signed certificate stops `sync`, `plan`, `check`
and the daemon with an error that names the URL and `interspire.verify_tls`. Turning the
check off works, with a warning at every start: on stderr for the command line, in the
daemon's log at start and on reload, and beside the field on the settings screen.

The IEM client also rejects responses with a DOCTYPE (entity expansion, "billion laughs").
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.widgets import Switch

from edm_tui.interspire.client import IemClient
from edm_tui.interspire.errors import IemBadResponse
from edm_tui.interspire.simulator import start_simulator
from edm_tui.interspire.xmlapi import DOCTYPE_MESSAGE
from edm_tui.screens.config import ConfigScreen
from edm_tui.widgets.config_form import FieldRow
from tests.daemon_support import DaemonProcess, NotifyListener, write_daemon_config
from tests.sync_support import Bench, base_state
from tests.test_tui_config import ScreenHost, open_screen, settle, text_of

T1 = 1_700_000_000
SETTING = "interspire.verify_tls"
WARNING = "interspire.verify_tls is false"


def edm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edm_tui.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "LANG": "C.UTF-8"})


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with `openssl`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not on PATH, so no test certificate can be made")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


class TlsBench(Bench):
    """A bench whose simulator serves HTTPS. The test's own requests trust the self-signed certificate."""

    cert: Path

    def sim_state(self) -> dict[str, Any]:
        return httpx.get(f"{self.sim_base}/_sim/state", timeout=30, verify=self._trust()).raise_for_status().json()

    def put_state(self, state: dict[str, Any]) -> None:
        clean = {k: v for k, v in state.items() if k not in ("stats", "log")}
        httpx.put(f"{self.sim_base}/_sim/state", json=clean, timeout=30, verify=self._trust()).raise_for_status()

    def _trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture
def tls_bench(database: str, tmp_path: Path, certificate: tuple[Path, Path]) -> Iterator[TlsBench]:
    cert, key = certificate
    with start_simulator(auth_delay=0, tls_cert=cert, tls_key=key) as simulator:
        bench = TlsBench(database, simulator.base, simulator.url, tmp_path, sim=simulator)
        bench.cert = cert
        bench.put_state(base_state())
        yield bench


def iem_emails(bench: Bench) -> list[str]:
    return sorted(row["emailaddress"] for row in bench.iem_rows())


# --- the command line ---


def test_simulator_serves_https(tls_bench: TlsBench) -> None:
    assert tls_bench.sim_url.startswith("https://127.0.0.1:")
    assert tls_bench.sim_state()["subscribers"] == []


def test_simulator_command_serves_https(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    process = subprocess.Popen(
        [sys.executable, "-m", "edm_tui.cli", "simulator", "--tls-cert", str(cert), "--tls-key", str(key)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "LANG": "C.UTF-8"})
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on https://127.0.0.1:")
        url = line.removeprefix("listening on ")
        state = httpx.get(url.replace("/xml.php", "/_sim/state"), timeout=10,
                          verify=ssl.create_default_context(cafile=str(cert)))
        assert state.status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url.replace("/xml.php", "/_sim/state"), timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=30)

    half = subprocess.run([sys.executable, "-m", "edm_tui.cli", "simulator", "--tls-cert", str(cert)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "LANG": "C.UTF-8"})
    assert half.returncode == 2
    assert "--tls-cert and --tls-key must be given together" in half.stderr


def test_cli_verification_on_rejects_self_signed(tls_bench: TlsBench) -> None:
    b = tls_bench
    b.add_row("tls@example.test", 1, T1)
    config = b.write_config(b.tmp / "config.toml", interspire={"retries": 0})

    for command in ("sync", "plan"):
        done = edm("--config", str(config), command)
        assert done.returncode == 2, (command, done.stderr)
        assert b.sim_url in done.stderr, command
        assert SETTING in done.stderr, command
        assert "certificate" in done.stderr, command
        assert WARNING not in done.stderr, command

    checked = edm("--config", str(config), "check", "--json")
    assert checked.returncode == 2
    results = {r["code"]: r for r in json.loads(checked.stdout)}
    assert results["iem_url"]["ok"] is False
    assert b.sim_url in results["iem_url"]["fix"]
    assert SETTING in results["iem_url"]["fix"]

    assert iem_emails(b) == []
    assert [row[3] for row in b.magento()] == [1]


def test_cli_verification_off_works_and_warns(tls_bench: TlsBench) -> None:
    b = tls_bench
    b.add_row("tls@example.test", 1, T1)
    config = b.write_config(b.tmp / "config.toml", interspire={"verify_tls": False})

    planned = edm("--config", str(config), "plan", "--json")
    assert planned.returncode == 0, planned.stderr
    assert WARNING in planned.stderr
    assert b.sim_url in planned.stderr
    assert iem_emails(b) == []

    synced = edm("--config", str(config), "sync", "--json")
    assert synced.returncode == 0, synced.stderr
    assert WARNING in synced.stderr
    assert json.loads(synced.stdout)["counts"] == {"add": {"succeeded": 1}}
    assert iem_emails(b) == ["tls@example.test"]

    checked = edm("--config", str(config), "check")
    assert checked.returncode == 0, checked.stdout
    assert WARNING in checked.stderr


# --- the daemon ---


def test_daemon_warns_at_start_and_reload(tls_bench: TlsBench) -> None:
    b = tls_bench
    b.add_row("tls@example.test", 1, T1)
    socket_path = b.tmp / "d.sock"
    notify = NotifyListener(b.tmp / "notify.sock")
    daemon = DaemonProcess(b, write_daemon_config(b, socket_path), socket_path, notify, b.tmp / "daemon.log")
    try:
        daemon.start()
        assert WARNING not in daemon.log()

        daemon.call("run")
        finished = daemon.wait_idle()["last_run"]
        assert finished["status"] == "failed"
        assert b.sim_url in finished["error"]
        assert iem_emails(b) == []
        log = daemon.log()
        assert f"the TLS certificate of {b.sim_url} could not be verified" in log
        assert f"set {SETTING} = false" in log

        assert daemon.call("config.set", config={"interspire": {"verify_tls": False}})["ok"] is True
        assert daemon.log().count(WARNING) == 1

        daemon.call("run")
        assert daemon.wait_idle()["last_run"]["status"] == "succeeded"
        assert iem_emails(b) == ["tls@example.test"]

        daemon.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while daemon.log().count(WARNING) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.log().count(WARNING) == 2

        daemon.stop()
        daemon.start()
        assert daemon.log().count(WARNING) == 3
    finally:
        daemon.stop()
        notify.close()


# --- the settings screen ---


async def test_config_screen_warns_beside_switch(tls_bench: TlsBench) -> None:
    b = tls_bench
    socket_path = b.tmp / "d.sock"
    notify = NotifyListener(b.tmp / "notify.sock")
    config = write_daemon_config(b, socket_path)
    b.write_config(config, interspire={"verify_tls": False}, schedule={"enabled": False},
                   daemon={"socket": str(socket_path)})
    daemon = DaemonProcess(b, config, socket_path, notify, b.tmp / "daemon.log")
    daemon.start()
    try:
        app = ScreenHost(socket_path)
        async with app.run_test(size=(120, 40)) as pilot:
            await open_screen(pilot, ConfigScreen())
            row = app.screen.query_one("#row-interspire-verify_tls", FieldRow)
            note = text_of(row.query_one(".field-note"))
            assert "not checked" in note
            assert row.has_class("-with-note")

            switch = row.query_one(Switch)
            switch.value = True
            await settle(pilot)
            assert not row.has_class("-with-note")
            assert text_of(row.query_one(".field-note")) == ""

            switch.value = False
            await settle(pilot)
            assert row.has_class("-with-note")
    finally:
        daemon.stop()
        notify.close()


# --- hostile XML: entity expansion ---


BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE response [\n <!ENTITY lol "lol">\n'
    + b"".join(
        f' <!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">\n'.encode()
        for n in range(1, 10)
    )
    + b"]>\n<response><status>SUCCESS</status><data><item><subscriberid>1</subscriberid>"
    b"<emailaddress>&lol9;</emailaddress></item></data></response>\n"
)

EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE response [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b"<response><status>SUCCESS</status><data><userid>1</userid><username>&xxe;</username></data></response>\n"
)


class _FixedBody(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def hostile_server() -> Iterator[tuple[str, type[_FixedBody]]]:
    """An HTTP server on 127.0.0.1 that responds to every POST with `handler.body`."""
    handler = type("Handler", (_FixedBody,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/xml.php", handler
    finally:
        server.shutdown()
        server.server_close()


async def _peak_while(call: Any) -> tuple[BaseException | None, int]:
    """Run `call()` and return what it raised and the peak of memory allocated meanwhile, in bytes."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        raised: BaseException | None = None
        try:
            await call()
        except Exception as error:  # noqa: BLE001 - the test inspects it
            raised = error
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return raised, peak


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "external-entity"])
async def test_client_rejects_entities(hostile_server: tuple[str, type[_FixedBody]], body: bytes) -> None:
    url, handler = hostile_server
    handler.body = body
    async with IemClient(url, "tester", "test-token-0123456789", retries=0, timeout=10) as client:
        raised, peak = await _peak_while(client.test_token)
        assert isinstance(raised, IemBadResponse)
        assert DOCTYPE_MESSAGE in str(raised)
        # Expanded, &lol9; would be "lol" 10**9 times (3 GB), so a peak under 5 MB shows that
        # nothing was expanded.
        assert peak < 5_000_000

        async def read_all() -> None:
            async for _row in client.iter_subscribers(1):
                pass

        raised, peak = await _peak_while(read_all)
        assert isinstance(raised, IemBadResponse)
        assert DOCTYPE_MESSAGE in str(raised)
        assert peak < 5_000_000
