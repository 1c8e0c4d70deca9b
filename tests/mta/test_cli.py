"""Tests for the mta command's dispatch: -c before or after the subcommand, MAIL_CONFIG, help."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from mta.cli import COMMANDS, build_parser, config_dir_from

# Commands that cannot run without some operand or flag.
OPERANDS = {"postmap": ["hash:/tmp/table"], "postalias": ["hash:/tmp/table"], "postqueue": ["-p"]}


def resolve(argv: list[str]) -> tuple[Path, bool]:
    return config_dir_from(build_parser().parse_args(argv))


def test_default_is_etc_postfix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAIL_CONFIG", raising=False)
    assert resolve(["postconf"]) == (Path("/etc/postfix"), False)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_c_before_and_after_each_command(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_CONFIG", "/from/env")
    operands = OPERANDS.get(command, [])
    assert resolve(["-c", "/before", command, *operands]) == (Path("/before"), True)
    assert resolve([command, "-c", "/after", *operands]) == (Path("/after"), True)
    assert resolve(["-c", "/before", command, "-c", "/after", *operands]) == (Path("/after"), True)
    assert resolve([command, *operands]) == (Path("/from/env"), True)


def test_every_command_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in COMMANDS:
        assert sub.choices[name].description, f"{name} has no description"


def test_console_script_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "mta", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "mta", "nosuch"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_a_command_imports_only_its_own_module() -> None:
    from mta.cli import command_named

    assert command_named(["-c", "/etc/postfix", "check"]) == "check"
    assert command_named(["-v", "postconf", "-n"]) == "postconf"
    assert command_named(["--help"]) is None and command_named(["nosuch"]) is None
    code = ("import sys; from mta.cli import build_parser; build_parser('check'); "
            "print(sorted(m for m in sys.modules if m.startswith('mta.commands.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['mta.commands.check']"
