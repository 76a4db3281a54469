"""The settings and plan screens of the dashboard, driven with Pilot.

Most tests run a real `edm-sync daemon` subprocess on the test bench (MariaDB and the IEM
simulator). Snapshot tests need fixed data (the simulator's port changes every run), so they
talk to a scripted daemon: an in-process Unix socket server speaking the same protocol.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.message import Message
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Button, DataTable, Input, OptionList, Select, Static
from textual.worker import Worker, WorkerState

from edm_tui.checks import CheckResult
from edm_tui.config import ConfigError, parse_config
from edm_tui.connection import DaemonConnection
from edm_tui.i18n import Translatable
from edm_tui.screens.config import ConfigScreen, UnsavedChangesScreen
from edm_tui.screens.plan import PlanScreen
from edm_tui.widgets.config_fields import (
    FieldSpec,
    LocalProblem,
    problem_path,
    problem_reason,
    to_value,
    website_lists_value,
)
from edm_tui.widgets.config_form import CheckResults, ConfigForm, SecretField
from tests.daemon_support import DaemonProcess, NotifyListener, write_daemon_config
from tests.sync_support import Bench

CONNECT_TIMEOUT = 10.0  # seconds for the dashboard's connection to reach "connected"


# --- a scripted daemon with fixed data, for snapshots and the cases a bench cannot set up ---


FAKE_PATH = "/etc/edm-sync/config.toml"

FAKE_CONFIG: dict[str, Any] = {
    "interspire": {"url": "https://mail.example.hu/xml.php", "username": "admin", "token": "********",
                   "list_id": 1, "firstname_field_id": 2, "lastname_field_id": 3,
                   "website_lists": {"2": 3}, "concurrency": 8, "timeout": 60, "retries": 3,
                   "verify_tls": True},
    "magento": {"host": "127.0.0.1", "port": 3306, "user": "magento", "password": "********",
                "database": "magento", "table_prefix": ""},
    "sync": {"import_new_subscribers": True, "bounced_is_unsubscribed": True, "add_to_autoresponders": True},
    "storage": {"state_dir": "/var/lib/edm-sync"},
    "schedule": {"interval": "24h", "jitter": "0m", "catch_up_delay": "30s"},
    "daemon": {"socket_group": "edm-sync", "admin_group": "edm-admins"},
}

FAKE_LISTS = [
    {"listid": 1, "name": "Main", "subscribecount": 1200},
    {"listid": 2, "name": "Second", "subscribecount": 40},
    {"listid": 3, "name": "VIP customers", "subscribecount": 5},
]

FAKE_FIELDS = [
    {"fieldid": 2, "name": "First name", "fieldtype": "text"},
    {"fieldid": 3, "name": "Last name", "fieldtype": "text"},
    {"fieldid": 7, "name": "City", "fieldtype": "text"},
]

FAKE_CHECK = [
    CheckResult("iem_url", True, Translatable("IEM reachable"), "https://mail.example.hu/xml.php").as_dict(),
    CheckResult("iem_token", True, Translatable("IEM token valid"),
                Translatable("user {user} (id {userid})", user="admin", userid=1)).as_dict(),
    CheckResult("iem_list_1", True, Translatable("IEM list {list_id}", list_id=1),
                Translatable("{name}, {count} subscribers", name="Main", count=1200)).as_dict(),
    CheckResult("magento_connect", False, Translatable("Magento database reachable"),
                "access denied for user 'magento'",
                Translatable("check the [magento] host, port, user, password and database")).as_dict(),
]

FAKE_PLAN = {
    "actions": {
        "subscribe_magento": {"direction": "to_magento", "count": 1, "first": [
            {"email": "anna@example.test", "website_id": 1, "list_id": 1, "reason": "confirmed_in_iem"}]},
        "add": {"direction": "to_iem", "count": 3, "first": [
            {"email": f"new{n}@example.test", "website_id": 1, "list_id": 1, "reason": "new_in_magento"}
            for n in range(3)]},
        "unsubscribe_iem": {"direction": "to_iem", "count": 2, "first": [
            {"email": "gone@example.test", "website_id": 2, "list_id": 3, "reason": "magento_changed"}]},
    },
    "blocked": None,
    "failed_up_front": [
        {"email": "x" * 20 + "@example.test", "action": "create_guest",
         "reason": "email is 160 characters long; Magento stores at most 150"},
    ],
    "summary": {"identities": 12, "subscribed_identities": 9, "pending": 1, "duplicates": 0},
}


class FakeDaemon:
    """A Unix socket server that responds to the dashboard's calls with fixed data.

    `config.validate` and `config.set` check the merged configuration with the real
    `parse_config`, so problems read exactly like the daemon's.
    """

    def __init__(self, path: Path, *, can_write: bool = True, plan: dict[str, Any] | None = None,
                 config: dict[str, Any] | None = None, config_error: str | None = None,
                 delays: dict[str, float] | None = None) -> None:
        self.path = path
        self.delays = delays or {}  # seconds before the response, by method
        self.can_write = can_write
        self.config = copy.deepcopy(config if config is not None else FAKE_CONFIG)
        self.config_error = config_error
        self.plan = plan if plan is not None else FAKE_PLAN
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, path=str(self.path))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def methods(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "hello": lambda params: {"protocol": 1, "server": "fake", "user": "tester",
                                     "can_write": self.can_write, "topics": []},
            "subscribe": lambda params: {"topics": params.get("topics", []), "seq": 0},
            "config.get": lambda params: {"path": FAKE_PATH, "config": copy.deepcopy(self.config),
                                          "error": self.config_error},
            "config.validate": self._validate,
            "config.set": self._set,
            "iem.lists": lambda params: {"lists": FAKE_LISTS},
            "iem.fields": lambda params: {"fields": FAKE_FIELDS},
            "check": lambda params: {"results": FAKE_CHECK},
            "plan": lambda params: self.plan,
        }

    def _merged(self, changes: dict[str, dict[str, Any]]) -> dict[str, Any]:
        merged = copy.deepcopy(self.config)
        for section, values in changes.items():
            table = merged.setdefault(section, {})
            for key, value in values.items():
                if value == "********":
                    continue
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
        return merged

    @staticmethod
    def _problems(config: dict[str, Any]) -> list[str]:
        try:
            parse_config(config)
        except ConfigError as error:
            return error.problems
        return []

    def _validate(self, params: dict[str, Any]) -> dict[str, Any]:
        problems = self._problems(self._merged(params.get("config", {})))
        return {"ok": not problems, "problems": problems}

    def _set(self, params: dict[str, Any]) -> dict[str, Any]:
        if not self.can_write:
            raise FakeError(-32001, "permission denied", {"method": "config.set", "reason": "root"})
        merged = self._merged(params.get("config", {}))
        problems = self._problems(merged)
        if problems:
            raise FakeError(-32006, "the configuration is not valid", {"problems": problems})
        for values in merged.values():  # the fake keeps secrets masked, as config.get shows them
            for key in ("token", "password"):
                if values.get(key):
                    values[key] = "********"
        self.config = merged
        return {"ok": True, "path": FAKE_PATH}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        methods = self.methods()
        try:
            while line := await reader.readline():
                request = json.loads(line)
                params = request.get("params") or {}
                self.calls.append((request["method"], params))
                await asyncio.sleep(self.delays.get(request["method"], 0))
                try:
                    reply = {"result": methods[request["method"]](params)}
                except FakeError as error:
                    reply = {"error": {"code": error.code, "message": error.message, "data": error.data}}
                writer.write(json.dumps({"jsonrpc": "2.0", "id": request["id"], **reply}).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


class FakeError(Exception):
    def __init__(self, code: int, message: str, data: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


# --- a minimal App that hosts one screen ---


class ScreenHost(App[None]):
    """Connects to a daemon socket the way the dashboard does, then shows one screen."""

    def __init__(self, socket_path: Path, fake: FakeDaemon | None = None) -> None:
        super().__init__()
        self.fake = fake
        self.daemon = DaemonConnection(socket_path, on_event=lambda topic, data: None,
                                       on_state=lambda state, error: None, client_name="edm-tui-test")

    async def on_mount(self) -> None:
        if self.fake is not None:
            await self.fake.start()
        self.run_worker(self.daemon.run(), group="daemon", exit_on_error=False)

    async def on_unmount(self) -> None:
        await self.daemon.close()
        if self.fake is not None:
            await self.fake.close()

    async def open(self, screen: Screen) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while self.daemon.state != "connected":
            assert time.monotonic() < deadline, f"not connected: {self.daemon.error}"
            await asyncio.sleep(0.01)
        await self.push_screen(screen)


async def settle(pilot: Pilot) -> None:
    """Wait until the screen's workers (loading, validation, saving) have finished.

    A newer validation cancels an older one, so a cancelled worker counts as finished. The
    screens' workers do not stop the app when they fail, so a failure is raised here.
    """
    app = pilot.app
    for _round in range(100):
        await pilot.pause()
        busy = [worker for worker in app.workers if worker.group != "daemon" and not worker.is_finished]
        if not busy:
            return
        await asyncio.gather(*(worker.wait() for worker in busy), return_exceptions=True)
        failed = [worker for worker in busy if worker.state == WorkerState.ERROR]
        assert not failed, [f"{worker.name}: {worker.error!r}" for worker in failed]
    raise AssertionError("the screen's workers did not finish")


async def open_screen(pilot: Pilot, screen: Screen) -> None:
    assert isinstance(pilot.app, ScreenHost)
    await pilot.app.open(screen)
    await settle(pilot)


def text_of(widget: Static) -> str:
    return str(widget.render())


async def replace_text(pilot: Pilot, input_widget: Input, text: str) -> None:
    """Type `text` into an input instead of its content, then leave the field with tab."""
    input_widget.focus()
    await pilot.pause()
    input_widget.action_end()
    await pilot.press("ctrl+u", *text, "tab")
    await settle(pilot)


async def press_button(pilot: Pilot, button: Button) -> None:
    """Focus a button, which scrolls it into view, and press it with enter."""
    button.focus()
    await pilot.pause()
    await pilot.press("enter")
    await settle(pilot)


@pytest.fixture(autouse=True)
def steady_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the cursor from blinking and colours from depending on the caller's terminal."""
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)
    monkeypatch.delenv("NO_COLOR", raising=False)


# --- the real daemon ---


@pytest.fixture
def daemon(bench: Bench) -> Iterator[DaemonProcess]:
    socket_path = bench.tmp / "d.sock"
    notify = NotifyListener(bench.tmp / "notify.sock")
    config = write_daemon_config(bench, socket_path)
    config.write_text("# operator notes: keep this line\n" + config.read_text())
    process = DaemonProcess(bench, config, socket_path, notify, bench.tmp / "daemon.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        notify.close()


def add_magento_subscribers(bench: Bench, count: int) -> None:
    for n in range(count):
        bench.add_row(f"p{n}@example.test", 1, 1_700_000_000)


async def test_list_choice_saved_to_file(daemon: DaemonProcess) -> None:
    app = ScreenHost(daemon.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, ConfigScreen())
        select = app.screen.query_one("#field-interspire-list_id", Select)
        assert select.value == 1
        select.focus()
        await pilot.press("enter")
        await pilot.pause()
        overlay = select.query_one(OptionList)
        labels = [str(overlay.get_option_at_index(index).prompt) for index in range(overlay.option_count)]
        assert labels[1:] == ["Main (1)", "Second (2)"]

        await pilot.press("down", "enter")
        await settle(pilot)
        assert select.value == 2
        assert "Unsaved changes" in text_of(app.screen.query_one("#config-state", Static))

        await pilot.press("ctrl+s")
        await settle(pilot)
        status = await app.daemon.call("status")

    text = daemon.config_path.read_text()
    assert "list_id = 2" in text
    assert text.startswith("# operator notes: keep this line\n")
    assert "test-token-0123456789" in text
    assert oct(daemon.config_path.stat().st_mode & 0o777) == "0o600"
    assert status["config_error"] is None


async def test_invalid_url_shown_and_not_saved(daemon: DaemonProcess) -> None:
    before = daemon.config_path.read_text()
    app = ScreenHost(daemon.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, ConfigScreen())
        form = app.screen.query_one(ConfigForm)
        await replace_text(pilot, app.screen.query_one("#field-interspire-url", Input), "nope")
        row = form.row("interspire.url")
        assert row.has_class("-problem")
        problem = text_of(row.query_one(".field-problem", Static))
        assert problem.startswith("✗ must be the full http(s) address of IEM's xml.php")

        await pilot.press("ctrl+s")
        await settle(pilot)
        assert row.has_class("-problem")
        assert form.is_dirty

    assert daemon.config_path.read_text() == before


async def test_leaving_with_changes_asks(daemon: DaemonProcess) -> None:
    app = ScreenHost(daemon.socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = ConfigScreen()
        await open_screen(pilot, screen)
        await replace_text(pilot, screen.query_one("#field-magento-host", Input), "db1")

        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, UnsavedChangesScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen

        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, UnsavedChangesScreen)
        await pilot.press("d")
        await pilot.pause()
        assert not isinstance(app.screen, (ConfigScreen, UnsavedChangesScreen))

    assert "db1" not in daemon.config_path.read_text()


async def test_test_connection_shows_checks(daemon: DaemonProcess) -> None:
    app = ScreenHost(daemon.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, ConfigScreen())
        await press_button(pilot, app.screen.query_one("#test-connection", Button))
        lines = text_of(app.screen.query_one(CheckResults).query_one(".check-lines", Static)).splitlines()

    assert any(line.startswith("✓ IEM reachable: http://127.0.0.1:") for line in lines), lines
    assert "✓ IEM token valid: user tester (id 1)" in lines
    assert "✓ IEM list 1: Main, 0 subscribers" in lines
    assert any(line.startswith("✓ Magento database reachable") for line in lines), lines
    assert not any(line.startswith("✗") for line in lines), lines


async def test_plan_counts_from_bench(daemon: DaemonProcess) -> None:
    add_magento_subscribers(daemon.bench, 3)
    app = ScreenHost(daemon.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, PlanScreen())
        actions = app.screen.query_one("#plan-actions", DataTable)
        rows = [[str(cell) for cell in actions.get_row_at(index)] for index in range(actions.row_count)]
        items = app.screen.query_one("#plan-items", DataTable)
        emails = [str(items.get_row_at(index)[0]) for index in range(items.row_count)]

    assert rows == [["added to IEM", "Magento → IEM", "3"]]
    assert emails == ["p0@example.test", "p1@example.test", "p2@example.test"]


async def test_plan_nothing_to_change(daemon: DaemonProcess) -> None:
    app = ScreenHost(daemon.socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_screen(pilot, PlanScreen())
        message = text_of(app.screen.query_one("#plan-message", Static))
        body_hidden = app.screen.query_one("#plan-body").has_class("-hidden")

    assert message == "Nothing to change: both sides already agree."
    assert body_hidden


# --- the scripted daemon ---


def fake_host(tmp_path: Path, **options: Any) -> ScreenHost:
    return ScreenHost(tmp_path / "fake.sock", FakeDaemon(tmp_path / "fake.sock", **options))


def sent_config(fake: FakeDaemon, method: str) -> list[dict[str, Any]]:
    return [params["config"] for name, params in fake.calls if name == method]


async def test_token_reveal_shows_only_typed(tmp_path: Path) -> None:
    app = fake_host(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, ConfigScreen())
        secret = app.screen.query_one("#field-interspire-token", SecretField)
        assert secret.input.value == ""
        assert secret.input.password is True
        assert secret.input.placeholder == "stored; type to replace it"

        reveal = secret.query_one(".reveal", Button)
        await press_button(pilot, reveal)
        assert secret.input.password is False
        assert str(secret.query_one(".reveal", Button).label) == "Hide"
        assert secret.input.value == ""
        assert app.fake is not None
        checked_before_typing = sent_config(app.fake, "config.validate")

        await replace_text(pilot, secret.input, "tok42")
        await press_button(pilot, reveal)
        assert secret.input.password is True
        assert str(secret.query_one(".reveal", Button).label) == "Show"

        await pilot.press("ctrl+s")
        await settle(pilot)

    assert checked_before_typing != []
    assert all(config == {} for config in checked_before_typing)
    assert sent_config(app.fake, "config.set") == [{"interspire": {"token": "tok42"}}]


async def test_file_problems_shown_on_load(tmp_path: Path) -> None:
    config = copy.deepcopy(FAKE_CONFIG)
    config["schedule"]["interval"] = "soon"
    config["sync"]["bounce"] = True
    app = fake_host(tmp_path, config=config, config_error="/etc/edm-sync/config.toml has 2 problems")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = ConfigScreen()
        await open_screen(pilot, screen)
        interval = text_of(screen.form.row("schedule.interval").query_one(".field-problem", Static))
        banner = text_of(screen.query_one("#config-banner", Static)).splitlines()
        dirty = screen.form.is_dirty

    assert interval == '✗ must be a duration such as "30m", "24h" or "1d"'
    assert banner[0].startswith("The daemon could not load this file")
    assert banner[1].startswith("✗ sync.bounce: unknown key")
    assert not dirty


async def test_local_problem_blocks_save(tmp_path: Path) -> None:
    app = fake_host(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = ConfigScreen()
        await open_screen(pilot, screen)
        await replace_text(pilot, screen.query_one("#field-interspire-timeout", Input), "-")
        row = screen.form.row("interspire.timeout")
        problem = text_of(row.query_one(".field-problem", Static))
        await pilot.press("ctrl+s")
        await settle(pilot)

    assert problem == "✗ must be a number"
    assert app.fake is not None
    assert sent_config(app.fake, "config.set") == []


async def test_daemon_problem_beside_website_row(tmp_path: Path) -> None:
    app = fake_host(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = ConfigScreen()
        await open_screen(pilot, screen)
        await press_button(pilot, screen.query_one("#field-interspire-website_lists .add-website", Button))
        rows = screen.form.website_lists.rows
        assert len(rows) == 2
        await replace_text(pilot, rows[1].query_one(".website-id", Input), "2")
        duplicate = text_of(rows[1].query_one(".website-problem", Static))

        await replace_text(pilot, rows[1].query_one(".website-id", Input), "4")
        rows[1].query_one(Select).value = 2
        await settle(pilot)
        changes, local = screen.form.changes()

        await press_button(pilot, rows[0].query_one(".remove-website", Button))
        after_remove, _local = screen.form.changes()

    assert duplicate == "✗ website 2 is listed twice"
    assert local == {}
    assert changes == {"interspire": {"website_lists": {"2": 3, "4": 2}}}
    assert after_remove == {"interspire": {"website_lists": {"4": 2}}}


async def test_custom_fields_follow_list(tmp_path: Path) -> None:
    app = fake_host(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = ConfigScreen()
        await open_screen(pilot, screen)
        first = screen.query_one("#field-interspire-firstname_field_id", Select)
        overlay = first.query_one(OptionList)
        labels = [str(overlay.get_option_at_index(index).prompt) for index in range(overlay.option_count)]
        screen.query_one("#field-interspire-list_id", Select).value = 3
        await settle(pilot)

    assert first.value == 2
    assert labels[1:] == ["First name (2)", "Last name (3)", "City (7)"]
    assert app.fake is not None
    assert [params for name, params in app.fake.calls if name == "iem.fields"] == [{"list_id": 1}, {"list_id": 3}]


async def test_read_only_save_disabled(tmp_path: Path) -> None:
    app = fake_host(tmp_path, can_write=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = ConfigScreen()
        await open_screen(pilot, screen)
        await replace_text(pilot, screen.query_one("#field-magento-host", Input), "db1")
        await pilot.press("ctrl+s")
        await settle(pilot)
        disabled = screen.query_one("#save", Button).disabled
        state = text_of(screen.query_one("#config-state", Static))

    assert disabled
    assert state.startswith("Read only: saving needs write access")
    assert app.fake is not None
    assert sent_config(app.fake, "config.set") == []


async def test_save_from_leave_question(tmp_path: Path) -> None:
    app = fake_host(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = ConfigScreen()
        await open_screen(pilot, screen)
        await replace_text(pilot, screen.query_one("#field-schedule-jitter", Input), "10m")
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("s")
        await settle(pilot)
        left = app.screen is not screen

    assert left
    assert app.fake is not None
    assert sent_config(app.fake, "config.set") == [{"schedule": {"jitter": "10m"}}]


async def test_schedule_time_of_day(tmp_path: Path) -> None:
    app = fake_host(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = ConfigScreen()
        await open_screen(pilot, screen)
        screen.query_one("#field-schedule-mode", Select).value = "at"
        await settle(pilot)
        interval_shown = screen.form.row("schedule.interval").display
        _changes, local = screen.form.changes()
        await replace_text(pilot, screen.query_one("#field-schedule-at", Input), "3:30")
        changes, _local = screen.form.changes()

    assert not interval_shown
    assert local == {"schedule.at": 'enter a local time of day as "HH:MM"'}
    assert changes == {"schedule": {"at": "3:30"}}


async def test_plan_blocked_warning(tmp_path: Path) -> None:
    plan = {**FAKE_PLAN, "blocked": "the run would unsubscribe 80 subscribers in IEM, more than the limit of 50"}
    app = fake_host(tmp_path, plan=plan)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, PlanScreen())
        warning = text_of(app.screen.query_one("#plan-blocked", Static))

    assert warning.startswith("⚠ A sync would be blocked by the safety brake: the run would unsubscribe 80")


async def test_plan_left_while_planning(tmp_path: Path) -> None:
    app = fake_host(tmp_path, delays={"plan": 0.3})
    failures: list[str] = []

    def record_failure(message: Message) -> None:
        if isinstance(message, Worker.StateChanged) and message.state == WorkerState.ERROR:
            failures.append(repr(message.worker.error))

    async with app.run_test(size=(80, 24), message_hook=record_failure) as pilot:
        screen = PlanScreen()
        await app.open(screen)
        await pilot.pause()
        planning = screen.is_planning
        await pilot.press("escape")
        await pilot.pause(0.5)
        left = app.screen is not screen

    assert planning
    assert left
    assert failures == []


async def test_plan_selected_action_items(tmp_path: Path) -> None:
    app = fake_host(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_screen(pilot, PlanScreen())
        actions = app.screen.query_one("#plan-actions", DataTable)
        rows = [[str(cell) for cell in actions.get_row_at(index)] for index in range(actions.row_count)]
        actions.focus()
        await pilot.press("down", "down")
        await pilot.pause()
        items = app.screen.query_one("#plan-items", DataTable)
        emails = [str(items.get_row_at(index)[0]) for index in range(items.row_count)]
        more = text_of(app.screen.query_one("#plan-more", Static))
        failed = text_of(app.screen.query_one("#plan-failed-lines", Static)).splitlines()

        await pilot.press("ctrl+r")
        await settle(pilot)

    assert rows == [["added to IEM", "Magento → IEM", "3"], ["unsubscribed in IEM", "Magento → IEM", "2"],
                    ["subscribed in Magento", "IEM → Magento", "1"]]
    assert emails == ["anna@example.test"]
    assert more == ""
    assert failed == [("xxxxxxxxxxxxxxxxxxxx@example.test (guest subscribers created in Magento): "
                       "email is 160 characters long; Magento stores at most 150")]
    assert app.fake is not None
    assert [params for name, params in app.fake.calls if name == "plan"] == [{"limit": 50}, {"limit": 50}]


# --- the form's conversions, without a screen ---


def test_problem_path_and_reason() -> None:
    problem = "interspire.url = 'mail.example.hu': must be the full http(s) address"
    assert problem_path(problem) == "interspire.url"
    assert problem_reason(problem, "interspire.url", ("mail.example.hu",)) == "must be the full http(s) address"
    assert problem_path("interspire.token: missing; add it under [interspire]") == "interspire.token"
    assert problem_reason("interspire.token: missing; add it", "interspire.token") == "missing; add it"
    assert problem_path("[intersp]: unknown key; did you mean 'interspire'?") is None
    assert problem_reason("magento.password = ********: must not be empty", "magento.password") == "must not be empty"
    assert problem_reason("schedule.at = 'x: y': bad", "schedule.at", ()) == "'x: y': bad"


def test_to_value_by_kind() -> None:
    port = FieldSpec("magento", "port", "integer", "Port")
    timeout = FieldSpec("interspire", "timeout", "number", "Timeout")
    url = FieldSpec("interspire", "url", "text", "URL", required=True)
    assert to_value(port, " 3307 ") == 3307
    assert to_value(port, "") is None
    assert to_value(timeout, "2.5") == 2.5
    assert to_value(timeout, "60") == 60
    assert to_value(url, "") == ""
    with pytest.raises(LocalProblem):
        to_value(port, "-")


def test_website_rows_to_table() -> None:
    assert website_lists_value([]) == (None, {})
    assert website_lists_value([("2", 3), ("5", 1)]) == ({"2": 3, "5": 1}, {})
    table, problems = website_lists_value([("2", 3), ("02", 4), ("", 1), ("6", None)])
    assert table == {"2": 3}
    assert set(problems) == {1, 2, 3}


# --- snapshots (scripted daemon, fixed data) ---


def _snapshot_run(screen_factory: Callable[[], Screen]) -> Callable[[Pilot], Any]:
    async def run_before(pilot: Pilot) -> None:
        await open_screen(pilot, screen_factory())

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_config_screen_snapshot(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(fake_host(tmp_path), terminal_size=size, run_before=_snapshot_run(ConfigScreen))


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_plan_screen_snapshot(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(fake_host(tmp_path), terminal_size=size, run_before=_snapshot_run(PlanScreen))


def test_config_check_snapshot_no_color(snap_compare: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")

    async def run_before(pilot: Pilot) -> None:
        screen = ConfigScreen()
        await open_screen(pilot, screen)
        await pilot.press("ctrl+t")
        await settle(pilot)

    assert snap_compare(fake_host(tmp_path), terminal_size=(80, 24), run_before=run_before)


def test_config_problem_snapshot(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Pilot) -> None:
        screen = ConfigScreen()
        await open_screen(pilot, screen)
        await replace_text(pilot, screen.query_one("#field-interspire-url", Input), "nope")
        field = screen.query_one("#field-interspire-url", Input)
        field.cursor_blink = False  # a blinking cursor makes the snapshot depend on timing
        field.focus()
        await settle(pilot)

    assert snap_compare(fake_host(tmp_path), terminal_size=(80, 24), run_before=run_before)
