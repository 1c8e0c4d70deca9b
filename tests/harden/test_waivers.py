"""Tests for harden.waivers: the file's rules, and which failures a waiver covers until when."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from harden.waivers import WaiverError, waiver_for, waivers_load


def test_load_and_match(tmp_path: Path) -> None:
    path = tmp_path / "waivers.yml"
    path.write_text("- id: SMTP-BANNER-01\n  hosts: 'gw[12]*'\n  justification: partner relay\n"
                    "  expires: 2026-12-31\n")
    [w] = waivers_load(path)
    assert (w.id, w.hosts, w.expires) == ("SMTP-BANNER-01", "gw[12]*", date(2026, 12, 31))
    assert waiver_for([w], "SMTP-BANNER-01", "gw1.lab", date(2026, 12, 31)) == (w, None)  # the last day counts
    assert waiver_for([w], "SMTP-BANNER-01", "gw1.lab", date(2027, 1, 1)) == (None, w)  # expired
    assert waiver_for([w], "SMTP-BANNER-01", "gw3.lab", date(2026, 1, 1)) == (None, None)
    assert waiver_for([w], "SMTP-VRFY-01", "gw1.lab", date(2026, 1, 1)) == (None, None)


@pytest.mark.parametrize("text, message", [
    ("- id: X\n  hosts: '*'\n  justification: j\n", r"waiver 1: missing expires"),
    ("- id: X\n  hosts: '*'\n  justification: j\n  expires: 2026-13-01\n", "is not a date"),
    ("- id: X\n  hosts: '*'\n  justification: ''\n  expires: 2026-01-01\n", "justification is empty"),
    ("- id: X\n  host: '*'\n  justification: j\n  expires: 2026-01-01\n", "unknown field.s. host; missing hosts"),
    ("id: X\n", "expected a list"),
    ("- [1, 2]\n", "expected a mapping"),
])
def test_errors_name_the_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "w.yml"
    path.write_text(text)
    with pytest.raises(WaiverError, match=message) as info:
        waivers_load(path)
    assert str(path) in str(info.value)


def test_audit_refuses_a_bad_waivers_file_with_status_2(tmp_path: Path) -> None:
    """Nothing audited is not "a check failed": harden audit exits 2 and names the file and entry."""
    import subprocess

    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    gw1:\n      ansible_host: 127.0.0.1\n")
    waivers = tmp_path / "waivers.yml"
    waivers.write_text("- id: SMTP-BANNER-01\n  hosts: '*'\n")
    harden = Path(__file__).resolve().parents[2] / ".venv/bin/harden"
    done = subprocess.run([str(harden), "audit", "-i", str(inventory), "--waivers", str(waivers)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{waivers}: waiver 1: missing justification, expires" in done.stderr
    done = subprocess.run([str(harden), "audit", "-i", str(tmp_path / "missing.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "missing.yml" in done.stderr
