"""The footer, with key descriptions translated when they are shown."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer as TextualFooter
from textual.widgets._footer import FooterKey, FooterLabel

from edm_tui.i18n import N_, _

# The dashboard's own keys. They work on every screen, but only the dashboard lists them in its
# footer: with them, the footers of the other screens do not fit in 80 columns in Hungarian.
DASHBOARD_ACTIONS = frozenset({"sync_now", "plan", "history", "config"})


class Footer(TextualFooter):
    """Textual's footer, translating each key's description and tooltip into the active language.

    Key bindings carry English texts (marked with `N_`) because they are made when their
    class is created; this is the place where they reach the screen. A screen leaves keys out
    of its footer by listing their actions in `FOOTER_HIDDEN_ACTIONS`; the help screen still
    lists them. Textual's own widgets
    (the Select menu, the command palette) are translated the same way from the catalog.
    """

    def compose(self) -> ComposeResult:
        hidden = getattr(self.screen, "FOOTER_HIDDEN_ACTIONS", frozenset())
        for widget in super().compose():
            if isinstance(widget, FooterKey) and widget.action in hidden:
                continue
            if isinstance(widget, FooterKey):
                widget.description = _(widget.description) if widget.description else ""
                if isinstance(widget.tooltip, str) and widget.tooltip:
                    widget.tooltip = _(widget.tooltip)
            elif isinstance(widget, FooterLabel) and isinstance(widget.content, str):
                widget.update(_(widget.content))
            yield widget


# Key descriptions of Textual's own widgets that can reach this footer or the help screen,
# listed so the catalog has their translations.
TEXTUAL_KEY_DESCRIPTIONS = (
    N_("Dismiss menu"),  # an open Select list
    N_("Exit the command palette"),
    N_("palette"),  # the command palette key of an App without its own binding for it
)
