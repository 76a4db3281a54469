"""The daemon as a real process: readiness, schedule, manual runs, signals, the socket API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edm_tui.client import DaemonError
from edm_tui.daemon.history import HistoryStore
from tests.daemon_support import DaemonProcess, add_subscribers, write_daemon_config
from tests.sync_support import Bench

T1 = 1_700_000_000




def history(b: Bench) -> list[tuple[int, str, str]]:
    store = HistoryStore(b.tmp / "state" / "history.sqlite3")
    try:
        return [(r.id, r.trigger, r.status) for r in reversed(store.runs())]
    finally:
        store.close()


# --- readiness and systemd ---


def test_ready_after_socket_and_history(daemon: DaemonProcess) -> None:
    daemon.watchdog_usec = 400_000
    daemon.start()
    assert daemon.socket_path.exists()
    assert oct(daemon.socket_path.stat().st_mode & 0o777) == "0o660"
    assert (daemon.bench.tmp / "state" / "history.sqlite3").exists()
    status = daemon.call("status")
    assert status["state"] == "idle"
    assert status["last_run"] is None
    assert status["next_run_at"] is None
    assert daemon.notify.wait_for("STATUS=").startswith("STATUS=idle")
    daemon.notify.wait_for("WATCHDOG=1", timeout=3)
    assert daemon.stop() == 0
    assert daemon.notify.wait_for("STOPPING=1")
    assert not daemon.socket_path.exists()


# --- manual runs ---


def test_manual_run_with_progress(daemon: DaemonProcess) -> None:
    b = daemon.bench
    add_subscribers(b, 30)
    daemon.start()

    async def go() -> list[dict]:
        client = await daemon.client()
        await client.subscribe("progress", "run_started", "run_finished")
        answer = await client.call("run")
        events = []
        async for event in client.events():
            events.append(event)
            if event["topic"] == "run_finished":
                break
        await client.close()
        assert answer["run_id"] == 1
        return events

    events = asyncio.run(go())
    topics = [e["topic"] for e in events]
    assert topics[0] == "run_started"
    assert "progress" in topics
    finished = events[-1]["data"]
    assert (finished["run_id"], finished["status"]) == (1, "succeeded")
    assert finished["counts"] == {"add": {"succeeded": 30}}
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    assert len(b.iem_rows()) == 30
    assert history(b) == [(1, "manual", "succeeded")]
    assert daemon.call("status")["last_run"]["id"] == 1


def test_second_request_during_run_refused(daemon: DaemonProcess) -> None:
    b = daemon.bench
    add_subscribers(b, 60)
    b.sim_config(latency_ms=30)
    daemon.start()
    first = daemon.call("run")
    with pytest.raises(DaemonError) as caught:
        daemon.call("run")
    assert caught.value.code == -32002
    assert caught.value.data == {"run_id": first["run_id"]}
    running = daemon.call("status")
    assert running["state"] == "running"
    assert running["run"]["id"] == first["run_id"]
    daemon.wait_idle()
    assert history(b) == [(1, "manual", "succeeded")]


def test_cli_run_now_wait_and_status(daemon: DaemonProcess) -> None:
    b = daemon.bench
    add_subscribers(b, 5)
    daemon.start()
    env = {**os.environ, "LANG": "C.UTF-8"}
    done = subprocess.run([sys.executable, "-m", "edm_tui.cli", "--config", str(daemon.config_path),
                           "run-now", "--wait", "--json"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    status = subprocess.run([sys.executable, "-m", "edm_tui.cli", "--config", str(daemon.config_path), "status"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert status.returncode == 0
    assert status.stdout.startswith("Idle.")
    assert "Last run: 1 succeeded" in status.stdout


def test_cli_without_daemon_says_how(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "edm_tui.cli", "status", "--socket", str(tmp_path / "none.sock")],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "LANG": "C.UTF-8"})
    assert done.returncode == 2
    assert "edm-sync daemon" in done.stderr
    assert str(tmp_path / "none.sock") in done.stderr


# --- schedule ---


def test_schedule_runs_by_itself(daemon: DaemonProcess) -> None:
    bench = daemon.bench
    write_daemon_config(bench, daemon.socket_path, enabled=True, interval="2s", catch_up_delay="0s")
    add_subscribers(bench, 3)
    daemon.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and [r[2] for r in history(bench)[:2]].count("succeeded") < 2:
        time.sleep(0.2)
    runs = history(bench)
    assert [r[1] for r in runs[:2]] == ["schedule", "schedule"]
    assert [r[2] for r in runs[:2]] == ["succeeded", "succeeded"]
    assert len(bench.iem_rows()) == 3


def test_overdue_run_catches_up_after_downtime(daemon: DaemonProcess) -> None:
    bench = daemon.bench
    store = HistoryStore(bench.tmp / "state" / "history.sqlite3")
    old = store.start_run("schedule")
    store.finish_run(old, "succeeded", counts={}, summary={})
    store.db.execute("UPDATE runs SET started_at = ?, finished_at = ?", (time.time() - 3 * 86400,) * 2)
    store.close()
    write_daemon_config(bench, daemon.socket_path, enabled=True, interval="24h", catch_up_delay="1s")
    daemon.start()
    status = daemon.call("status")
    assert status["next_run_at"] <= time.time() + 2
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(history(bench)) < 2:
        time.sleep(0.2)
    daemon.wait_idle()
    assert history(bench)[1][1:] == ("schedule", "succeeded")
    assert daemon.call("status")["next_run_at"] >= time.time() + 23 * 3600


def test_recent_run_not_repeated(daemon: DaemonProcess) -> None:
    bench = daemon.bench
    store = HistoryStore(bench.tmp / "state" / "history.sqlite3")
    recent = store.start_run("schedule")
    store.finish_run(recent, "succeeded", counts={}, summary={})
    store.close()
    write_daemon_config(bench, daemon.socket_path, enabled=True, interval="24h", catch_up_delay="0s")
    daemon.start()
    time.sleep(1.5)
    assert len(history(bench)) == 1
    assert daemon.call("status")["next_run_at"] >= time.time() + 23 * 3600


# --- signals ---


def test_sigterm_mid_run_then_restart_loses_nothing(daemon: DaemonProcess) -> None:
    b = daemon.bench
    add_subscribers(b, 120)
    b.sim_config(latency_ms=25)
    daemon.start()
    daemon.call("run")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and b.write_counts().get("AddSubscriberToList", 0) < 10:
        time.sleep(0.02)
    assert daemon.stop() == 0
    assert history(b) == [(1, "manual", "interrupted")]
    added = len(b.iem_rows())
    assert 10 <= added < 120

    b.sim_config(latency_ms=0)
    daemon.start()
    daemon.call("run")
    daemon.wait_idle()
    assert history(b) == [(1, "manual", "interrupted"), (2, "manual", "succeeded")]
    assert sorted(r["emailaddress"] for r in b.iem_rows()) == sorted(f"d{n}@example.test" for n in range(120))


def test_sighup_reload_good_and_bad(daemon: DaemonProcess) -> None:
    daemon.start()
    text = daemon.config_path.read_text()
    daemon.config_path.write_text(text.replace('interval = "24h"', 'interval = "12h"'))
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and daemon.call("status")["schedule"]["interval_seconds"] != 43200:
        time.sleep(0.1)
    status = daemon.call("status")
    assert status["schedule"]["interval_seconds"] == 43200
    assert status["config_error"] is None

    daemon.config_path.write_text(text.replace('interval = "24h"', 'interval = "soon"'))
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and daemon.call("status")["config_error"] is None:
        time.sleep(0.1)
    status = daemon.call("status")
    assert "schedule.interval" in status["config_error"]
    assert status["schedule"]["interval_seconds"] == 43200
    assert "keeping the previous configuration" in daemon.log()


# --- the socket API on the real daemon ---


def test_protocol_errors_do_not_drop_others(daemon: DaemonProcess) -> None:
    daemon.start()
    good = socket.socket(socket.AF_UNIX)
    good.connect(str(daemon.socket_path))
    bad = socket.socket(socket.AF_UNIX)
    bad.connect(str(daemon.socket_path))
    reader = good.makefile("rb")
    bad_reader = bad.makefile("rb")

    def send(sock: socket.socket, reader, payload: bytes) -> dict:  # noqa: ANN001
        sock.sendall(payload + b"\n")
        return json.loads(reader.readline())

    hello = b'{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocol":1,"client":"t"}}'
    assert send(good, reader, hello)["result"]["protocol"] == 1
    assert send(bad, bad_reader, hello)["result"]["protocol"] == 1
    assert send(bad, bad_reader, b"{not json")["error"]["code"] == -32700
    assert send(bad, bad_reader, b'{"jsonrpc":"2.0","id":2,"method":"nope"}')["error"]["code"] == -32601
    assert send(bad, bad_reader, b'{"jsonrpc":"2.0","id":3,"method":"status"}')["result"]["state"] == "idle"
    bad.sendall(b"x" * (2 << 20) + b"\n")
    assert json.loads(bad_reader.readline())["error"]["code"] == -32011
    assert send(good, reader, b'{"jsonrpc":"2.0","id":4,"method":"status"}')["result"]["state"] == "idle"
    good.close()
    bad.close()


def test_fifty_subscribers_get_the_run(daemon: DaemonProcess) -> None:
    b = daemon.bench
    add_subscribers(b, 20)
    daemon.start()

    async def go() -> list[str]:
        clients = [await daemon.client(f"c{n}") for n in range(50)]
        for client in clients:
            await client.subscribe("run_finished")
        await clients[0].call("run")

        async def finished(client) -> str:  # noqa: ANN001
            async for event in client.events():
                if event["topic"] == "run_finished":
                    return event["data"]["status"]
            return "lost"

        results = await asyncio.wait_for(asyncio.gather(*(finished(c) for c in clients)), 60)
        for client in clients:
            await client.close()
        return results

    assert asyncio.run(go()) == ["succeeded"] * 50


def test_config_get_masks_and_set_keeps_comments(daemon: DaemonProcess) -> None:
    daemon.config_path.write_text("# operator notes\n" + daemon.config_path.read_text())
    daemon.start()
    got = daemon.call("config.get")
    assert got["config"]["interspire"]["token"] == "********"
    assert got["config"]["magento"]["password"] in ("", "********")

    with pytest.raises(DaemonError) as caught:
        daemon.call("config.set", config={"interspire": {"list_id": "two"}})
    assert caught.value.code == -32006
    assert any("interspire.list_id" in p for p in caught.value.data["problems"])

    assert daemon.call("config.set", config={"interspire": {"list_id": 2, "token": "********"}})["ok"] is True
    text = daemon.config_path.read_text()
    assert text.startswith("# operator notes\n")
    assert "list_id = 2" in text
    assert "test-token-0123456789" in text
    assert oct(daemon.config_path.stat().st_mode & 0o777) == "0o600"
    assert daemon.call("status")["config_error"] is None


def test_history_and_pickers_through_socket(daemon: DaemonProcess) -> None:
    b = daemon.bench
    add_subscribers(b, 3)
    daemon.start()
    daemon.call("run")
    daemon.wait_idle()
    runs = daemon.call("runs", limit=10)
    assert [r["id"] for r in runs["runs"]] == [1]
    assert runs["next_before_id"] is None
    items = daemon.call("run_items", run_id=1, limit=2)
    assert [i["email"] for i in items["items"]] == ["d0@example.test", "d1@example.test"]
    assert items["next_after_id"] == items["items"][-1]["id"]
    assert [r["id"] for r in daemon.call("runs", email="d2@")["runs"]] == [1]
    assert daemon.call("runs", email="nobody")["runs"] == []
    assert [x["listid"] for x in daemon.call("iem.lists")["lists"]] == [1, 2]
    assert [f["fieldid"] for f in daemon.call("iem.fields", list_id=1)["fields"]] == [2, 3]
    plan = daemon.call("plan")
    assert plan["actions"] == {}
    assert all(r["ok"] for r in daemon.call("check")["results"])


def test_cancel_stops_run(daemon: DaemonProcess) -> None:
    b = daemon.bench
    add_subscribers(b, 100)
    b.sim_config(latency_ms=30)
    daemon.start()
    daemon.call("run")
    time.sleep(0.5)
    assert daemon.call("cancel")["run_id"] == 1
    daemon.wait_idle()
    assert history(b) == [(1, "manual", "cancelled")]
    with pytest.raises(DaemonError) as caught:
        daemon.call("cancel")
    assert caught.value.code == -32003


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second user")
def test_read_only_user_refused_writes(daemon: DaemonProcess) -> None:
    import grp
    import pwd
    import shutil
    import tempfile

    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    folder = Path(tempfile.mkdtemp(prefix="edm-sock-"))  # outside pytest's private 0700 folder
    folder.chmod(0o755)
    socket_path = folder / "d.sock"
    bench = daemon.bench
    bench.write_config(daemon.config_path, schedule={"enabled": False},
                       daemon={"socket": str(socket_path), "socket_group": group})
    daemon.socket_path = socket_path

    def as_nobody(method: str, **params: object) -> dict:
        """Calls hello and one method from a forked child that has become nobody."""
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: drop to nobody, talk to the socket, report through the pipe
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                sock = socket.socket(socket.AF_UNIX)
                sock.connect(str(socket_path))
                lines = sock.makefile("rb")
                sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocol":1,"client":"t"}}\n')
                hello = json.loads(lines.readline())
                request = {"jsonrpc": "2.0", "id": 2, "method": method, "params": params}
                sock.sendall(json.dumps(request).encode() + b"\n")
                answer = json.loads(lines.readline())
                os.write(write_end, json.dumps({"hello": hello, "answer": answer}).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        os.waitpid(pid, 0)
        with os.fdopen(read_end, "rb") as pipe:
            return json.loads(pipe.read())

    try:
        daemon.start()
        status = as_nobody("status")
        assert status["hello"]["result"]["can_write"] is False
        assert status["answer"]["result"]["state"] == "idle"
        refused = as_nobody("run")
        assert refused["answer"]["error"]["code"] == -32001
        assert "root" in refused["answer"]["error"]["data"]["reason"]
        assert history(bench) == []

        config_before = daemon.config_path.read_text()
        refused = as_nobody("config.set", config={"interspire": {"list_id": 2}})
        assert refused["answer"]["error"]["code"] == -32001
        assert "root" in refused["answer"]["error"]["data"]["reason"]
        assert daemon.config_path.read_text() == config_before

        got = as_nobody("config.get")
        assert got["answer"]["result"]["config"]["interspire"]["token"] == "********"
    finally:
        daemon.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_log_events_and_second_daemon_refused(daemon: DaemonProcess) -> None:
    b = daemon.bench
    add_subscribers(b, 2)
    daemon.start()

    async def go() -> list[dict]:
        client = await daemon.client()
        await client.subscribe("log", "run_finished")
        await client.call("run")
        logs = []
        async for event in client.events():
            if event["topic"] == "log":
                logs.append(event["data"])
            if event["topic"] == "run_finished":
                break
        await client.close()
        return logs

    logs = asyncio.run(go())
    assert any(entry["run_id"] == 1 and entry["message"].startswith("started") for entry in logs), logs
    assert all("test-token-0123456789" not in entry["message"] for entry in logs)

    second = subprocess.run([sys.executable, "-m", "edm_tui.cli", "--config", str(daemon.config_path), "daemon"],
                            capture_output=True, text=True, timeout=30, env={**os.environ, "LANG": "C.UTF-8"})
    assert second.returncode == 2
    assert str(daemon.socket_path) in second.stderr
    assert daemon.call("status")["state"] == "idle"


def test_status_finds_socket_through_environment(daemon: DaemonProcess) -> None:
    daemon.start()
    env = {**os.environ, "LANG": "C.UTF-8", "EDM_SYNC_CONFIG": str(daemon.config_path)}
    env.pop("XDG_RUNTIME_DIR", None)
    done = subprocess.run([sys.executable, "-m", "edm_tui.cli", "status", "--json"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "idle"
    assert "Warning" not in done.stderr


def test_invalid_config_daemon_keeps_configured_paths(daemon: DaemonProcess) -> None:
    bench = daemon.bench
    daemon.config_path.write_text(daemon.config_path.read_text().replace("list_id = 1", 'list_id = "one"'))
    daemon.start()
    status = daemon.call("status")
    assert "interspire.list_id" in status["config_error"]
    assert status["history_path"] == str(bench.tmp / "state" / "history.sqlite3")
    log = daemon.log()
    assert log.count("configuration not loaded") == 1


def test_interrupted_run_finished_soon_after_restart(daemon: DaemonProcess) -> None:
    bench = daemon.bench
    store = HistoryStore(bench.tmp / "state" / "history.sqlite3")
    run_id = store.start_run("schedule")
    store.finish_run(run_id, "interrupted", counts={}, summary={}, error="the service stopped")
    store.close()
    write_daemon_config(bench, daemon.socket_path, enabled=True, interval="24h", catch_up_delay="1s")
    daemon.start()
    assert daemon.call("status")["next_run_at"] <= time.time() + 2
