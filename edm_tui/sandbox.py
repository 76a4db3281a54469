"""`edm-sync sandbox`: a throwaway sample shop, the IEM simulator and a real sync.

Everything lives in one folder (default `.sandbox`): the simulator's state and log, the
configuration file and the history. The sample database is a separate database on the local
MariaDB. Running it again reuses both and simply syncs again; `--reset` starts over.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymysql

from edm_tui.daemon.spill import process_exists
from edm_tui.i18n import _

SANDBOX_USERNAME = "sandbox"
SANDBOX_TOKEN = "sandbox-token-0123456789abcdef"  # a throwaway token for the local simulator only
SIMULATOR_START_TIMEOUT = 20.0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


OWNER_TABLE = "edm_sandbox_owner"  # marks a sample database with the sandbox folder that built it


def _connect(args: argparse.Namespace) -> pymysql.Connection:
    return pymysql.connect(host=args.mysql_host, port=args.mysql_port, user=args.mysql_user,
                           password=args.mysql_password, connect_timeout=5, autocommit=True)


def _database_owner(args: argparse.Namespace) -> str | None:
    """Return the sandbox folder that built the database.

    The result is "" for a database that no sandbox built, and None when it does not exist.
    """
    conn = _connect(args)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (args.database,))
            if cursor.fetchone() is None:
                return None
            cursor.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                           (args.database, OWNER_TABLE))
            if cursor.fetchone() is None:
                return ""
            cursor.execute(f"SELECT folder FROM `{args.database}`.`{OWNER_TABLE}` LIMIT 1")
            row = cursor.fetchone()
            return row[0] if row else ""
    finally:
        conn.close()


def _recreate_database(args: argparse.Namespace, folder: Path) -> None:
    conn = _connect(args)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{args.database}`")
            cursor.execute(f"CREATE DATABASE `{args.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
            cursor.execute(f"CREATE TABLE `{args.database}`.`{OWNER_TABLE}` (folder VARCHAR(1024) NOT NULL)")
            cursor.execute(f"INSERT INTO `{args.database}`.`{OWNER_TABLE}` VALUES (%s)", (str(folder),))
    finally:
        conn.close()


def _build(args: argparse.Namespace, folder: Path) -> None:
    from edm_tui.magento.sampledata import generate_iem_list, generate_shop, iem_list_counts, load_shop

    _say(_("Building the sample shop: {n} subscribers in database {database} ...").format(
        n=args.subscribers, database=args.database))
    shop = generate_shop(seed=2026, subscribers=args.subscribers, reference_time=int(time.time()))
    _recreate_database(args, folder)
    load_shop({"host": args.mysql_host, "port": args.mysql_port, "user": args.mysql_user,
               "password": args.mysql_password}, args.database, shop)

    rows = generate_iem_list(shop, seed=2026)
    for row in rows:
        row["confirmed"] = row["confirmed"] in ("1", 1, True)
    state = {
        "users": [{"userid": 1, "username": SANDBOX_USERNAME, "token": SANDBOX_TOKEN, "status": 1, "admin": True}],
        "lists": [
            {"listid": 1, "name": "Hírlevél (Main Website)", "createdate": 1_600_000_000, "ownerid": 1},
            {"listid": 2, "name": "Hírlevél (Second Website)", "createdate": 1_600_000_000, "ownerid": 1},
        ],
        "custom_fields": [
            {"fieldid": 2, "name": "Keresztnév", "fieldtype": "text", "required": False, "options": []},
            {"fieldid": 3, "name": "Vezetéknév", "fieldtype": "text", "required": False, "options": []},
        ],
        "subscribers": rows,
        "next_subscriberid": max((r["subscriberid"] for r in rows), default=0) + 1,
    }
    (folder / "iem-state.json").write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
    history = folder / "state" / "history.sqlite3"
    for path in (history, Path(f"{history}-wal"), Path(f"{history}-shm")):
        path.unlink(missing_ok=True)
    c = shop.counts
    _say(_("  Magento: {rows} subscriber rows ({customers} of customers, {guests} of guests); "
           "status 1: {s1}, 3: {s3}, 2: {s2}, 4: {s4}; {duplicates} duplicate rows; "
           "{out} rows outside any website").format(
        rows=c["subscriber_rows"], customers=c["customer_subscriber_rows"], guests=c["guest_subscriber_rows"],
        s1=c["status_1_rows"], s3=c["status_3_rows"], s2=c["status_2_rows"], s4=c["status_4_rows"],
        duplicates=c["duplicate_rows"], out=c["store_0_rows"] + c["store_null_rows"]))
    iem = iem_list_counts(rows)
    for list_id in (1, 2):
        _say(_("  IEM list {list_id}: {rows} rows, {active} active, {unsubscribed} unsubscribed, "
               "{bounced} bounced").format(
            list_id=list_id, rows=iem[f"list_{list_id}_rows"],
            active=iem[f"list_{list_id}_active_confirmed"] + iem[f"list_{list_id}_active_unconfirmed"],
            unsubscribed=iem[f"list_{list_id}_unsubscribed"], bounced=iem[f"list_{list_id}_bounced"]))


def _running_simulator(folder: Path) -> tuple[int, int] | None:
    info = folder / "simulator.json"
    if not info.exists():
        return None
    data = json.loads(info.read_text())
    if process_exists(data["pid"]):
        return data["pid"], data["port"]
    return None


def _stop_simulator(folder: Path) -> bool:
    running = _running_simulator(folder)
    if running is None:
        return False
    os.kill(running[0], signal.SIGTERM)
    for _attempt in range(50):
        if not process_exists(running[0]):
            break
        time.sleep(0.1)
    (folder / "simulator.json").unlink(missing_ok=True)
    return True


def _start_simulator(folder: Path) -> int:
    running = _running_simulator(folder)
    if running is not None:
        return running[1]

    log_path = folder / "simulator.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "edm_tui.cli", "simulator", "--port", "0",
         "--state", str(folder / "iem-state.json"), "--auth-delay", "5"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + SIMULATOR_START_TIMEOUT
    while time.monotonic() < deadline:
        for line in log_path.read_text().splitlines():
            if line.startswith("listening on http://127.0.0.1:"):
                port = int(line.split(":")[2].split("/")[0])
                (folder / "simulator.json").write_text(json.dumps({"pid": process.pid, "port": port}))
                return port
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(_("the IEM simulator did not start; see {path}").format(path=log_path))


def _running_daemon(folder: Path) -> int | None:
    info = folder / "daemon.json"
    if not info.exists():
        return None
    pid = json.loads(info.read_text())["pid"]
    return pid if process_exists(pid) else None


def _stop_daemon(folder: Path) -> bool:
    pid = _running_daemon(folder)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    for _attempt in range(100):
        if not process_exists(pid):
            break
        time.sleep(0.1)
    (folder / "daemon.json").unlink(missing_ok=True)
    return True


def _start_daemon(folder: Path, config_path: Path) -> Path:
    """Starts the daemon in the background, or makes a running one reread its configuration."""
    socket_path = folder / "edm-sync.sock"
    pid = _running_daemon(folder)
    if pid is not None:
        os.kill(pid, signal.SIGHUP)
        return socket_path

    log = open(folder / "daemon.log", "a")
    process = subprocess.Popen(
        [sys.executable, "-m", "edm_tui.cli", "--config", str(config_path), "daemon"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    (folder / "daemon.json").write_text(json.dumps({"pid": process.pid}))
    deadline = time.monotonic() + SIMULATOR_START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if socket_path.exists():
            return socket_path
        time.sleep(0.1)
    raise RuntimeError(_("the daemon did not start; see {path}").format(path=folder / "daemon.log"))


def _write_config(args: argparse.Namespace, folder: Path, port: int) -> Path:
    path = folder / "config.toml"
    text = f"""# edm-sync sandbox configuration: a sample shop and the local IEM simulator.
[interspire]
url = "http://127.0.0.1:{port}/xml.php"
username = "{SANDBOX_USERNAME}"
token = "{SANDBOX_TOKEN}"
list_id = 1
firstname_field_id = 2
lastname_field_id = 3
concurrency = 8
timeout = 30

[interspire.website_lists]
"2" = 2

[magento]
host = "{args.mysql_host}"
port = {args.mysql_port}
user = "{args.mysql_user}"
password = "{args.mysql_password}"
database = "{args.database}"
table_prefix = ""

[sync]
import_new_subscribers = true
bounced_is_unsubscribed = true
add_to_autoresponders = true

[storage]
state_dir = "{folder / 'state'}"

[schedule]
interval = "24h"

[daemon]
socket = "{folder / 'edm-sync.sock'}"
"""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
    return path


def run_sandbox(args: argparse.Namespace) -> int:
    folder = Path(args.dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)

    if args.stop:
        daemon_stopped = _stop_daemon(folder)
        stopped = _stop_simulator(folder)
        _say(_("Daemon stopped.") if daemon_stopped else _("The sandbox's daemon was not running."))
        _say(_("Simulator stopped.") if stopped else _("The sandbox's simulator was not running."))
        return 0

    try:
        owner = _database_owner(args)
    except pymysql.MySQLError as error:
        _say(_("error: MariaDB at {host}:{port} refused the connection ({error}); start it, or pass "
               "--mysql-host/--mysql-user/--mysql-password").format(
            host=args.mysql_host, port=args.mysql_port, error=error))
        return 2

    if owner == "" or (owner is not None and owner != str(folder) and not args.reset):
        if owner:
            _say(_("error: database {database} belongs to the sandbox in {owner}; use --database NAME for a "
                   "sandbox of your own, or --reset to rebuild it here").format(database=args.database, owner=owner))
        else:
            _say(_("error: database {database} exists and was not made by a sandbox; it is left alone. "
                   "Use --database NAME to choose another name").format(database=args.database))
        return 2

    fresh = args.reset or owner is None or not (folder / "iem-state.json").exists()

    if fresh:
        _stop_daemon(folder)
        _stop_simulator(folder)
        _build(args, folder)
    else:
        _say(_("Reusing the sample shop in {database} (use --reset to start over).").format(database=args.database))

    port = _start_simulator(folder)
    config_path = _write_config(args, folder, port)
    _say(_("IEM simulator: http://127.0.0.1:{port}/xml.php (state in {path})").format(
        port=port, path=folder / "iem-state.json"))
    _say(_("Configuration: {path}").format(path=config_path))
    _say("")

    from edm_tui.cli import main as cli_main

    code = cli_main(["--config", str(config_path), "sync"])
    socket_path = _start_daemon(folder, config_path)
    _say("")
    _say(_("Daemon: running in the background, socket {path}, log {log}").format(
        path=socket_path, log=folder / "daemon.log"))

    if sys.stdin.isatty() and sys.stdout.isatty() and not args.no_dashboard:
        _say(_("Opening the dashboard (q quits it; the daemon goes on) ..."))
        time.sleep(1.0)
        from edm_tui.app import main as dashboard_main

        dashboard_main(["--socket", str(socket_path), "--config", str(config_path)])

    _say("")
    _say(_("Try next:"))
    for line in (
        f"edm-tui --socket {socket_path}",
        f"edm-sync --config {config_path} run-now --wait",
        f"edm-sync --config {config_path} plan",
        f"edm-sync --config {config_path} sync",
        f"edm-sync --config {config_path} history",
        f"edm-sync --config {config_path} check",
        "./run sandbox --stop",
    ):
        _say(f"  .venv/bin/{line}" if line.startswith("edm-") else f"  {line}")
    return code


__all__ = ["run_sandbox"]
