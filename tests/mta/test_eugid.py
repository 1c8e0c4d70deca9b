"""Tests for mta.eugid: effective ids for a block, restored afterwards even on errors."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from mta.eugid import effective_ids

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
