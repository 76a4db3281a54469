"""Every dashboard screen in Hungarian at 80×24: snapshots, and a check that no label is cut.

The check reads what the screen renders. A label, button or footer key that sticks out of the
area it may draw in, or whose words do not all reach the screen, fails the test with the
label's text. Widgets scrolled out of view vertically (the long config form) are skipped:
they are reachable by scrolling, not cut.

Regenerate the pictures with `.venv/bin/pytest tests/test_tui_hungarian.py --snapshot-update`
and look at the SVGs under tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.app import App
from textual.command import CommandInput, CommandPalette
from textual.content import Content
from textual.pilot import Pilot
from textual.visual import RichVisual
from textual.widget import Widget
from textual.widgets import Button, DataTable, Input, Label, Static
from textual.widgets._footer import FooterKey

from edm_tui import i18n
from edm_tui.screens.config import ConfigScreen, UnsavedChangesScreen
from edm_tui.screens.help import HelpScreen
from edm_tui.screens.history import HistoryScreen
from edm_tui.screens.plan import PlanScreen
from edm_tui.screens.run_detail import RunDetailScreen
from edm_tui.widgets.dialogs import BrakeOverrideDialog, QuitDialog
from tests.daemon_support import DaemonProcess
from tests.test_tui_app import (
    MISSING_SOCKET,
    RUNS,
    FakeDaemon,
    _wait_for_dashboard,
    _wait_for_unavailable,
    idle_status,
    make_app,
    running_status,
    wait_until,
)
from tests.test_tui_config import fake_host, open_screen, replace_text, settle
from tests.test_tui_history import BIG_RUN, app_for, choose, fixed_daemon, wait_loaded  # noqa: F401

SIZE = (80, 24)
LABEL_TYPES = (Label, Button, FooterKey, Static)


@pytest.fixture(autouse=True)
def hungarian(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hungarian messages and UTC times for every test here, English again afterwards."""
    i18n.set_language("hu")
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("NO_COLOR", raising=False)
    time.tzset()
    yield
    i18n.set_language("en")
    monkeypatch.undo()
    time.tzset()


# --- the check for cut labels ---


def screen_text(app: App) -> str:
    """Return the characters the current screen shows, one line per terminal row."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def _plain(widget: Widget) -> str:
    if isinstance(widget, FooterKey):
        return f"{widget.key_display} {widget.description}".strip()
    if isinstance(widget, Button):
        return str(widget.label)
    rendered = widget.render()
    if isinstance(rendered, Content):
        return rendered.plain
    if isinstance(rendered, RichVisual):  # a Rich renderable, e.g. the help screen's key table
        console = Console(width=max(1, widget.content_region.width), record=True, file=io.StringIO())
        console.print(rendered._renderable)
        return console.export_text()
    return str(rendered)


def cut_labels(app: App) -> list[str]:
    """Return a line for each label of the screen that is cut or not fully shown."""
    screen = app.screen
    shown = screen_text(app)
    problems = []
    for widget in screen.query("*"):
        if not isinstance(widget, LABEL_TYPES) or isinstance(widget, (DataTable, Input)):
            continue
        if not widget.display or not widget.visible:
            continue
        try:
            geometry = screen.find_widget(widget)
        except Exception:  # noqa: BLE001 - Textual raises NoWidget for widgets outside the map
            continue
        region, clip = geometry.region, geometry.clip
        if region.height == 0 or region.width == 0:
            continue
        if region.y < clip.y or region.bottom > clip.bottom:
            continue  # scrolled out vertically: the user reaches it by scrolling
        text = _plain(widget)
        if not text.strip():
            continue
        if region.x < clip.x or region.right > clip.right:
            problems.append(f"{type(widget).__name__} {text!r} sticks out at the side ({region} in {clip})")
            continue
        missing = [word for word in text.split() if word not in shown]
        if missing:
            problems.append(f"{type(widget).__name__} {text!r}: not on screen: {missing}")
    for table in screen.query(DataTable):
        for column in table.columns.values():
            label = column.label.plain
            if column.get_render_width(table) - 2 * table.cell_padding < len(label):
                problems.append(f"column {label!r} of #{table.id} is narrower than its header")
    return problems


def assert_nothing_cut(app: App) -> None:
    problems = cut_labels(app)
    assert not problems, "\n".join(problems) + "\n--- screen ---\n" + screen_text(app)


def checked(run_before: Callable[[Pilot], Any]) -> Callable[[Pilot], Any]:
    """Wrap a snapshot's `run_before` so the shown screen is checked for cut labels too."""

    async def run(pilot: Pilot) -> None:
        await run_before(pilot)
        await pilot.pause()
        assert_nothing_cut(pilot.app)

    return run


# --- the dashboard and its dialogs ---


def test_dashboard_idle_hu(tmp_path: Path, snap_compare: Any) -> None:
    with FakeDaemon(tmp_path / "d.sock", idle_status()) as fake:
        assert snap_compare(make_app(fake.path), terminal_size=SIZE, run_before=checked(_wait_for_dashboard))


def test_dashboard_running_hu(tmp_path: Path, snap_compare: Any) -> None:
    with FakeDaemon(tmp_path / "d.sock", running_status()) as fake:
        assert snap_compare(make_app(fake.path), terminal_size=SIZE, run_before=checked(_wait_for_dashboard))


def test_dashboard_read_only_hu(tmp_path: Path, snap_compare: Any) -> None:
    with FakeDaemon(tmp_path / "d.sock", idle_status(), can_write=False) as fake:
        assert snap_compare(make_app(fake.path), terminal_size=SIZE, run_before=checked(_wait_for_dashboard))


def test_unavailable_hu(snap_compare: Any) -> None:
    assert snap_compare(make_app(MISSING_SOCKET), terminal_size=SIZE, run_before=checked(_wait_for_unavailable))


def test_help_hu(tmp_path: Path, snap_compare: Any) -> None:
    async def open_help(pilot: Pilot) -> None:
        await _wait_for_dashboard(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), "the help")

    with FakeDaemon(tmp_path / "d.sock", idle_status()) as fake:
        assert snap_compare(make_app(fake.path), terminal_size=SIZE, run_before=checked(open_help))


def test_quit_dialog_hu(tmp_path: Path, snap_compare: Any) -> None:
    async def ask_to_quit(pilot: Pilot) -> None:
        await _wait_for_dashboard(pilot)
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, QuitDialog), "the quit dialog")

    with FakeDaemon(tmp_path / "d.sock", running_status()) as fake:
        assert snap_compare(make_app(fake.path), terminal_size=SIZE, run_before=checked(ask_to_quit))


def test_brake_dialog_hu(tmp_path: Path, snap_compare: Any) -> None:
    async def start_blocked(pilot: Pilot) -> None:
        await _wait_for_dashboard(pilot)
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, BrakeOverrideDialog), "the brake dialog")

    with FakeDaemon(tmp_path / "d.sock", idle_status(last_run=RUNS[2])) as fake:
        assert snap_compare(make_app(fake.path), terminal_size=SIZE, run_before=checked(start_blocked))


def test_command_palette_hu(tmp_path: Path, snap_compare: Any) -> None:
    async def search_nothing(pilot: Pilot) -> None:
        await _wait_for_dashboard(pilot)
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, CommandPalette), "the command palette")
        await pilot.press(*"zzz")
        await wait_until(pilot, lambda: "Nincs találat" in screen_text(pilot.app), "no matches")
        # A blinking cursor would be drawn or not depending on when the snapshot is taken.
        pilot.app.screen.query_one(CommandInput).cursor_blink = False

    with FakeDaemon(tmp_path / "d.sock", idle_status()) as fake:
        assert snap_compare(make_app(fake.path), terminal_size=SIZE, run_before=checked(search_nothing))


async def test_command_palette_lists_hungarian(tmp_path: Path) -> None:
    with FakeDaemon(tmp_path / "d.sock", idle_status()) as fake:
        app = make_app(fake.path)
        async with app.run_test(size=SIZE) as pilot:
            await _wait_for_dashboard(pilot)
            await pilot.press("ctrl+p")
            await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "the command palette")
            await wait_until(pilot, lambda: "Szinkronizálási futás indítása" in screen_text(app), "the commands")
            placeholder = app.screen.query_one(CommandInput).placeholder

    assert placeholder == "Parancs keresése…"


# --- config and plan ---


def test_config_hu(tmp_path: Path, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await open_screen(pilot, ConfigScreen())

    assert snap_compare(fake_host(tmp_path), terminal_size=SIZE, run_before=checked(run_before))


def test_config_checked_hu(tmp_path: Path, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await open_screen(pilot, ConfigScreen())
        await pilot.press("ctrl+t")
        await settle(pilot)

    assert snap_compare(fake_host(tmp_path), terminal_size=SIZE, run_before=checked(run_before))


def test_config_unsaved_hu(tmp_path: Path, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await open_screen(pilot, ConfigScreen())
        await replace_text(pilot, pilot.app.screen.query_one("#field-magento-host", Input), "db1")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, UnsavedChangesScreen), "the question")

    assert snap_compare(fake_host(tmp_path), terminal_size=SIZE, run_before=checked(run_before))


def test_plan_hu(tmp_path: Path, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await open_screen(pilot, PlanScreen())

    assert snap_compare(fake_host(tmp_path), terminal_size=SIZE, run_before=checked(run_before))


# --- history and run detail ---


def test_history_hu(fixed_daemon: DaemonProcess, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await wait_loaded(pilot, HistoryScreen)

    app = app_for(fixed_daemon, HistoryScreen)
    assert snap_compare(app, terminal_size=SIZE, run_before=checked(run_before))


def test_history_filter_hu(fixed_daemon: DaemonProcess, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await wait_loaded(pilot, HistoryScreen)
        await choose(pilot, "status-filter", ("partial", "failed", "blocked", "interrupted"))
        await wait_loaded(pilot, HistoryScreen)

    app = app_for(fixed_daemon, HistoryScreen)
    assert snap_compare(app, terminal_size=SIZE, run_before=checked(run_before))


def test_run_detail_hu(fixed_daemon: DaemonProcess, snap_compare: Any) -> None:
    async def run_before(pilot: Pilot) -> None:
        await wait_loaded(pilot, RunDetailScreen)
        await choose(pilot, "outcome-filter", ("failed",))
        await wait_loaded(pilot, RunDetailScreen)

    app = app_for(fixed_daemon, lambda: RunDetailScreen(BIG_RUN))
    assert snap_compare(app, terminal_size=SIZE, run_before=checked(run_before))


# --- every screen inside the real dashboard app, whose own keys join each footer ---


async def test_app_screens_nothing_cut_hu(tmp_path: Path) -> None:
    with FakeDaemon(tmp_path / "d.sock", idle_status()) as fake:
        app = make_app(fake.path)
        async with app.run_test(size=SIZE) as pilot:
            await _wait_for_dashboard(pilot)
            for key, screen_type in (("h", HistoryScreen), ("c", ConfigScreen), ("p", PlanScreen)):
                await pilot.press(key)
                await wait_until(pilot, lambda: isinstance(app.screen, screen_type), screen_type.__name__)
                await pilot.pause(0.3)
                assert_nothing_cut(app)
                footer = screen_text(app).splitlines()[-1]
                assert "Súgó" in footer, footer
                await pilot.press("escape")
                await wait_until(pilot, lambda: not isinstance(app.screen, screen_type), "the dashboard")


async def test_help_lists_grid_keys_hu(tmp_path: Path) -> None:
    with FakeDaemon(tmp_path / "d.sock", idle_status()) as fake:
        app = make_app(fake.path)
        async with app.run_test(size=(100, 40)) as pilot:
            await _wait_for_dashboard(pilot)
            await pilot.press("h")
            await wait_until(pilot, lambda: isinstance(app.screen, HistoryScreen), "the history")
            await pilot.pause(0.3)
            await pilot.press("question_mark")
            await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
            help_screen = app.screen
            assert isinstance(help_screen, HelpScreen)
            shown = [item.description for section in help_screen.sections for item in section.keys]

    assert "Első sor" in shown
    assert "Rendezés a következő oszlop szerint" in shown
