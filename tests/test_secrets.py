"""The IEM token and the MariaDB password never leave the configuration file.

One session runs every command, the daemon and the dashboard with unique secrets, including
failures that produce error messages (failed items, a wrong token, a wrong password, an
invalid file). Then every output is searched for the secrets in plain, URL-encoded, HTML- and
JSON-escaped and base64 forms. The outputs are stdout and stderr of each process, the
daemon's log in journal format, its log events and socket replies, and the dashboard's
screen. The files are all in the test's folder (history database with WAL and shm files,
state files, CSV exports) and the daemon's /proc cmdline and environ. Only the configuration
files the test wrote itself may contain the secrets.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input

from edm_tui.app import EdmTuiApp
from edm_tui.client import DaemonError
from edm_tui.daemon.logs import SecretFilter
from edm_tui.export import export_items, export_runs
from edm_tui.screens.config import ConfigScreen
from edm_tui.screens.dashboard import DashboardScreen
from edm_tui.widgets.config_form import SecretField
from tests import mariadb_support as mdb
from tests.daemon_support import DaemonProcess, add_subscribers, write_daemon_config
from tests.sync_support import Bench, base_state

T1 = 1_700_000_000


def secret_forms(secret: str) -> dict[str, bytes]:
    """Return the byte strings that reveal `secret` in any of the encodings an output may use."""
    raw = secret.encode("utf-8")
    forms = {
        "plain": raw,
        "url": quote(secret, safe="").encode(),
        "url-plus": quote_plus(secret, safe="").encode(),
        "html": html.escape(secret, quote=True).encode(),
        "json": json.dumps(secret)[1:-1].encode(),
        "repr": repr(secret)[1:-1].encode(),
    }
    for offset in range(3):
        # Inside a longer base64 value (such as "user:token") the encoding depends on where the
        # secret starts within a 3-byte group. Only the first and last 4 characters depend on
        # the bytes around it, so they are left out.
        encoded = base64.b64encode(b"\0" * offset + raw)
        core = encoded[4 if offset else 0:-4]
        forms[f"base64+{offset}"] = core
        forms[f"base64url+{offset}"] = core.translate(bytes.maketrans(b"+/", b"-_"))
    return forms


class Outputs:
    """Everything the session produced, by source, and where the secrets appear in it."""

    def __init__(self) -> None:
        self.sources: dict[str, bytes] = {}

    def add(self, name: str, data: str | bytes) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8", errors="surrogateescape")
        while name in self.sources:
            name += "'"
        self.sources[name] = data

    def add_process(self, name: str, done: subprocess.CompletedProcess) -> None:
        self.add(f"{name} stdout", done.stdout)
        self.add(f"{name} stderr", done.stderr)

    def add_json(self, name: str, value: Any) -> None:
        self.add(name, json.dumps(value, ensure_ascii=False))

    def add_files(self, folder: Path, label: str, *, skip: set[Path]) -> int:
        count = 0
        for path in sorted(folder.rglob("*")):
            if path in skip or not path.is_file():
                continue
            self.add(f"{label}: {path.relative_to(folder)}", path.read_bytes())
            count += 1
        return count

    def leaks(self, named_secrets: dict[str, str]) -> list[str]:
        found = []
        for secret_name, secret in named_secrets.items():
            for form_name, form in secret_forms(secret).items():
                for source, data in self.sources.items():
                    if form in data:
                        found.append(f"{secret_name} ({form_name}) in {source}")
        return found


def reset_auth(bench: Bench) -> None:
    """Forget the simulator's failed logins, so that wrong-token calls never add up to an IP ban."""
    httpx.post(f"{bench.sim_base}/_sim/reset-auth", timeout=10).raise_for_status()


def edm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edm_tui.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "LANG": "C.UTF-8", **(env or {})})


async def _daemon_session(daemon: DaemonProcess, outputs: Outputs, wrong_token: str, token: str,
                          export_dir: Path) -> None:
    """Call every socket method that returns data, with a failing run and a wrong-token run."""
    bench = daemon.bench
    listener = await daemon.client("events")
    await listener.subscribe()
    client = await daemon.client("calls")
    outputs.add_json("hello", client.hello)

    async def call(method: str, **params: Any) -> Any:
        try:
            result = await client.call(method, **params)
        except DaemonError as error:
            outputs.add_json(f"{method} error", {"code": error.code, "message": error.message, "data": error.data})
            return None
        outputs.add_json(method, result)
        return result

    async def run_and_wait() -> None:
        await call("run")
        for _attempt in range(600):
            status = await call("status")
            if status["state"] == "idle":
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the daemon stayed busy")

    for method in ("status", "config.get", "check", "iem.lists", "plan"):
        await call(method)
    await call("iem.fields", list_id=1)
    await call("config.validate", config={"interspire": {"token": "********", "list_id": "two"}})
    await call("config.validate", config={"magento": {"password": 12345}})
    await call("config.validate", config={"interspire": {"token": ""}})

    bench.sim_config(faults=[{"kind": "http500", "methods": ["AddSubscriberToList"], "count": 2}])
    await run_and_wait()

    # A wrong token through config.set and a reload, then the right one again.
    await call("config.set", config={"interspire": {"token": wrong_token}})
    await call("config.get")
    await run_and_wait()
    await call("check")
    await call("iem.lists")
    await call("config.set", config={"interspire": {"token": token}})
    reset_auth(bench)
    await run_and_wait()
    await call("cancel")

    runs = await call("runs", limit=50)
    for run in runs["runs"]:
        await call("run_items", run_id=run["id"], limit=1000)
        path, _count = await export_items(client.call, export_dir, run["id"])
        outputs.add(f"export {path.name}", path.read_bytes())
    path, _count = await export_runs(client.call, export_dir)
    outputs.add(f"export {path.name}", path.read_bytes())
    await call("status")
    await client.close()

    await listener.close()
    events = [event async for event in listener.events()]
    outputs.add_json("events", events)
    assert any(event["topic"] == "log" for event in events)


async def _wait_until(pilot: Pilot, condition: Any, awaited: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {awaited}")
        await pilot.pause(0.05)


async def _dashboard_session(daemon: DaemonProcess, outputs: Outputs) -> list[str]:
    """Open the settings screen, export what it shows, reveal both secret fields and export again."""
    app = EdmTuiApp(daemon.socket_path)
    inputs = []
    async with app.run_test(size=(120, 60)) as pilot:
        await _wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.status is not None,
                          "the dashboard")
        await pilot.press("c")
        await _wait_until(pilot, lambda: isinstance(app.screen, ConfigScreen) and app.screen.loaded,
                          "the settings screen")
        await pilot.pause(0.3)
        outputs.add("dashboard settings screen", app.export_screenshot())
        for field in app.screen.query(SecretField):
            inputs.append(field.query_one(Input).value)
            field.query_one(".reveal", Button).press()
        await pilot.pause(0.3)
        outputs.add("dashboard settings screen, revealed", app.export_screenshot())
        inputs += [field.query_one(Input).value for field in app.screen.query(SecretField)]
    return inputs


def test_no_secret_in_any_output(bench: Bench, daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    b = bench
    token = "iemtok" + secrets.token_hex(16)
    wrong_token = "badtok" + secrets.token_hex(16)
    wrong_password = "badpw&<'" + secrets.token_hex(12)
    state = base_state()
    state["users"][0]["token"] = token
    b.put_state(state)
    for n in range(4):
        b.add_row(f"s{n}@example.test", 1, T1)
    b.add_iem("gone@example.test", subscribedate=T1, unsubscribed=T1 + 10)
    b.add_row("gone@example.test", 1, T1)
    outputs = Outputs()

    with mdb.temporary_user(b.database, {"*": "ALL PRIVILEGES"}) as (user, password):
        named_secrets = {"token": token, "wrong token": wrong_token, "password": password,
                         "wrong password": wrong_password}
        b.overrides = {"interspire": {"token": token, "retries": 0},
                       "magento": {"user": user, "password": password}}
        config = b.write_config(b.tmp / "config.toml")
        wrong_token_config = b.write_config(b.tmp / "wrong-token.toml", interspire={"token": wrong_token})
        wrong_password_config = b.write_config(b.tmp / "wrong-password.toml",
                                               magento={"user": user, "password": wrong_password})
        invalid_config = b.tmp / "invalid.toml"
        invalid_config.write_text(config.read_text().replace("list_id = 1", 'list_id = "one"')
                                  + f'\n[extra]\ntokn = "{token}"\n')
        invalid_config.chmod(0o644)
        written_by_test = {config, wrong_token_config, wrong_password_config, invalid_config}

        # --- the command line ---
        outputs.add_process("example-config", edm("example-config"))
        outputs.add_process("check", edm("--config", str(config), "check"))
        outputs.add_process("check --json", edm("--config", str(config), "check", "--json"))
        outputs.add_process("plan -vv", edm("--config", str(config), "-vv", "plan"))
        outputs.add_process("plan --json", edm("--config", str(config), "plan", "--json"))
        b.sim_config(faults=[{"kind": "http500", "methods": ["AddSubscriberToList"], "count": 2},
                             {"kind": "notice", "methods": ["GetSubscribers"], "count": 1}])
        synced = edm("--config", str(config), "-vv", "sync", "--json")
        outputs.add_process("sync -vv", synced)
        assert json.loads(synced.stdout)["counts"]["add"] == {"failed": 2, "succeeded": 2}

        for name, path in (("wrong token", wrong_token_config), ("wrong password", wrong_password_config)):
            for command in ("check", "plan", "sync"):
                done = edm("--config", str(path), command)
                outputs.add_process(f"{command} with {name}", done)
                assert done.returncode == 2, (name, command, done.stdout, done.stderr)
        reset_auth(b)
        outputs.add_process("check with invalid file", edm("--config", str(invalid_config), "check"))

        b.add_row("late@example.test", 1, T1)
        outputs.add_process("sync", edm("--config", str(config), "sync"))
        for arguments in (("history",), ("history", "--json"), ("history", "1"), ("history", "1", "--json"),
                          ("history", "2", "--json"), ("history", "3", "--json")):
            outputs.add_process(" ".join(arguments), edm("--config", str(config), *arguments))

        # --- the daemon, with its output in the journal's format ---
        add_subscribers(b, 3)
        daemon.config_path = write_daemon_config(b, daemon.socket_path)
        written_by_test.add(daemon.config_path)
        daemon.log_path.touch()
        log_file = daemon.log_path.stat()
        monkeypatch.setenv("JOURNAL_STREAM", f"{log_file.st_dev}:{log_file.st_ino}")
        daemon.start()
        pid = daemon.process.pid
        outputs.add("daemon cmdline", Path(f"/proc/{pid}/cmdline").read_bytes())
        outputs.add("daemon environ", Path(f"/proc/{pid}/environ").read_bytes())
        export_dir = b.tmp / "export"
        export_dir.mkdir()
        asyncio.run(_daemon_session(daemon, outputs, wrong_token, token, export_dir))
        for arguments in (("status",), ("status", "--json"), ("run-now", "--wait"), ("run-now", "--json")):
            outputs.add_process(" ".join(arguments), edm("--socket", str(daemon.socket_path), "--config",
                                                         str(daemon.config_path), *arguments))
        daemon.wait_idle()
        secret_inputs = asyncio.run(_dashboard_session(daemon, outputs))
        files_while_running = outputs.add_files(b.tmp, "file while the daemon runs", skip=written_by_test)
        wal = b.tmp / "state" / "history.sqlite3-wal"
        wal_seen = wal.exists()
        daemon.stop()
        outputs.add("daemon log", daemon.log())
        files_after_stop = outputs.add_files(b.tmp, "file after stop", skip=written_by_test)

        assert daemon.log().startswith("<6>")
        assert wal_seen
        assert secret_inputs == ["", "", "", ""]
        assert files_while_running >= 5
        assert files_after_stop >= 4
        assert outputs.leaks(named_secrets) == []

        # The search itself works: the configuration file contains the token and the password.
        control = Outputs()
        control.add_files(b.tmp, "file", skip=written_by_test - {config})
        assert "token (plain) in file: config.toml" in control.leaks(named_secrets)
        assert "password (plain) in file: config.toml" in control.leaks(named_secrets)


def test_cli_log_lines_redact_secrets(tmp_path: Path) -> None:
    token = "iemtok" + secrets.token_hex(16)
    password = "pw-" + secrets.token_hex(12)
    config = tmp_path / "config.toml"
    config.write_text(f'[interspire]\nurl = "http://127.0.0.1:9/xml.php"\nusername = "u"\ntoken = "{token}"\n'
                      f'list_id = 1\n[magento]\ndatabase = "shop"\npassword = "{password}"\n')
    config.chmod(0o600)
    # The command line's own logging setup and configuration loading, then a log line that
    # carries both secrets, as a careless debug message would.
    code = ("import logging, sys; from edm_tui import cli; cli._setup_logging(2); "
            "args = cli.build_parser().parse_args(['--config', sys.argv[1], 'history']); "
            "config = cli._load(args); logging.getLogger('edm_sync.test').warning("
            "'token %s password %s', config.interspire.token, config.magento.password)")
    done = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "token ******** password ********" in done.stderr
    outputs = Outputs()
    outputs.add_process("log", done)
    assert outputs.leaks({"token": token, "password": password}) == []


def test_log_filter_masks_base64_secret() -> None:
    token = "iemtok" + secrets.token_hex(16)
    redactor = SecretFilter()
    redactor.add_secret(token)
    outputs = Outputs()
    for prefix in (b"", b"a:", b"ab:", b"abc:"):
        header = "Authorization: Basic " + base64.b64encode(prefix + token.encode()).decode()
        outputs.add(f"basic auth {prefix!r}", redactor.redact(header))
    assert outputs.leaks({"token": token}) == []
    assert redactor.redact("Authorization: Basic dGVzdGVyOnNob3J0") == "Authorization: Basic dGVzdGVyOnNob3J0"


def test_secret_forms_find_encoded_secret() -> None:
    token = "iemtok" + secrets.token_hex(16)
    outputs = Outputs()
    for prefix in (b"", b"a:", b"ab:", b"abc:"):
        outputs.add(f"basic auth {prefix!r}", b"Authorization: Basic " + base64.b64encode(prefix + token.encode()))
    outputs.add("form body", "usertoken=" + quote_plus(token))
    found_in = {leak.split(" in ", 1)[1] for leak in outputs.leaks({"token": token})}
    assert found_in == set(outputs.sources)
