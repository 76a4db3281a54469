"""Field descriptions for the settings form: one per key of the configuration file, with conversions.

The keys, types and defaults follow `edm_tui.config` (SCHEMA and the dataclasses). The form
keeps what the user typed as text. `to_value()` turns that text into the TOML value sent to
the daemon's `config.validate` and `config.set`, where None removes the key from the file.
The daemon's checks stay the authority, so the form only catches what cannot be sent at
all, such as "-" in a number field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edm_tui.config import (
    DaemonConfig,
    InterspireConfig,
    MagentoConfig,
    ScheduleConfig,
    SyncConfig,
)
from edm_tui.i18n import _

MASK = "********"  # how config.get shows a stored token or password

# Kinds of field, each with its own control in the form.
TEXT = "text"
SECRET = "secret"
INTEGER = "integer"
NUMBER = "number"
DURATION = "duration"
CLOCK = "clock"
SWITCH = "switch"
LIST = "list"  # an IEM list id, chosen from iem.lists
CUSTOM_FIELD = "custom_field"  # an IEM custom field id, chosen from iem.fields
LANGUAGE = "language"
WEBSITE_LISTS = "website_lists"  # Magento website id -> IEM list id


class LocalProblem(ValueError):
    """A value the form cannot convert for the daemon; the message is shown beside the field."""


@dataclass(frozen=True)
class FieldSpec:
    section: str
    key: str
    kind: str
    label: str
    help: str = ""
    required: bool = False
    placeholder: str = ""

    @property
    def path(self) -> str:
        """The key path the daemon uses in its problems, e.g. "interspire.url"."""
        return f"{self.section}.{self.key}"

    @property
    def widget_id(self) -> str:
        return f"field-{self.section}-{self.key}"


@dataclass(frozen=True)
class SectionSpec:
    name: str  # the TOML table
    title: str
    fields: tuple[FieldSpec, ...]


def _default(config_class: type, key: str) -> Any:
    for item in dataclasses.fields(config_class):
        if item.name == key:
            return item.default
    raise KeyError(key)


def format_duration(seconds: float) -> str:
    """Write a number of seconds the way the configuration file does: "24h", "15m", "30s"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _default_text(config_class: type, key: str) -> str:
    return _("default: {value}").format(value=to_text(_default(config_class, key)))


def _default_duration(key: str) -> str:
    return _("default: {value}").format(value=format_duration(_default(ScheduleConfig, key)))


def config_sections() -> tuple[SectionSpec, ...]:
    """Return the form's sections in screen order; built per call so that labels are translated."""
    interspire = (
        FieldSpec("interspire", "url", TEXT, _("XML API address"), required=True,
                  help=_("The XML path from IEM's user settings, ending in xml.php."),
                  placeholder="https://mail.example.hu/xml.php"),
        FieldSpec("interspire", "username", TEXT, _("Username"), required=True,
                  help=_("The IEM user whose XML token is used.")),
        FieldSpec("interspire", "token", SECRET, _("XML token"), required=True,
                  help=_("From the same user's Advanced User Settings.")),
        FieldSpec("interspire", "list_id", LIST, _("List"), required=True,
                  help=_("Receives the subscribers of every website not listed below.")),
        FieldSpec("interspire", "website_lists", WEBSITE_LISTS, _("Lists per website"),
                  help=_("Magento websites that have a list of their own.")),
        FieldSpec("interspire", "firstname_field_id", CUSTOM_FIELD, _("First name field"),
                  help=_("The list's custom field that receives the first name.")),
        FieldSpec("interspire", "lastname_field_id", CUSTOM_FIELD, _("Last name field"),
                  help=_("The list's custom field that receives the last name.")),
        FieldSpec("interspire", "concurrency", INTEGER, _("Parallel IEM calls"),
                  help=_("1 to 64."), placeholder=_default_text(InterspireConfig, "concurrency")),
        FieldSpec("interspire", "timeout", NUMBER, _("Timeout (seconds)"),
                  help=_("How long to wait for one IEM response, at most 3600."),
                  placeholder=_default_text(InterspireConfig, "timeout")),
        FieldSpec("interspire", "retries", INTEGER, _("Retries"),
                  help=_("Extra attempts after a timeout or a broken response, 0 to 10."),
                  placeholder=_default_text(InterspireConfig, "retries")),
        FieldSpec("interspire", "verify_tls", SWITCH, _("Check the certificate"),
                  help=_("Turn off only for a test server with a self-signed certificate.")),
    )
    magento = (
        FieldSpec("magento", "host", TEXT, _("Database host"), placeholder=_default_text(MagentoConfig, "host")),
        FieldSpec("magento", "port", INTEGER, _("Port"), placeholder=_default_text(MagentoConfig, "port")),
        FieldSpec("magento", "user", TEXT, _("Database user"), placeholder=_default_text(MagentoConfig, "user")),
        FieldSpec("magento", "password", SECRET, _("Password")),
        FieldSpec("magento", "database", TEXT, _("Database name"), required=True),
        FieldSpec("magento", "table_prefix", TEXT, _("Table prefix"),
                  help=_("db/table_prefix from app/etc/env.php; empty when the shop has none.")),
        FieldSpec("magento", "unix_socket", TEXT, _("Unix socket"),
                  help=_("Connect through this socket instead of host and port."),
                  placeholder="/run/mysqld/mysqld.sock"),
    )
    sync = (
        FieldSpec("sync", "import_new_subscribers", SWITCH, _("Import new IEM subscribers"),
                  help=_("Create Magento guest subscribers for people who subscribed only in IEM.")),
        FieldSpec("sync", "bounced_is_unsubscribed", SWITCH, _("Bounce means unsubscribe"),
                  help=_("A bounce in IEM unsubscribes the address in Magento.")),
        FieldSpec("sync", "add_to_autoresponders", SWITCH, _("Start autoresponders"),
                  help=_("For subscribers added after the first sync of a list.")),
    )
    schedule = (
        FieldSpec("schedule", "enabled", SWITCH, _("Run on schedule"),
                  help=_("Off: the daemon runs a sync only when asked.")),
        FieldSpec("schedule", "interval", DURATION, _("Every"),
                  help=_('Time between runs, e.g. "24h", "12h" or "30m".'),
                  placeholder=_default_duration("interval")),
        FieldSpec("schedule", "at", CLOCK, _("Daily at"), help=_('Local time of day, e.g. "03:30".'),
                  placeholder="03:30"),
        FieldSpec("schedule", "jitter", DURATION, _("Random delay"),
                  help=_("Up to this much is added to each scheduled start."),
                  placeholder=_default_duration("jitter")),
        FieldSpec("schedule", "catch_up_delay", DURATION, _("Catch-up delay"),
                  help=_("A run missed while the daemon was down starts this long after it comes back."),
                  placeholder=_default_duration("catch_up_delay")),
    )
    daemon = (
        FieldSpec("daemon", "socket", TEXT, _("Socket"),
                  help=_("Takes effect when the daemon restarts."), placeholder="/run/edm-sync/edm-sync.sock"),
        FieldSpec("daemon", "socket_group", TEXT, _("Socket group"),
                  help=_("Members may connect and read status and history.")),
        FieldSpec("daemon", "admin_group", TEXT, _("Admin group"),
                  help=_("Members may also start and cancel runs and change settings.")),
        FieldSpec("daemon", "max_clients", INTEGER, _("Clients at once"),
                  help=_("1 to 1000."), placeholder=_default_text(DaemonConfig, "max_clients")),
        FieldSpec("daemon", "language", LANGUAGE, _("Language")),
    )
    storage = (
        FieldSpec("storage", "state_dir", TEXT, _("State folder"),
                  help=_("Holds the run history and the last synced state. A new, empty folder "
                         "makes the next run a first run again."),
                  placeholder="/var/lib/edm-sync"),
    )
    return (
        SectionSpec("interspire", _("IEM"), interspire),
        SectionSpec("magento", _("Magento"), magento),
        SectionSpec("sync", _("Sync"), sync),
        SectionSpec("schedule", _("Schedule"), schedule),
        SectionSpec("daemon", _("Daemon"), daemon),
        SectionSpec("storage", _("Storage"), storage),
    )


SWITCH_DEFAULTS = {
    ("interspire", "verify_tls"): _default(InterspireConfig, "verify_tls"),
    ("sync", "import_new_subscribers"): _default(SyncConfig, "import_new_subscribers"),
    ("sync", "bounced_is_unsubscribed"): _default(SyncConfig, "bounced_is_unsubscribed"),
    ("sync", "add_to_autoresponders"): _default(SyncConfig, "add_to_autoresponders"),
    ("schedule", "enabled"): _default(ScheduleConfig, "enabled"),
}


# --- text shown in the form <-> value sent to the daemon ---


def to_text(value: Any) -> str:
    """Show a value from the file in a text field ("" when the key is absent)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def to_value(spec: FieldSpec, text: str) -> Any:
    """Convert a text field's content to the value for the daemon; None removes the key.

    Raises LocalProblem when the text cannot be sent as the key's type.
    """
    text = text.strip()
    if not text:
        # A required key is sent empty so that the daemon reports it as missing. An optional
        # key is removed, which gives it the default that the placeholder shows.
        return "" if spec.required else None
    if spec.kind == INTEGER:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise LocalProblem(_("must be a whole number")) from None
    if spec.kind == NUMBER:
        try:
            number = float(text.replace("_", ""))
        except ValueError:
            raise LocalProblem(_("must be a number")) from None
        return int(number) if number.is_integer() else number
    return text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def representable(spec: FieldSpec, value: Any) -> bool:
    """Tell whether the form's control can show `value` from the file as it is.

    A value it cannot show (a string where a number belongs, list_id = "two") is replaced by
    whatever the control holds, so the form counts that key as changed from the start.
    """
    if spec.kind == SWITCH:
        return isinstance(value, bool)
    if spec.kind in (LIST, CUSTOM_FIELD):
        return _is_int(value) and value > 0
    if spec.kind == LANGUAGE:
        return value in ("en", "hu")
    if spec.kind == INTEGER:
        return _is_int(value)
    if spec.kind == NUMBER:
        return _is_int(value) or isinstance(value, float)
    if spec.kind == DURATION:
        return _is_int(value) or isinstance(value, (float, str))
    if spec.kind == WEBSITE_LISTS:
        return isinstance(value, dict) and all(_is_int(list_id) for list_id in value.values())
    return isinstance(value, str)


def website_lists_value(rows: list[tuple[str, int | None]]) -> tuple[dict[str, int] | None, dict[int, str]]:
    """Convert the website rows to the `website_lists` table.

    Returns the table (None when there are no rows, which removes the key) and the local
    problems by row index.
    """
    table: dict[str, int] = {}
    problems: dict[int, str] = {}
    for index, (website_text, list_id) in enumerate(rows):
        website = website_text.strip()
        if not website.isdigit() or int(website) == 0:
            problems[index] = _("enter a Magento website id (1, 2, …)")
        elif str(int(website)) in table:
            problems[index] = _("website {website} is listed twice").format(website=int(website))
        elif list_id is None:
            problems[index] = _("choose a list")
        else:
            table[str(int(website))] = list_id
    return (table or None), problems


# --- the daemon's problems, matched to fields ---


def problem_path(problem: str) -> str | None:
    """Return the key path a problem starts with ("interspire.url"), or None for a section or file.

    The daemon writes problems as "section.key = value: reason" or "section.key: reason". A
    problem about a whole section starts with "[section]".
    """
    if problem.startswith("["):
        return None
    end = len(problem)
    for separator in (" ", ":"):
        position = problem.find(separator)
        if position != -1:
            end = min(end, position)
    path = problem[:end]
    if "." not in path:
        return None
    return path


def problem_reason(problem: str, path: str, values: tuple[Any, ...] = ()) -> str:
    """Return the reason part of a problem, without its key path and the value it quotes.

    `values` are the values the daemon may have quoted: what was sent, or what the file
    contains. When none of them matches, the quoted value stays in the text.
    """
    rest = problem[len(path):]
    if rest.startswith(": "):
        return rest[2:]
    if rest.startswith(" = "):
        rest = rest[3:]
        for value in (*values, MASK):
            quoted = value if value == MASK else repr(value)
            if rest.startswith(f"{quoted}: "):
                return rest[len(quoted) + 2:]
    return rest.strip()
