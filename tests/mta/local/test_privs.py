"""Tests for mta.local.privs: running code in a child as another user, and checked table-file reads."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from mta.local import privs

NOBODY = pwd.getpwnam("nobody")


def _ids() -> list[int]:
    return [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), *os.getgroups()]


def _fail() -> None:
    raise RuntimeError("boom")


def test_run_as_switches_every_id_in_the_child_only() -> None:
    creds = privs.creds_of(NOBODY.pw_uid, NOBODY.pw_gid)
    uid, gid = NOBODY.pw_uid, NOBODY.pw_gid
    assert privs.run_as(creds, _ids) == [uid, uid, gid, gid, gid]
    assert os.geteuid() == 0
    assert privs.run_as(None, os.geteuid) == 0


def test_child_errors_come_back_as_privs_error() -> None:
    with pytest.raises(privs.PrivsError, match="RuntimeError: boom"):
        privs.run_as(None, _fail)
    assert privs.run_delivery(None, _fail) == {"dsn": "4.3.0", "reason": "delivery process failed: RuntimeError: boom"}


def test_table_file_read_checks(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_text("a, b\n")
    assert privs.table_file_read(str(good), 0, False, 0o022) == {"uid": 0, "text": "a, b\n"}
    assert privs.table_file_read(str(tmp_path / "none"), 0, False, 0o022) == {"missing": True}
    link = tmp_path / "link"
    link.symlink_to(good)
    assert "not a regular file" in privs.table_file_read(str(link), 0, False, 0o022)["warning"]
    assert privs.table_file_read(str(link), None, True, 0o002)["uid"] == 0
    good.chmod(0o664)
    assert privs.table_file_read(str(good), 0, False, 0o022)["warning"].endswith("is group writable")
    os.chown(good, NOBODY.pw_uid, NOBODY.pw_gid)
    good.chmod(0o644)
    assert "bad owner uid" in privs.table_file_read(str(good), 1234, False, 0o022)["warning"]
