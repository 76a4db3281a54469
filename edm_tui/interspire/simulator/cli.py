"""Command line of the simulator, mounted by the main program as `edm-sync simulator`."""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

from edm_tui.i18n import _
from edm_tui.interspire.simulator.config import DUPLICATE_STYLES, FAULT_KINDS, ConfigError, parse_fault_option
from edm_tui.interspire.simulator.core import build_simulator
from edm_tui.interspire.simulator.render import DIALECTS
from edm_tui.interspire.simulator.server import API_PATH, HOST, SimulatorHTTPServer
from edm_tui.interspire.simulator.state import DEFAULT_TOKEN, DEFAULT_USERNAME

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator options to a parser."""
    parser.add_argument("--port", type=int, default=0, help=_("TCP port on 127.0.0.1; 0 picks a free one (default 0)"))
    parser.add_argument("--state", type=Path, metavar="FILE", help=_("state file to load, or to create when it does not exist"))
    parser.add_argument("--username", default=DEFAULT_USERNAME, help=_("XML username of a new state (default {name})").format(name=DEFAULT_USERNAME))
    parser.add_argument("--token", default=DEFAULT_TOKEN, help=_("XML token of a new state (default {token})").format(token=DEFAULT_TOKEN))
    parser.add_argument("--dialect", choices=DIALECTS, default="legacy", help=_("output of IEM 6.1 (legacy) or 6.2+ (modern); default legacy"))
    parser.add_argument(
        "--duplicate-style",
        choices=DUPLICATE_STYLES,
        default="message",
        help=_("error for a duplicate add: the 6.1.5+ message or the 6.1.4 bare subscriber id (default message)"),
    )
    parser.add_argument("--auth-delay", type=float, default=5.0, metavar="SECONDS", help=_("sleep after each failed login (default 5)"))
    parser.add_argument("--latency-ms", type=float, default=0, metavar="N", help=_("time each API request takes at least, its handling included, in milliseconds (default 0)"))
    parser.add_argument("--max-concurrency", type=int, metavar="N", help=_("API requests handled at once, others wait (default no limit)"))
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[:RATE]",
        help=_("inject a fault into a share RATE (0 to 1, default 1) of requests; repeatable; kinds: {kinds}").format(kinds=", ".join(FAULT_KINDS)),
    )
    parser.add_argument("--fault-methods", metavar="M1,M2", help=_("limit the faults to these request methods"))
    parser.add_argument("--slow-seconds", type=float, default=30.0, metavar="SECONDS", help=_("delay of the slow fault (default 30)"))
    parser.add_argument("--seed", type=int, help=_("random seed for fault choices and confirm codes"))
    parser.add_argument("--lists", metavar="ID:NAME,...", help=_('lists of a new state, for example "1:Newsletter,2:Other"'))
    parser.add_argument("--custom-fields", metavar="ID:NAME,...", help=_('text custom fields of a new state, for example "2:First name"'))
    parser.add_argument("--tls-cert", type=Path, metavar="FILE", help=_("serve HTTPS with this PEM certificate (needs --tls-key)"))
    parser.add_argument("--tls-key", type=Path, metavar="FILE", help=_("the PEM private key of --tls-cert"))


def run(args: argparse.Namespace) -> int:
    """Run the simulator in the foreground until SIGTERM or SIGINT; return the exit status."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        faults = _fault_rules(args)
        simulator = build_simulator(
            args.state,
            username=args.username,
            token=args.token,
            lists=args.lists,
            custom_fields=args.custom_fields,
            dialect=args.dialect,
            duplicate_style=args.duplicate_style,
            auth_delay=args.auth_delay,
            latency_ms=args.latency_ms,
            max_concurrency=args.max_concurrency,
            faults=faults,
            seed=args.seed,
        )
    except (ConfigError, TypeError) as error:
        print("edm-sync simulator: " + str(error), file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:
        print("edm-sync simulator: " + _("cannot load the state file {path}: {error}").format(path=args.state, error=error), file=sys.stderr)
        return 1

    if (args.tls_cert is None) != (args.tls_key is None):
        print("edm-sync simulator: " + _("--tls-cert and --tls-key must be given together"), file=sys.stderr)
        return 2
    try:
        server = SimulatorHTTPServer(args.port, simulator, tls_cert=args.tls_cert, tls_key=args.tls_key)
    except ssl.SSLError as error:
        print("edm-sync simulator: " + _("cannot load the TLS certificate {cert} and key {key}: {error}").format(
            cert=args.tls_cert, key=args.tls_key, error=error), file=sys.stderr)
        return 1
    except (OSError, OverflowError) as error:
        print("edm-sync simulator: " + _("cannot listen on {host}:{port}: {error}").format(host=HOST, port=args.port, error=error), file=sys.stderr)
        return 1

    stop = threading.Event()
    _install_signal_handlers(stop)
    simulator.start()
    thread = threading.Thread(target=server.serve_forever, name="iem-simulator", daemon=True)
    thread.start()
    print(f"listening on {server.scheme}://{HOST}:{server.port}{API_PATH}", flush=True)
    logger.info("IEM simulator started on port %d (state file: %s)", server.port, args.state or "none")
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    simulator.stopping.set()
    server.shutdown()
    server.server_close()
    simulator.stop()
    logger.info("IEM simulator stopped")
    return 0


def _fault_rules(args: argparse.Namespace) -> list[dict[str, Any]]:
    methods = [name.strip() for name in args.fault_methods.split(",") if name.strip()] if args.fault_methods else None
    rules = []
    for text in args.fault:
        rule = parse_fault_option(text).to_json()
        rule["methods"] = methods
        rule["slow_seconds"] = args.slow_seconds
        rules.append(rule)
    return rules


def _install_signal_handlers(stop: threading.Event) -> None:
    def request_stop(signum: int, _frame: object) -> None:
        logger.info("Received signal %d, saving state and stopping", signum)
        stop.set()

    try:
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
    except ValueError:
        logger.debug("Not in the main thread; SIGTERM and SIGINT handlers not installed")
