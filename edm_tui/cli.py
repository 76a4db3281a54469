"""The `edm-sync` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edm_tui import __version__
from edm_tui.config import Config, ConfigError, find_config_path, load_config
from edm_tui.i18n import _, set_language, translate_argparse

EXIT_OK = 0
EXIT_FAILED_ITEMS = 1  # finished with failed items, or stopped by the safety brake
EXIT_CONFIG = 2  # configuration, connection or authentication error
EXIT_ALREADY_RUNNING = 3
EXIT_CANCELLED = 130  # stopped with Ctrl+C; the next run finishes the job

log = logging.getLogger("edm_sync")


def _add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--config", metavar="PATH", default=default,
        help=_("configuration file (default: $EDM_SYNC_CONFIG, /etc/edm-sync/config.toml, "
               "or the user's config directory)"),
    )
    parser.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                        help=_("log more detail to stderr (repeat for debug)"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edm-sync",
        description=_("Keeps Magento 2 newsletter subscribers and an Interspire Email Marketer list in step."),
    )
    parser.add_argument("--version", action="version", version=f"edm-sync {__version__}",
                        help=_("show program's version number and exit"))
    _add_common(parser, top=True)
    parser.add_argument("--socket", metavar="PATH", default=None,
                        help=_("the daemon's socket, for daemon, status and run-now"))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    sync = commands.add_parser("sync", help=_("run one full two-way sync now"))
    _add_common(sync, top=False)
    sync.add_argument("--json", action="store_true", help=_("print the run summary as one JSON object on stdout"))
    sync.add_argument("--allow-mass-changes", action="store_true",
                      help=_("let this one run through even if the safety brake would stop it"))

    plan = commands.add_parser("plan", help=_("show what a sync would change, without writing anything"))
    _add_common(plan, top=False)
    plan.add_argument("--json", action="store_true", help=_("print the plan as one JSON object on stdout"))
    plan.add_argument("--limit", type=_positive_int, default=10, metavar="N",
                      help=_("items shown per action (default 10)"))

    history = commands.add_parser("history", help=_("list past runs, or the items of one run"))
    _add_common(history, top=False)
    history.add_argument("run_id", nargs="?", type=int, metavar="RUN_ID", help=_("show the items of this run"))
    history.add_argument("--json", action="store_true", help=_("print JSON on stdout"))
    history.add_argument("--limit", type=_positive_int, metavar="N",
                         help=_("runs listed (default 20); items shown with RUN_ID (default all)"))

    check = commands.add_parser("check", help=_("test the configuration: IEM, the list, fields, Magento"))
    _add_common(check, top=False)
    check.add_argument("--json", action="store_true", help=_("print the results as JSON on stdout"))

    daemon = commands.add_parser("daemon", help=_("run the service: scheduled syncs and the socket API"))
    _add_common(daemon, top=False)
    daemon.add_argument("--socket", metavar="PATH", default=argparse.SUPPRESS,
                        help=_("socket path (default: [daemon] socket, else the runtime directory)"))

    status = commands.add_parser("status", help=_("show what the running daemon is doing"))
    _add_common(status, top=False)
    status.add_argument("--socket", metavar="PATH", default=argparse.SUPPRESS, help=_("the daemon's socket"))
    status.add_argument("--json", action="store_true", help=_("print the status as JSON on stdout"))

    run_now = commands.add_parser("run-now", help=_("ask the running daemon to sync now"))
    _add_common(run_now, top=False)
    run_now.add_argument("--socket", metavar="PATH", default=argparse.SUPPRESS, help=_("the daemon's socket"))
    run_now.add_argument("--wait", action="store_true", help=_("wait for the run to finish, showing progress"))
    run_now.add_argument("--allow-mass-changes", action="store_true",
                         help=_("let this one run through even if the safety brake would stop it"))
    run_now.add_argument("--json", action="store_true", help=_("print the result as JSON on stdout"))

    from edm_tui.interspire.simulator.cli import add_arguments as add_simulator_arguments

    simulator = commands.add_parser("simulator", help=_("run the IEM simulator (for tests and the sandbox)"))
    add_simulator_arguments(simulator)

    commands.add_parser("example-config", help=_("print a commented example configuration file"))

    sandbox = commands.add_parser(
        "sandbox", help=_("build a throwaway sample shop, start the IEM simulator and run a real sync"))
    sandbox.add_argument("--dir", default=".sandbox", metavar="DIR",
                         help=_("where the sandbox keeps its files (default .sandbox)"))
    sandbox.add_argument("--reset", action="store_true", help=_("drop the sample shop and start again"))
    sandbox.add_argument("--stop", action="store_true",
                         help=_("stop the sandbox's daemon and IEM simulator and exit"))
    sandbox.add_argument("--no-dashboard", action="store_true",
                         help=_("do not open the dashboard at the end (it opens only on a terminal)"))
    sandbox.add_argument("--subscribers", type=int, default=10_000, metavar="N",
                         help=_("subscriber rows in the sample shop (default 10000)"))
    sandbox.add_argument("--mysql-host", default="127.0.0.1", help=_("MariaDB host (default 127.0.0.1)"))
    sandbox.add_argument("--mysql-port", type=int, default=3306, help=_("MariaDB port (default 3306)"))
    sandbox.add_argument("--mysql-user", default="root", help=_("MariaDB user that may create databases"))
    sandbox.add_argument("--mysql-password", default="", help=_("that user's password"))
    sandbox.add_argument("--database", default="edm_sandbox", help=_("sample database name (default edm_sandbox)"))
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING
    if verbosity == 1:
        level = logging.INFO
    elif verbosity > 1:
        level = logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from edm_tui.daemon.logs import secret_filter

    for handler in logging.getLogger().handlers:
        handler.addFilter(secret_filter)


def _error(message: str) -> None:
    print(_("error: {message}").format(message=message), file=sys.stderr)


def _run_aborted(error: Exception, config: Config) -> None:
    """Print why a run could not start, and the fix when IEM's TLS certificate failed the check."""
    from edm_tui.checks import certificate_fix, is_certificate_failure

    _error(str(error))
    if is_certificate_failure(error):
        _error(certificate_fix(config.interspire.url))


def _load(args: argparse.Namespace) -> Config:
    given = getattr(args, "config", None) or os.environ.get("EDM_SYNC_CONFIG")
    config = load_config(find_config_path(getattr(args, "config", None)), searched=not given)
    from edm_tui.daemon.logs import add_secret

    add_secret(config.interspire.token)
    add_secret(config.magento.password)
    for warning in config.warnings:
        print(_("warning: {message}").format(message=warning), file=sys.stderr)
    return config


def _positive_int(text: str) -> int:
    """Parse a count given on the command line; argparse reports the error with the option's name."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(_("{value!r} is not a whole number").format(value=text)) from None
    if value < 1:
        raise argparse.ArgumentTypeError(_("must be at least 1, got {value}").format(value=value))
    return value


def main(argv: Sequence[str] | None = None) -> int:
    set_language()
    translate_argparse()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "daemon":  # the daemon sets up its own, journal-aware logging
        _setup_logging(getattr(args, "verbose", 0) or 0)

    if args.command is None:
        parser.print_help()
        return EXIT_CONFIG
    if args.command == "simulator":
        from edm_tui.interspire.simulator.cli import run as run_simulator

        return run_simulator(args)
    if args.command == "example-config":
        print((Path(__file__).parent / "config.example.toml").read_text(encoding="utf-8"), end="")
        return EXIT_OK
    if args.command == "sandbox":
        from edm_tui.sandbox import run_sandbox

        return run_sandbox(args)
    if args.command in ("status", "run-now"):
        from edm_tui.remote import run_remote

        return run_remote(args)
    if args.command == "daemon":
        return _cmd_daemon(args)

    try:
        config = _load(args)
    except ConfigError as error:
        _error(str(error))
        return EXIT_CONFIG
    set_language(config.language)

    handlers = {"sync": _cmd_sync, "plan": _cmd_plan, "history": _cmd_history, "check": _cmd_check}
    try:
        return handlers[args.command](args, config)
    except KeyboardInterrupt:
        _error(_("interrupted"))
        return EXIT_CANCELLED
    except BrokenPipeError:
        # The reader closed the pipe (`| head`), so nothing more is written to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


# --- sync and plan ---


def _cmd_sync(args: argparse.Namespace, config: Config) -> int:
    from edm_tui.daemon.runner import AlreadyRunning, RunAborted, RunControl, SyncRun
    from edm_tui.progress import ProgressPrinter
    from edm_tui.summary import print_run_summary

    async def go() -> Any:
        control = RunControl()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, control.stop, "cancelled")
        with ProgressPrinter() as printer:
            run = SyncRun(config, trigger="cli", allow_mass_changes=args.allow_mass_changes,
                          on_progress=printer.update, control=control)
            return await run.execute()

    try:
        result = asyncio.run(go())
    except AlreadyRunning as error:
        _error(_("already running: {reason}; nothing was changed").format(reason=error))
        return EXIT_ALREADY_RUNNING
    except RunAborted as error:
        _run_aborted(error, config)
        return EXIT_CONFIG

    if args.json:
        print(json.dumps(result.as_dict(), ensure_ascii=False, sort_keys=True))
    else:
        print_run_summary(result)
    if result.status == "failed" and result.error:
        _error(result.error)
    return result.exit_code


def _cmd_plan(args: argparse.Namespace, config: Config) -> int:
    from edm_tui.daemon.runner import RunAborted, SyncRun
    from edm_tui.progress import ProgressPrinter
    from edm_tui.summary import plan_as_dict, print_plan

    async def go() -> Any:
        with ProgressPrinter() as printer:
            return await SyncRun(config, dry_run=True, on_progress=printer.update).execute()

    try:
        result = asyncio.run(go())
    except RunAborted as error:
        _run_aborted(error, config)
        return EXIT_CONFIG
    if result.status == "failed":
        _error(result.error or "")
        return EXIT_CONFIG

    if args.json:
        print(json.dumps(plan_as_dict(result, args.limit), ensure_ascii=False, sort_keys=True))
    else:
        print_plan(result, args.limit)
    return EXIT_OK


# --- history ---


def _cmd_history(args: argparse.Namespace, config: Config) -> int:
    from edm_tui.daemon.history import HistoryStore
    from edm_tui.summary import print_items, print_runs

    path = config.storage.history_path
    if not path.exists():
        if args.json:
            print("[]" if args.run_id is None else "null")
        else:
            print(_("No runs yet: {path} does not exist. Run `edm-sync sync` first.").format(path=path))
        return EXIT_OK if args.run_id is None else EXIT_FAILED_ITEMS

    args.limit_given = args.limit is not None
    store = HistoryStore(path)
    try:
        if args.run_id is None:
            runs = store.runs(limit=args.limit or 20)
            if args.json:
                print(json.dumps([r.as_dict() for r in runs], ensure_ascii=False))
            else:
                print_runs(runs)
            return EXIT_OK

        run = store.run(args.run_id)
        if run is None:
            _error(_("there is no run {run_id}; `edm-sync history` lists the runs").format(run_id=args.run_id))
            return EXIT_FAILED_ITEMS
        items = store.items(run.id, limit=args.limit) if args.limit_given else list(store.iter_items(run.id))
        if args.json:
            print(json.dumps({"run": run.as_dict(), "items": [i.as_dict() for i in items]}, ensure_ascii=False))
        else:
            print_items(run, items)
            if args.limit_given and len(items) == args.limit:
                print("  " + _("The first {n} items; leave out --limit to list them all.").format(n=args.limit))
        return EXIT_OK
    finally:
        store.close()


# --- daemon ---


def _cmd_daemon(args: argparse.Namespace) -> int:
    from edm_tui.daemon.logs import setup_logging
    from edm_tui.daemon.rpc import SocketSetupError
    from edm_tui.daemon.service import Daemon

    # The daemon's socket replies and history are in English whatever the locale; each client
    # translates them into its own language.
    set_language("en")
    verbosity = getattr(args, "verbose", 0) or 0
    setup_logging(logging.DEBUG if verbosity > 1 else logging.INFO)
    socket_path = Path(args.socket) if getattr(args, "socket", None) else None
    daemon = Daemon(find_config_path(getattr(args, "config", None)), socket_path=socket_path)
    try:
        return asyncio.run(daemon.serve())
    except (OSError, SocketSetupError) as error:
        logging.getLogger("edm_sync.daemon").error("could not start: %s", error)
        _error(_("the daemon could not start: {error}").format(error=error))
        return EXIT_CONFIG


# --- check ---


def _cmd_check(args: argparse.Namespace, config: Config) -> int:
    from edm_tui.checks import run_checks

    results = asyncio.run(run_checks(config))
    if args.json:
        print(json.dumps([r.as_dict() for r in results], ensure_ascii=False))
    else:
        for result in results:
            mark = "✓" if result.ok else "✗"
            line = f"{mark} {result.title}: {result.detail}"
            if not result.ok and result.fix:
                line += "\n    " + _("fix: {fix}").format(fix=result.fix)
            print(line)
    return EXIT_OK if all(r.ok for r in results) else EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "build_parser"]
