"""End-to-end test bench: a real MariaDB database, the IEM simulator over HTTP, real runs."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import tomlkit

from edm_tui.config import Config, parse_config
from edm_tui.daemon.runner import RunResult, SyncRun
from tests import mariadb_support as mdb

TOKEN = "test-token-0123456789"
USERNAME = "tester"


def base_state() -> dict[str, Any]:
    return {
        "users": [{"userid": 1, "username": USERNAME, "token": TOKEN, "status": 1, "admin": True}],
        "lists": [
            {"listid": 1, "name": "Main", "createdate": 1_600_000_000, "ownerid": 1},
            {"listid": 2, "name": "Second", "createdate": 1_600_000_000, "ownerid": 1},
        ],
        "custom_fields": [
            {"fieldid": 2, "name": "First name", "fieldtype": "text", "required": False, "options": []},
            {"fieldid": 3, "name": "Last name", "fieldtype": "text", "required": False, "options": []},
        ],
        "subscribers": [],
        "next_subscriberid": 1,
    }


@dataclass
class Bench:
    database: str
    sim_base: str
    sim_url: str
    tmp: Path
    prefix: str = ""
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    sim: Any = None  # the in-process simulator handle

    # --- configuration and runs ---

    def config(self, **sections: dict[str, Any]) -> Config:
        return parse_config(self.config_data(**sections))

    def write_config(self, path: Path, **sections: dict[str, Any]) -> Path:
        path.write_text(tomlkit.dumps(self.config_data(**sections)), encoding="utf-8")
        path.chmod(0o600)
        return path

    def config_data(self, **sections: dict[str, Any]) -> dict[str, Any]:
        params = mdb.adapter_params()
        data: dict[str, Any] = {
            "interspire": {"url": self.sim_url, "username": USERNAME, "token": TOKEN, "list_id": 1,
                           "firstname_field_id": 2, "lastname_field_id": 3, "website_lists": {"2": 2},
                           "retries": 2, "timeout": 10},
            "magento": {"host": params["host"], "port": params["port"], "user": params["user"],
                        "password": params["password"], "database": self.database,
                        "table_prefix": self.prefix},
            "sync": {},
            "storage": {"state_dir": str(self.tmp / "state")},
        }
        for section, values in {**self.overrides, **sections}.items():
            data[section] = {**data.get(section, {}), **values}
        return data

    def write_counts(self) -> dict[str, int]:
        """Requests per IEM method so far, read in process (cheap enough to poll)."""
        return self.sim.simulator.recorder.stats()["by_method"]

    def sync(self, **options: Any) -> RunResult:
        config = options.pop("config", None) or self.config()
        return asyncio.run(SyncRun(config, **options).execute())

    def plan(self) -> RunResult:
        return asyncio.run(SyncRun(self.config(), dry_run=True).execute())

    # --- Magento side ---

    def connect(self):  # noqa: ANN201 - a PyMySQL connection
        return mdb.connect(self.database)

    def add_row(self, email: str | None, status: int, changed_at: int | None = None, *,
                store_id: int | None = 1, customer_id: int = 0) -> int:
        conn = self.connect()
        try:
            return mdb.insert_subscriber(conn, email, store_id, status, changed_at, customer_id,
                                         table_prefix=self.prefix)
        finally:
            conn.close()

    def add_customer(self, email: str, website_id: int, firstname: Any, lastname: Any) -> int:
        conn = self.connect()
        try:
            return mdb.insert_customer(conn, email, website_id, firstname, lastname, table_prefix=self.prefix)
        finally:
            conn.close()

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        conn = self.connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement.replace("{p}", self.prefix), params)
                return list(cursor.fetchall())
        finally:
            conn.close()

    def magento(self) -> list[tuple]:
        """(subscriber_id, email, store_id, status, customer_id) of every row."""
        return self.sql("SELECT subscriber_id, subscriber_email, store_id, subscriber_status, customer_id "
                        "FROM `{p}newsletter_subscriber` ORDER BY subscriber_id")

    def status_of(self, subscriber_id: int) -> int:
        return self.sql("SELECT subscriber_status FROM `{p}newsletter_subscriber` WHERE subscriber_id = %s",
                        (subscriber_id,))[0][0]

    def changed_at_of(self, subscriber_id: int) -> int | None:
        value = self.sql("SELECT UNIX_TIMESTAMP(change_status_at) FROM `{p}newsletter_subscriber` "
                         "WHERE subscriber_id = %s", (subscriber_id,))[0][0]
        return None if value is None else int(value)

    # --- IEM side ---

    def sim_state(self) -> dict[str, Any]:
        return httpx.get(f"{self.sim_base}/_sim/state", timeout=30).raise_for_status().json()

    def put_state(self, state: dict[str, Any]) -> None:
        clean = {k: v for k, v in state.items() if k not in ("stats", "log")}
        httpx.put(f"{self.sim_base}/_sim/state", json=clean, timeout=30).raise_for_status()

    def sim_config(self, **values: Any) -> None:
        httpx.post(f"{self.sim_base}/_sim/config", json=values, timeout=10).raise_for_status()

    def reset_stats(self) -> None:
        httpx.post(f"{self.sim_base}/_sim/reset-stats", timeout=10).raise_for_status()

    def add_iem(self, email: str, list_id: int = 1, *, confirmed: bool = True, subscribedate: int = 1_600_000_000,
                unsubscribed: int = 0, bounced: int = 0, customfields: dict[str, str] | None = None) -> int:
        state = self.sim_state()
        sid = state["next_subscriberid"]
        state["subscribers"].append({
            "subscriberid": sid, "listid": list_id, "emailaddress": email, "format": "h",
            "confirmed": confirmed, "subscribedate": subscribedate, "requestdate": subscribedate,
            "unsubscribed": unsubscribed, "bounced": bounced, "confirmcode": "c" * 32,
            "customfields": customfields or {},
        })
        state["next_subscriberid"] = sid + 1
        self.put_state(state)
        return sid

    def set_iem(self, email: str, list_id: int = 1, **values: Any) -> None:
        state = self.sim_state()
        for row in state["subscribers"]:
            if row["listid"] == list_id and row["emailaddress"].lower() == email.lower():
                row.update(values)
        self.put_state(state)

    def iem(self, list_id: int | None = None) -> dict[str, dict[str, Any]]:
        """IEM rows keyed by lower-cased email (of one list, or of list 1 by default)."""
        wanted = 1 if list_id is None else list_id
        return {r["emailaddress"].lower(): r for r in self.sim_state()["subscribers"] if r["listid"] == wanted}

    def iem_rows(self) -> list[dict[str, Any]]:
        return self.sim_state()["subscribers"]

    def write_calls(self) -> list[dict[str, Any]]:
        return self.sim_state().get("log", [])


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
