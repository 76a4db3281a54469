"""Run the simulator with `python -m edm_tui.interspire.simulator`."""

import argparse
import sys

from edm_tui.interspire.simulator.cli import add_arguments, run


def main() -> int:
    """Parse the command line and run the simulator."""
    parser = argparse.ArgumentParser(
        prog="python -m edm_tui.interspire.simulator",
        description="Simulate the XML API of Interspire Email Marketer on 127.0.0.1.",
    )
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
