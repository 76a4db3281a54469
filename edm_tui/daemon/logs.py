"""Logging for the daemon: journald-aware output, secret redaction and run-scoped lines.

* `setup_logging()` writes to stderr. When stderr is connected to the journal, it writes
  `<N>message` lines, where N is the syslog priority. Elsewhere each line starts with a
  timestamp, the level and the logger name.
* `add_secret()` registers values (the IEM token, the database password) that are replaced by
  `********` in every message and traceback that passes the handlers set up here.
* `run_context(run_id)` prefixes `run N: ` to every line logged inside it, including lines
  from asyncio tasks created inside it, which copy the current context.
* `LogBuffer` hands each record to a callback, so the daemon can publish log events.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import contextvars
import html
import logging
import os
import re
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TextIO

REDACTED = "********"
MIN_SECRET_LENGTH = 4  # shorter values would also mask ordinary words and numbers
MIN_BASE64_PART = 12  # characters of a secret's base64 form that must match before it is masked
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Name of the handler that setup_logging() adds, and replaces when it is called again.
_HANDLER_NAME = "edm_sync.stderr"

_current_run_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "edm_sync_run_id", default=None
)


# --- run context ---


@contextlib.contextmanager
def run_context(run_id: int | None) -> Iterator[None]:
    """Prefix `run <run_id>: ` to every line logged inside the block (None: no prefix).

    The id lives in a context variable. Tasks created inside the block keep it after the block
    ends, because asyncio copies the context when it creates a task.
    """
    token = _current_run_id.set(run_id)
    try:
        yield
    finally:
        _current_run_id.reset(token)


def current_run_id() -> int | None:
    """Return the run id set by the innermost `run_context`, or None outside one."""
    return _current_run_id.get()


def _record_run_id(record: logging.LogRecord) -> int | None:
    # An explicit `extra={"run_id": ...}` wins over the context, because handlers in another
    # thread or a QueueListener do not see the emitting code's context.
    run_id = getattr(record, "run_id", None)
    if run_id is None:
        run_id = _current_run_id.get()
    return run_id


def _add_run_prefix(message: str, run_id: int | None) -> str:
    if run_id is None:
        return message
    prefix = f"run {run_id}: "
    # Some callers already write the prefix themselves; it is not repeated.
    if message.startswith(prefix):
        return message
    return prefix + message


def _strip_run_prefix(message: str, run_id: int | None) -> str:
    if run_id is None:
        return message
    return message.removeprefix(f"run {run_id}: ")


# --- secret redaction ---


def _secret_variants(value: str) -> set[str]:
    """Return the value and the escaped forms in which it can reach a log line."""
    variants = {
        value,
        repr(value)[1:-1],  # as shown inside a repr() in an exception message
        html.escape(value, quote=True),  # inside an XML request or response body
        urllib.parse.quote(value, safe=""),  # inside a URL or a form body
        urllib.parse.quote_plus(value, safe=""),
    }
    variants = {variant for variant in variants if len(variant) >= MIN_SECRET_LENGTH}
    return variants | _base64_variants(value)


def _base64_variants(value: str) -> set[str]:
    """Return the parts of the base64 encoding of `value` that are the same wherever it sits.

    Inside a longer encoded value (an HTTP Basic header encodes "user:password") the encoding
    depends on where the secret starts within a 3-byte group, and the first and last 4
    characters also depend on the bytes around it. So each of the three alignments gives one
    middle part, and only middle parts of at least MIN_BASE64_PART characters are kept,
    because shorter ones could match unrelated text.
    """
    raw = value.encode("utf-8")
    variants = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        middle = encoded[4 if offset else 0:-4]
        if len(middle) >= MIN_BASE64_PART:
            variants.add(middle)
            variants.add(middle.replace("+", "-").replace("/", "_"))  # the URL-safe alphabet
    return variants


class SecretFilter(logging.Filter):
    """Filter that replaces registered secrets by `********` in a record's message and traceback.

    It rewrites the record in place, so every handler that processes the record after this
    filter gets the redacted text. Attach it to handlers, not to loggers: a logger's filters do not
    see records that propagate from its child loggers.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add_secret(self, value: str | None) -> None:
        """Register a value to redact. None, empty values and values under 4 characters are ignored."""
        if not value or len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            self._secrets.update(_secret_variants(value))
            # The longest alternative first, so a secret that contains another is masked whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(secret) for secret in ordered))

    def clear(self) -> None:
        """Forget all registered secrets."""
        with self._lock:
            self._secrets.clear()
            self._pattern = None

    def redact(self, text: str) -> str:
        """Return `text` with every registered secret replaced by `********`."""
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True

        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is reported by the handler itself
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None

        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set, so the traceback is rendered once, here.
            record.exc_text = _plain_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_plain_formatter = logging.Formatter()
secret_filter = SecretFilter()


def add_secret(value: str | None) -> None:
    """Register a secret with the filter that every handler from this module uses."""
    secret_filter.add_secret(value)


# --- output format ---


def journal_priority(levelno: int) -> int:
    """Return the syslog priority for a logging level (sd-daemon(3) prefixes `<0>` to `<7>`)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def is_journal_stream(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Check whether `stream` is the journal stream that systemd named in `$JOURNAL_STREAM`.

    systemd sets JOURNAL_STREAM=<device>:<inode> for output connected to the journal. Comparing
    it with the stream's own fstat() keeps a child whose stderr was redirected from using
    journal-style lines in a file.
    """
    if environ is None:
        environ = os.environ
    device_text, separator, inode_text = environ.get("JOURNAL_STREAM", "").partition(":")
    if not separator:
        return False
    try:
        device, inode = int(device_text), int(inode_text)
    except ValueError:
        return False
    try:
        status = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        # io.StringIO and other streams without a file descriptor, or a closed stream.
        return False
    return status.st_dev == device and status.st_ino == inode


class ServiceFormatter(logging.Formatter):
    """Formatter for the daemon's stderr: journal lines or timestamped terminal lines.

    journal=True:  `<6>run 12: message`, with the prefix repeated on each traceback line so
                   that the journal keeps the record's priority for every line.
    journal=False: `2024-05-01 12:00:00 INFO edm_sync.run: run 12: message`.
    Secrets registered with `add_secret()` are redacted from the whole output.
    """

    def __init__(self, *, journal: bool, redactor: SecretFilter | None = None) -> None:
        super().__init__(datefmt=TIME_FORMAT)
        self.journal = journal
        self.redactor = redactor if redactor is not None else secret_filter

    def format(self, record: logging.LogRecord) -> str:
        text = _add_run_prefix(record.getMessage(), _record_run_id(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text = text.rstrip("\n") + "\n" + record.exc_text
        if record.stack_info:
            text = text.rstrip("\n") + "\n" + self.formatStack(record.stack_info)
        text = self.redactor.redact(text)

        if self.journal:
            prefix = f"<{journal_priority(record.levelno)}>"
            return "\n".join(prefix + line for line in text.split("\n"))
        return f"{self.formatTime(record, self.datefmt)} {record.levelname} {record.name}: {text}"


def setup_logging(level: int, *, stream: TextIO | None = None) -> None:
    """Send log records of `level` and above to `stream` (default: sys.stderr at call time).

    Calling it again replaces the handler it added before; handlers added by others stay.
    Unless `level` is DEBUG or lower, httpx's INFO line for every request is hidden, because
    a sync makes thousands of requests.
    """
    if stream is None:
        stream = sys.stderr

    handler = logging.StreamHandler(stream)
    handler.setFormatter(ServiceFormatter(journal=is_journal_stream(stream)))
    handler.addFilter(secret_filter)
    handler.set_name(_HANDLER_NAME)

    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)

    httpx_level = logging.NOTSET if level <= logging.DEBUG else logging.WARNING
    logging.getLogger("httpx").setLevel(httpx_level)


# --- log events for the dashboard ---


@dataclass(frozen=True, slots=True)
class LogEntry:
    created: float  # time.time() of the record
    level: str  # "DEBUG", "INFO", "WARNING", "ERROR" or "CRITICAL"
    logger: str
    message: str  # redacted; includes the traceback when there is one
    run_id: int | None


LogCallback = Callable[[str, str, int | None], None]


class LogBuffer(logging.Handler):
    """Handler that keeps the latest records and passes each one to `callback`.

    `callback(level_name, message, run_id)` receives the redacted message, with the traceback
    when there is one and without a `run N: ` prefix, because the run id is a separate argument.
    It runs in the thread that logged, under the handler's lock, so it must return quickly and
    must not block (publish with `Queue.put_nowait` or `loop.call_soon_threadsafe`).
    Exceptions from the callback, and records logged by the callback itself, are dropped
    and counted in `dropped`, so `emit()` raises no `Exception` subclass.
    """

    def __init__(
        self,
        callback: LogCallback | None = None,
        *,
        capacity: int = 500,
        level: int = logging.INFO,
    ) -> None:
        super().__init__(level)
        self.callback = callback
        self.entries: collections.deque[LogEntry] = collections.deque(maxlen=capacity)
        self.dropped = 0
        self._emitting = threading.local()
        self.addFilter(secret_filter)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._emitting, "active", False):
            # The callback logged something; forwarding it would recurse.
            self.dropped += 1
            return

        self._emitting.active = True
        try:
            entry = self._entry(record)
            self.entries.append(entry)
            if self.callback is not None:
                self.callback(entry.level, entry.message, entry.run_id)
        except Exception:  # noqa: BLE001 - logging must never break the code that logs
            self.dropped += 1
        finally:
            self._emitting.active = False

    def recent(self, limit: int | None = None) -> list[LogEntry]:
        """Return the latest kept entries, oldest first (at most `limit` when given)."""
        entries = list(self.entries)
        if limit is not None:
            entries = entries[-limit:] if limit > 0 else []
        return entries

    @staticmethod
    def _entry(record: logging.LogRecord) -> LogEntry:
        run_id = _record_run_id(record)
        message = _strip_run_prefix(record.getMessage(), run_id)
        if record.exc_info and not record.exc_text:
            record.exc_text = _plain_formatter.formatException(record.exc_info)
        if record.exc_text:
            message = message.rstrip("\n") + "\n" + record.exc_text
        return LogEntry(
            created=record.created,
            level=record.levelname,
            logger=record.name,
            message=secret_filter.redact(message),
            run_id=run_id,
        )
