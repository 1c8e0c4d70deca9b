"""The ``mta`` command: argument parsing and dispatch to one module per admin command.

Like Postfix's commands, every subcommand takes ``-c DIR`` (before or after the
subcommand name) and honours the MAIL_CONFIG environment variable; the default
configuration directory is /etc/postfix.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Sequence

from mta import __version__, log
from mta.errors import MtaError

DEFAULT_CONFIG_DIR = "/etc/postfix"

# Subcommand name -> module under mta.commands. Each module has SUMMARY,
# add_arguments(parser) and run(args) -> exit status; ADD_HELP = False when
# the command uses -h itself (postconf), leaving --help.
COMMANDS: dict[str, str] = {
    "postconf": "mta.commands.postconf",
    "postmap": "mta.commands.postmap",
    "postalias": "mta.commands.postalias",
    "newaliases": "mta.commands.newaliases",
    "postqueue": "mta.commands.postqueue",
    "postsuper": "mta.commands.postsuper",
    "sendmail": "mta.commands.sendmail",
    "start": "mta.commands.start",
    "stop": "mta.commands.stop",
    "reload": "mta.commands.reload",
    "status": "mta.commands.status",
    "flush": "mta.commands.flush",
    "check": "mta.commands.check",
}


def config_dir_from(args: argparse.Namespace) -> tuple[Path, bool]:
    """Resolve the configuration directory: -c, else $MAIL_CONFIG, else /etc/postfix.

    Returns the directory and whether it was chosen explicitly (-c or MAIL_CONFIG),
    which postconf -n reports as config_directory, as Postfix does.
    """
    explicit = getattr(args, "config_dir", None)
    if explicit:
        return Path(explicit), True
    env = os.environ.get("MAIL_CONFIG")
    if env:
        return Path(env), True
    return Path(DEFAULT_CONFIG_DIR), False


def _add_config_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "-c", dest="config_dir", metavar="DIR", default=default,
        help="configuration directory (default: $MAIL_CONFIG or /etc/postfix)",
    )


def command_named(argv: Sequence[str]) -> str | None:
    """The subcommand argv names (its first word that is not an option or -c's value), if it is one."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "-c":
            skip = True
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per admin command.

    + only: import and describe just that command's module; the others get a
      bare subparser. Each command module costs its import at start-up, and
      sendmail, postconf and postmap are run often (sendmail by every local
      program that mails): a command pays only for itself.
    """
    parser = argparse.ArgumentParser(
        prog="mta",
        description=(
            "Postfix-compatible mail transfer agent. Configuration uses Postfix's own "
            "files: main.cf, master.cf, aliases(5) and access(5) tables."
        ),
    )
    _add_config_option(parser, None)
    parser.add_argument("-v", dest="verbose", action="store_true", help="verbose logging")
    parser.add_argument("--version", action="version", version=f"mta {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name)
            continue
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(
            name, help=module.SUMMARY, description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            add_help=getattr(module, "ADD_HELP", True),
        )
        # SUPPRESS keeps a -c given before the subcommand when none is given after it.
        _add_config_option(cmd, argparse.SUPPRESS)
        cmd.add_argument("-v", dest="verbose", action="store_true", default=argparse.SUPPRESS,
                         help="verbose logging")
        module.add_arguments(cmd)
        cmd.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mta`` console script."""
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_named(words))
    args = parser.parse_args(words)
    args.config_dir, args.config_dir_explicit = config_dir_from(args)
    log.setup_stderr(f"mta/{args.command}", verbose=args.verbose)
    try:
        return int(args.run(args))
    except MtaError as exc:
        log.msg_fatal(str(exc))
        return 1
    except BrokenPipeError:
        # Output piped into head(1) and the like: not an error of ours.
        sys.stderr.close()
        return 0
