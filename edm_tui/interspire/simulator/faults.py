"""Fault injection: the broken responses real IEM installs send, chosen per request.

Faults that replace the response before PHP runs the request (`html`, `http500`, `empty`,
`redirect`, `reset`) leave the state unchanged. Faults that damage a response after the
method ran (`truncated`, `notice`, `bom`, `newline`, `slow`) leave its changes in place, so a
client cannot tell whether a write was applied.
"""

from __future__ import annotations

import random
import threading

from edm_tui.interspire.simulator.config import FaultRule
from edm_tui.interspire.simulator.context import SUBSCRIBERS_PHP, php_error_html

PRE_RUN_FAULTS = frozenset({"html", "http500", "empty", "redirect", "reset"})

NOTICE_PREFIX = php_error_html("Notice", "Undefined index: List", SUBSCRIBERS_PHP, 2654)
BOM = "\ufeff"
UPGRADE_LOCATION = "index.php?Page=upgradenx"
DATABASE_ERROR = (
    "Unable to connect to the database. Please make sure the database information specified "
    "in admin/includes/config.php are correct."
)
# The page IEM's bootstrap exception handler shows; the markup is the simulator's own.
HTML_ERROR_PAGE = f"""<!DOCTYPE html>
<html>
<head>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
<title>The application cannot proceed!</title>
</head>
<body>
<h1>The application cannot proceed!</h1>
<p>{DATABASE_ERROR}</p>
</body>
</html>
"""


class FaultInjector:
    """Picks the fault for each request with a seeded random generator."""

    def __init__(self, rules: list[FaultRule], seed: int | None) -> None:
        self._lock = threading.Lock()
        self._rules = list(rules)
        self._random = random.Random(seed)

    def configure(self, rules: list[FaultRule]) -> None:
        """Replace the fault rules."""
        with self._lock:
            self._rules = list(rules)

    def reseed(self, seed: int | None) -> None:
        """Restart the random sequence from a seed."""
        with self._lock:
            self._random = random.Random(seed)

    def rules(self) -> list[FaultRule]:
        """Return the current rules, with their remaining counts."""
        with self._lock:
            return list(self._rules)

    def pick(self, method: str | None) -> FaultRule | None:
        """Return the first rule that fires for a request with this method, or None.

        A rule with a count fires at most that many more times.
        """
        with self._lock:
            for rule in self._rules:
                if not rule.applies_to(method):
                    continue
                if rule.count is not None and rule.count <= 0:
                    continue
                if rule.rate < 1 and self._random.random() >= rule.rate:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                return rule
        return None

    def truncation_point(self, length: int) -> int:
        """Pick where to cut a body of `length` bytes: past half, and inside the document.

        Bodies end with `</response>` and a newline; cutting at most `length - 2` bytes in
        always loses at least the closing `>`, so the cut body is never well-formed.
        """
        with self._lock:
            if length < 4:
                return 0
            return self._random.randint(min(length // 2 + 1, length - 2), length - 2)
