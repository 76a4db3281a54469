"""`edm-sync status` and `edm-sync run-now`: the command line as a client of the daemon."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from edm_tui.client import DaemonClient, DaemonError, DaemonUnavailable, default_socket_path
from edm_tui.i18n import _, format_datetime
from edm_tui.progress import ProgressPrinter
from edm_tui.summary import action_label, run_error_text, status_label

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_ALREADY_RUNNING = 0, 1, 2, 3
ALREADY_RUNNING = -32002
PERMISSION_DENIED = -32001


def _socket(args: argparse.Namespace) -> Path:
    """--socket, else the configuration's [daemon] socket (found as for every command, and read
    even when the rest of the file is invalid), else the default place."""
    if getattr(args, "socket", None):
        return Path(args.socket)
    from edm_tui.config import find_config_path, raw_setting

    raw = raw_setting(find_config_path(getattr(args, "config", None)), "daemon", "socket")
    if isinstance(raw, str) and raw.strip():
        return Path(raw).expanduser()
    return default_socket_path()


def _when(stamp: int | None) -> str:
    return format_datetime(stamp)


def print_status(status: dict[str, Any]) -> None:
    run = status.get("run")
    if run:
        line = _("Running: run {run_id} ({trigger}), {phase}").format(
            run_id=run["id"], trigger=run["trigger"], phase=run["phase"])
        if run.get("total"):
            line += f" {run['done']}/{run['total']}"
        print(line)
    else:
        print(_("Idle."))
    last = status.get("last_run")
    if last:
        print(_("Last run: {run_id} {status}, started {started}").format(
            run_id=last["id"], status=status_label(last["status"]), started=_when(last["started_at"])))
        if last.get("error"):
            print("  " + _("Reason: {error}").format(error=run_error_text(last)))
    else:
        print(_("Last run: none yet"))
    print(_("Next run: {when}").format(when=_when(status.get("next_run_at"))))
    if status.get("config_error"):
        print(_("Configuration problem: {error}").format(error=status["config_error"]))


async def _status(args: argparse.Namespace) -> int:
    client = await DaemonClient.connect(_socket(args), client_name="edm-sync status")
    try:
        status = await client.call("status")
    finally:
        await client.close()
    if args.json:
        print(json.dumps(status, ensure_ascii=False, sort_keys=True))
    else:
        print_status(status)
    return EXIT_OK


async def _run_now(args: argparse.Namespace) -> int:
    client = await DaemonClient.connect(_socket(args), client_name="edm-sync run-now")
    try:
        if args.wait:
            await client.subscribe("progress", "run_finished")
        answer = await client.call("run", allow_mass_changes=args.allow_mass_changes)
        run_id = answer["run_id"]
        if not args.wait:
            if args.json:
                print(json.dumps({"run_id": run_id}))
            else:
                print(_("Run {run_id} started; `edm-sync status` shows its progress.").format(run_id=run_id))
            return EXIT_OK
        finished = await _follow(client, run_id)
    finally:
        await client.close()

    if args.json:
        print(json.dumps(finished, ensure_ascii=False, sort_keys=True))
    else:
        print(_("Run {run_id}: {status}").format(run_id=run_id, status=status_label(finished["status"])))
        for action, by in sorted((finished.get("counts") or {}).items()):
            print(f"  {action_label(action)}: {by.get('succeeded', 0)}"
                  + (" (" + _("{n} failed").format(n=by["failed"]) + ")" if by.get("failed") else ""))
        if finished.get("error"):
            print("  " + _("Reason: {error}").format(error=run_error_text(finished)))
        if finished["status"] == "blocked":
            print("  " + _("Nothing was written. If the change is intended: edm-sync run-now --allow-mass-changes"))
    if finished["status"] == "succeeded" and not any(
        by.get("failed") for by in (finished.get("counts") or {}).values()
    ):
        return EXIT_OK
    return EXIT_UNAVAILABLE if finished["status"] == "failed" else EXIT_FAILED


async def _follow(client: DaemonClient, run_id: int) -> dict[str, Any]:
    from edm_tui.daemon.runner import ProgressEvent

    with ProgressPrinter() as printer:
        async for event in client.events():
            data = event.get("data") or {}
            if data.get("run_id") != run_id:
                continue
            if event.get("topic") == "progress":
                printer.update(ProgressEvent(data["phase"], data.get("done") or 0, data.get("total"), run_id))
            elif event.get("topic") == "run_finished":
                return data
    raise DaemonUnavailable(_("the daemon went away during run {run_id}").format(run_id=run_id))


def run_remote(args: argparse.Namespace) -> int:
    handler = _status if args.command == "status" else _run_now
    try:
        return asyncio.run(handler(args))
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except DaemonUnavailable as error:
        if getattr(args, "json", False):
            print(json.dumps({"error": "unavailable", "message": str(error)}))
        print(_("error: {message}").format(message=error), file=sys.stderr)
        if error.not_running:
            print(_("Start it with 'systemctl start edm-sync', or with 'edm-sync daemon' in a terminal."),
                  file=sys.stderr)
        return EXIT_UNAVAILABLE
    except DaemonError as error:
        if getattr(args, "json", False):
            print(json.dumps({"error": error.code, "message": error.message, "data": error.data}))
        if error.code == ALREADY_RUNNING:
            run_id = (error.data or {}).get("run_id")
            print(_("already running: run {run_id} is in progress; `edm-sync status` shows it").format(
                run_id=run_id), file=sys.stderr)
            return EXIT_ALREADY_RUNNING
        if error.code == PERMISSION_DENIED:
            print(_("error: not allowed: {reason}").format(reason=(error.data or {}).get("reason", error.message)),
                  file=sys.stderr)
            return EXIT_UNAVAILABLE
        problems = (error.data or {}).get("problems") or []
        print(_("error: {message}").format(message="; ".join(problems) or error.message), file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        print(_("stopped following; the run goes on in the daemon"), file=sys.stderr)
        return 130
