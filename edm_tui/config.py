"""The configuration file: where it is, what it holds, and every mistake in it at once."""

from __future__ import annotations

import difflib
import ipaddress
import logging
import math
import os
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from edm_tui.i18n import Translatable, _, ngettext

log = logging.getLogger("edm_sync.config")

APP_NAME = "edm-sync"
SYSTEM_CONFIG = Path("/etc/edm-sync/config.toml")
ENV_CONFIG = "EDM_SYNC_CONFIG"


class ConfigError(Exception):
    """The configuration could not be used; `problems` lists every reason, one per key.

    `messages` holds the same problems as messages, for clients that show them in their own
    language; `problems` is their text in the active language.
    """

    def __init__(self, path: Path | None, problems: list[Translatable | str]) -> None:
        self.path = path
        self.messages = problems
        problems = [str(problem) for problem in problems]
        self.problems = problems
        where = str(path) if path else _("the configuration")
        super().__init__(
            ngettext("{path} has {count} problem:", "{path} has {count} problems:", len(problems)).format(
                path=where, count=len(problems))
            + "\n  " + "\n  ".join(problems)
        )


@dataclass(frozen=True)
class InterspireConfig:
    url: str
    username: str
    token: str = field(repr=False)
    list_id: int
    firstname_field_id: int | None = None
    lastname_field_id: int | None = None
    website_lists: dict[int, int] = field(default_factory=dict)
    concurrency: int = 8
    timeout: float = 60.0
    retries: int = 3
    verify_tls: bool = True


@dataclass(frozen=True)
class MagentoConfig:
    database: str
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = field(default="", repr=False)
    table_prefix: str = ""
    unix_socket: str | None = None


@dataclass(frozen=True)
class SyncConfig:
    import_new_subscribers: bool = True
    bounced_is_unsubscribed: bool = True
    add_to_autoresponders: bool = True


@dataclass(frozen=True)
class StorageConfig:
    state_dir: Path

    @property
    def history_path(self) -> Path:
        return self.state_dir / "history.sqlite3"


@dataclass(frozen=True)
class ScheduleConfig:
    """When the daemon runs a sync by itself: every `interval`, or daily at `at` (local time)."""

    interval: float = 24 * 3600.0  # seconds
    at: tuple[int, int] | None = None  # (hour, minute)
    jitter: float = 0.0  # seconds of random delay added to each scheduled start
    enabled: bool = True
    catch_up_delay: float = 30.0  # seconds after start-up before an overdue run begins


@dataclass(frozen=True)
class DaemonConfig:
    socket: Path | None = None  # default: $RUNTIME_DIRECTORY/edm-sync.sock or the user's runtime dir
    socket_group: str | None = None  # group owning the socket (mode 0660): who may read
    admin_group: str | None = None  # members may start and cancel runs and change the config
    max_clients: int = 64


@dataclass(frozen=True)
class Config:
    interspire: InterspireConfig
    magento: MagentoConfig
    sync: SyncConfig
    storage: StorageConfig
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    language: str | None = None  # "en" or "hu"; default from LC_ALL / LC_MESSAGES / LANG
    path: Path | None = None
    warnings: tuple[str, ...] = ()


def default_state_dir() -> Path:
    return Path(platformdirs.user_state_dir(APP_NAME))


def user_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def find_config_path(cli_path: str | os.PathLike[str] | None) -> Path:
    """--config, else $EDM_SYNC_CONFIG, else /etc/edm-sync/config.toml if present, else the user's."""
    if cli_path:
        return Path(cli_path)
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    if SYSTEM_CONFIG.exists():
        return SYSTEM_CONFIG
    return user_config_path()


# --- value checks: each returns the converted value or raises ValueError with the reason ---


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(Translatable("must be a string in quotes"))
    return value


def _nonempty(value: Any) -> str:
    value = _string(value).strip()
    if not value:
        raise ValueError(Translatable("must not be empty"))
    return value


def _url(value: Any) -> str:
    value = _nonempty(value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            Translatable("must be the full http(s) address of IEM's xml.php, e.g. https://mail.example.hu/xml.php")
        )
    return value


@dataclass(frozen=True)
class IntRange:
    """Check for a whole number from `low` to `high`, both included."""

    low: int
    high: int

    def __call__(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(Translatable("must be a whole number without quotes"))
        if not self.low <= value <= self.high:
            raise ValueError(Translatable("must be between {low} and {high}", low=self.low, high=self.high))
        return value


def _int_range(low: int, high: int) -> Callable[[Any], int]:
    return IntRange(low, high)


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(Translatable("must be a number of seconds without quotes"))
    if not 0 < value <= 3600:
        raise ValueError(Translatable("must be more than 0 and at most 3600 seconds"))
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(Translatable("must be true or false (without quotes)"))
    return value


def _prefix(value: Any) -> str:
    value = _string(value)
    if len(value) > 20 or not all(c.isascii() and (c.isalnum() or c == "_") for c in value):
        raise ValueError(Translatable("may hold only letters, digits and _ (at most 20), as in Magento's env.php"))
    return value


def _optional_path(value: Any) -> str:
    value = _nonempty(value)
    if "\0" in value:
        raise ValueError(Translatable("must not contain a NUL character (\\0)"))
    return value


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Longer durations make no sense for a schedule, and this keeps every time sum finite.
MAX_DURATION = 366 * 86400.0


def _duration(value: Any) -> float:
    """"90s", "15m", "24h", "1d" or a number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(Translatable('must be a duration such as "30m", "24h" or "1d"'))
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().lower()
        unit = text[-1:] if text[-1:] in _DURATION_UNITS else "s"
        number = text[:-1] if text[-1:] in _DURATION_UNITS else text
        try:
            seconds = float(number) * _DURATION_UNITS[unit]
        except ValueError:
            raise ValueError(Translatable('must be a duration such as "30m", "24h" or "1d"')) from None
    if math.isnan(seconds):
        raise ValueError(Translatable('must be a duration such as "30m", "24h" or "1d"'))
    if seconds < 0:
        raise ValueError(Translatable("must not be negative"))
    if seconds > MAX_DURATION:
        raise ValueError(Translatable('must be at most 366 days ("366d")'))
    return seconds


def _interval(value: Any) -> float:
    seconds = _duration(value)
    if seconds < 1:
        raise ValueError(Translatable('must be at least one second ("1s"); a day is "24h"'))
    return seconds


def _clock(value: Any) -> tuple[int, int]:
    text = _string(value).strip()
    hour, _sep, minute = text.partition(":")
    if not (hour.isascii() and hour.isdigit() and minute.isascii() and minute.isdigit() and len(minute) == 2
            and 0 <= int(hour) <= 23 and 0 <= int(minute) <= 59):
        raise ValueError(Translatable('must be a local time of day as "HH:MM", e.g. "03:30"'))
    return (int(hour), int(minute))


def _language(value: Any) -> str:
    text = _string(value).strip().lower()
    if text not in ("en", "hu"):
        raise ValueError(Translatable('must be "en" or "hu"'))
    return text


_positive_id = _int_range(1, 2**31 - 1)

SCHEMA: dict[str, dict[str, tuple[Callable[[Any], Any], bool]]] = {
    # section -> key -> (check, required)
    "interspire": {
        "url": (_url, True),
        "username": (_nonempty, True),
        "token": (_nonempty, True),
        "list_id": (_positive_id, True),
        "firstname_field_id": (_positive_id, False),
        "lastname_field_id": (_positive_id, False),
        "website_lists": (lambda v: v, False),  # checked separately
        "concurrency": (_int_range(1, 64), False),
        "timeout": (_seconds, False),
        "retries": (_int_range(0, 10), False),
        "verify_tls": (_bool, False),
    },
    "magento": {
        "host": (_nonempty, False),
        "port": (_int_range(1, 65535), False),
        "user": (_nonempty, False),
        "password": (_string, False),
        "database": (_nonempty, True),
        "table_prefix": (_prefix, False),
        "unix_socket": (_optional_path, False),
    },
    "sync": {
        "import_new_subscribers": (_bool, False),
        "bounced_is_unsubscribed": (_bool, False),
        "add_to_autoresponders": (_bool, False),
    },
    "storage": {
        "state_dir": (_optional_path, False),
    },
    "schedule": {
        "interval": (_interval, False),
        "at": (_clock, False),
        "jitter": (_duration, False),
        "enabled": (_bool, False),
        "catch_up_delay": (_duration, False),
    },
    "daemon": {
        "socket": (_optional_path, False),
        "socket_group": (_nonempty, False),
        "admin_group": (_nonempty, False),
        "max_clients": (_int_range(1, 1000), False),
    },
}


def _unknown(name: str, known: list[str]) -> Translatable:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return Translatable("unknown key; did you mean '{name}'?", name=close[0])
    return Translatable("unknown key; known keys are: {names}", names=", ".join(known))


def _problem(key: str, reason: Translatable | str, value: str | None = None) -> Translatable:
    """Return one problem of the file: the key path, the value as written (if any) and the reason."""
    if value is None:
        return Translatable("{key}: {reason}", key=key, reason=reason)
    return Translatable("{key} = {value}: {reason}", key=key, value=value, reason=reason)


def _reason(error: ValueError) -> Translatable | str:
    """Return the reason a value check gave, as the message it raised."""
    return error.args[0] if error.args and isinstance(error.args[0], Translatable) else str(error)


def _website_lists(value: Any, problems: list[Translatable]) -> dict[int, int]:
    result: dict[int, int] = {}
    if not isinstance(value, dict):
        problems.append(_problem("interspire.website_lists", Translatable('must be a table like {{"1" = 3, "2" = 4}}'),
                                 _shown(value)))
        return result
    for key, list_id in value.items():
        path = f"interspire.website_lists.{key}"
        key_text = str(key)
        if not (key_text.isascii() and key_text.isdigit()) or int(key_text) == 0:
            problems.append(_problem(path, Translatable("the key must be a Magento website id (1, 2, ...)"),
                                     _shown(list_id)))
            continue
        try:
            result[int(key)] = _positive_id(list_id)
        except ValueError as error:
            problems.append(_problem(path, _reason(error), _shown(list_id)))
    return result


def _shown(value: Any) -> str:
    """Return repr(value) for a problem message, cut to 80 characters."""
    text = repr(value)
    if len(text) > _SHOWN_CHARS:
        return text[: _SHOWN_CHARS - 3] + "..."
    return text


_SHOWN_CHARS = 80


def parse_config(data: dict[str, Any], path: Path | None = None) -> Config:
    """Checks every key; raises ConfigError listing every problem with its key path."""
    problems: list[Translatable] = []
    values: dict[str, dict[str, Any]] = {section: {} for section in SCHEMA}

    language = None
    if "language" in data:
        try:
            language = _language(data["language"])
        except ValueError as error:
            problems.append(_problem("language", _reason(error), _shown(data["language"])))
    for section, content in data.items():
        if section == "language":
            continue
        if section not in SCHEMA:
            problems.append(_problem(f"[{section}]", _unknown(section, list(SCHEMA))))
            continue
        if not isinstance(content, dict):
            problems.append(_problem(f"[{section}]", Translatable("must be a table ([{section}] heading)",
                                                                  section=section), _shown(content)))
            continue
        for key, value in content.items():
            spec = SCHEMA[section].get(key)
            if spec is None:
                problems.append(_problem(f"{section}.{key}", _unknown(key, list(SCHEMA[section]))))
                continue
            if key == "website_lists":
                values[section][key] = _website_lists(value, problems)
                continue
            try:
                values[section][key] = spec[0](value)
            except ValueError as error:
                secret = key in ("token", "password") and value not in ("", None)
                shown = "********" if secret else _shown(value)
                problems.append(_problem(f"{section}.{key}", _reason(error), shown))

    for section, keys in SCHEMA.items():
        for key, (_check, required) in keys.items():
            if required and key not in values[section] and not any(
                problem.params.get("key") == f"{section}.{key}" for problem in problems
            ):
                problems.append(_problem(f"{section}.{key}",
                                         Translatable("missing; add it under [{section}]", section=section)))

    if "interval" in values["schedule"] and "at" in values["schedule"]:
        problems.append(_problem("schedule.at", Translatable(
            "set either schedule.interval or schedule.at, not both; remove or comment out the other one")))
    if problems:
        raise ConfigError(path, problems)

    storage = values["storage"]
    state_dir = Path(storage["state_dir"]).expanduser() if "state_dir" in storage else default_state_dir()
    if path is not None and not state_dir.is_absolute():
        state_dir = (path.parent / state_dir).resolve()

    daemon = dict(values["daemon"])
    if "socket" in daemon:
        daemon["socket"] = Path(daemon["socket"]).expanduser()

    return Config(
        interspire=InterspireConfig(**values["interspire"]),
        magento=MagentoConfig(**values["magento"]),
        sync=SyncConfig(**values["sync"]),
        storage=StorageConfig(state_dir=state_dir),
        schedule=ScheduleConfig(**values["schedule"]),
        daemon=DaemonConfig(**daemon),
        language=language,
        path=path,
    )


def tls_warnings(config: Config) -> tuple[str, ...]:
    """Return the warnings for an IEM address that is not protected by a checked TLS certificate.

    A plain http:// address to another machine sends the token unencrypted; loopback
    addresses (a local test server, the simulator) get no warning.
    """
    url = config.interspire.url
    parts = urlsplit(url)
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        return (_("interspire.url {url} is plain http: the XML token travels unencrypted, so a machine on "
                  "the network path can read it; use the https address of IEM").format(url=url),)
    if config.interspire.verify_tls:
        return ()
    return (_("interspire.verify_tls is false: the TLS certificate of {url} is not checked, so a machine "
              "on the network path can pose as IEM and read the XML token; set it to true unless this "
              "is a test server").format(url=url),)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def searched_paths() -> list[Path]:
    return [SYSTEM_CONFIG, user_config_path()]


def raw_setting(path: Path, section: str, key: str) -> Any:
    """Return one value straight from the file, even when the rest is invalid, or None if unreadable."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    table = data.get(section)
    return table.get(key) if isinstance(table, dict) else None


def load_config(path: Path, *, searched: bool = False) -> Config:
    """Reads and checks one file. `searched`: the path came from the default lookup."""
    if not path.exists():
        if searched:
            where = ", ".join(str(p) for p in searched_paths())
            fix = _("no configuration found (looked in {where} and $EDM_SYNC_CONFIG); create one with "
                    "`edm-sync example-config > {path}`, edit it, or pass --config PATH").format(
                where=where, path=path)
        else:
            fix = _("the file does not exist; create it with `edm-sync example-config > {path}` and edit it").format(
                path=path)
        raise ConfigError(path, [fix])
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(path, [_("cannot be read: {error}").format(error=error)]) from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, [
            _("is not valid TOML: {error}; text values need quotes (url = \"https://...\"), numbers and "
              "true/false do not").format(error=error)]) from error

    config = parse_config(data, path)
    warnings = list(tls_warnings(config))
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append(
            _("{path} holds the IEM token and can be read by other users; run: chmod 600 {path}").format(
                path=path
            )
        )
    return replace(config, warnings=tuple(warnings))
