"""Tests for mta check: the postfix check warnings for ownership, modes and stale jail files."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
from pathlib import Path

import pytest

from mta import queue
from mta.cli import main
from mta.commands.check import check_warnings

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    spool = tmp_path / "spool"
    (etc / "main.cf").write_text(f"queue_directory = {spool}\ndata_directory = {tmp_path / 'data'}\n"
                                 "compatibility_level = 3.6\nsmtpd_banner = $myhostname ESMTP\n"
                                 "disable_vrfy_command = yes\n")
    (etc / "master.cf").write_text("pickup unix n - n 60 1 pickup\n")
    spool.mkdir(mode=0o755)
    postfix = pwd.getpwnam("postfix")
    queue.queue_dirs_create(spool, postfix.pw_uid, grp.getgrnam("postdrop").gr_gid)
    (spool / "etc").mkdir(mode=0o755)
    shutil.copy("/etc/hosts", spool / "etc/hosts")
    return etc


def test_clean_configuration_has_no_warnings(config: Path) -> None:
    assert check_warnings(config) == []


def test_problems_are_reported(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spool = config.parent / "spool"
    (spool / "etc/hosts").write_text("192.0.2.1 stale\n")
    os.chown(spool / "etc", pwd.getpwnam("postfix").pw_uid, -1)
    os.chmod(config / "main.cf", 0o666)
    os.chown(spool / "incoming", 0, -1)
    (spool / "corrupt" / "ABCDEF012345").write_text("x")
    warnings = check_warnings(config)
    assert f"not owned by root: {spool / 'etc'}" in warnings
    assert f"{spool / 'etc/hosts'} and /etc/hosts differ" in warnings
    assert f"group or other writable: {config / 'main.cf'}" in warnings
    assert f"not owned by postfix: {spool / 'incoming'}" in warnings
    assert "damaged message: corrupt/ABCDEF012345" in warnings
    assert main(["-c", str(config), "check"]) == 1  # any finding: exit 1 (postfix check would say 0)
    assert "mta/check: warning: " in capsys.readouterr().err


def test_tables_chroot_and_dangerous_settings(config: Path) -> None:
    import time

    (config / "access").write_text("spam.example REJECT\n")
    (config / "aliases").write_text("root: mick\n")
    (config / "aliases.db").write_text("")
    old = time.time() - 100
    os.utime(config / "aliases.db", (old, old))
    with open(config / "main.cf", "a") as main_cf:
        main_cf.write(f"smtpd_recipient_restrictions = check_recipient_access hash:{config}/access\n"
                      f"alias_maps = hash:{config}/aliases\nmynetworks = 127.0.0.0/8, 0.0.0.0/0, 12.0.0.0/8\n"
                      "smtpd_relay_restrictions = permit_mynetworks\nsmtpd_banner = $myhostname ESMTP $mail_name\n"
                      "disable_vrfy_command = no\n")
    (config / "master.cf").write_text("pickup unix n - n 60 1 pickup\nlocal unix - n y - - local\n"
                                      "smtp inet n - n - - smtpd\n")
    warnings = check_warnings(config)
    assert f"database {config}/access.db is missing: run mta postmap hash:{config}/access" in warnings
    assert f"database {config}/aliases.db is older than source file {config}/aliases" in warnings
    assert any("service local (local) is chrooted" in w for w in warnings)
    assert sum("mynetworks = " in w for w in warnings) == 2  # 0.0.0.0/0 and 12.0.0.0/8, not 127.0.0.0/8
    assert any(w.startswith("neither smtpd_relay_restrictions nor smtpd_recipient_restrictions") for w in warnings)
    assert any(w.startswith("smtpd_banner = $myhostname ESMTP $mail_name tells every client") for w in warnings)
    assert any(w.startswith("disable_vrfy_command = no lets any client probe") for w in warnings)
    assert f"{config}/master.cf: no anvil service, so smtpd_client_connection_count_limit cannot be enforced " \
        "(add: anvil unix - - y - 1 anvil)" in warnings
    with open(config / "master.cf", "a") as master_cf:
        master_cf.write("anvil unix - - n - 1 anvil\n")
    assert not any("anvil" in w for w in check_warnings(config))


def test_a_configuration_that_does_not_load_is_fatal(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (config / "master.cf").write_text("pickup unix n - n 60\n")
    assert main(["-c", str(config), "check"]) == 1
    assert "fatal: " in capsys.readouterr().err
