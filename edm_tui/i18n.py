"""Translation of everything a person reads: gettext catalogs managed with Babel.

The language is chosen without OS locales: `set_language()` with the config's value, else
LC_ALL / LC_MESSAGES / LANG (any `hu_*` gives Hungarian), else English.
"""

from __future__ import annotations

import gettext
import os
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


def set_language(language: str | None = None) -> str:
    """Activate a catalog; returns the language now in use."""
    global _translation, _language
    wanted = (language or language_from_environment()).split("_")[0].lower()
    if wanted not in LANGUAGES:
        wanted = "en"
    _translation = gettext.translation(DOMAIN, LOCALE_DIR, languages=[wanted], fallback=True)
    _language = wanted
    return wanted


def current_language() -> str:
    return _language


def _(message: str) -> str:
    return _translation.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _translation.ngettext(singular, plural, n)


set_language()
