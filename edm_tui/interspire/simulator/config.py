"""Run-time behaviour settings of the simulator and the JSON form used by `/_sim/config`."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

from edm_tui.interspire.simulator.render import DIALECTS

DUPLICATE_STYLES = ("message", "id")
FAULT_KINDS = ("notice", "bom", "newline", "html", "redirect", "empty", "truncated", "http500", "slow", "reset")
DEFAULT_SLOW_SECONDS = 30.0
DEFAULT_AUTH_DELAY = 5.0  # SECURITY_WRONG_LOGIN_WAIT in IEM 6.1 settings


class ConfigError(ValueError):
    """A configuration value that the simulator does not accept."""


@dataclass
class FaultRule:
    """One fault to inject.

    `rate` is the share (0 to 1) of matching requests that get the fault. `count` limits the
    fault to the next N matching requests, and None means no limit. `methods` limits it to
    those request methods, compared case-insensitively, and None means every request.
    `slow_seconds` is the delay of the `slow` fault.
    """

    kind: str
    rate: float = 1.0
    count: int | None = None
    methods: tuple[str, ...] | None = None
    slow_seconds: float = DEFAULT_SLOW_SECONDS

    @classmethod
    def from_json(cls, data: Any) -> FaultRule:
        """Validate and build a rule from its JSON object."""
        if not isinstance(data, dict):
            raise ConfigError(f"a fault must be an object, got {data!r}")
        unknown = set(data) - {"kind", "rate", "count", "methods", "slow_seconds"}
        if unknown:
            raise ConfigError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        kind = data.get("kind")
        if kind not in FAULT_KINDS:
            raise ConfigError(f"invalid fault kind {kind!r}; use one of {', '.join(FAULT_KINDS)}")
        rate = _number(data.get("rate", 1.0), "fault rate")
        if not 0 <= rate <= 1:
            raise ConfigError(f"fault rate must be between 0 and 1, got {rate}")
        count = data.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ConfigError(f"fault count must be a non-negative integer or null, got {count!r}")
        methods = data.get("methods")
        if methods is not None:
            if not isinstance(methods, list) or not all(isinstance(name, str) for name in methods):
                raise ConfigError(f"fault methods must be a list of method names or null, got {methods!r}")
            methods = tuple(methods)
        slow_seconds = _number(data.get("slow_seconds", DEFAULT_SLOW_SECONDS), "slow_seconds")
        if slow_seconds < 0:
            raise ConfigError(f"slow_seconds must not be negative, got {slow_seconds}")
        return cls(kind, rate, count, methods, slow_seconds)

    def to_json(self) -> dict[str, Any]:
        """Return the rule as a JSON object."""
        return {
            "kind": self.kind,
            "rate": self.rate,
            "count": self.count,
            "methods": list(self.methods) if self.methods is not None else None,
            "slow_seconds": self.slow_seconds,
        }

    def applies_to(self, method: str | None) -> bool:
        """Return whether the rule covers a request with this method name."""
        if self.methods is None:
            return True
        if method is None:
            return False
        requested = method.lower()
        return any(name.lower() == requested for name in self.methods)


@dataclass
class SimulatorConfig:
    """Behaviour settings that `/_sim/config` can change while the simulator runs.

    `dialect` is "legacy" (IEM 6.1.x output) or "modern" (6.2+/8.x output).
    `duplicate_style` is "message" (IEM 6.1.5 and later reject a duplicate add with "<email>
    already exists in the given list") or "id" (6.1.4 and older reject it with the bare
    subscriber id). `auth_delay` is the sleep in seconds after a failed login, and
    `latency_ms` the time every API request takes at least, its handling included.
    `max_concurrency` is the number of API requests handled at once (None for no limit). `now` is a frozen Unix time for the dates
    the simulator writes (None for the real clock). `display_errors` sets whether PHP
    notices and fatal errors are printed into responses, as with PHP's `display_errors=On`.
    """

    dialect: str = "legacy"
    duplicate_style: str = "message"
    auth_delay: float = DEFAULT_AUTH_DELAY
    latency_ms: float = 0
    max_concurrency: int | None = None
    now: int | None = None
    faults: list[FaultRule] = field(default_factory=list)
    seed: int | None = None
    display_errors: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    KEYS = ("dialect", "duplicate_style", "auth_delay", "latency_ms", "max_concurrency", "now", "faults", "seed", "display_errors")

    def to_json(self) -> dict[str, Any]:
        """Return the settings as the JSON object `/_sim/config` returns."""
        with self.lock:
            return {
                "dialect": self.dialect,
                "duplicate_style": self.duplicate_style,
                "auth_delay": self.auth_delay,
                "latency_ms": self.latency_ms,
                "max_concurrency": self.max_concurrency,
                "now": self.now,
                "faults": [rule.to_json() for rule in self.faults],
                "seed": self.seed,
                "display_errors": self.display_errors,
            }

    def update(self, data: Any) -> set[str]:
        """Apply any subset of the JSON settings; validate everything before changing anything.

        Return the names of the keys that were given.
        """
        if not isinstance(data, dict):
            raise ConfigError("the configuration must be a JSON object")
        unknown = set(data) - set(self.KEYS)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
        changes: dict[str, Any] = {}
        if "dialect" in data:
            changes["dialect"] = _choice(data["dialect"], DIALECTS, "dialect")
        if "duplicate_style" in data:
            changes["duplicate_style"] = _choice(data["duplicate_style"], DUPLICATE_STYLES, "duplicate_style")
        if "auth_delay" in data:
            changes["auth_delay"] = _non_negative(data["auth_delay"], "auth_delay")
        if "latency_ms" in data:
            changes["latency_ms"] = _non_negative(data["latency_ms"], "latency_ms")
        if "max_concurrency" in data:
            changes["max_concurrency"] = _optional_positive_int(data["max_concurrency"], "max_concurrency")
        if "now" in data:
            changes["now"] = _optional_int(data["now"], "now")
        if "faults" in data:
            if not isinstance(data["faults"], list):
                raise ConfigError("faults must be a list")
            changes["faults"] = [FaultRule.from_json(entry) for entry in data["faults"]]
        if "seed" in data:
            changes["seed"] = _optional_int(data["seed"], "seed")
        if "display_errors" in data:
            if not isinstance(data["display_errors"], bool):
                raise ConfigError(f"display_errors must be true or false, got {data['display_errors']!r}")
            changes["display_errors"] = data["display_errors"]
        with self.lock:
            for key, value in changes.items():
                setattr(self, key, value)
        return set(changes)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    return float(value)


def _non_negative(value: Any, name: str) -> float:
    number = _number(value, name)
    if number < 0:
        raise ConfigError(f"{name} must not be negative, got {value!r}")
    return number


def _optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer or null, got {value!r}")
    return value


def _optional_positive_int(value: Any, name: str) -> int | None:
    number = _optional_int(value, name)
    if number is not None and number < 1:
        raise ConfigError(f"{name} must be at least 1 or null, got {value!r}")
    return number


def _choice(value: Any, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ConfigError(f"invalid {name} {value!r}; use one of {', '.join(choices)}")
    return value


def parse_id_names(text: str, option: str) -> list[tuple[int, str]]:
    """Parse "1:Name,2:Other" into [(1, "Name"), (2, "Other")]; raise ConfigError when malformed."""
    pairs = []
    for part in text.split(","):
        if not part.strip():
            continue
        number, separator, name = part.partition(":")
        if not separator or not number.strip().isdigit() or not name.strip():
            raise ConfigError(f"invalid {option} entry {part!r}; expected ID:NAME, for example 1:Newsletter")
        pairs.append((int(number), name.strip()))
    return pairs


def parse_fault_option(text: str) -> FaultRule:
    """Parse the CLI form KIND[:RATE] into a rule."""
    kind, separator, rate = text.partition(":")
    data: dict[str, Any] = {"kind": kind.strip()}
    if separator:
        try:
            data["rate"] = float(rate)
        except ValueError:
            raise ConfigError(f"invalid fault rate {rate!r} in {text!r}; use a number from 0 to 1") from None
    return FaultRule.from_json(data)
