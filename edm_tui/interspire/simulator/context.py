"""Types shared by the simulated API methods: the call context and the call outcomes."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from edm_tui.interspire.simulator.state import SimulatorState

# Paths and line numbers that appear in PHP notices. They imitate an IEM 6.1 install; the
# line numbers are illustrative, not taken from a particular build.
INSTALL_PATH = "/var/www/iem"
XML_PHP = f"{INSTALL_PATH}/xml.php"
SUBSCRIBERS_PHP = f"{INSTALL_PATH}/admin/functions/api/subscribers.php"

NOT_SUBSCRIBED = "The email address '{}' is not subscribed to this list"
INVALID_REQUEST_TYPE = "Invalid request type"


def php_error_html(level: str, message: str, file: str, line: int) -> str:
    """Format a PHP error the way PHP prints it with `display_errors` and `html_errors` on."""
    return f"<br />\n<b>{level}</b>:  {message} in <b>{file}</b> on line <b>{line}</b><br />\n"


class PhpFatalError(Exception):
    """A PHP fatal error that ends the request before any XML is written."""

    def __init__(self, message: str, file: str = XML_PHP, line: int = 925) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    def html(self) -> str:
        """Return the text PHP prints for this error when `display_errors` is on."""
        return php_error_html("Fatal error", self.message, self.file, self.line)


@dataclass
class Success:
    """A SUCCESS envelope with `data` as the payload (a PHP value or a SubscriberListing)."""

    data: Any


@dataclass
class Failure:
    """A FAILED envelope; `message` is a PHP value, and an array is concatenated as PHP echoes it."""

    message: Any


@dataclass
class SubscriberListing:
    """The result of GetSubscribers, kept as row tuples so it can be written out in chunks.

    `rows` hold the columns of `columns` in order; `key` is `subscriberlist`, or
    `subscribers` for the early return IEM takes when `searchinfo` is empty.
    """

    count: int
    rows: list[tuple[Any, ...]]
    columns: tuple[str, ...]
    key: str = "subscriberlist"

    def to_php(self) -> dict[str, Any]:
        """Return the PHP array IEM would pass to its output functions."""
        return {
            "count": self.count,
            self.key: [dict(zip(self.columns, row)) for row in self.rows],
        }


@dataclass
class CallContext:
    """The inputs of a simulated API method: the state, the clock and the caller."""

    state: SimulatorState
    now: int
    user: dict[str, Any]
    client_ip: str
    duplicate_style: str = "message"
    random: random.Random = field(default_factory=random.Random)
    notices: list[str] = field(default_factory=list)

    def notice(self, message: str, file: str = XML_PHP, line: int = 0, level: str = "Notice") -> None:
        """Record a PHP notice or warning that PHP would print before the XML."""
        self.notices.append(php_error_html(level, message, file, line))

    def new_confirmcode(self) -> str:
        """Return a random 32-character hexadecimal code, like IEM's md5-based confirm codes."""
        return f"{self.random.getrandbits(128):032x}"
