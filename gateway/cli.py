"""Command line entry point (placeholder until the gateway CLI lands)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the sonic-gateway command line."""
    del argv
    print("sonic-gateway: not built yet", file=sys.stderr)
    return 2
