"""The `?` help: every key of the screen below and of the App, made from their bindings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from edm_tui.i18n import N_, _


@dataclass(frozen=True)
class KeyHelp:
    """One line of help: a key, what it does, and why it is disabled if it is."""

    key: str
    description: str
    action: str
    enabled: bool = True
    disabled_reason: str = ""


@dataclass(frozen=True)
class HelpSection:
    title: str
    keys: tuple[KeyHelp, ...]


class HelpScreen(ModalScreen[None]):
    """Lists keys by section; escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", N_("Close"), id="help_close"),
    ]

    def __init__(self, sections: list[HelpSection], notes: list[str] | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.sections = sections
        self.notes = notes or []

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="help-dialog") as dialog:
            dialog.border_title = _("Keys")
            dialog.border_subtitle = _("escape closes")
            for section in self.sections:
                if section.keys:
                    yield Static(section.title, classes="help-heading")
                    yield Static(self._table(section.keys), classes="help-keys")
            for note in self.notes:
                yield Static(note, classes="help-note", markup=False)

    @staticmethod
    def _table(keys: tuple[KeyHelp, ...]) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True)
        table.add_column()
        for item in keys:
            description = Text(item.description)
            if not item.enabled:
                description.stylize("dim")
                reason = item.disabled_reason or _("not available here")
                description.append(" — " + _("disabled: {reason}").format(reason=reason), style="dim italic")
            table.add_row(Text(item.key, style="bold"), description)
        return table

    def action_close(self) -> None:
        self.dismiss(None)
