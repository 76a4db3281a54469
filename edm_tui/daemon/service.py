"""`edm-sync daemon`: the long-lived service that runs the sync on schedule and on request.

One asyncio process: the scheduler, at most one sync run at a time, the socket API for the
dashboard and scripts, and the systemd notification protocol (ready, status, watchdog,
stopping). SIGTERM ends a running sync at the next item boundary and records it as
interrupted; SIGHUP reloads the configuration and keeps the old one when the new is invalid.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edm_tui import __version__
from edm_tui.checks import is_certificate_failure
from edm_tui.client import default_socket_path
from edm_tui.config import Config, ConfigError, load_config
from edm_tui.daemon.history import HistoryStore, history_open_failure, history_write_failure
from edm_tui.daemon.logs import LogBuffer
from edm_tui.daemon.notify import Notifier, watchdog_loop
from edm_tui.daemon.peers import AccessPolicy
from edm_tui.daemon.rpc import RpcServer
from edm_tui.daemon.runner import (
    AlreadyRunning,
    ProgressEvent,
    RunAborted,
    RunControl,
    RunResult,
    SyncRun,
)
from edm_tui.daemon.schedule import next_run_at

log = logging.getLogger("edm_sync.daemon")

SCHEDULER_TICK = 1.0  # seconds between checks of the schedule


@dataclass
class ActiveRun:
    """The run in progress and what the dashboard shows about it."""

    trigger: str
    control: RunControl
    started_at: float
    task: asyncio.Task | None = None
    run_id: int | None = None
    phase: str = "starting"
    done: int = 0
    total: int | None = None
    phase_started: float = field(default_factory=time.monotonic)
    sync: SyncRun | None = None  # its counts per action and outcome grow as items finish
    started: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None  # why the run ended before it got an id

    def rate(self) -> float | None:
        elapsed = time.monotonic() - self.phase_started
        if self.phase != "write" or elapsed <= 0 or self.done == 0:
            return None
        return self.done / elapsed

    def eta_seconds(self) -> float | None:
        rate = self.rate()
        if rate is None or self.total is None:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def as_dict(self) -> dict[str, Any]:
        rate = self.rate()
        eta = self.eta_seconds()
        return {
            "id": self.run_id,
            "trigger": self.trigger,
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "rate": round(rate, 2) if rate is not None else None,
            "eta_seconds": round(eta, 1) if eta is not None else None,
            "started_at": int(self.started_at),
            "counts": self.counts(),
        }

    def counts(self) -> dict[str, dict[str, int]]:
        if self.sync is None:
            return {}
        return {action: dict(by) for action, by in self.sync.counts.items()}


class Daemon:
    def __init__(
        self,
        config_path: Path,
        *,
        socket_path: Path | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config_path = config_path.absolute()
        self.config: Config | None = None
        self.config_error: str | None = None
        self.socket_override = socket_path
        self.notifier = notifier or Notifier()
        self.store: HistoryStore | None = None
        self.history_error: str | None = None  # why the history database cannot be opened
        self.server: RpcServer | None = None
        self.active: ActiveRun | None = None
        self.next_run: float | None = None
        self.stopping = asyncio.Event()
        self.started_monotonic = time.monotonic()
        self.loop_alive = time.monotonic()

    # --- configuration ---

    def load(self) -> bool:
        """Loads the configuration file; keeps the previous one when the new one is invalid."""
        try:
            config = load_config(self.config_path)
        except ConfigError as error:
            self.config_error = str(error)
            log.error("configuration not loaded: %s", error)
            return False
        for warning in config.warnings:
            log.warning("%s", warning)
        self.config = config
        self.config_error = None
        self._register_secrets(config)
        return True

    @staticmethod
    def _register_secrets(config: Config) -> None:
        from edm_tui.daemon.logs import add_secret

        add_secret(config.interspire.token)
        add_secret(config.magento.password)

    @property
    def state_dir(self) -> Path:
        """The configured state folder, read from the file itself when the configuration is invalid."""
        if self.config is not None:
            return self.config.storage.state_dir
        from edm_tui.config import default_state_dir, raw_setting

        raw = raw_setting(self.config_path, "storage", "state_dir")
        if isinstance(raw, str) and raw.strip():
            folder = Path(raw).expanduser()
            return folder if folder.is_absolute() else (self.config_path.parent / folder).resolve()
        return Path(os.environ.get("STATE_DIRECTORY", "") or default_state_dir())

    @property
    def socket_path(self) -> Path:
        if self.socket_override is not None:
            return self.socket_override
        if self.config is not None and self.config.daemon.socket is not None:
            return self.config.daemon.socket
        if self.config is None:
            from edm_tui.config import raw_setting

            raw = raw_setting(self.config_path, "daemon", "socket")
            if isinstance(raw, str) and raw.strip():
                return Path(raw).expanduser()
        return default_socket_path()

    # --- life cycle ---

    async def serve(self) -> int:
        self.load()
        # Without its history the daemon still serves status, so the error can be read there.
        self._open_history()

        self.server = self._build_server()
        group = self.config.daemon.socket_group if self.config else None
        await self.server.start(self.socket_path, mode=0o660, group=group)
        log.info("edm-sync %s listening on %s", __version__, self.socket_path)

        loop = asyncio.get_running_loop()
        log_events = LogBuffer(lambda level, message, run_id: loop.call_soon_threadsafe(
            self._publish, "log", {"level": level, "message": message, "run_id": run_id}))
        logging.getLogger().addHandler(log_events)
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))

        self._schedule()
        self.notifier.ready()
        self._notify_status()

        tasks = [asyncio.create_task(self._scheduler(), name="scheduler")]
        if self.notifier.watchdog_interval:
            tasks.append(asyncio.create_task(watchdog_loop(self.notifier, self._healthy), name="watchdog"))

        await self.stopping.wait()
        self.notifier.stopping()
        log.info("stopping")
        if self.active is not None and self.active.task is not None:
            self.active.control.stop("interrupted")
            await asyncio.gather(self.active.task, return_exceptions=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.server.close()
        if self.store is not None:
            self.store.close()
        logging.getLogger().removeHandler(log_events)
        log.info("stopped")
        return 0

    def _open_history(self) -> bool:
        """Opens the history database unless it is open; records why when that fails."""
        if self.store is not None:
            return True
        path = self.state_dir / "history.sqlite3"
        try:
            self.store = HistoryStore(path)
            interrupted = self.store.mark_interrupted()
        except (OSError, sqlite3.Error) as error:
            if self.store is not None:
                self.store.close()
                self.store = None
            self.history_error = str(history_open_failure(path, error))
            log.error("history database %s cannot be opened: %s", path, error)
            return False
        if interrupted:
            log.warning("run(s) %s were left running by a previous process; marked interrupted",
                        ", ".join(map(str, interrupted)))
        if self.history_error is not None:
            log.info("history database %s is open again", path)
        self.history_error = None
        return True

    def request_stop(self) -> None:
        self.stopping.set()

    def _healthy(self) -> bool:
        return time.monotonic() - self.loop_alive < 30

    async def reload(self) -> None:
        self.notifier.reloading()
        previous = self.config
        if self.load():
            log.info("configuration reloaded from %s", self.config_path)
        else:
            self.config = previous
            log.error("configuration reload failed; keeping the previous configuration")
        self._schedule()
        self.notifier.ready()
        self._notify_status()
        self._publish_status()

    # --- scheduling ---

    def _schedule(self) -> None:
        if self.config is None or self.store is None:
            self.next_run = None
            return
        last = self.store.last_run()
        last_start = float(last.started_at) if last is not None else None
        self.next_run = next_run_at(self.config.schedule, last_start, time.time())
        if self.next_run is not None and last is not None and last.status == "interrupted":
            # A run cut short by a stop or a crash is finished soon, as its record promises.
            self.next_run = min(self.next_run, time.time() + self.config.schedule.catch_up_delay)

    async def _scheduler(self) -> None:
        while not self.stopping.is_set():
            self.loop_alive = time.monotonic()
            if self.next_run is not None and time.time() >= self.next_run and self.active is None:
                self.next_run = None
                try:
                    await self.start_run("schedule")
                except (AlreadyRunning, RunAborted) as error:
                    log.warning("scheduled run not started: %s", error)
                    self._schedule()
            await asyncio.sleep(SCHEDULER_TICK)

    # --- runs ---

    async def start_run(self, trigger: str, allow_mass_changes: bool = False) -> int:
        """Starts a run in the background and returns its id once it has one."""
        if self.active is not None:
            raise AlreadyRunning(str(self.active.run_id))
        if self.config is None:
            raise RunAborted(self.config_error or "no configuration")
        if not self._open_history():
            raise RunAborted(self.history_error)

        active = ActiveRun(trigger=trigger, control=RunControl(), started_at=time.time())
        self.active = active
        sync = SyncRun(self.config, trigger=trigger, allow_mass_changes=allow_mass_changes,
                       on_progress=lambda event: self._on_progress(active, event),
                       control=active.control, store=self.store,
                       on_started=lambda run_id: self._on_started(active, run_id))
        active.sync = sync
        active.task = asyncio.create_task(self._run(active, sync), name=f"run-{trigger}")

        waiter = asyncio.create_task(active.started.wait())
        await asyncio.wait({waiter, active.task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if active.run_id is None:
            raise active.error or RunAborted("the run ended before it started")
        return active.run_id

    def _on_started(self, active: ActiveRun, run_id: int) -> None:
        active.run_id = run_id
        active.started.set()
        self._publish("run_started", {"run_id": run_id, "trigger": active.trigger})
        self._notify_status()

    def _on_progress(self, active: ActiveRun, event: ProgressEvent) -> None:
        self.loop_alive = time.monotonic()
        if event.phase != active.phase:
            active.phase = event.phase
            active.phase_started = time.monotonic()
        active.done = event.done
        active.total = event.total
        data = active.as_dict()
        self._publish("progress", {"run_id": active.run_id, "phase": data["phase"], "done": data["done"],
                                   "total": data["total"], "rate": data["rate"],
                                   "eta_seconds": data["eta_seconds"], "counts": data["counts"]},
                      coalesce=True)
        self._notify_status()

    async def _run(self, active: ActiveRun, sync: SyncRun) -> RunResult | None:
        """Carries out one run; every way it can end is logged and published, none escapes."""
        result: RunResult | None = None
        error_text: str | None = None
        try:
            result = await sync.execute()
        except AlreadyRunning as error:
            active.error, error_text = error, str(error)
            log.warning("run not started, another run holds the lock: %s", error)
        except RunAborted as error:
            active.error, error_text = error, str(error)
            log.error("run failed: %s", error)
            if self.config is not None and is_certificate_failure(error):
                log.error("the TLS certificate of %s could not be verified; give the IEM server a certificate "
                          "from a trusted certificate authority, or set interspire.verify_tls = false for a "
                          "test server only", self.config.interspire.url)
        except sqlite3.Error as error:
            path = self.store.path if self.store else self.state_dir / "history.sqlite3"
            active.error = error
            error_text = str(history_write_failure(path, error))
            log.error("run %s failed: writing the history database %s or a temporary file beside it failed: %s",
                      active.run_id, path, error)
        except Exception as error:  # noqa: BLE001 - a crashed run must not stop the daemon
            active.error, error_text = error, f"{type(error).__name__}: {error}"
            log.exception("run crashed")
        finally:
            self.active = None
            run_id = active.run_id
            record = self._close_run_record(run_id, error_text)
            self._publish("run_finished", {
                "run_id": run_id,
                "status": record.status if record else "failed",
                "counts": record.counts if record else {},
                "error": record.error if record else error_text,
                "error_message": record.summary.get("error_message") if record else None,
            })
            self._schedule()
            self._notify_status()
            self._publish_status()
        return result

    def _close_run_record(self, run_id: int | None, error_text: str | None) -> Any:
        """Marks a run that ended without recording its end as failed; returns its record or None.

        When the history cannot be written either, the run stays `running` there, and the next
        run start marks it interrupted.
        """
        if self.store is None or not run_id:
            return None
        try:
            record = self.store.run(run_id)
            if record is not None and record.status == "running":
                self.store.finish_run(run_id, "failed", counts=record.counts, summary=record.summary,
                                      error=error_text)
                record = self.store.run(run_id)
        except sqlite3.Error as error:
            log.error("run %d: recording its end in the history database %s failed: %s",
                      run_id, self.store.path, error)
            return None
        return record

    # --- status ---

    def status(self) -> dict[str, Any]:
        last = self.store.last_run() if self.store else None
        if last is not None and self.active is not None and last.id == self.active.run_id:
            previous = self.store.query_runs(limit=1, before_id=last.id)  # type: ignore[union-attr]
            last = previous[0] if previous else None
        schedule = self.config.schedule if self.config else None
        return {
            "state": "running" if self.active is not None else "idle",
            "run": self.active.as_dict() if self.active is not None else None,
            "last_run": last.as_dict() if last else None,
            "next_run_at": int(self.next_run) if self.next_run is not None else None,
            "schedule": {
                "interval_seconds": schedule.interval if schedule else None,
                "at": f"{schedule.at[0]:02d}:{schedule.at[1]:02d}" if schedule and schedule.at else None,
                "jitter_seconds": schedule.jitter if schedule else None,
                "enabled": schedule.enabled if schedule else False,
            },
            "config_path": str(self.config_path),
            "config_error": self.config_error,
            "history_path": str(self.store.path) if self.store else None,
            "history_error": self.history_error,
            "version": __version__,
            "pid": os.getpid(),
        }

    def status_line(self) -> str:
        if self.active is not None:
            active = self.active
            if active.total:
                percent = int(100 * active.done / active.total)
                return f"running run {active.run_id}: {active.phase} {percent}% ({active.done}/{active.total})"
            return f"running run {active.run_id}: {active.phase}"
        parts = ["idle"]
        last = self.store.last_run() if self.store else None
        if last is not None:
            parts.append(f"last run {last.id} {last.status} at {_local(last.started_at)}")
        if self.config_error:
            parts.append("configuration invalid")
        if self.history_error:
            parts.append("history database unavailable")
        if self.next_run is not None:
            parts.append(f"next run {_local(self.next_run)}")
        return "; ".join(parts)

    def _notify_status(self) -> None:
        self.notifier.status(self.status_line())

    def _publish(self, topic: str, data: dict[str, Any], *, coalesce: bool = False) -> None:
        if self.server is not None:
            self.server.publish(topic, data, coalesce=coalesce)

    def _publish_status(self) -> None:
        self._publish("status", self.status(), coalesce=True)

    # --- socket API ---

    def _build_server(self) -> RpcServer:
        from edm_tui.daemon.methods import register_methods

        admin_group = self.config.daemon.admin_group if self.config else None
        max_clients = self.config.daemon.max_clients if self.config else 64
        server = RpcServer(policy=AccessPolicy(service_uid=os.getuid(), admin_group=admin_group),
                           max_clients=max_clients, server_name=f"edm-sync {__version__}")
        register_methods(server, self)
        return server


def _local(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def service_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name
