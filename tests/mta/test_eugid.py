"""Tests for mta.eugid: a user's effective ids, or root's again, for a block; restored even on errors."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from mta.eugid import effective_ids, root_ids

NOBODY = pwd.getpwnam("nobody")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching ids needs root")


def ids() -> tuple[int, int, int, int, list[int]]:
    return os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()


def test_ids_inside_and_after() -> None:
    before = ids()
    with effective_ids(NOBODY.pw_uid, NOBODY.pw_gid):
        assert ids() == (0, NOBODY.pw_uid, 0, NOBODY.pw_gid, [NOBODY.pw_gid])
    assert ids() == before


def test_restored_after_an_error() -> None:
    before = ids()
    where = Path(tempfile.mkdtemp())
    where.chmod(0o755)  # nobody may enter the directory but not read the file
    secret = where / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    try:
        with pytest.raises(PermissionError):
            with effective_ids(NOBODY.pw_uid, NOBODY.pw_gid):
                secret.read_text()
    finally:
        shutil.rmtree(where)
    assert ids() == before


def test_root_ids_from_dropped_effective_ids_and_back() -> None:
    before = ids()
    with effective_ids(NOBODY.pw_uid, NOBODY.pw_gid):
        with pytest.raises(RuntimeError):
            with root_ids():
                assert os.geteuid() == 0
                os.setgroups([0, 4])  # only root may; the caller's groups come back regardless
                raise RuntimeError("body failed")
        assert ids() == (0, NOBODY.pw_uid, 0, NOBODY.pw_gid, [NOBODY.pw_gid])
    assert ids() == before


def test_root_ids_as_root_changes_nothing() -> None:
    before = ids()
    with root_ids():
        assert ids() == before
    assert ids() == before
