"""The Hungarian catalog: complete for the current sources, placeholders intact, used by the CLI."""

from __future__ import annotations

import gettext
import io
import json
import os
import shutil
import string
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po

from edm_tui import i18n
from edm_tui.checks import CheckResult
from edm_tui.config import ConfigError, parse_config
from edm_tui.daemon.history import HistoryStore
from edm_tui.interspire.errors import IemRejected, classify_failure
from edm_tui.magento.errors import ConnectionTarget, MagentoSchemaError, translate_error
from edm_tui.summary import run_error_text
from tests.sync_support import Bench

ROOT = Path(__file__).resolve().parent.parent
CATALOG_PATH = ROOT / "edm_tui" / "locale" / "hu" / "LC_MESSAGES" / "edm_sync.po"
PYBABEL = Path(sys.executable).with_name("pybabel")
T1 = 1_700_000_000


def _msgid(message: Message) -> str:
    return message.id[0] if isinstance(message.id, tuple) else message.id


def _strings(message: Message) -> tuple[str, ...]:
    return message.string if isinstance(message.string, tuple) else (message.string,)


def _placeholders(text: str) -> set[str]:
    """Return the str.format fields of text, each as written between the braces."""
    fields = set()
    for _literal, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        field = name
        if conversion:
            field += "!" + conversion
        if spec:
            field += ":" + spec
        fields.add(field)
    return fields


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """The template as extracted from the sources right now, not the committed .pot."""
    output = tmp_path_factory.mktemp("i18n") / "edm_sync.pot"
    done = subprocess.run(
        [str(PYBABEL), "extract", "-F", "babel.cfg", "-k", "_", "-k", "N_", "-k", "Translatable",
         "-k", "ngettext:1,2", "--no-location",
         "--sort-output", "-o", str(output), "."],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with open(output, "rb") as handle:
        return read_po(handle)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    with open(CATALOG_PATH, "rb") as handle:
        return read_po(handle, locale="hu")


@pytest.fixture
def hungarian() -> Iterator[None]:
    i18n.set_language("hu")
    try:
        yield
    finally:
        i18n.set_language("en")


# --- The catalog ---


def test_catalog_covers_every_source_message(template: Catalog, catalog: Catalog) -> None:
    wanted = {_msgid(m) for m in template if m.id}
    present = {_msgid(m) for m in catalog if m.id}
    missing = sorted(wanted - present)
    assert not missing, "not in the Hungarian catalog; run tools/update-catalogs:\n" + "\n".join(missing)


def test_catalog_has_no_stale_entries(template: Catalog, catalog: Catalog) -> None:
    wanted = {_msgid(m) for m in template if m.id}
    stale = sorted({_msgid(m) for m in catalog if m.id} - wanted)
    assert not stale, "no longer in the sources; run tools/update-catalogs:\n" + "\n".join(stale)
    assert not catalog.obsolete, f"obsolete (#~) entries: {sorted(catalog.obsolete)}"


def test_catalog_has_no_fuzzy_entries(catalog: Catalog) -> None:
    fuzzy = [_msgid(m) for m in catalog if m.id and m.fuzzy]
    assert not fuzzy, "fuzzy entries, review them and delete the flag:\n" + "\n".join(fuzzy)


def test_catalog_has_no_empty_translations(catalog: Catalog) -> None:
    empty = [_msgid(m) for m in catalog if m.id and not all(_strings(m))]
    assert not empty, "untranslated entries:\n" + "\n".join(empty)


def test_catalog_plural_header() -> None:
    text = CATALOG_PATH.read_text(encoding="utf-8")
    assert '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"' in text
    assert '"Language: hu\\n"' in text


def test_translations_keep_placeholders(catalog: Catalog) -> None:
    for message in catalog:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        wanted = set().union(*(_placeholders(text) for text in ids))
        for translation in _strings(message):
            assert _placeholders(translation) == wanted, f"{_msgid(message)!r} -> {translation!r}"


def test_catalog_passes_babel_checks(catalog: Catalog) -> None:
    """`pybabel compile` reports the same problems and then exits with 1."""
    problems = [f"{_msgid(message)!r}: {errors}" for message, errors in catalog.check()]
    assert not problems, "\n".join(problems)


# --- Error messages of the adapters ---


def test_magento_error_in_hungarian(hungarian: None) -> None:
    target = ConnectionTarget("db.example.test", 3306, None, "shop_user", "webshop")
    error = translate_error(pymysql.err.OperationalError(1049, "Unknown database 'webshop'"), target)
    assert isinstance(error, MagentoSchemaError)
    assert str(error) == (
        "Nincs 'webshop' nevű adatbázis a MySQL-szerveren (db.example.test:3306): "
        "ellenőrizze az adatbázis nevét."
    )


def test_iem_messages_stay_untranslated(hungarian: None) -> None:
    empty = classify_failure("", method="AddSubscriberToList")
    assert isinstance(empty, IemRejected)
    assert empty.message == "Az IEM FAILED választ adott, üres errormessage mezővel"
    own = classify_failure("Email address is invalid", method="AddSubscriberToList")
    assert own.message == "Email address is invalid"


# --- Messages sent by the daemon ---


def test_config_problems_translated_by_client(hungarian: None) -> None:
    """The daemon sends English problems with their messages; the client shows them in Hungarian."""
    i18n.set_language("en")
    with pytest.raises(ConfigError) as raised:
        parse_config({"interspire": {"url": "nope", "list_id": 0}, "magento": {"port": "x", "database": "shop"}})
    sent = json.loads(json.dumps([i18n.message_dict(m) for m in raised.value.messages]))
    english = raised.value.problems
    i18n.set_language("hu")
    shown = [i18n.translate_message(message, text) for message, text in zip(sent, english)]

    assert english[0] == ("interspire.url = 'nope': must be the full http(s) address of IEM's xml.php, "
                          "e.g. https://mail.example.hu/xml.php")
    assert shown[0] == ("interspire.url = 'nope': az IEM xml.php fájljának teljes http(s) címét kell megadni, "
                        "pl. https://mail.example.hu/xml.php")
    assert "magento.port = 'x': egész számnak kell lennie, idézőjelek nélkül" in shown
    assert "interspire.token: hiányzik; adja meg ebben a szakaszban: [interspire]" in shown


def test_check_result_translated_by_client(hungarian: None) -> None:
    result = CheckResult("iem_list_1", True, i18n.Translatable("IEM list {list_id}", list_id=1),
                         i18n.Translatable("{name}, {count} subscribers", name="Main", count=12))
    sent = json.loads(json.dumps(result.as_dict()))

    assert sent["title"] == "IEM list 1"
    assert sent["detail"] == "Main, 12 subscribers"
    assert i18n.translate_message(sent["messages"]["title"], sent["title"]) == "IEM-lista (1)"
    assert i18n.translate_message(sent["messages"]["detail"], sent["detail"]) == "Main, 12 feliratkozó"


def test_run_error_translated_by_client(bench: Bench) -> None:
    for n in range(3):
        bench.add_row(f"fek{n}@example.test", 1, T1)
    assert bench.sync().status == "succeeded"
    state = bench.sim_state()
    state["subscribers"] = []
    bench.put_state(state)
    blocked = bench.sync()
    store = HistoryStore(bench.config().storage.history_path)
    try:
        record = json.loads(json.dumps(store.run(blocked.run_id).as_dict()))
    finally:
        store.close()

    assert blocked.status == "blocked"
    assert record["error"] == ("IEM list 1 returned no subscribers, but the last sync saw 3 active there; "
                               "check the list in IEM before letting a run through")
    i18n.set_language("hu")
    try:
        shown = run_error_text(record)
    finally:
        i18n.set_language("en")
    assert shown is not None
    assert shown.startswith("Az IEM-lista (1) egyetlen feliratkozót sem adott vissza")


def test_untranslatable_message_falls_back_to_text(hungarian: None) -> None:
    assert i18n.translate_message(None, "plain text") == "plain text"
    assert i18n.translate_message({"msgid": "{text}", "params": {"text": "raw"}}, "raw") == "raw"
    assert i18n.translate_message({"msgid": "IEM list {list_id}", "params": {}}, "IEM list 1") == "IEM list 1"


# --- The command line as a process ---


def edm(*args: str, lang: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE")}
    env["LANG"] = lang
    env.pop("EDM_SYNC_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "edm_tui.cli", *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )


def _bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[interspire]\nurl = "nope"\nlist_id = 0\n[magento]\nport = "x"\n', encoding="utf-8")
    path.chmod(0o600)
    return path


def _empty_state_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        '[interspire]\nurl = "http://127.0.0.1:9/xml.php"\nusername = "admin"\ntoken = "secret"\n'
        'list_id = 1\n[magento]\ndatabase = "shop"\n[storage]\nstate_dir = "state"\n',
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def test_cli_config_errors_hungarian(tmp_path: Path) -> None:
    config = _bad_config(tmp_path)
    done = edm("sync", "--config", str(config), lang="hu_HU.UTF-8")
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == f"hiba: {config} – 6 probléma:"
    assert ("  interspire.url = 'nope': az IEM xml.php fájljának teljes http(s) címét kell megadni, "
            "pl. https://mail.example.hu/xml.php") in lines
    assert "  magento.port = 'x': egész számnak kell lennie, idézőjelek nélkül" in lines
    assert "  interspire.token: hiányzik; adja meg ebben a szakaszban: [interspire]" in lines
    assert "  magento.database: hiányzik; adja meg ebben a szakaszban: [magento]" in lines
    assert any(line.startswith("  interspire.list_id = 0: ") for line in lines)


def test_cli_config_errors_english(tmp_path: Path) -> None:
    config = _bad_config(tmp_path)
    done = edm("sync", "--config", str(config), lang="C")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == f"error: {config} has 6 problems:"
    assert ("  interspire.url = 'nope': must be the full http(s) address of IEM's xml.php, "
            "e.g. https://mail.example.hu/xml.php") in lines
    assert "  magento.port = 'x': must be a whole number without quotes" in lines
    assert "  magento.database: missing; add it under [magento]" in lines


def test_cli_history_empty_hungarian(tmp_path: Path) -> None:
    config = _empty_state_config(tmp_path)
    done = edm("history", "--config", str(config), lang="hu_HU.UTF-8")
    assert done.returncode == 0, done.stderr
    history = tmp_path / "state" / "history.sqlite3"
    assert done.stdout == (
        f"Még nem volt futás: nincs előzményfájl ({history}). "
        "Először futtassa az `edm-sync sync` parancsot.\n"
    )


def test_cli_history_empty_english(tmp_path: Path) -> None:
    config = _empty_state_config(tmp_path)
    done = edm("history", "--config", str(config), lang="C")
    assert done.returncode == 0, done.stderr
    history = tmp_path / "state" / "history.sqlite3"
    assert done.stdout == f"No runs yet: {history} does not exist. Run `edm-sync sync` first.\n"


def test_cli_sync_hungarian(bench: Bench) -> None:
    subscriber_id = bench.add_row("hu@example.test", 1, T1)
    config = bench.write_config(bench.tmp / "config.toml")
    done = edm("--config", str(config), "sync", lang="hu_HU.UTF-8")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("1. futás: sikeres, ")
    assert lines[0].endswith(" mp alatt")
    assert lines[1] == "  hozzáadva az IEM-hez: 1"
    assert lines[2] == ("  Beolvasott feliratkozók: 1 (ebből feliratkozott: 1), megerősítésre vár: 0, "
                        "ismétlődő sorokkal: 0")
    assert "Írás: 1/1" in done.stderr.splitlines()
    assert list(bench.iem(1)) == ["hu@example.test"]
    assert bench.status_of(subscriber_id) == 1


def test_cli_check_hungarian(bench: Bench) -> None:
    config = bench.write_config(bench.tmp / "config.toml")
    done = edm("check", "--config", str(config), lang="hu_HU.UTF-8")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"✓ IEM elérhetősége: {bench.sim_url}"
    assert lines[1] == "✓ IEM-token érvényessége: felhasználó: tester (azonosító: 1)"
    assert lines[2] == "✓ IEM-lista (1): Main, 0 feliratkozó"
    assert lines[-1] == ("✓ Jogosultság a newsletter_subscriber módosításához: SELECT, INSERT, UPDATE és "
                         "DELETE (newsletter_queue_link) megadva")


def test_cli_history_items_hungarian(bench: Bench) -> None:
    bench.add_row("lista@example.test", 1, T1)
    config = bench.write_config(bench.tmp / "config.toml")
    assert edm("--config", str(config), "sync", lang="C").returncode == 0
    done = edm("history", "1", "--config", str(config), lang="hu_HU.UTF-8")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("1. futás: sikeres, ")
    assert lines[1].split() == ["Eredmény", "Művelet", "Webhely", "Lista", "Próba", "E-mail"]
    assert lines[2].split() == ["sikeres", "hozzáadva", "az", "IEM-hez", "1", "1", "1", "lista@example.test"]
    runs = edm("history", "--config", str(config), lang="hu_HU.UTF-8").stdout.splitlines()
    assert runs[1].split()[-4:] == ["parancssor", "sikeres", "1", "0"]


def test_cli_argparse_error_hungarian() -> None:
    done = edm("history", "--limit", "x", lang="hu_HU.UTF-8")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "edm-sync history: hiba: --limit argumentum: 'x' nem egész szám"
    assert done.stderr.startswith("használat: edm-sync history ")


def test_cli_help_hungarian() -> None:
    done = edm("--help", lang="hu_HU.UTF-8")
    assert done.returncode == 0
    assert done.stdout.startswith("használat: edm-sync ")
    help_lines = [line for line in done.stdout.splitlines() if line.startswith("  -h, --help ")]
    assert [line.split(maxsplit=2)[2] for line in help_lines] == ["ezt a súgót mutatja, majd kilép"]


# --- The package build ---


def test_wheel_ships_compiled_catalog(tmp_path: Path, catalog: Catalog) -> None:
    """`pip wheel` compiles the .po into a .mo inside the wheel; the checkout stays without one."""
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".sandbox", "__pycache__", ".pytest_cache", ".hypothesis", "build", "*.egg-info", "tests"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    wheels = list((tmp_path / "dist").glob("edm_sync-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as wheel:
        compiled = wheel.read("edm_tui/locale/hu/LC_MESSAGES/edm_sync.mo")
    translations = gettext.GNUTranslations(io.BytesIO(compiled))
    assert translations.gettext("Sync now") == "Futtatás"
    singles = [m for m in catalog if m.id and not isinstance(m.id, tuple) and m.string and not m.fuzzy]
    assert all(translations.gettext(m.id) == m.string for m in singles)
    assert not list((ROOT / "edm_tui" / "locale").rglob("*.mo"))
