"""Tests for mta.local.privs: acting with a user's effective ids and getting root back, and checked table-file reads."""

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


def test_run_as_switches_effective_ids_for_the_call_only() -> None:
    creds = privs.creds_of(NOBODY.pw_uid, NOBODY.pw_gid)
    uid, gid = NOBODY.pw_uid, NOBODY.pw_gid
    before = _ids()
    assert privs.run_as(creds, _ids) == [0, uid, 0, gid, gid]
    assert _ids() == before
    assert privs.run_as(None, os.geteuid) == 0


def test_run_as_creates_files_as_the_user() -> None:
    import shutil
    import tempfile

    where = Path(tempfile.mkdtemp(dir="/var/tmp"))  # pytest's own tmp dirs are root-only
    os.chmod(where, 0o777)
    target = where / "made"
    privs.run_as(privs.creds_of(NOBODY.pw_uid, NOBODY.pw_gid), target.write_text, "x")
    st = os.stat(target)
    shutil.rmtree(where)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (NOBODY.pw_uid, NOBODY.pw_gid, 0o600)


def test_run_as_cannot_read_roots_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root only")
    os.chmod(secret, 0o600)
    with pytest.raises(privs.PrivsError, match="PermissionError"):
        privs.run_as(privs.creds_of(NOBODY.pw_uid, NOBODY.pw_gid), secret.read_text)
    assert os.geteuid() == 0


def test_run_as_restores_limits() -> None:
    import resource

    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    privs.run_as(None, resource.setrlimit, resource.RLIMIT_FSIZE, (1000, before[1]))
    assert resource.getrlimit(resource.RLIMIT_FSIZE) == before


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


def _drop_to_nobody() -> None:
    os.setegid(NOBODY.pw_gid)
    os.seteuid(NOBODY.pw_uid)


def test_run_as_restores_ids_a_function_changed() -> None:
    """The spool mbox writer opens as root and then writes as the user: run_as puts root back."""
    before = _ids()
    privs.run_as(None, _drop_to_nobody)
    assert _ids() == before
