"""Translation of everything a person reads: gettext catalogs managed with Babel.

The language is chosen without OS locales: `set_language()` with the config's value, else
LC_ALL / LC_MESSAGES / LANG (any `hu_*` gives Hungarian), else English.
"""

from __future__ import annotations

import gettext
import io
import os
from collections.abc import Callable
from pathlib import Path

DOMAIN = "edm_sync"
LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("en", "hu")

_translation: gettext.NullTranslations = gettext.NullTranslations()
_language = "en"


def language_from_environment() -> str:
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name, "")
        if value:
            return "hu" if value.lower().startswith("hu") else "en"
    return "en"


def _load_catalog(language: str) -> gettext.NullTranslations:
    """Load the compiled catalog when the package build made one, else compile the .po in memory."""
    if language == "en":
        return gettext.NullTranslations()
    folder = LOCALE_DIR / language / "LC_MESSAGES"
    compiled = folder / f"{DOMAIN}.mo"
    if compiled.exists():
        with open(compiled, "rb") as handle:
            return gettext.GNUTranslations(handle)
    source = folder / f"{DOMAIN}.po"
    if not source.exists():
        return gettext.NullTranslations()

    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with open(source, "rb") as handle:
        catalog = read_po(handle, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def set_language(language: str | None = None) -> str:
    """Activate a catalog; returns the language now in use."""
    global _translation, _language
    wanted = (language or language_from_environment()).split("_")[0].split(".")[0].lower()
    if wanted not in LANGUAGES:
        wanted = "en"
    _translation = _load_catalog(wanted)
    _language = wanted
    return wanted


def current_language() -> str:
    return _language


def _(message: str) -> str:
    return _translation.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _translation.ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark a message for the catalog without translating it yet.

    Texts made when a class is created (key descriptions, tooltips) are kept in English this
    way and translated where they are shown, so a language set later from the config applies.
    """
    return message


# argparse's own texts that reach the user of `edm-sync` and `edm-tui` (Python 3.11's wording),
# listed so the catalog has them; `translate_argparse()` routes argparse through the catalog.
ARGPARSE_MESSAGES = (
    N_("usage: "),
    N_("positional arguments"),
    N_("options"),
    N_("show this help message and exit"),
    N_("show program's version number and exit"),
    N_("%(prog)s: error: %(message)s\n"),
    N_("argument %(argument_name)s: %(message)s"),
    N_("unrecognized arguments: %s"),
    N_("the following arguments are required: %s"),
    N_("one of the arguments %s is required"),
    N_("not allowed with argument %s"),
    N_("ignored explicit argument %r"),
    N_("expected one argument"),
    N_("expected at most one argument"),
    N_("expected at least one argument"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("invalid %(type)s value: %(value)r"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("unknown parser %(parser_name)r (choices: %(choices)s)"),
    N_("can't open '%(filename)s': %(error)s"),
)


def translate_argparse() -> None:
    """Make argparse's own texts (usage, section titles, its errors) follow the active language.

    argparse looks up `_` and `ngettext` in its module namespace at each call, so replacing
    them there is enough; parsers built afterwards get translated section titles.
    """
    import argparse

    argparse._ = _  # type: ignore[attr-defined]
    argparse.ngettext = ngettext  # type: ignore[attr-defined]
    # NOTE: "expected %s argument(s)" is an ngettext pair in argparse and is left in English.


class Translatable:
    """A message with its parameters, translated only when it is shown.

    The daemon sends these over its socket as `{"msgid": ..., "params": {...}}` next to the
    English text, so each client shows them in its own language. Parameter values may be
    Translatable themselves.
    """

    __slots__ = ("msgid", "params")

    def __init__(self, msgid: str, **params: object) -> None:
        self.msgid = msgid
        self.params = params

    def __str__(self) -> str:
        """Return the message in the active language."""
        return _format(_(self.msgid), {k: str(v) if isinstance(v, Translatable) else v for k, v in self.params.items()},
                       self.english)

    def __repr__(self) -> str:
        return f"Translatable({self.msgid!r}, **{self.params!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Translatable) and (self.msgid, self.params) == (other.msgid, other.params)

    def __hash__(self) -> int:
        return hash(self.msgid)

    def english(self) -> str:
        """Return the message in English, whatever the active language is."""
        return self.msgid.format(**{k: v.english() if isinstance(v, Translatable) else v
                                    for k, v in self.params.items()})

    def as_dict(self) -> dict[str, object]:
        """Return the JSON form sent over the socket; parameters other than JSON scalars become text."""
        return {"msgid": self.msgid, "params": {k: _json_param(v) for k, v in self.params.items()}}


def _json_param(value: object) -> object:
    if isinstance(value, Translatable):
        return value.as_dict()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def message_dict(message: Translatable | str) -> dict[str, object]:
    """Return the socket form of a message; plain text becomes a message without a catalog entry."""
    if isinstance(message, Translatable):
        return message.as_dict()
    return {"msgid": "{text}", "params": {"text": message}}


def _format(template: str, params: dict[str, object], fallback: Callable[[], str]) -> str:
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):
        return fallback()  # a translation with a broken placeholder shows the English text


def translate_message(data: object, english: str = "") -> str:
    """Show a message the daemon sent as `{"msgid", "params"}` in the active language.

    Anything else (an older daemon, plain text) is returned as `english` or as text.
    """
    if not isinstance(data, dict) or not isinstance(data.get("msgid"), str):
        return english or ("" if data is None else str(data))
    params = data.get("params") if isinstance(data.get("params"), dict) else {}
    shown = {k: translate_message(v, str(v)) if isinstance(v, dict) else v for k, v in params.items()}
    return _format(_(data["msgid"]), shown, lambda: english or data["msgid"])


set_language()


def _babel_locale() -> str:
    return "hu_HU" if _language == "hu" else "en_GB"


def format_number(value: float) -> str:
    """Format a number for the active language: 7,535.5 in English, 7 535,5 in Hungarian."""
    from babel.numbers import format_decimal

    return format_decimal(value, locale=_babel_locale())


def format_datetime(stamp: float | None, *, seconds: bool = True, missing: str = "-") -> str:
    """Format a local date and time, year first in both languages.

    English 2026-12-04 03:30:00, Hungarian 2026. 12. 04. 03:30:00; without `seconds` the
    seconds are left out, and `missing` stands for None.
    """
    if stamp is None:
        return missing
    import datetime as dt

    from babel.dates import format_datetime as babel_format

    moment = dt.datetime.fromtimestamp(stamp)
    clock = "HH:mm:ss" if seconds else "HH:mm"
    if _language == "hu":
        return babel_format(moment, f"yyyy. MM. dd. {clock}", locale="hu_HU")
    return babel_format(moment, f"yyyy-MM-dd {clock}", locale="en_GB")


def format_duration(seconds: float) -> str:
    """Format a duration in the active language: "19.1 s" below a minute, else "4 minutes" / "4 perc"."""
    from babel.dates import format_timedelta

    if seconds < 60:
        return _("{seconds} s").format(seconds=format_number(round(seconds, 1)))
    return format_timedelta(seconds, threshold=1.1, locale=_babel_locale())
