"""mta postmap: placeholder until its implementation lands (being written now)."""

from __future__ import annotations

import argparse

SUMMARY = "postmap (not yet implemented)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options yet."""


def run(args: argparse.Namespace) -> int:
    """Not implemented yet."""
    raise SystemExit("mta postmap: not implemented yet")
