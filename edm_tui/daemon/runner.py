"""One sync run: read both sides, plan, check the brake, write, record everything.

The same code serves `edm-sync sync`, `edm-sync plan` and the daemon's scheduled and manual
runs. Crash safety: an item's intent is committed before its write and its outcome after;
the last synced state of an identity changes only after its writes are confirmed, so a run
killed at any point is finished by the next one, which re-reads both sides.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from edm_tui.checks import certificate_fix, unknown_websites
from edm_tui.config import Config
from edm_tui.daemon.history import HistoryStore, history_write_failure
from edm_tui.daemon.logs import run_context
from edm_tui.daemon.spill import SpillStore
from edm_tui.i18n import Translatable, message_dict
from edm_tui.interspire.client import IemClient
from edm_tui.interspire.errors import (
    IemAuthError,
    IemCertificateError,
    IemError,
    IemRejected,
    IemTransientError,
)
from edm_tui.magento.db import MagentoDatabase
from edm_tui.magento.errors import InvalidRecord, MagentoConnectionError, MagentoError
from edm_tui.sync.brake import BrakeReason, check_brake
from edm_tui.sync.identity import IemClass, iem_change_time, iem_class, list_for_website
from edm_tui.sync.model import (
    Action,
    Attempts,
    IemRow,
    MagentoRow,
    MagentoStatus,
    Outcome,
)
from edm_tui.sync.reconcile import Decision, GroupPlan, Plan, SyncOptions
from edm_tui.sync.state import Rejection

log = logging.getLogger("edm_sync.run")

PROGRESS_INTERVAL = 0.2  # seconds between progress events of one phase
SPILL_BATCH = 5000  # rows read from either side per write into the spill file


class AlreadyRunning(Exception):
    """Another sync run holds the lock; nothing was changed."""


class RunAborted(Exception):
    """A configuration, connection or authentication problem stopped the run."""


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    phase: str  # read_magento, read_iem, plan, write, done
    done: int
    total: int | None
    run_id: int | None = None


@dataclass(slots=True)
class RunControl:
    """Lets the caller stop a run at the next item boundary."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    status: str = "cancelled"

    def stop(self, status: str = "cancelled") -> None:
        self.status = status
        self.event.set()


@dataclass(slots=True)
class CreatedIds:
    """Ids that the writes of one group created, for the states recorded after them."""

    guests: dict[int, int] = field(default_factory=dict)  # website id -> new guest subscriber_id
    iem_subscriber_id: int | None = None  # of the row an add created or found


@dataclass(slots=True)
class RunResult:
    run_id: int | None
    status: str
    counts: dict[str, dict[str, int]]
    summary: dict[str, Any]
    error: str | None = None
    plan: Plan | None = None
    brake: BrakeReason | None = None
    history_path: Path | None = None
    config_path: Path | None = None

    @property
    def failed_items(self) -> int:
        return sum(by.get(Outcome.FAILED.value, 0) for by in self.counts.values())

    @property
    def exit_code(self) -> int:
        if self.status == "succeeded" and not self.failed_items:
            return 0
        if self.status in ("cancelled", "interrupted"):
            return 130
        if self.status in ("partial", "blocked", "succeeded"):
            return 1
        return 2

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "counts": self.counts,
            "summary": self.summary,
            "error": self.error,
            "history": str(self.history_path) if self.history_path else None,
        }


class _ProcessLock:
    """An exclusive lock file in the state directory: one run per machine and state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: IO[str] | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return True

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


class _Throttle:
    def __init__(self, callback: Callable[[ProgressEvent], None] | None, run_id: int | None) -> None:
        self.callback = callback
        self.run_id = run_id
        self.last = 0.0

    def __call__(self, phase: str, done: int, total: int | None, force: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if force or now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            self.callback(ProgressEvent(phase, done, total, self.run_id))


class SyncRun:
    def __init__(
        self,
        config: Config,
        *,
        trigger: str = "cli",
        dry_run: bool = False,
        allow_mass_changes: bool = False,
        on_progress: Callable[[ProgressEvent], None] | None = None,
        control: RunControl | None = None,
        store: HistoryStore | None = None,
        on_started: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.trigger = trigger
        self.dry_run = dry_run
        self.allow_mass_changes = allow_mass_changes
        self.control = control or RunControl()
        self.on_started = on_started
        self.own_store = store is None
        self.store = store or HistoryStore(config.storage.history_path)
        self.progress = _Throttle(on_progress, None)
        self.run_id: int | None = None
        self.counts: dict[str, dict[str, int]] = {}
        self.summary: dict[str, Any] = {}
        self.magento: MagentoDatabase | None = None
        self.iem: IemClient | None = None
        self.spill: SpillStore | None = None
        self.magento_lock = asyncio.Lock()
        self.backfilled: set[int] = set()
        self.fatal: BaseException | None = None
        self.done = 0

    # --- entry point ---

    async def execute(self) -> RunResult:
        lock = _ProcessLock(self.config.storage.state_dir / "sync.lock")
        if not self.dry_run:
            if not lock.acquire():
                raise AlreadyRunning(
                    Translatable("another sync run is in progress (lock file {path})", path=str(lock.path)))
            # Holding the lock, any run still marked running belongs to a process that died.
            self.store.mark_interrupted()
        try:
            return await self._execute()
        except sqlite3.Error as error:
            # The history or the run's spill file beside it could not be written (a full or
            # read-only file system). Record the end if the history still takes it.
            log.error("run %s failed: writing the history %s or the spill file beside it failed: %s",
                      self.run_id, self.store.path, error)
            if self.run_id is not None:
                try:
                    self.store.finish_run(self.run_id, "failed", counts=self.counts, summary=self.summary,
                                          error=history_write_failure(self.store.path, error).english())
                except sqlite3.Error:
                    log.warning("run %d: its end could not be recorded; the next run marks it interrupted",
                                self.run_id)
            raise RunAborted(history_write_failure(self.store.path, error)) from error
        finally:
            lock.release()
            if self.spill is not None:
                self.spill.close()
            if self.iem is not None:
                await self.iem.aclose()
            if self.magento is not None:
                if not self.dry_run:
                    await _quietly(self.magento.release_run_lock())
                await _quietly(self.magento.close())
            if self.own_store:
                self.store.close()

    async def _execute(self) -> RunResult:
        started = time.monotonic()
        try:
            await self._connect_magento()
        except RunAborted as error:
            self._record_failed_start(reason_of(error))
            raise

        if not self.dry_run:
            self.run_id = self.store.start_run(self.trigger, self.allow_mass_changes)
            self.progress.run_id = self.run_id

        with run_context(self.run_id):
            return await self._execute_connected(started)

    async def _execute_connected(self, started: float) -> RunResult:
        if self.run_id is not None:
            log.info("run %d: started (%s)", self.run_id, self.trigger)
            if self.on_started is not None:
                self.on_started(self.run_id)
        try:
            await self._connect_iem()
        except RunAborted as error:
            if self.run_id is not None:
                self._finish("failed", error=reason_of(error), started=started)
            raise

        try:
            plan, brake = await self._read_and_plan()
        except (RunAborted, IemError, MagentoError) as error:
            return self._finish("failed", error=reason_of(error), started=started)

        if self.dry_run:
            return RunResult(None, "planned", {}, self.summary, plan=plan, brake=brake,
                             history_path=self.store.path)

        if brake is not None:
            log.warning("run %d: blocked by the safety brake: %s", self.run_id, brake.message())
            self.summary["brake"] = {"code": brake.code, "side": brake.side, "count": brake.count,
                                     "limit": brake.limit, "list_id": brake.list_id}
            result = self._finish("blocked", error=brake.message(), started=started)
            result.brake = brake
            result.plan = plan
            return result

        with self.store.grouped_commits():
            self._record_up_front()
            await self._write(plan)

        if self.fatal is not None:
            return self._finish("failed", error=reason_of(self.fatal), started=started)
        if self.control.event.is_set():
            reason = (Translatable("cancelled by the operator; the next run finishes the job")
                      if self.control.status == "cancelled"
                      else Translatable("the service stopped during the run; the next run finishes the job"))
            return self._finish(self.control.status, started=started, error=reason)
        status = "partial" if any(by.get("failed") for by in self.counts.values()) else "succeeded"
        self.store.mark_backfilled([int(k) for k in self.summary.get("lists", {})], self.run_id)
        return self._finish(status, started=started)

    def _record_failed_start(self, error: Translatable | str) -> None:
        """Record a run that could not connect, so that the history shows why it failed."""
        if self.dry_run:
            return
        self.run_id = self.store.start_run(self.trigger, self.allow_mass_changes)
        self.store.finish_run(self.run_id, "failed", counts={}, summary=error_summary(error),
                              error=english(error))
        log.info("run %d: failed before reading: %s", self.run_id, error)
        if self.on_started is not None:
            self.on_started(self.run_id)

    def _finish(self, status: str, *, started: float, error: Translatable | str | None = None) -> RunResult:
        """Record the end of the run. The history keeps the error in English with its message."""
        self.summary["duration_seconds"] = round(time.monotonic() - started, 3)
        if error is not None:
            self.summary.update(error_summary(error))
        stored = english(error) if error is not None else None
        if self.run_id is not None:
            self.store.finish_run(self.run_id, status, counts=self.counts, summary=self.summary, error=stored)
            log.info("run %d: %s%s", self.run_id, status, f" ({stored})" if stored else "")
        self.progress("done", self.done, None, force=True)
        return RunResult(self.run_id, status, self.counts, self.summary,
                         error=str(error) if error is not None else None,
                         history_path=self.store.path, config_path=self.config.path)

    # --- connections ---

    async def _connect_magento(self) -> None:
        m = self.config.magento
        try:
            self.magento = await MagentoDatabase.connect(
                host=m.host, port=m.port, user=m.user, password=m.password, database=m.database,
                unix_socket=m.unix_socket, table_prefix=m.table_prefix,
            )
        except MagentoError as error:
            raise RunAborted(str(error)) from error

        if not self.dry_run and not await self.magento.acquire_run_lock():
            raise AlreadyRunning(
                Translatable("another sync run holds the lock on database {database}", database=m.database)
            )

    async def _connect_iem(self) -> None:
        i = self.config.interspire
        self.iem = IemClient(i.url, i.username, i.token, timeout=i.timeout, concurrency=i.concurrency,
                             retries=i.retries, verify=i.verify_tls)
        try:
            await self.iem.test_token()
        except IemAuthError as error:
            raise RunAborted(
                Translatable("IEM refused the username and token ({error}); check interspire.username and "
                             "interspire.token against the XML API settings of that IEM user (after several "
                             "refused tries IEM also refuses a correct token for a few minutes)",
                             error=error.message)
            ) from error
        except IemCertificateError as error:
            raise RunAborted(certificate_fix(i.url)) from error
        except IemError as error:
            raise RunAborted(
                Translatable("IEM at {url} cannot be reached ({error}); check the host and port in interspire.url "
                  "and that this machine may connect to it", url=i.url, error=error)
            ) from error

    # --- reading ---

    async def _read_and_plan(self) -> tuple[Plan, BrakeReason | None]:
        """Read both sides into the spill file and plan from there; see edm_tui.daemon.spill."""
        assert self.magento is not None
        i = self.config.interspire
        self.spill = SpillStore(
            self.config.storage.state_dir,
            lambda website: list_for_website(website, i.list_id, i.website_lists),
        )
        await self._read_magento()
        websites = tuple(await self.magento.website_ids())
        unknown = unknown_websites(i.website_lists, websites)
        if unknown:
            # Writing anyway would move that website's subscribers to the default list.
            raise RunAborted(Translatable(
                "interspire.website_lists names website {ids}, which the shop does not have (its websites "
                "are {known}); correct the website ids, then start the run again",
                ids=", ".join(map(str, unknown)), known=", ".join(map(str, websites))))
        default_stores = await self.magento.default_store_ids()
        lists = sorted({i.list_id, *i.website_lists.values()})

        sizes: dict[int, int] = {}
        for list_id in lists:
            sizes[list_id] = await self._read_list(list_id)

        self.progress("plan", 0, None, force=True)
        if Path(self.store.path).is_file():
            self.spill.copy_states(Path(self.store.path), i.list_id, i.website_lists)
        else:  # a history without a file of its own, as some tests make
            self.spill.add_states(self.store.iter_states())
        self.spill.add_rejections(self.store.iter_rejections())
        options = SyncOptions(
            default_list=i.list_id,
            website_lists=i.website_lists,
            websites=websites,
            default_store_ids=default_stores,
            now=int(time.time()),
            import_new_subscribers=self.config.sync.import_new_subscribers,
            bounced_is_unsubscribed=self.config.sync.bounced_is_unsubscribed,
            names_enabled=bool(i.firstname_field_id or i.lastname_field_id),
        )
        plan = self.spill.plan(options, on_progress=lambda done: self.progress("plan", done, None),
                               store=not self.dry_run)
        self.backfilled = self.store.backfilled_lists()
        self.summary.update(
            identities=plan.identities,
            subscribed_identities=plan.subscribed_identities,
            out_of_scope=plan.out_of_scope,
            invalid_email=plan.invalid_email,
            duplicates=plan.duplicates,
            pending=plan.pending,
            unknown_status=plan.unknown_status,
            previously_rejected=plan.rejected_count,
            lists={str(k): v for k, v in sizes.items()},
            planned=plan.counts(),
        )
        if plan.out_of_scope:
            log.info("%d Magento rows belong to no website (store_id 0 or NULL) and are out of scope",
                     plan.out_of_scope)
        if plan.unknown_status:
            log.info("%d identities have an unknown subscriber_status; treated as pending",
                     plan.unknown_status)
        brake = None if self.allow_mass_changes else check_brake(plan, sizes, active_before=self.store.active_by_list())
        return plan, brake

    async def _read_magento(self) -> None:
        assert self.magento is not None and self.spill is not None
        batch: list[MagentoRow] = []
        count = 0
        self.progress("read_magento", 0, None, force=True)
        async for row in self.magento.iter_rows():
            batch.append(row)
            count += 1
            if len(batch) == SPILL_BATCH:
                self.spill.add_magento_rows(batch)
                batch = []
            if count % 1000 == 0:
                self.progress("read_magento", count, None)
        self.spill.add_magento_rows(batch)
        self.progress("read_magento", count, count, force=True)
        self.summary["magento_rows"] = count

    async def _read_list(self, list_id: int) -> int:
        """Reads one IEM list in a single streamed call, restarting it on transport failures."""
        assert self.iem is not None and self.spill is not None
        attempts = self.config.interspire.retries + 1
        for attempt in range(1, attempts + 1):
            batch: list[IemRow] = []
            count = 0
            self.progress("read_iem", 0, None, force=True)
            try:
                async for row in self.iem.iter_subscribers(list_id):
                    batch.append(row)
                    count += 1
                    if len(batch) == SPILL_BATCH:
                        self.spill.add_iem_rows(batch)
                        batch = []
                    if count % 1000 == 0:
                        self.progress("read_iem", count, None)
            except IemTransientError as error:
                self.spill.discard_iem_list(list_id)
                if attempt == attempts:
                    raise RunAborted(
                        Translatable("reading IEM list {list_id} failed {n} times; last error: {error}",
                            list_id=list_id, n=attempts, error=error)
                    ) from error
                delay = min(30.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                log.warning("reading IEM list %d failed (%s: %s); retrying in %.1f s",
                            list_id, type(error).__name__, error, delay)
                await asyncio.sleep(delay)
                continue
            self.spill.add_iem_rows(batch)
            self.progress("read_iem", count, count, force=True)
            return count
        return 0

    # --- writing ---

    def _count(self, action: str, outcome: str) -> None:
        by = self.counts.setdefault(action, {})
        by[outcome] = by.get(outcome, 0) + 1

    def _record_up_front(self) -> None:
        """Records what needs no write: settled states, and bad data that fails up front."""
        assert self.run_id is not None and self.spill is not None
        for states in self.spill.iter_settled():
            self.store.save_states(states)
        for decision, reason in self.spill.iter_invalid():
            self._item_failed_now(decision, "invalid_data", reason)
            self.store.save_rejection(
                Rejection(decision.email_norm, decision.website_id or 0, decision.action.value,
                          decision.fingerprint, reason),
                self.run_id,
            )

    def _item_failed_now(self, decision: Decision, error_class: str, message: str) -> None:
        assert self.run_id is not None
        self.store.add_item(
            self.run_id, email=decision.email, website_id=decision.website_id, list_id=decision.list_id,
            action=decision.action.value, direction=decision.direction, reason=decision.reason,
            outcome=Outcome.FAILED.value, error_class=error_class, error_message=message,
        )
        self._count(decision.action.value, Outcome.FAILED.value)
        log.warning("run %d: %s %s failed: %s", self.run_id, decision.action.value, decision.email, message)

    async def _write(self, plan: Plan) -> None:
        assert self.spill is not None
        total = sum(plan.counts().values())
        self.progress("write", 0, total, force=True)
        groups = self.spill.iter_planned()
        workers = max(1, self.config.interspire.concurrency)

        async def worker() -> None:
            for group in groups:
                if self.control.event.is_set() or self.fatal is not None:
                    return
                await self._run_group(group)
                self.progress("write", self.done, total)

        await asyncio.gather(*(worker() for _ in range(workers)))
        self.progress("write", self.done, total, force=True)

    async def _run_group(self, group: GroupPlan) -> None:
        assert self.run_id is not None
        status_ok = True
        names_ok = True
        created = CreatedIds()

        for decision in group.decisions:
            if self.fatal is not None or self.control.event.is_set():
                return
            if decision.action is Action.UPDATE_NAMES and not status_ok:
                break
            item_id = self.store.add_item(
                self.run_id, email=decision.email, website_id=decision.website_id,
                list_id=decision.list_id, action=decision.action.value, direction=decision.direction,
                reason=decision.reason,
            )
            self.store.commit()  # the pending row must survive a kill during the write
            attempts = Attempts()
            outcome, error_class, message = await self._apply(decision, attempts, created)
            self.store.finish_item(item_id, outcome, attempts=attempts.n, error_class=error_class,
                                   error_message=message)
            self._count(decision.action.value, outcome)
            self.done += 1

            if outcome != Outcome.SUCCEEDED.value:
                if decision.action is Action.UPDATE_NAMES:
                    names_ok = False
                else:
                    status_ok = False
                if error_class == "rejected":
                    self.store.save_rejection(
                        Rejection(decision.email_norm, decision.website_id or 0, decision.action.value,
                                  decision.fingerprint, message or ""),
                        self.run_id,
                    )
            else:
                self.store.clear_rejection(decision.email_norm, decision.website_id or 0,
                                           decision.action.value)

        if status_ok:
            self._save_group_state(group, names_ok, created)

    def _save_group_state(self, group: GroupPlan, names_ok: bool, created: CreatedIds) -> None:
        states = []
        for state in group.final_states:
            if not names_ok:
                first, last = group.previous_names.get(state.key, (None, None))
                state = replace(state, firstname=first, lastname=last)
            if state.website_id in created.guests:
                state = replace(state, subscriber_ids=(created.guests[state.website_id],))
            if state.iem_subscriber_id is None and created.iem_subscriber_id is not None:
                # With the new row's id the next run finds the group in step and skips it.
                state = replace(state, iem_subscriber_id=created.iem_subscriber_id)
            states.append(state)
        self.store.save_states(states)

    async def _apply(
        self, d: Decision, attempts: Attempts, created: CreatedIds
    ) -> tuple[str, str | None, str | None]:
        """Carries out one decision; returns (outcome, error class, message)."""
        try:
            if d.action.direction.value == "to_iem":
                return await self._apply_iem(d, attempts, created)
            return await self._apply_magento(d, created)
        except IemAuthError as error:
            if self.fatal is None:  # the first error is the cause; later workers only see its effects
                self.fatal = RunAborted(Translatable(
                    "IEM refused the username and token during the run ({error}); the run stopped",
                    error=error.message))
            return Outcome.FAILED.value, "authentication", error.message
        except IemRejected as error:
            return Outcome.FAILED.value, "rejected", error.message
        except IemTransientError as error:
            return Outcome.FAILED.value, "transient", f"{type(error).__name__}: {error.message}"
        except IemError as error:
            return Outcome.FAILED.value, "request", error.message
        except InvalidRecord as error:
            return Outcome.FAILED.value, "rejected", str(error)
        except MagentoConnectionError as error:
            if self.fatal is None:
                self.fatal = RunAborted(str(error))
            return Outcome.FAILED.value, "connection", str(error)
        except MagentoError as error:
            return Outcome.FAILED.value, "database", str(error)
        finally:
            attempts.n = max(attempts.n, 1)  # a Magento write is one attempt

    async def _apply_iem(
        self, d: Decision, attempts: Attempts, created: CreatedIds
    ) -> tuple[str, str | None, str | None]:
        assert self.iem is not None
        i = self.config.interspire
        ok = (Outcome.SUCCEEDED.value, None, None)

        if d.action is Action.ADD:
            autoresponders = self.config.sync.add_to_autoresponders and d.list_id in self.backfilled
            result = await self.iem.add_subscriber(
                d.list_id, d.email, confirmed=True, add_to_autoresponders=autoresponders,
                custom_fields=self._custom_fields(d), counter=attempts,
            )
            if result.already_exists:
                return await self._reconcile_existing(d, attempts, created)
            created.iem_subscriber_id = result.subscriber_id
            return ok

        if d.action is Action.CONFIRM:
            await self.iem.confirm(d.list_id, d.iem_subscriber_id or 0, counter=attempts)
            return ok

        if d.action is Action.ACTIVATE:
            await self.iem.activate(d.list_id, d.email, counter=attempts)
            if not d.iem_confirmed:
                await self.iem.confirm(d.list_id, d.iem_subscriber_id or 0, counter=attempts)
            return ok

        if d.action is Action.UNSUBSCRIBE_IEM:
            await self.iem.unsubscribe(d.list_id, d.email, counter=attempts)
            return ok

        if d.action is Action.UPDATE_NAMES:
            for field_id, value in ((i.firstname_field_id, d.firstname), (i.lastname_field_id, d.lastname)):
                if field_id and value:
                    await self.iem.save_custom_field(d.iem_subscriber_id or 0, field_id, value,
                                                     counter=attempts)
            return ok
        raise AssertionError(d.action)

    def _custom_fields(self, d: Decision) -> dict[int, str]:
        i = self.config.interspire
        fields = {}
        if i.firstname_field_id and d.firstname:
            fields[i.firstname_field_id] = d.firstname
        if i.lastname_field_id and d.lastname:
            fields[i.lastname_field_id] = d.lastname
        return fields

    async def _reconcile_existing(
        self, d: Decision, attempts: Attempts, created: CreatedIds
    ) -> tuple[str, str | None, str | None]:
        """IEM already has the address (a retried add, or a row added since the read)."""
        assert self.iem is not None
        row = await self.iem.find_subscriber(d.list_id, d.email)
        if row is None:
            return (Outcome.FAILED.value, "transient",
                    "IEM reported the address as existing but the lookup did not find it")
        cls = iem_class(row)
        if cls is IemClass.ACTIVE:
            if not row.confirmed:
                await self.iem.confirm(d.list_id, row.subscriber_id, counter=attempts)
        else:
            if not self._magento_newer(d, row):  # never resubscribe a newer IEM unsubscribe
                return (Outcome.SKIPPED.value, "conflict",
                        "unsubscribed in IEM after the read; the next run decides")
            await self.iem.activate(d.list_id, d.email, counter=attempts)
            if not row.confirmed:
                await self.iem.confirm(d.list_id, row.subscriber_id, counter=attempts)
        for field_id, value in self._custom_fields(d).items():
            await self.iem.save_custom_field(row.subscriber_id, field_id, value, counter=attempts)
        created.iem_subscriber_id = row.subscriber_id
        return Outcome.SUCCEEDED.value, None, None

    @staticmethod
    def _magento_newer(d: Decision, row: IemRow) -> bool:
        return d.changed_at is not None and d.changed_at > iem_change_time(row)

    async def _apply_magento(self, d: Decision, created: CreatedIds) -> tuple[str, str | None, str | None]:
        assert self.magento is not None
        if d.action is Action.CREATE_GUEST:
            async with self.magento_lock:
                new_id = await self.magento.insert_guest(d.email, d.store_id or 0, int(MagentoStatus.SUBSCRIBED))
            created.guests[d.website_id or 0] = new_id
            return Outcome.SUCCEEDED.value, None, None

        async with self.magento_lock:
            missed = await self.magento.set_statuses(d.rows, d.target_status or 0)
        if missed:
            return (Outcome.SKIPPED.value, "conflict",
                    f"subscriber_id {', '.join(map(str, missed))} changed in Magento during the run; "
                    "the next run decides")
        return Outcome.SUCCEEDED.value, None, None


def reason_of(error: BaseException) -> Translatable | str:
    """Return the message an error was raised with, keeping a Translatable for the history."""
    if error.args and isinstance(error.args[0], Translatable):
        return error.args[0]
    return str(error)


def english(error: Translatable | str) -> str:
    return error.english() if isinstance(error, Translatable) else error


def error_summary(error: Translatable | str) -> dict[str, Any]:
    """Return the summary entry that lets clients show a run's error in their own language."""
    return {"error_message": message_dict(error)}


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception as error:  # noqa: BLE001 - cleanup must not hide the run's own result
        log.debug("cleanup step failed: %s", error)


async def run_sync(config: Config, **options: Any) -> RunResult:
    return await SyncRun(config, **options).execute()


__all__ = [
    "AlreadyRunning",
    "ProgressEvent",
    "RunAborted",
    "RunControl",
    "RunResult",
    "SyncRun",
    "run_sync",
]
