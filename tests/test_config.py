"""The configuration file: lookup order, every key checked, all problems reported at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edm_tui.config import ConfigError, find_config_path, load_config, parse_config, tls_warnings

GOOD = """
[interspire]
url = "https://mail.example.test/xml.php"
username = "admin"
token = "s3cret-token"
list_id = 3
firstname_field_id = 2
lastname_field_id = 3
concurrency = 4
timeout = 20

[interspire.website_lists]
"2" = 7

[magento]
host = "db.example.test"
port = 3307
user = "shop"
password = "pw"
database = "magento"
table_prefix = "m2_"

[sync]
import_new_subscribers = false

[storage]
state_dir = "state"
"""


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


def test_good_config_values(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.interspire.url == "https://mail.example.test/xml.php"
    assert config.interspire.list_id == 3
    assert config.interspire.website_lists == {2: 7}
    assert config.interspire.concurrency == 4
    assert config.interspire.timeout == 20.0
    assert config.magento.port == 3307
    assert config.magento.table_prefix == "m2_"
    assert config.sync.import_new_subscribers is False
    assert config.sync.bounced_is_unsubscribed is True
    assert config.storage.state_dir == (tmp_path / "state").resolve()
    assert config.warnings == ()


def test_defaults_applied(tmp_path: Path) -> None:
    config = parse_config({
        "interspire": {"url": "http://x.test/xml.php", "username": "u", "token": "t", "list_id": 1},
        "magento": {"database": "shop"},
    })
    assert (config.interspire.concurrency, config.interspire.timeout, config.interspire.retries) == (8, 60.0, 3)
    assert (config.magento.host, config.magento.port, config.magento.user) == ("127.0.0.1", 3306, "root")
    assert config.sync.add_to_autoresponders is True


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    text = """
[interspire]
url = "mail.example.test"
username = ""
list_id = "3"
concurency = 4
timeout = -1

[interspire.website_lists]
"abc" = 2
"2" = 0

[magento]
port = 70000
table_prefix = "bad prefix!"

[sync]
import_new_subscribers = "yes"

[extra]
x = 1
"""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    problems = caught.value.problems
    keys = [p.split(":")[0].split(" =")[0] for p in problems]
    assert keys == [
        "interspire.url",
        "interspire.username",
        "interspire.list_id",
        "interspire.concurency",
        "interspire.timeout",
        "interspire.website_lists.abc",
        "interspire.website_lists.2",
        "magento.port",
        "magento.table_prefix",
        "sync.import_new_subscribers",
        "[extra]",
        "interspire.token",
        "magento.database",
    ]
    assert "did you mean 'concurrency'?" in problems[3]
    assert "xml.php" in problems[0]


def test_secret_values_never_echoed(tmp_path: Path) -> None:
    text = GOOD.replace('token = "s3cret-token"', "token = 12345").replace('password = "pw"', "password = 987")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    message = str(caught.value)
    assert "12345" not in message
    assert "987" not in message
    assert "interspire.token = ********" in message


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[interspire]\nurl = \n"))
    assert "line 2" in str(caught.value)


def test_missing_file_says_how(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml")
    assert "edm-sync example-config >" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml", searched=True)
    assert "--config PATH" in str(caught.value)
    assert "/etc/edm-sync/config.toml" in str(caught.value)


def test_example_config_is_valid(tmp_path: Path) -> None:
    from edm_tui.config import user_config_path

    example = Path(__file__).parent.parent / "edm_tui" / "config.example.toml"
    config = load_config(write(tmp_path, example.read_text()))
    assert config.interspire.list_id == 1
    assert user_config_path().name == "config.toml"


def test_readable_token_warns(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD, mode=0o644))
    assert len(config.warnings) == 1
    assert "chmod 600" in config.warnings[0]


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDM_SYNC_CONFIG", str(tmp_path / "env.toml"))
    assert find_config_path("cli.toml") == Path("cli.toml")
    assert find_config_path(None) == tmp_path / "env.toml"
    monkeypatch.delenv("EDM_SYNC_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    found = find_config_path(None)
    assert found in (Path("/etc/edm-sync/config.toml"), tmp_path / "xdg" / "edm-sync" / "config.toml")


@pytest.mark.parametrize(("url", "warned"), [
    ("http://mail.example.hu/xml.php", True),
    ("http://10.0.0.5/xml.php", True),
    ("https://mail.example.hu/xml.php", False),
    ("http://127.0.0.1:8080/xml.php", False),
    ("http://localhost/xml.php", False),
    ("http://[::1]/xml.php", False),
])
def test_plain_http_warns_unless_loopback(url: str, warned: bool) -> None:
    config = parse_config({"interspire": {"url": url, "username": "u", "token": "t", "list_id": 1},
                           "magento": {"database": "shop"}})
    expected = (f"interspire.url {url} is plain http: the XML token travels unencrypted, so a machine on the "
                "network path can read it; use the https address of IEM",)
    assert tls_warnings(config) == (expected if warned else ())
