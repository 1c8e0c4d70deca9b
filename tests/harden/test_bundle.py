"""Tests for harden.bundle: a reproducible bundle, installed and upgraded in place, and its command links."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harden.bundle import LINKS, Bundle, bundle_build, bundle_install, links_plan
from harden.errors import TransportError
from harden.transport import transport_open


def test_reproducible_and_versioned_by_content() -> None:
    a, b = bundle_build(), bundle_build()
    assert a.version == b.version and a.data == b.data
    assert a.data[:2] == b"\x1f\x8b" and a.data[4:8] == b"\0\0\0\0"  # gzip time stamp fixed, not the clock
    assert a.version.startswith("0.1.0+") and len(a.version.split("+")[1]) == 12


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="the launchers run /usr/bin/python3")
def test_install_then_upgrade_in_place(tmp_path: Path) -> None:
    t = transport_open("local")
    prefix = str(tmp_path / "opt")
    first = bundle_build()
    bundle_install(t, first, prefix)
    current = Path(prefix) / "current"
    assert os.readlink(current) == first.version
    assert (current / "VERSION").read_text().strip() == first.version
    done = subprocess.run([str(current / "bin/mta"), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("mta ")
    assert list((current / "lib/mta").rglob("__pycache__"))  # byte-compiled at install
    # A second version (as after a source change): current switches, the previous one stays.
    second = Bundle("0.1.0+000000000002", [(n, d, m) for n, d, m in first._members if n != "VERSION"]
                    + [("VERSION", b"0.1.0+000000000002\n", 0o644)])
    bundle_install(t, second, prefix)
    assert os.readlink(current) == second.version
    assert sorted(os.listdir(prefix)) == sorted(["current", first.version, second.version])
    third = Bundle("0.1.0+000000000003", [(n, d, m) for n, d, m in first._members if n != "VERSION"]
                   + [("VERSION", b"0.1.0+000000000003\n", 0o644)])
    bundle_install(t, third, prefix)
    assert sorted(os.listdir(prefix)) == sorted(["current", second.version, third.version])  # oldest removed


def test_links_plan() -> None:
    mine = {path: f"/opt/mailgate-mta/current/bin/{name}" for path, name in LINKS.items()}
    assert links_plan("gw1", mine) == []
    assert links_plan("gw1", {}) == list(LINKS)
    with pytest.raises(TransportError, match="gw1: /usr/sbin/sendmail belongs to another program"):
        links_plan("gw1", {"/usr/sbin/sendmail": "/usr/lib/sm.bin/sendmail"})
    with pytest.raises(TransportError, match="belongs to another program \\(OTHER\\)"):
        links_plan("gw1", {"/usr/sbin/sendmail": "OTHER"})
