"""Tests for mta.jail: the one list of jail contents, as this host needs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mta.jail import ETC_FILES, jail_expected


def test_expected_on_this_host() -> None:
    expected = jail_expected()
    assert "etc/passwd" in expected and "usr/lib/zoneinfo/localtime" in expected
    assert all(f"etc/{name}" in expected for name in ETC_FILES if os.path.exists(f"/etc/{name}"))
    libs = [p for p in expected if p.startswith("lib/")]
    assert any(p.endswith("/libnss_files.so.2") for p in libs) and any("/libresolv" in p for p in libs)


def test_expected_for_another_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hosts").write_text("127.0.0.1 localhost\n")
    arch = tmp_path / "lib/aarch64-linux-gnu"
    arch.mkdir(parents=True)
    for name in ("libnss_files.so.2", "libc.so.6", "libresolv.so.2"):
        (arch / name).write_text("")
    assert jail_expected(str(tmp_path)) == ["etc/hosts", "etc/passwd", "lib/aarch64-linux-gnu/libnss_files.so.2",
                                            "lib/aarch64-linux-gnu/libresolv.so.2", "usr/lib/zoneinfo/localtime"]


@pytest.mark.skipif(os.geteuid() != 0, reason="building a jail needs root")
def test_harden_builds_exactly_what_mta_expects(tmp_path: Path) -> None:
    from harden.chroot import jail_sync
    from harden.transport import transport_open

    jail_sync(transport_open("local"), str(tmp_path))
    assert [p for p in jail_expected() if not os.path.lexists(tmp_path / p)] == []
