"""Tests for mta.service_format: master.cf rows printed as postconf -M and -Mf do.

The golden ``.ref`` files are real ``postconf -M`` / ``postconf -Mf`` output for the
``.in`` files; the differential tests run the real Postfix 3.7 postconf when present.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mta.service_format import format_row, format_table
from mta.service_table import ServiceRow, parse_master_cf, parse_master_text, select_rows

PATH = "/etc/postfix/master.cf"
GOLDEN = Path(__file__).parent / "golden" / "service_table"
CASES = sorted(p.stem for p in GOLDEN.glob("*.in"))


def one(text: str) -> ServiceRow:
    rows = parse_master_text(text, PATH)
    assert len(rows) == 1
    return rows[0]


# ---------------------------------------------------------------- printing (golden, from real postconf)

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fold", [False, True], ids=["M", "Mf"])
def test_format_golden(case: str, fold: bool) -> None:
    rows = parse_master_cf(GOLDEN / f"{case}.in", keep_duplicates=True)
    ref = GOLDEN / f"{case}{'.fold' if fold else ''}.ref"
    assert format_table(rows, fold=fold) == ref.read_text()


@pytest.mark.parametrize(("command", "printed", "folded"), [
    # The first non-option argument is printed without braces (postconf's quirk).
    ("pipe {a b} {c d}", "pipe a b {c d}", None),
    ("pipe x {} y", "pipe x  y", None),
    # Each -o goes on its own line when folding.
    ("smtpd -v -o a=1 -o {b = two words} c", "smtpd -v -o a=1 -o {b=two words} c",
     "smtpd -v\n    -o a=1\n    -o {b=two words}\n    c"),
    # A lone "-" takes a value in postconf's eyes.
    ("cmd - x", "cmd - x", "cmd\n    - x"),
])
def test_format_details(command: str, printed: str, folded: str | None) -> None:
    row = one(f"foo unix - - n - - {command}\n")
    prefix = "foo        unix  -       -       n       -       -       "
    assert format_row(row) == prefix + printed
    if folded is not None:
        assert format_row(row, fold=True) == prefix + folded


# ---------------------------------------------------------------- differential, against real Postfix

def _postfix_root() -> Path | None:
    candidates = [os.environ.get("MTA_POSTFIX_ROOT"),
                  str(Path(__file__).resolve().parents[2] / ".cache" / "postfix-3.7" / "root"),
                  "/tmp/pfx/root"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "usr/sbin/postconf").exists():
            return Path(candidate)
    return None


ROOT = _postfix_root()


def _postconf(master_cf: Path, tmp_path: Path, *args: str) -> str:
    assert ROOT is not None
    config = tmp_path / "cfg"
    config.mkdir(exist_ok=True)
    (config / "main.cf").write_text("")
    shutil.copyfile(master_cf, config / "master.cf")
    # Postfix waits (up to 2s) for a main.cf changed in the last second to settle; age it.
    for name in ("main.cf", "master.cf"):
        os.utime(config / name, (0, 0))
    env = dict(os.environ, LD_LIBRARY_PATH=str(ROOT / "usr/lib/postfix"))
    done = subprocess.run([str(ROOT / "usr/sbin/postconf"), "-c", str(config), *args],
                          env=env, capture_output=True, text=True, check=True)
    return done.stdout


def _differential_inputs() -> list[Any]:
    inputs = [pytest.param(GOLDEN / f"{case}.in", id=case) for case in CASES]
    inputs.append(pytest.param("debian:master.cf.dist", id="debian_master_cf_dist"))
    return inputs


@pytest.mark.postfix
@pytest.mark.skipif(ROOT is None, reason="Postfix 3.7 binaries not unpacked (set MTA_POSTFIX_ROOT)")
@pytest.mark.parametrize("source", _differential_inputs())
@pytest.mark.parametrize("fold", [False, True], ids=["M", "Mf"])
def test_postconf_differential(source: Path | str, fold: bool, tmp_path: Path) -> None:
    assert ROOT is not None
    path = ROOT / "usr/share/postfix/master.cf.dist" if source == "debian:master.cf.dist" else Path(source)
    if not path.exists():
        pytest.skip(f"{path} is absent")
    rows = parse_master_cf(path, keep_duplicates=True)
    assert format_table(rows, fold=fold) == _postconf(path, tmp_path, "-Mf" if fold else "-M")


@pytest.mark.postfix
@pytest.mark.skipif(ROOT is None, reason="Postfix 3.7 binaries not unpacked (set MTA_POSTFIX_ROOT)")
@pytest.mark.parametrize("patterns", [["smtp"], ["*/inet", "smtp"], ["local/unix", "*/unix-dgram"]])
def test_postconf_select_differential(patterns: list[str], tmp_path: Path) -> None:
    assert ROOT is not None
    path = ROOT / "usr/share/postfix/master.cf.dist"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    rows = select_rows(parse_master_cf(path, keep_duplicates=True), patterns)
    assert format_table(rows) == _postconf(path, tmp_path, "-M", *patterns)
