"""Daemon logging: journal detection, secret redaction, run prefixes and LogBuffer."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from edm_tui.daemon import logs
from edm_tui.daemon.logs import LogBuffer, add_secret, run_context, setup_logging

TOKEN = "tok-9f8e7d6c5b4a"
PASSWORD = "db'pass\"word"
TERMINAL_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} (?P<level>[A-Z]+) (?P<logger>\S+): (?P<message>.*)$")

log = logging.getLogger("edm_sync.test")


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Restore the root logger and forget registered secrets after each test."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    httpx_level = logging.getLogger("httpx").level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        logging.getLogger("httpx").setLevel(httpx_level)
        logs.secret_filter.clear()


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[TextIO]:
    with open(tmp_path / "stderr.log", "w+", encoding="utf-8") as stream:
        yield stream


def _journal_stream_of(stream: TextIO) -> str:
    status = os.fstat(stream.fileno())
    return f"{status.st_dev}:{status.st_ino}"


def _written(stream: TextIO) -> list[str]:
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


# --- journal detection and format ---


def test_journal_detected_by_fstat(log_file: TextIO, tmp_path: Path) -> None:
    matching = {"JOURNAL_STREAM": _journal_stream_of(log_file)}
    with open(tmp_path / "other.log", "w", encoding="utf-8") as other:
        other_stream = {"JOURNAL_STREAM": _journal_stream_of(other)}

    assert logs.is_journal_stream(log_file, matching)
    assert not logs.is_journal_stream(log_file, other_stream)
    assert not logs.is_journal_stream(log_file, {})
    assert not logs.is_journal_stream(log_file, {"JOURNAL_STREAM": "garbage"})
    assert not logs.is_journal_stream(io.StringIO(), matching)


def test_journal_lines_have_priorities(log_file: TextIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", _journal_stream_of(log_file))
    setup_logging(logging.DEBUG, stream=log_file)

    log.debug("details")
    log.info("started")
    log.warning("slow answer")
    log.error("write failed")
    log.critical("giving up")

    assert _written(log_file) == [
        "<7>details",
        "<6>started",
        "<4>slow answer",
        "<3>write failed",
        "<2>giving up",
    ]


def test_journal_traceback_lines_keep_priority(
    log_file: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", _journal_stream_of(log_file))
    setup_logging(logging.INFO, stream=log_file)

    try:
        raise ValueError("broken row")
    except ValueError:
        log.exception("import failed")

    lines = _written(log_file)
    assert lines[0] == "<3>import failed"
    assert lines[1] == "<3>Traceback (most recent call last):"
    assert lines[-1] == "<3>ValueError: broken row"
    assert all(line.startswith("<3>") for line in lines)


def test_terminal_lines_have_timestamps(log_file: TextIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    setup_logging(logging.INFO, stream=log_file)

    log.info("started")
    log.debug("hidden below INFO")
    log.warning("slow answer")

    lines = _written(log_file)
    assert len(lines) == 2
    first = TERMINAL_LINE.match(lines[0])
    assert first is not None
    assert first.group("level", "logger", "message") == ("INFO", "edm_sync.test", "started")
    second = TERMINAL_LINE.match(lines[1])
    assert second is not None
    assert second.group("level", "message") == ("WARNING", "slow answer")


def test_journal_variable_for_other_stream(
    log_file: TextIO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "journal.log", "w", encoding="utf-8") as journal:
        monkeypatch.setenv("JOURNAL_STREAM", _journal_stream_of(journal))
    setup_logging(logging.INFO, stream=log_file)

    log.info("started")

    assert TERMINAL_LINE.match(_written(log_file)[0])


def test_setup_twice_keeps_one_handler(log_file: TextIO, tmp_path: Path) -> None:
    with open(tmp_path / "first.log", "w+", encoding="utf-8") as first:
        setup_logging(logging.INFO, stream=first)
        setup_logging(logging.INFO, stream=log_file)

        log.info("once")

        assert _written(first) == []
    assert len(_written(log_file)) == 1


def test_httpx_info_hidden_unless_debug(log_file: TextIO) -> None:
    setup_logging(logging.INFO, stream=log_file)
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING

    setup_logging(logging.DEBUG, stream=log_file)
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.DEBUG


# --- redaction ---


def test_secrets_redacted_in_messages(log_file: TextIO) -> None:
    setup_logging(logging.INFO, stream=log_file)
    add_secret(TOKEN)
    add_secret(PASSWORD)

    log.info("token is %s", TOKEN)
    logging.getLogger("aiomysql").warning("login with %r failed", PASSWORD)
    logging.getLogger("some.library").error(f"url https://x.test/?t={TOKEN}&p={PASSWORD}")

    text = "\n".join(_written(log_file))
    assert TOKEN not in text
    assert "db'pass" not in text
    assert text.count(logs.REDACTED) == 4


def test_secrets_redacted_in_tracebacks(log_file: TextIO) -> None:
    setup_logging(logging.INFO, stream=log_file)
    add_secret(TOKEN)
    add_secret(PASSWORD)

    def connect(password: str) -> None:
        raise ConnectionError(f"access denied for password {password!r}, token={TOKEN}")

    try:
        connect(PASSWORD)
    except ConnectionError:
        logging.getLogger("edm_sync.magento").exception("connection failed")

    text = "\n".join(_written(log_file))
    assert "Traceback (most recent call last):" in text
    assert "ConnectionError: access denied" in text
    assert TOKEN not in text
    assert "db\\'pass" not in text
    assert f"access denied for password '{logs.REDACTED}', token={logs.REDACTED}" in text


def test_secret_escaped_forms_redacted() -> None:
    add_secret("p&ss wörd")

    assert logs.secret_filter.redact("xml <token>p&amp;ss wörd</token>") == f"xml <token>{logs.REDACTED}</token>"
    assert logs.secret_filter.redact("form=p%26ss%20w%C3%B6rd") == f"form={logs.REDACTED}"
    assert logs.secret_filter.redact("form=p%26ss+w%C3%B6rd") == f"form={logs.REDACTED}"


def test_short_secret_ignored() -> None:
    add_secret("abc")
    add_secret("")
    add_secret(None)

    assert logs.secret_filter.redact("abc abcd") == "abc abcd"


def test_redaction_visible_to_other_handlers(log_file: TextIO) -> None:
    setup_logging(logging.INFO, stream=log_file)
    add_secret(TOKEN)
    received: list[str] = []
    buffer = LogBuffer(lambda level, message, run_id: received.append(message))
    logging.getLogger().addHandler(buffer)

    log.info("sending %s", TOKEN)

    assert received == [f"sending {logs.REDACTED}"]


# --- run prefix ---


def test_run_prefix_only_inside_context(log_file: TextIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", _journal_stream_of(log_file))
    setup_logging(logging.INFO, stream=log_file)

    log.info("before")
    with run_context(12):
        log.info("reading Magento")
        with run_context(13):
            log.info("nested")
        log.info("run 12: already prefixed")
    log.info("after")

    assert _written(log_file) == [
        "<6>before",
        "<6>run 12: reading Magento",
        "<6>run 13: nested",
        "<6>run 12: already prefixed",
        "<6>after",
    ]


def test_run_prefix_in_terminal_format(log_file: TextIO) -> None:
    setup_logging(logging.INFO, stream=log_file)

    with run_context(5):
        log.warning("slow answer")

    match = TERMINAL_LINE.match(_written(log_file)[0])
    assert match is not None
    assert match.group("message") == "run 5: slow answer"


async def test_task_inherits_run_context(log_file: TextIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", _journal_stream_of(log_file))
    setup_logging(logging.INFO, stream=log_file)
    started = asyncio.Event()

    async def write_items() -> None:
        await started.wait()
        log.info("writing")

    with run_context(21):
        inside = asyncio.create_task(write_items())
    outside = asyncio.create_task(write_items())
    started.set()
    await asyncio.gather(inside, outside)

    assert sorted(_written(log_file)) == ["<6>run 21: writing", "<6>writing"]
    assert logs.current_run_id() is None


# --- LogBuffer ---


def test_log_buffer_forwards_entries(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edm_sync.test")
    received: list[tuple[str, str, int | None]] = []
    buffer = LogBuffer(lambda *entry: received.append(entry), capacity=2)
    log.addHandler(buffer)
    try:
        log.info("idle")
        with run_context(3):
            log.error("run 3: write failed for %s", "a@example.hu")
        log.debug("below the buffer's level")
    finally:
        log.removeHandler(buffer)

    assert received == [("INFO", "idle", None), ("ERROR", "write failed for a@example.hu", 3)]
    assert [entry.message for entry in buffer.recent()] == ["idle", "write failed for a@example.hu"]
    assert [entry.logger for entry in buffer.recent(1)] == ["edm_sync.test"]
    assert buffer.recent(0) == []


def test_log_buffer_includes_traceback() -> None:
    received: list[str] = []
    buffer = LogBuffer(lambda level, message, run_id: received.append(message))
    log.addHandler(buffer)
    try:
        try:
            raise KeyError("email")
        except KeyError:
            log.exception("row skipped")
    finally:
        log.removeHandler(buffer)

    assert received[0].startswith("row skipped\nTraceback (most recent call last):")
    assert received[0].endswith("KeyError: 'email'")


def test_log_buffer_survives_raising_callback() -> None:
    def broken(level: str, message: str, run_id: int | None) -> None:
        raise RuntimeError("subscriber queue closed")

    buffer = LogBuffer(broken)
    log.addHandler(buffer)
    try:
        log.warning("first")
        log.warning("second")
    finally:
        log.removeHandler(buffer)

    assert buffer.dropped == 2
    assert [entry.message for entry in buffer.recent()] == ["first", "second"]


def test_log_buffer_drops_records_from_callback() -> None:
    received: list[str] = []

    def chatty(level: str, message: str, run_id: int | None) -> None:
        received.append(message)
        log.warning("published %s", message)

    buffer = LogBuffer(chatty)
    log.addHandler(buffer)
    try:
        log.warning("hello")
    finally:
        log.removeHandler(buffer)

    assert received == ["hello"]
    assert buffer.dropped == 1
