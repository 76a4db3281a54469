"""A simulator of the Interspire Email Marketer (IEM) XML API (`xml.php`) for tests and the sandbox.

IEM is proprietary PHP, so this package imitates its behaviour over real HTTP on 127.0.0.1.
It covers the envelope parsing, the PHP quirks of parameter binding and both output
dialects. It also models token authentication with IEM's login throttling and IP ban, and
the broken responses real installs send (see `faults`). Start it with `start_simulator()`
or `edm-sync simulator`.
"""

from edm_tui.interspire.simulator.config import FaultRule, SimulatorConfig
from edm_tui.interspire.simulator.core import build_simulator
from edm_tui.interspire.simulator.server import SimulatorHandle, start_simulator
from edm_tui.interspire.simulator.state import DEFAULT_TOKEN, DEFAULT_USERNAME, SimulatorState, Subscriber

__all__ = [
    "DEFAULT_TOKEN",
    "DEFAULT_USERNAME",
    "FaultRule",
    "SimulatorConfig",
    "SimulatorHandle",
    "SimulatorState",
    "Subscriber",
    "build_simulator",
    "start_simulator",
]
