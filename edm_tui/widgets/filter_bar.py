"""A one-line bar of filter fields that a screen opens and closes with a key."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widget import Widget

from edm_tui.i18n import N_


class FilterBar(Horizontal):
    """Filter fields, hidden until `open()`. Escape closes the bar and keeps the filters.

    The fields are created on the first `open()`, because two Selects cost more to mount
    than the rest of a history screen, which then shows its first page sooner.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", N_("Close filter"), id="filter.close"),
    ]

    DEFAULT_CSS = """
    FilterBar {
        height: auto;
        display: none;
        padding: 0 1;
        background: $boost;
        &.-open {
            display: block;
        }
        & > Select {
            width: 26;
            margin-right: 1;
        }
        & > Input {
            width: 1fr;
        }
    }
    """

    class Closed(Message):
        """The user closed the bar. The screen should move the focus back to its grid."""

        def __init__(self, bar: FilterBar) -> None:
            super().__init__()
            self.bar = bar

        @property
        def control(self) -> FilterBar:
            return self.bar

    def __init__(self, make_fields: Callable[[], Iterable[Widget]], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._make_fields = make_fields

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    async def open(self) -> None:
        """Show the bar, creating its fields the first time, and focus the first field."""
        self.add_class("-open")
        if not self.children:
            await self.mount_all(self._make_fields())
        # The fields can take the focus only once the bar is displayed.
        self.call_after_refresh(self._focus_first_field)

    def _focus_first_field(self) -> None:
        for child in self.children:
            if child.focusable:
                child.focus()
                return

    def action_close(self) -> None:
        self.remove_class("-open")
        self.post_message(self.Closed(self))
