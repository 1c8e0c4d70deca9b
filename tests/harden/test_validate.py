"""Tests for harden.validate: parse-back validation of a configuration directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harden.cli import main
from harden.validate import validate_config_dir
from mta.cli import main as mta_main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway"


@pytest.fixture()
def etc(tmp_path: Path) -> Path:
    target = tmp_path / "etc"
    shutil.copytree(EXAMPLE, target)
    return target


def build_tables(etc: Path) -> None:
    assert mta_main(["-c", str(etc), "newaliases"]) == 0
    assert mta_main(["-c", str(etc), "postmap", f"hash:{etc}/access"]) == 0


def test_example_is_clean_once_tables_are_built(etc: Path) -> None:
    build_tables(etc)
    assert validate_config_dir(etc) == []


def test_missing_tables_are_warnings(etc: Path) -> None:
    findings = validate_config_dir(etc)
    assert {(f.severity, Path(f.path).name) for f in findings} == {
        ("warning", "aliases.db"), ("warning", "access.db")}


@pytest.mark.parametrize(
    ("filename", "content", "line", "cause"),
    [
        ("main.cf", "myhostname = gw.example.com\nmyorigin example.com\n", 2, "missing '='"),
        ("main.cf", "myhostname = gw.example.com\nmyorigin = ${mydomain\n", 2, "truncated macro reference"),
        ("master.cf", "smtp inet n - y - - smtpd\npickup unix n - y 60\n", 2, ""),
        ("aliases", "postmaster: root\nroot: mick\nbroken line without colon\n", 3, "need name:value pair"),
    ],
)
def test_errors_name_file_and_line(etc: Path, filename: str, content: str, line: int, cause: str) -> None:
    (etc / filename).write_text(content)
    errors = [f for f in validate_config_dir(etc) if f.severity == "error"]
    assert errors, "expected an error"
    assert errors[0].path.endswith(filename)
    assert errors[0].line == line
    assert cause in errors[0].message


def test_missing_list_file_is_an_error(etc: Path) -> None:
    (etc / "mydests.txt").unlink()
    errors = [f for f in validate_config_dir(etc) if f.severity == "error"]
    assert len(errors) == 1
    assert "mydestination: open file" in errors[0].message and errors[0].path.endswith("main.cf")


def test_stale_table_and_unused_parameter_are_warnings(etc: Path) -> None:
    build_tables(etc)
    with open(etc / "main.cf", "a") as fh:
        fh.write("smtpd_recipent_limit = 100\n")  # misspelt on purpose
    aliases_db = etc / "aliases.db"
    import os
    os.utime(aliases_db, (1, 1))
    findings = {(f.severity, Path(f.path).name, f.message.split(":")[0]) for f in validate_config_dir(etc)}
    assert ("warning", "main.cf", "unused parameter") in findings
    assert ("warning", "aliases.db", f"older than source file {etc}/aliases") in findings


def test_cli_exit_status(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_tables(etc)
    assert main(["validate", str(etc)]) == 0
    assert capsys.readouterr().out.endswith("0 error(s), 0 warning(s)\n")
    (etc / "main.cf").write_text("bad line\n")
    assert main(["validate", str(etc)]) == 1
    out = capsys.readouterr().out
    assert f"error: {etc}/main.cf, line 1: missing '='" in out
