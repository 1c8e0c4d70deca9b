"""Tests for harden.transport.base (through the local transport): atomic, change-only file writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harden.errors import TransportError
from harden.transport import transport_open
from harden.transport.base import file_get, file_put


def test_put_writes_only_when_needed(tmp_path: Path) -> None:
    t = transport_open("local")
    dest = tmp_path / "main.cf"
    assert file_put(t, b"a = 1\n", str(dest), mode=0o644) is True
    assert dest.read_bytes() == b"a = 1\n" and dest.stat().st_mode & 0o777 == 0o644
    assert file_put(t, b"a = 1\n", str(dest), mode=0o644) is False  # same content, owner, mode
    assert file_put(t, b"a = 1\n", str(dest), mode=0o600) is True  # mode differs
    assert dest.stat().st_mode & 0o777 == 0o600
    assert file_put(t, b"a = 2\n", str(dest), mode=0o600) is True
    assert file_get(t, str(dest)) == b"a = 2\n" and file_get(t, str(tmp_path / "none")) is None
    assert sorted(os.listdir(tmp_path)) == ["main.cf"]  # no temporary file left


def test_put_failure_names_host_and_file(tmp_path: Path) -> None:
    t = transport_open("local", host="ctl")
    with pytest.raises(TransportError, match=r"ctl: write .*/missing/dir/f:"):
        file_put(t, b"x", str(tmp_path / "missing/dir/f"))


def test_run_result_and_errors() -> None:
    t = transport_open("local")
    done = t.run("echo out; echo err >&2; exit 3", check=False)
    assert (done.exit_code, done.stdout, done.stderr, done.ok) == (3, "out\n", "err\n", False)
    with pytest.raises(TransportError, match="localhost: exit 3: .*: err"):
        t.run("echo err >&2; exit 3")
    assert t.run("cat", stdin=b"in").stdout == "in"
    with pytest.raises(TransportError, match="unknown transport 'ftp'"):
        transport_open("ftp")
