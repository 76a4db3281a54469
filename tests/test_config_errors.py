"""Configuration problems, generated from config.SCHEMA, through the loader, the CLI and the daemon.

Every key gets values of the wrong type, every key with a range or a format gets values outside
it, and every required key is removed. Each problem must name the key as `section.key`, show
the bad value (secrets stay masked) and state what is expected. Nothing may change the file.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from edm_tui import config as config_module
from edm_tui.config import SCHEMA, ConfigError, IntRange, load_config
from tests.daemon_support import DaemonProcess
from tests.fuzz_support import RawClient, running_daemon

SECRETS = {("interspire", "token"), ("magento", "password")}
MASK = "********"

# One valid value for every key of SCHEMA. schedule.at excludes schedule.interval, so it is
# tested on a copy without interval.
VALID: dict[str, dict[str, Any]] = {
    "interspire": {
        "url": "https://mail.example.test/xml.php", "username": "api", "token": "secret-token",
        "list_id": 3, "firstname_field_id": 2, "lastname_field_id": 4, "website_lists": {"2": 5},
        "concurrency": 8, "timeout": 30, "retries": 3, "verify_tls": True,
    },
    "magento": {
        "host": "127.0.0.1", "port": 3306, "user": "shop", "password": "pw", "database": "magento",
        "table_prefix": "m2_", "unix_socket": "/run/mysqld/mysqld.sock",
    },
    "sync": {"import_new_subscribers": True, "bounced_is_unsubscribed": True, "add_to_autoresponders": False},
    "storage": {"state_dir": "/var/lib/edm-sync"},
    "schedule": {"interval": "6h", "jitter": "5m", "enabled": True, "catch_up_delay": "30s"},
    "daemon": {"socket": "/run/edm-sync/edm-sync.sock", "socket_group": "edm", "admin_group": "edm-admins",
               "max_clients": 64},
}

# Values of other types than the valid one, each tried on every key. A value that a key
# accepts, such as a number for a duration, is left out for that key.
WRONG_TYPES: list[Any] = [7, "7", True, 2.5, [1, 2], {"a": 1}]

# Values outside the range or format of each kind of check; IntRange gets low - 1 and high + 1.
OUT_OF_RANGE: dict[Callable[[Any], Any], list[Any]] = {
    config_module._seconds: [0, -1, 3601, 1e9],
    config_module._interval: [0, "0.5s", "367d", "1e400", "nan"],
    config_module._duration: [-1, "-5m", "367d", "1e400", "nan", "inf"],
    config_module._clock: ["24:00", "12:60", "7:5", "\u00b2:00", "noon"],
    config_module._prefix: ["a" * 21, "bad-prefix", "m\u00e1"],
    config_module._url: ["ftp://mail.example.test/xml.php", "xml.php", ""],
    config_module._nonempty: ["", "   "],
    config_module._optional_path: ["", "/tmp/a\x00b"],
}
NO_RANGE = {config_module._bool, config_module._string}


def _key_paths() -> list[tuple[str, str]]:
    return [(section, key) for section, keys in SCHEMA.items() for key in keys]


def _base_for(section: str, key: str) -> dict[str, dict[str, Any]]:
    data = copy.deepcopy(VALID)
    if (section, key) == ("schedule", "at"):
        del data["schedule"]["interval"]
    return data


def _reason(section: str, key: str, value: Any) -> str | None:
    """Return the check's reason for rejecting the value, or None when it accepts it."""
    if key == "website_lists":
        return None if isinstance(value, dict) else 'must be a table like {"1" = 3, "2" = 4}'
    try:
        SCHEMA[section][key][0](value)
    except ValueError as error:
        return str(error)
    return None


def _shown(section: str, key: str, value: Any) -> str:
    if (section, key) in SECRETS and value not in ("", None):
        return MASK
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _wrong_type_cases() -> list[Any]:
    cases = []
    for section, key in _key_paths():
        valid = VALID[section].get(key, "03:30")
        for value in WRONG_TYPES:
            if type(value) is type(valid) or _reason(section, key, value) is None:
                continue
            cases.append(pytest.param(section, key, value, id=f"{section}.{key}={value!r}"))
    return cases


def _range_of(check: Callable[[Any], Any]) -> list[Any]:
    if isinstance(check, IntRange):
        return [check.low - 1, check.high + 1]
    return OUT_OF_RANGE.get(check, [])


def _out_of_range_cases() -> list[Any]:
    cases = []
    for section, key in _key_paths():
        for value in _range_of(SCHEMA[section][key][0]):
            cases.append(pytest.param(section, key, value, id=f"{section}.{key}={value!r}"))
    return cases


REQUIRED = [(section, key) for section, key in _key_paths() if SCHEMA[section][key][1]]
WRONG_TYPE_CASES = _wrong_type_cases()
OUT_OF_RANGE_CASES = _out_of_range_cases()
JSON_SAFE_RANGE_CASES = [case for case in OUT_OF_RANGE_CASES
                         if not (isinstance(case.values[2], float) and not math.isfinite(case.values[2]))]


def _write(path: Path, data: dict[str, Any]) -> bytes:
    text = tomlkit.dumps(data)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path.read_bytes()


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return raised.value.problems


# The table itself ---------------------------------------------------------------------------------


def test_table_covers_every_schema_key():
    unclassified = [(section, key) for section, key in _key_paths()
                    if key != "website_lists"
                    and not _range_of(SCHEMA[section][key][0]) and SCHEMA[section][key][0] not in NO_RANGE]
    without_wrong_type = {(section, key) for section, key in _key_paths()} - {
        (case.values[0], case.values[1]) for case in WRONG_TYPE_CASES}

    assert unclassified == []
    assert without_wrong_type == set()
    assert set(VALID) == set(SCHEMA)
    for section, keys in SCHEMA.items():
        assert set(VALID[section]) | ({"at"} if section == "schedule" else set()) == set(keys), section


def test_valid_table_loads(tmp_path: Path):
    path = tmp_path / "config.toml"
    _write(path, VALID)

    config = load_config(path)

    assert config.interspire.website_lists == {2: 5}
    assert config.schedule.interval == 6 * 3600.0


# Through the loader the CLI uses -----------------------------------------------------------------


@pytest.mark.parametrize(("section", "key", "value"), WRONG_TYPE_CASES)
def test_wrong_type_is_named(tmp_path: Path, section: str, key: str, value: Any):
    data = _base_for(section, key)
    data[section][key] = value
    path = tmp_path / "config.toml"
    before = _write(path, data)

    problems = _problems(path)
    reason = _reason(section, key, value)

    assert problems == [f"{section}.{key} = {_shown(section, key, value)}: {reason}"]
    assert reason.startswith("must ")
    assert path.read_bytes() == before


@pytest.mark.parametrize(("section", "key", "value"), OUT_OF_RANGE_CASES)
def test_out_of_range_is_named(tmp_path: Path, section: str, key: str, value: Any):
    data = _base_for(section, key)
    data[section][key] = value
    path = tmp_path / "config.toml"
    before = _write(path, data)

    problems = _problems(path)
    reason = _reason(section, key, value)

    assert problems == [f"{section}.{key} = {_shown(section, key, value)}: {reason}"]
    assert reason.startswith(("must ", "may "))
    assert path.read_bytes() == before


@pytest.mark.parametrize(("section", "key"), REQUIRED)
def test_missing_required_key_is_named(tmp_path: Path, section: str, key: str):
    data = copy.deepcopy(VALID)
    del data[section][key]
    path = tmp_path / "config.toml"
    before = _write(path, data)

    problems = _problems(path)

    assert problems == [f"{section}.{key}: missing; add it under [{section}]"]
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("website_lists", "problem"),
    [
        pytest.param([1, 2], 'interspire.website_lists = [1, 2]: must be a table like {"1" = 3, "2" = 4}', id="list"),
        pytest.param({"x": 1}, "interspire.website_lists.x = 1: the key must be a Magento website id (1, 2, ...)",
                     id="key-text"),
        pytest.param({"\u00b2": 1}, "interspire.website_lists.\u00b2 = 1: the key must be a Magento website id "
                     "(1, 2, ...)", id="key-superscript-digit"),
        pytest.param({"0": 1}, "interspire.website_lists.0 = 1: the key must be a Magento website id (1, 2, ...)",
                     id="key-admin-website"),
        pytest.param({"1": "3"}, "interspire.website_lists.1 = '3': must be a whole number without quotes",
                     id="value-string"),
        pytest.param({"1": 0}, "interspire.website_lists.1 = 0: must be between 1 and 2147483647", id="value-zero"),
    ],
)
def test_website_lists_problem_is_named(tmp_path: Path, website_lists: Any, problem: str):
    data = copy.deepcopy(VALID)
    data["interspire"]["website_lists"] = website_lists
    path = tmp_path / "config.toml"
    _write(path, data)

    assert _problems(path) == [problem]


def test_section_not_a_table_is_named(tmp_path: Path):
    path = tmp_path / "config.toml"
    path.write_text('sync = 5\n[interspire]\nurl = "https://x.test/xml.php"\n', encoding="utf-8")

    problems = _problems(path)

    assert problems[0] == "[sync] = 5: must be a table ([sync] heading)"


def test_long_value_is_cut_in_problem(tmp_path: Path):
    data = copy.deepcopy(VALID)
    data["magento"]["table_prefix"] = "x" * 5000
    path = tmp_path / "config.toml"
    _write(path, data)

    problem = _problems(path)[0]

    assert problem.startswith("magento.table_prefix = 'xxxx")
    assert len(problem) < 200


# Through `edm-sync check --config FILE` -----------------------------------------------------------


def _run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edm_tui.cli", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False, env={"LANG": "C", "PATH": "/usr/bin:/bin"})


def _first_case_per_key(cases: list[Any]) -> dict[tuple[str, str], Any]:
    chosen: dict[tuple[str, str], Any] = {}
    for case in cases:
        section, key, value = case.values
        if key != "at":  # at and interval are exclusive, so at is covered by the loader tests only
            chosen.setdefault((section, key), value)
    return chosen


@pytest.mark.parametrize("kind", ["wrong-type", "out-of-range", "missing"])
def test_cli_check_reports_every_problem(tmp_path: Path, kind: str):
    data = copy.deepcopy(VALID)
    expected = []
    if kind == "missing":
        for section, key in REQUIRED:
            del data[section][key]
            expected.append(f"{section}.{key}: missing; add it under [{section}]")
    else:
        cases = WRONG_TYPE_CASES if kind == "wrong-type" else JSON_SAFE_RANGE_CASES
        for (section, key), value in _first_case_per_key(cases).items():
            data[section][key] = value
            expected.append(f"{section}.{key} = {_shown(section, key, value)}: {_reason(section, key, value)}")
    path = tmp_path / "config.toml"
    before = _write(path, data)

    result = _run_check(path)
    lines = [line.strip() for line in result.stderr.splitlines()]

    assert result.returncode == 2
    assert lines[0] == f"error: {path} has {len(expected)} problems:"
    assert sorted(lines[1:]) == sorted(expected)
    assert path.read_bytes() == before


# Through the daemon's config.validate -------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("config")) as process:
        yield process


@pytest.fixture(scope="module")
def validator(daemon: DaemonProcess) -> Iterator[RawClient]:
    client = RawClient(daemon.socket_path)
    yield client
    client.close()


def _validate(daemon: DaemonProcess, client: RawClient, changes: dict[str, Any]) -> list[str]:
    before = daemon.config_path.read_bytes()
    reply = client.call("v", "config.validate", {"config": changes})
    assert daemon.config_path.read_bytes() == before
    assert reply["result"]["ok"] is False
    return reply["result"]["problems"]


def _daemon_changes(section: str, key: str, value: Any) -> dict[str, Any]:
    changes: dict[str, Any] = {section: {key: value}}
    if (section, key) == ("schedule", "at"):
        changes["schedule"]["interval"] = None  # the daemon's file sets interval
    return changes


@pytest.mark.parametrize(("section", "key", "value"), WRONG_TYPE_CASES + JSON_SAFE_RANGE_CASES)
def test_daemon_validate_names_bad_value(daemon: DaemonProcess, validator: RawClient, section: str, key: str,
                                         value: Any):
    problems = _validate(daemon, validator, _daemon_changes(section, key, value))

    assert problems == [f"{section}.{key} = {_shown(section, key, value)}: {_reason(section, key, value)}"]


@pytest.mark.parametrize(("section", "key"), REQUIRED)
def test_daemon_validate_names_missing_key(daemon: DaemonProcess, validator: RawClient, section: str, key: str):
    problems = _validate(daemon, validator, {section: {key: None}})

    assert problems == [f"{section}.{key}: missing; add it under [{section}]"]
