"""The ``harden`` command: argument parsing only; each subcommand calls one module."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from harden import __version__
from harden.errors import HardenError


def _validate(args: argparse.Namespace) -> int:
    from harden.validate import validate_config_dir

    findings = validate_config_dir(args.config_dir)
    for finding in findings:
        print(finding)
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    print(f"{args.config_dir}: {errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0


def build_parser() -> argparse.ArgumentParser:
    """Top-level parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="harden",
        description="Provision, harden and audit internet-facing mail gateways.",
    )
    parser.add_argument("--version", action="version", version=f"harden {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    validate = sub.add_parser(
        "validate",
        help="parse a Postfix-style configuration directory back and report problems",
        description=(
            "Parse main.cf, master.cf, the aliases files named by alias_database and the "
            "hash: tables named in main.cf with the MTA's own configuration layer. Each "
            "finding names the file, line and cause. Exit status 1 when any error is found."
        ),
    )
    validate.add_argument("config_dir", metavar="DIR", help="configuration directory, e.g. /etc/postfix")
    validate.set_defaults(run=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harden`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except HardenError as exc:
        print(f"harden: error: {exc}", file=sys.stderr)
        return 1
