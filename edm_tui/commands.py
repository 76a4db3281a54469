"""The command palette's provider: every action of the dashboard, searchable by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from rich.align import Align
from rich.text import Text
from textual.command import CommandList, DiscoveryHit, Hit, Hits, Provider
from textual.command import CommandPalette as TextualCommandPalette
from textual.widgets.option_list import OptionDoesNotExist

from edm_tui.i18n import _

if TYPE_CHECKING:
    from edm_tui.app import EdmTuiApp


@dataclass(frozen=True)
class PaletteCommand:
    action: str  # an App action name, e.g. "sync_now"
    title: str
    help: str


def palette_commands() -> list[PaletteCommand]:
    """Return the App actions the palette offers, in the order it lists them."""
    return [
        PaletteCommand("sync_now", _("Sync now"), _("Start a sync run in the daemon")),
        PaletteCommand("plan", _("Plan"), _("Show what a sync would change, without writing anything")),
        PaletteCommand("history", _("History"), _("Browse past runs and their items")),
        PaletteCommand("config", _("Config"), _("Show and edit the daemon's configuration")),
        PaletteCommand("refresh", _("Refresh"), _("Reload what this screen shows from the daemon")),
        PaletteCommand("help", _("Help"), _("List the keys of this screen")),
        PaletteCommand("request_quit", _("Quit"), _("Quit the dashboard; a sync in progress goes on")),
    ]


class DashboardCommands(Provider):
    """A provider of every App action. An action the user may not use now gives the reason in its help.

    Search matches the translated title and the English action name, so "sync" finds
    "Sync now" in every language.
    """

    @property
    def _app(self) -> EdmTuiApp:
        return self.app  # type: ignore[return-value]

    def _entries(self) -> list[tuple[PaletteCommand, str, Callable[[], object]]]:
        entries = []
        for command in palette_commands():
            reason = self._app.disabled_reason(command.action)
            help_text = command.help if reason is None else _("{help} (disabled: {reason})").format(
                help=command.help, reason=reason)
            entries.append((command, help_text, partial(self._app.run_command, command.action)))
        return entries

    async def discover(self) -> Hits:
        for command, help_text, callback in self._entries():
            yield DiscoveryHit(command.title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command, help_text, callback in self._entries():
            score = max(matcher.match(command.title), matcher.match(command.action.replace("_", " ")))
            if score > 0:
                yield Hit(score, matcher.highlight(command.title), callback, text=command.title, help=help_text)


class CommandPalette(TextualCommandPalette):
    """Textual's command palette with its "No matches found" line in the active language.

    NOTE: Textual 8.2.8 builds that line inside a private timer callback, so this class
    replaces its text just after the same countdown; the English line can show for one frame.
    """

    def _start_no_matches_countdown(self, search_value: str) -> None:
        super()._start_no_matches_countdown(search_value)
        if search_value:
            self.set_timer(self._NO_MATCHES_COUNTDOWN + 0.05, self._translate_no_matches)

    def _translate_no_matches(self) -> None:
        try:
            command_list = self.query_one(CommandList)
            command_list.get_option(self._NO_MATCHES)
        except (OptionDoesNotExist, LookupError):
            return
        prompt = Align.center(Text(_("No matches found"), style="not bold"))
        command_list.replace_option_prompt(self._NO_MATCHES, prompt)
