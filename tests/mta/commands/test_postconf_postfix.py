"""Differential tests: `mta postconf` against real Postfix 3.7's postconf on a corpus of main.cf files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mta.defaults import HARDENED, POSTFIX_DEFAULTS
from tests.conftest import run_postfix

pytestmark = pytest.mark.postfix

CASES = sorted((Path(__file__).parent.parent / "cases" / "postconf").glob("*.cf"))


def header(text: str, key: str) -> list[str]:
    """Values of a ``# key: ...`` header line in a case file."""
    for line in text.splitlines():
        if line.startswith(f"# {key}:"):
            return line.split(":", 1)[1].split()
    return []


def run_ours(config_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("MAIL_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "mta", "-c", str(config_dir), "postconf", *args],
        capture_output=True, text=True, env=env, timeout=60,
    )


def make_config_dir(tmp_path: Path, main_cf: str) -> Path:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "main.cf").write_text(main_cf)
    (config_dir / "master.cf").write_text("")
    # Postfix waits (0.3 s at a time) for a main.cf modified in the last second
    # to settle; date the files back so the corpus runs quickly.
    past = time.time() - 60
    for name in ("main.cf", "master.cf"):
        os.utime(config_dir / name, (past, past))
    return config_dir


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_expanded_values_match_postfix(case: Path, tmp_path: Path, postfix_root: Path) -> None:
    text = case.read_text()
    names = header(text, "query")
    assert names, f"{case.name}: no '# query:' header"
    config_dir = make_config_dir(tmp_path, text)
    theirs = run_postfix(postfix_root, "postconf", "-c", str(config_dir), "-x", *names)
    ours = run_ours(config_dir, "-x", *names)
    if header(text, "expect") == ["fatal"]:
        assert theirs.returncode != 0, theirs.stderr
        assert ours.returncode != 0, ours.stdout
        assert ours.stdout == ""
        assert "fatal:" in ours.stderr
    else:
        assert theirs.returncode == 0, theirs.stderr
        assert ours.returncode == 0, ours.stderr
        assert ours.stdout == theirs.stdout


@pytest.mark.parametrize("case", CASES[:12], ids=[c.stem for c in CASES[:12]])
def test_unexpanded_values_match_postfix(case: Path, tmp_path: Path, postfix_root: Path) -> None:
    text = case.read_text()
    if header(text, "expect") == ["fatal"]:
        pytest.skip("fatal case")
    config_dir = make_config_dir(tmp_path, text)
    names = header(text, "query")
    theirs = run_postfix(postfix_root, "postconf", "-c", str(config_dir), *names)
    ours = run_ours(config_dir, *names)
    assert ours.stdout == theirs.stdout


def test_defaults_match_postfix(tmp_path: Path, postfix_root: Path) -> None:
    """`postconf -d` lists the same parameters with the same default values."""
    config_dir = make_config_dir(tmp_path, "")
    theirs = run_postfix(postfix_root, "postconf", "-c", str(config_dir), "-d")
    ours = run_ours(config_dir, "-d")
    assert theirs.returncode == 0 and ours.returncode == 0, ours.stderr

    def table(output: str) -> dict[str, str]:
        rows = (line.partition(" =") for line in output.splitlines())
        # process_id and process_name describe the running program itself.
        return {k: v for k, _, v in rows if k not in ("process_id", "process_name")}

    ours_table, theirs_table = table(ours.stdout), table(theirs.stdout)
    for name, value in HARDENED.items():  # this MTA's deliberate, safer defaults
        assert (ours_table.pop(name), theirs_table.pop(name)) == (f" {value}", f" {POSTFIX_DEFAULTS[name]}")
    assert ours_table == theirs_table


def test_non_default_listing_matches_postfix(tmp_path: Path, postfix_root: Path) -> None:
    """`postconf -n` shows only used main.cf settings (and -c's directory), like Postfix."""
    config_dir = make_config_dir(
        tmp_path,
        "myorigin = $mydomain\nfoo = $bar\nbar = 2\nmydestination = a,\n  b\nrelay_transport = relay\n",
    )
    theirs = run_postfix(postfix_root, "postconf", "-c", str(config_dir), "-n")
    ours = run_ours(config_dir, "-n")
    assert ours.stdout == theirs.stdout
    assert "unused parameter: foo=$bar" in ours.stderr
    assert "unused parameter: foo=$bar" in theirs.stderr


SEED_MASTER_CF = Path(__file__).parents[3] / "examples" / "gateway" / "master.cf"


@pytest.mark.parametrize("flags", [["-M"], ["-Mf"], ["-M", "smtp/inet", "procmail"], ["-M", "smtp"]])
def test_master_listing_matches_postfix(tmp_path: Path, postfix_root: Path, flags: list[str]) -> None:
    """`postconf -M` on the example gateway's master.cf (seed Example 7-20) prints what Postfix prints."""
    config_dir = make_config_dir(tmp_path, "")
    (config_dir / "master.cf").write_text(SEED_MASTER_CF.read_text() + "smtp inet n - y - - smtpd\n")
    theirs = run_postfix(postfix_root, "postconf", "-c", str(config_dir), *flags)
    ours = run_ours(config_dir, *flags)
    assert theirs.returncode == 0, theirs.stderr
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout
