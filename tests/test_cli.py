"""The `edm-sync` command line as a user runs it: a real process, real exit codes and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sync_support import Bench

T1 = 1_700_000_000


def edm(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edm_tui.cli", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "LANG": "C.UTF-8", **(env or {})},
        cwd=cwd,
    )


def test_sync_json_and_exit_zero(bench: Bench) -> None:
    b = bench
    b.add_row("cli@example.test", 1, T1)
    config = b.write_config(b.tmp / "config.toml")
    done = edm("sync", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "succeeded"
    assert summary["counts"] == {"add": {"succeeded": 1}}
    assert summary["history"] == str(b.tmp / "state" / "history.sqlite3")
    assert "Writing" in done.stderr  # plain progress lines when stderr is not a terminal


def test_sync_human_summary(bench: Bench) -> None:
    b = bench
    b.add_row("cli@example.test", 1, T1)
    config = b.write_config(b.tmp / "config.toml")
    done = edm("--config", str(config), "sync")
    assert done.returncode == 0, done.stderr
    assert "Run 1: succeeded" in done.stdout
    assert "added to IEM: 1" in done.stdout
    assert f"edm-sync --config {config} history 1" in done.stdout


def test_second_sync_says_nothing_to_change(bench: Bench) -> None:
    b = bench
    b.add_row("cli@example.test", 1, T1)
    config = b.write_config(b.tmp / "config.toml")
    edm("--config", str(config), "sync")
    done = edm("--config", str(config), "sync")
    assert done.returncode == 0
    assert "Nothing to change" in done.stdout


def test_failed_items_exit_one(bench: Bench) -> None:
    b = bench
    b.add_iem("x" * 140 + "@example.test", subscribedate=T1)
    config = b.write_config(b.tmp / "config.toml")
    done = edm("--config", str(config), "sync", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["status"] == "partial"


def test_bad_config_exit_two_lists_all(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[interspire]\nurl = "nope"\nlist_id = 0\n[magento]\nport = "x"\n')
    done = edm("sync", "--config", str(config))
    assert done.returncode == 2
    for key in ("interspire.url", "interspire.list_id", "magento.port", "interspire.token", "magento.database"):
        assert key in done.stderr
    assert done.stdout == ""


def test_config_from_environment(bench: Bench) -> None:
    b = bench
    config = b.write_config(b.tmp / "env-config.toml")
    done = edm("history", env={"EDM_SYNC_CONFIG": str(config)})
    assert done.returncode == 0
    assert "No runs yet" in done.stdout


def test_auth_error_exit_two(bench: Bench) -> None:
    b = bench
    config = b.write_config(b.tmp / "config.toml", interspire={"token": "wrong"})
    done = edm("--config", str(config), "sync")
    assert done.returncode == 2
    assert "interspire.token" in done.stderr
    assert "wrong" not in done.stderr


def test_brake_exit_one_and_override(bench: Bench) -> None:
    b = bench
    for n in range(3):
        b.add_row(f"e{n}@example.test", 1, T1)
    config = b.write_config(b.tmp / "config.toml")
    assert edm("--config", str(config), "sync").returncode == 0
    state = b.sim_state()
    state["subscribers"] = []
    b.put_state(state)
    blocked = edm("--config", str(config), "sync")
    assert blocked.returncode == 1
    assert "--allow-mass-changes" in blocked.stdout
    allowed = edm("--config", str(config), "sync", "--allow-mass-changes", "--json")
    assert allowed.returncode == 0
    assert json.loads(allowed.stdout)["counts"] == {"add": {"succeeded": 3}}


def test_plan_writes_nothing(bench: Bench) -> None:
    b = bench
    for n in range(12):
        b.add_row(f"p{n}@example.test", 1, T1)
    b.add_iem("only-iem@example.test", subscribedate=T1)
    config = b.write_config(b.tmp / "config.toml")
    done = edm("--config", str(config), "plan", "--json", "--limit", "3")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["actions"]["add"]["count"] == 12
    assert plan["actions"]["add"]["direction"] == "to_iem"
    assert len(plan["actions"]["add"]["first"]) == 3
    assert plan["actions"]["create_guest"]["count"] == 1
    assert b.iem_rows()[0]["emailaddress"] == "only-iem@example.test"
    assert len(b.iem_rows()) == 1
    assert len(b.magento()) == 12
    human = edm("--config", str(config), "plan")
    assert "added to IEM (Magento → IEM): 12" in human.stdout
    assert "… and 2 more" in human.stdout


def test_history_list_and_items(bench: Bench) -> None:
    b = bench
    b.add_row("h@example.test", 1, T1)
    config = b.write_config(b.tmp / "config.toml")
    edm("--config", str(config), "sync")
    runs = json.loads(edm("history", "--config", str(config), "--json").stdout)
    assert [(r["id"], r["status"], r["trigger"]) for r in runs] == [(1, "succeeded", "cli")]
    one = json.loads(edm("history", "1", "--config", str(config), "--json").stdout)
    assert [(i["email"], i["action"], i["outcome"]) for i in one["items"]] == [("h@example.test", "add", "succeeded")]
    missing = edm("history", "9", "--config", str(config))
    assert missing.returncode == 1
    assert "no run 9" in missing.stderr


def test_check_all_passed(bench: Bench) -> None:
    b = bench
    config = b.write_config(b.tmp / "config.toml")
    done = edm("check", "--config", str(config), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(done.stdout)
    assert [r["code"] for r in results] == [
        "iem_url", "iem_token", "iem_list_1", "iem_list_2", "iem_firstname_field_id",
        "iem_lastname_field_id", "magento_connect", "magento_tables", "magento_websites", "magento_rights"]
    assert all(r["ok"] for r in results)


def test_check_names_each_failure(bench: Bench) -> None:
    b = bench
    config = b.write_config(b.tmp / "config.toml", interspire={"list_id": 9, "firstname_field_id": 77},
                            magento={"table_prefix": "m2_"})
    done = edm("check", "--config", str(config))
    assert done.returncode == 2
    lines = done.stdout.splitlines()
    assert any(line.startswith("✗ IEM list 9") for line in lines)
    assert any("field 77 not found" in line for line in lines)
    assert any(line.startswith("✗ Magento tables") and "m2_newsletter_subscriber" in line for line in lines)
    assert done.stdout.count("fix:") == 3


def test_unknown_website_fails_check_and_run(bench: Bench) -> None:
    b = bench
    subscriber_id = b.add_row("site@example.test", 1, T1, store_id=2)
    config = b.write_config(b.tmp / "config.toml", interspire={"website_lists": {"29": 2}})
    checked = edm("check", "--config", str(config))
    synced = edm("sync", "--config", str(config))

    assert checked.returncode == 2
    assert "✗ Websites in interspire.website_lists: website 29 not found; the shop's websites are 1, 2" \
        in checked.stdout.splitlines()
    assert synced.returncode == 2
    assert ("interspire.website_lists names website 29, which the shop does not have (its websites are 1, 2); "
            "correct the website ids, then start the run again") in synced.stdout + synced.stderr
    assert b.iem_rows() == []
    assert b.status_of(subscriber_id) == 1


def test_check_unreachable_iem(bench: Bench) -> None:
    b = bench
    config = b.write_config(b.tmp / "config.toml", interspire={"url": "http://127.0.0.1:9/xml.php"})
    done = edm("check", "--config", str(config))
    assert done.returncode == 2
    assert done.stdout.startswith("✗ IEM reachable")
    assert ("    fix: check the host name and port in interspire.url, and that this machine can reach that "
            "server (DNS, firewall, proxy)") in done.stdout.splitlines()


@pytest.mark.parametrize("args", [["--help"], ["sync", "--help"], ["simulator", "--help"]])
def test_help_works(args: list[str]) -> None:
    done = edm(*args)
    assert done.returncode == 0
    assert "usage:" in done.stdout


def test_ctrl_c_cancels_and_next_run_finishes(bench: Bench) -> None:
    import signal
    import time

    b = bench
    for n in range(80):
        b.add_row(f"c{n}@example.test", 1, T1)
    config = b.write_config(b.tmp / "config.toml", interspire={"concurrency": 2})
    b.sim_config(latency_ms=150)  # 80 writes take 6 s or more: time for plan and history to run meanwhile
    process = subprocess.Popen([sys.executable, "-m", "edm_tui.cli", "--config", str(config), "sync", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and b.write_counts().get("AddSubscriberToList", 0) < 5:
        time.sleep(0.02)

    planned = edm("--config", str(config), "plan", "--json")
    assert planned.returncode == 0
    runs = json.loads(edm("--config", str(config), "history", "--json").stdout)
    assert [r["status"] for r in runs] == ["running"]

    process.send_signal(signal.SIGINT)
    out, _err = process.communicate(timeout=30)
    assert process.returncode == 130
    summary = json.loads(out)
    assert summary["status"] == "cancelled"
    assert "next run" in summary["error"]

    b.sim_config(latency_ms=0)
    finished = edm("--config", str(config), "sync", "--json")
    assert finished.returncode == 0
    assert len(b.iem_rows()) == 80
    history_file = b.tmp / "state" / "history.sqlite3"
    assert oct(history_file.stat().st_mode & 0o777) == "0o600"
    assert oct(history_file.parent.stat().st_mode & 0o777) == "0o700"


def test_example_config_printed() -> None:
    done = edm("example-config")
    assert done.returncode == 0
    assert "[interspire]" in done.stdout
    assert "verify_tls" in done.stdout
