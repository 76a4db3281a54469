"""The daemon's socket API methods. Results are language-neutral: codes and data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomlkit
import tomlkit.exceptions

from edm_tui.config import ConfigError, parse_config
from edm_tui.daemon.rpc import (
    ALREADY_RUNNING,
    INVALID_CONFIG,
    INVALID_PARAMS,
    NOT_RUNNING,
    RpcError,
    RpcServer,
)
from edm_tui.daemon.runner import AlreadyRunning, RunAborted, SyncRun
from edm_tui.i18n import message_dict

if TYPE_CHECKING:
    from edm_tui.daemon.peers import Peer
    from edm_tui.daemon.service import Daemon

MASK = "********"
SECRET_KEYS = {("interspire", "token"), ("magento", "password")}
MAX_RUNS_PAGE = 500
MAX_ITEMS_PAGE = 1000


def register_methods(server: RpcServer, daemon: Daemon) -> None:
    api = DaemonApi(daemon)
    server.add_method("status", api.status)
    server.add_method("run", api.run, write=True)
    server.add_method("cancel", api.cancel, write=True)
    server.add_method("plan", api.plan)
    server.add_method("runs", api.runs)
    server.add_method("run_items", api.run_items)
    server.add_method("config.get", api.config_get)
    server.add_method("config.validate", api.config_validate)
    server.add_method("config.set", api.config_set, write=True)
    server.add_method("check", api.check)
    server.add_method("iem.lists", api.iem_lists)
    server.add_method("iem.fields", api.iem_fields)


SQLITE_MAX_INTEGER = 2**63 - 1  # larger ids and times cannot be compared with the history's columns


def _int(params: dict[str, Any], name: str, default: int | None = None, *, low: int = 0,
         high: int = SQLITE_MAX_INTEGER) -> int | None:
    value = params.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RpcError(INVALID_PARAMS, f"{name} must be a whole number of at least {low} and at most {high}")
    return value


def _strings(params: dict[str, Any], name: str) -> list[str]:
    value = params.get(name, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RpcError(INVALID_PARAMS, f"{name} must be a list of strings")
    return value


def _config_dict(document: tomlkit.TOMLDocument) -> dict[str, Any]:
    data = document.unwrap()
    for section, key in SECRET_KEYS:
        if isinstance(data.get(section), dict) and data[section].get(key):
            data[section][key] = MASK
    return data


class DaemonApi:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    @property
    def store(self):  # noqa: ANN201 - the daemon's HistoryStore
        if self.daemon.store is None:
            reason = self.daemon.history_error or "the history database is not open"
            raise RpcError(INVALID_CONFIG, "the history is not available", {"problems": [reason]})
        return self.daemon.store

    def _config(self):  # noqa: ANN202 - the loaded Config
        if self.daemon.config is None:
            raise RpcError(INVALID_CONFIG, "the configuration is not valid",
                           {"problems": [self.daemon.config_error or "no configuration"]})
        return self.daemon.config

    # --- state and runs ---

    async def status(self, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        return self.daemon.status()

    async def run(self, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        allow = params.get("allow_mass_changes", False)
        if not isinstance(allow, bool):
            raise RpcError(INVALID_PARAMS, "allow_mass_changes must be true or false")
        try:
            run_id = await self.daemon.start_run("manual", allow_mass_changes=allow)
        except AlreadyRunning:
            active = self.daemon.active
            raise RpcError(ALREADY_RUNNING, "a run is already in progress",
                           {"run_id": active.run_id if active else None}) from None
        except RunAborted as error:
            raise RpcError(INVALID_CONFIG, "the run could not start", {"problems": [str(error)]}) from None
        return {"run_id": run_id}

    async def cancel(self, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        active = self.daemon.active
        if active is None:
            raise RpcError(NOT_RUNNING, "no run is in progress")
        active.control.stop("cancelled")
        return {"run_id": active.run_id}

    async def plan(self, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        from edm_tui.summary import plan_as_dict

        limit = _int(params, "limit", 20, low=1, high=1000)
        try:
            result = await SyncRun(self._config(), dry_run=True, store=self.store).execute()
        except RunAborted as error:
            raise RpcError(INVALID_CONFIG, "the plan could not be made", {"problems": [str(error)]}) from None
        if result.status == "failed":
            raise RpcError(INVALID_CONFIG, "the plan could not be made", {"problems": [result.error]})
        return plan_as_dict(result, limit or 20)

    async def runs(self, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        limit = _int(params, "limit", 50, low=1, high=MAX_RUNS_PAGE) or 50
        email = params.get("email")
        if email is not None and not isinstance(email, str):
            raise RpcError(INVALID_PARAMS, "email must be a string")
        runs = self.store.query_runs(
            limit=limit, before_id=_int(params, "before_id"), statuses=_strings(params, "status"),
            triggers=_strings(params, "trigger"), since=_int(params, "since"), until=_int(params, "until"),
            email=email or None,
        )
        return {"runs": [r.as_dict() for r in runs],
                "next_before_id": runs[-1].id if len(runs) == limit else None}

    async def run_items(self, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        run_id = _int(params, "run_id", low=1)
        if run_id is None:
            raise RpcError(INVALID_PARAMS, "run_id is required")
        if self.store.run(run_id) is None:
            raise RpcError(INVALID_PARAMS, f"there is no run {run_id}")
        limit = _int(params, "limit", 200, low=1, high=MAX_ITEMS_PAGE) or 200
        email = params.get("email")
        if email is not None and not isinstance(email, str):
            raise RpcError(INVALID_PARAMS, "email must be a string")
        items = self.store.query_items(
            run_id, limit=limit, after_id=_int(params, "after_id", 0) or 0,
            outcomes=_strings(params, "outcome"), actions=_strings(params, "action"), email=email or None,
        )
        return {"items": [i.as_dict() for i in items],
                "next_after_id": items[-1].id if len(items) == limit else None}

    # --- configuration ---

    async def config_get(self, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        path = self.daemon.config_path
        try:
            document = tomlkit.parse(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"path": str(path), "config": {}, "error": self.daemon.config_error}
        return {"path": str(path), "config": _config_dict(document), "error": self.daemon.config_error}

    def _merged(self, changes: Any) -> tomlkit.TOMLDocument:
        """Return the file's document with the changes applied. Masked secrets keep their value."""
        if not isinstance(changes, dict) or not all(isinstance(v, dict) for v in changes.values()):
            raise RpcError(INVALID_PARAMS, "config must be an object of sections, each an object of keys")
        path = self.daemon.config_path
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        document = tomlkit.parse(text)
        for section, values in changes.items():
            table = document.get(section)
            if table is None:
                table = tomlkit.table()
                document[section] = table
            for key, value in values.items():
                if (section, key) in SECRET_KEYS and value == MASK:
                    continue
                if value is None:
                    table.pop(key, None)
                    continue
                try:
                    table[key] = value
                except tomlkit.exceptions.ConvertError:
                    raise RpcError(INVALID_PARAMS, f"config.{section}.{key} is not a TOML value "
                                                   "(null inside a list or table)") from None
        return document

    def _problems(self, document: tomlkit.TOMLDocument) -> dict[str, list[Any]]:
        """Return the problems of a configuration: English texts, and the messages for clients to translate."""
        try:
            parse_config(document.unwrap(), self.daemon.config_path)
        except ConfigError as error:
            return {"problems": error.problems, "messages": [message_dict(m) for m in error.messages]}
        return {"problems": [], "messages": []}

    async def config_validate(self, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        found = self._problems(self._merged(params.get("config", {})))
        return {"ok": not found["problems"], **found}

    async def config_set(self, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        document = self._merged(params.get("config"))
        found = self._problems(document)
        if found["problems"]:
            raise RpcError(INVALID_CONFIG, "the configuration is not valid", found)
        write_private(self.daemon.config_path, tomlkit.dumps(document))
        await self.daemon.reload()
        return {"ok": True, "path": str(self.daemon.config_path)}

    # --- checks and IEM pickers ---

    async def check(self, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        from edm_tui.checks import run_checks

        results = await run_checks(self._config())
        return {"results": [r.as_dict() for r in results]}

    def _iem(self):  # noqa: ANN202 - an IemClient
        from edm_tui.interspire.client import IemClient

        i = self._config().interspire
        return IemClient(i.url, i.username, i.token, timeout=min(i.timeout, 30.0), retries=1,
                         verify=i.verify_tls)

    async def iem_lists(self, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        from edm_tui.interspire.errors import IemError

        try:
            async with self._iem() as client:
                lists = await client.get_lists()
        except IemError as error:
            raise RpcError(INVALID_CONFIG, "IEM could not be asked for its lists",
                           {"problems": [f"{type(error).__name__}: {error.message}"]}) from None
        return {"lists": [{"listid": x.listid, "name": x.name, "subscribecount": x.subscribecount}
                          for x in lists]}

    async def iem_fields(self, params: dict[str, Any], peer: Peer) -> dict[str, Any]:
        from edm_tui.interspire.errors import IemError

        list_id = _int(params, "list_id", self._config().interspire.list_id, low=1)
        try:
            async with self._iem() as client:
                fields = await client.get_custom_fields(list_id or 1)
        except IemError as error:
            raise RpcError(INVALID_CONFIG, "IEM could not be asked for the list's custom fields",
                           {"problems": [f"{type(error).__name__}: {error.message}"]}) from None
        return {"fields": [{"fieldid": f.fieldid, "name": f.name, "fieldtype": f.fieldtype} for f in fields]}


def write_private(path: Path, text: str) -> None:
    """Writes a file atomically with mode 0600: a temporary file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
