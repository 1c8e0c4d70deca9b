"""The configuration checks that ``mta start`` and ``mta reload`` make before acting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mta.errors import ConfigError
from mta.master.check import config_load, queue_access_warnings, rows_runnable
from mta.service_table import parse_master_text

MASTER_CF = "smtp inet n - y - - smtpd\n"


def write(tmp_path: Path, main_cf: str, master_cf: str = MASTER_CF) -> Path:
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}/spool\n" + main_cf)
    (tmp_path / "master.cf").write_text(master_cf)
    return tmp_path


def test_good_configuration(tmp_path: Path, mail_users: None) -> None:
    mc = config_load(write(tmp_path, f"maillog_file = {tmp_path}/log\nmaillog_file_prefixes = /var, {tmp_path}\n"))
    assert mc.queue_dir == tmp_path / "spool"
    assert mc.maillog_file == f"{tmp_path}/log"
    assert [row.service for row in mc.rows] == ["smtp"]
    assert mc.mail_uid != 0 and mc.setgid_gid != mc.mail_gid


@pytest.mark.parametrize("main_cf, message", [
    ("mail_owner = root\n", "main.cf, line 2: parameter mail_owner: user root has privileged user ID: 0"),
    ("mail_owner = nosuchuser\n", "line 2: parameter mail_owner: unknown user name value: nosuchuser"),
    ("default_privs = postfix\n",
     "line 2: parameter default_privs: user postfix has same user ID as mail_owner user postfix"),
    ("setgid_group = nosuchgroup\n", "line 2: parameter setgid_group: unknown group name: nosuchgroup"),
    ("setgid_group = postfix\n", "parameter setgid_group: group postfix has same group ID as the mail_owner's"),
    ("queue_directory = spool\n", "line 2: parameter queue_directory: not an absolute path: spool"),
    ("maillog_file = /tmp/x/maillog\nmaillog_file_prefixes = /var, /tmp/xy\n",
     'parameter maillog_file: "/tmp/x/maillog" does not match any prefix in maillog_file_prefixes'),
])
def test_refused(tmp_path: Path, mail_users: None, main_cf: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_load(write(tmp_path, main_cf))
    assert message in str(info.value)


def test_bad_master_cf(tmp_path: Path, mail_users: None) -> None:
    with pytest.raises(ConfigError, match=r"master\.cf, line 2: bad transport type: tcp"):
        config_load(write(tmp_path, "", MASTER_CF + "x tcp n - n - - smtpd\n"))


def test_missing_master_cf(tmp_path: Path, mail_users: None) -> None:
    write(tmp_path, "")
    (tmp_path / "master.cf").unlink()
    with pytest.raises(ConfigError, match="master.cf: No such file or directory"):
        config_load(tmp_path)


def test_rows_runnable() -> None:
    rows = parse_master_text("smtp inet n - y - - smtpd\n"
                             "relay unix - - y - - smtp\n"
                             "lmtp unix - - y - - lmtp\n"
                             "echo unix - - n - - tests.mta.master.daemons:echo\n"
                             "postlog unix-dgram n - n - 1 postlogd\n", compatibility_level="3.6")
    runnable, warnings = rows_runnable(rows)
    assert "echo" in [row.service for row in runnable]
    assert "relay" in [row.service for row in runnable]  # the smtp client exists now
    assert "service lmtp/unix: command lmtp is not available in this MTA; service disabled" in warnings
    assert ("service postlog/unix-dgram: transport type unix-dgram is not supported by this MTA; "
            "service disabled") in warnings


def test_queue_access_warning(tmp_path: Path, mail_users: None) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    os.chmod(hidden, 0o700)
    write(tmp_path, "")
    main_cf = tmp_path / "main.cf"
    main_cf.write_text(f"queue_directory = {hidden}/spool\n")
    mc = config_load(tmp_path)
    assert queue_access_warnings(mc) == []  # the only service is chrooted
    (tmp_path / "master.cf").write_text("qmgr unix n - n 300 1 qmgr\n")
    mc = config_load(tmp_path)
    warnings = queue_access_warnings(mc)
    assert len(warnings) == 1
    assert f"mail_owner cannot search {hidden} (mode 0700)" in warnings[0]
    # Searchable now; the nearest unsearchable directory is further up (pytest's 0700 tree, or none).
    os.chmod(hidden, 0o711)
    assert not any(str(hidden) + " " in text for text in queue_access_warnings(mc))
