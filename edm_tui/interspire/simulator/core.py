"""The simulator core: state, configuration, authentication, faults and the xml.php pipeline.

Nothing here depends on HTTP; `server` puts a `Simulator` behind an HTTP server.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edm_tui.interspire.simulator.api import Recorder, XmlApi
from edm_tui.interspire.simulator.auth import Authenticator
from edm_tui.interspire.simulator.config import FaultRule, SimulatorConfig, parse_id_names
from edm_tui.interspire.simulator.faults import FaultInjector
from edm_tui.interspire.simulator.state import DEFAULT_TOKEN, DEFAULT_USERNAME, SimulatorState, StateSaver


class ConcurrencyGate:
    """Lets at most `limit` API requests run at once; the others wait. None means no limit."""

    def __init__(self, limit: int | None) -> None:
        self._condition = threading.Condition()
        self._active = 0
        self._limit = limit

    def set_limit(self, limit: int | None) -> None:
        """Change the limit; waiting requests re-check it at once."""
        with self._condition:
            self._limit = limit
            self._condition.notify_all()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the slots for the duration of the block."""
        with self._condition:
            while self._limit is not None and self._active >= self._limit:
                self._condition.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._condition:
                self._active -= 1
                self._condition.notify_all()


class Simulator:
    """Everything one simulated IEM install needs, independent of the HTTP layer."""

    def __init__(self, state: SimulatorState, config: SimulatorConfig, state_path: Path | None = None, save_interval: float = 1.0) -> None:
        self.state = state
        self.config = config
        self.stopping = threading.Event()
        self.recorder = Recorder()
        self.authenticator = Authenticator(state)
        self.faults = FaultInjector(config.faults, config.seed)
        self.gate = ConcurrencyGate(config.max_concurrency)
        self.api = XmlApi(state, config, self.authenticator, self.recorder, self.stopping)
        self.state_path = state_path
        self.saver = StateSaver(state, state_path, save_interval) if state_path is not None else None

    def start(self) -> None:
        """Start background work (the state saver)."""
        if self.saver is not None:
            self.saver.start()

    def stop(self) -> None:
        """Wake sleeping requests and write the state file one last time."""
        self.stopping.set()
        if self.saver is not None:
            self.saver.stop()

    def update_config(self, data: Any) -> dict[str, Any]:
        """Apply a `/_sim/config` change and return the resulting configuration."""
        changed = self.config.update(data)
        if "faults" in changed:
            self.faults.configure(self.config.faults)
        if "seed" in changed:
            self.faults.reseed(self.config.seed)
            self.api.reseed(self.config.seed)
        if "max_concurrency" in changed:
            self.gate.set_limit(self.config.max_concurrency)
        return self.config_json()

    def config_json(self) -> dict[str, Any]:
        """Return the configuration with the fault counts as they are now."""
        data = self.config.to_json()
        data["faults"] = [rule.to_json() for rule in self.faults.rules()]
        return data

    def state_chunks(self) -> Iterator[str]:
        """Yield the `GET /_sim/state` document."""
        return self.state.iter_json_chunks(extra={"stats": self.recorder.stats(), "log": self.recorder.log()})


def build_simulator(
    state_path: Path | None = None,
    *,
    username: str = DEFAULT_USERNAME,
    token: str = DEFAULT_TOKEN,
    lists: str | list[tuple[int, str]] | None = None,
    custom_fields: str | list[tuple[int, str]] | None = None,
    state_data: dict[str, Any] | None = None,
    save_interval: float = 1.0,
    **behaviour: Any,
) -> Simulator:
    """Create a Simulator; `behaviour` takes the keys of `SimulatorConfig` as keyword arguments.

    The state comes from `state_data` when given, else from `state_path` when that file
    exists, else it is seeded from `username`, `token`, `lists` and `custom_fields`. A state
    that was not loaded from `state_path` is written there at once. Raise TypeError for an
    unknown option and ConfigError for an invalid value.
    """
    unknown = set(behaviour) - set(SimulatorConfig.KEYS)
    if unknown:
        raise TypeError(f"unknown simulator options: {', '.join(sorted(unknown))}")
    faults = behaviour.pop("faults", None)
    if faults is not None:
        behaviour["faults"] = [rule.to_json() if isinstance(rule, FaultRule) else rule for rule in faults]
    config = SimulatorConfig()
    config.update(behaviour)

    path = Path(state_path) if state_path is not None else None
    if state_data is not None:
        state = SimulatorState.from_json(state_data)
    elif path is not None and path.exists():
        return Simulator(SimulatorState.load(path), config, path, save_interval)
    else:
        list_pairs = parse_id_names(lists, "--lists") if isinstance(lists, str) else lists
        field_pairs = parse_id_names(custom_fields, "--custom-fields") if isinstance(custom_fields, str) else custom_fields
        state = SimulatorState.seeded(username, token, list_pairs, field_pairs)
    if path is not None:
        state.save(path)
    return Simulator(state, config, path, save_interval)
