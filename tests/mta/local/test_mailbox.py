"""Tests for mta.local.mailbox and maildir: mbox spool with locking, home mailboxes, mailbox_command."""

from __future__ import annotations

import grp
import os
import stat
import subprocess
import sys
from pathlib import Path

from mta.local.mailbox import mbox_format
from tests.mta.local.conftest import HOST, SENDER, LocalEnv

MAIL_GID = grp.getgrnam("mail").gr_gid


def test_spool_mbox_is_created_for_the_user_and_appended(env: LocalEnv) -> None:
    env.start(home_mailbox="")
    content = b"Subject: one\n\nFrom the start\n>From quoted\nend"
    [reply] = env.deliver(f"mtatest1@{HOST}", content=content)
    assert (reply["status"], reply["reason"]) == (0, "delivered to mailbox")
    [reply] = env.deliver(f"mtatest1@{HOST}")
    assert reply["status"] == 0
    mbox = env.spool / "mtatest1"
    st = mbox.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (env.users["mtatest1"].pw_uid, MAIL_GID, 0o600)
    data = mbox.read_bytes()
    assert data.count(f"\nFrom {SENDER}  ".encode()) == 1 and data.startswith(f"From {SENDER}  ".encode())
    first = data.split(b"\n", 1)[1].split(f"\nFrom {SENDER}  ".encode())[0]
    assert first == (f"Return-Path: <{SENDER}>\nX-Original-To: mtatest1@{HOST}\n"
                     f"Delivered-To: mtatest1@{HOST}\nSubject: one\n\n>From the start\n>From quoted\nend\n").encode()
    assert not (env.spool / "mtatest1.lock").exists()


def test_spool_mbox_waits_for_locks(env: LocalEnv) -> None:
    env.start(home_mailbox="")
    env.deliver(f"mtatest1@{HOST}")
    mbox = env.spool / "mtatest1"
    size = mbox.stat().st_size
    # A mail reader in another process holds the fcntl lock (POSIX record locks
    # do not conflict within one process, and local delivers in-process).
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'ab'); "
         "fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(mbox)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        [reply] = env.deliver(f"mtatest1@{HOST}")
    finally:
        holder.kill()
        holder.wait()
    assert (reply["status"], reply["dsn"]) == (4, "4.2.0")
    assert reply["reason"] == (f"cannot update mailbox {mbox} for user mtatest1. "
                               "unable to lock for exclusive access: Resource temporarily unavailable")
    lock = env.spool / "mtatest1.lock"
    lock.write_text("")
    [reply] = env.deliver(f"mtatest1@{HOST}")
    assert (reply["status"], reply["dsn"]) == (4, "4.2.0")
    assert f"unable to create lock file {lock}: File exists" in reply["reason"]
    lock.unlink()
    assert mbox.stat().st_size == size
    [reply] = env.deliver(f"mtatest1@{HOST}")
    assert reply["status"] == 0


def test_spool_mailbox_not_owned_by_recipient_defers(env: LocalEnv) -> None:
    mbox = env.spool / "mtatest1"
    mbox.write_text("")
    mbox.chmod(0o666)  # writable, so only the ownership check stops the delivery
    os.chown(mbox, env.users["mtatest2"].pw_uid, MAIL_GID)
    env.start(home_mailbox="")
    [reply] = env.deliver(f"mtatest1@{HOST}")
    assert (reply["status"], reply["dsn"]) == (4, "4.2.0")
    assert reply["reason"].endswith(f"destination {mbox} is not owned by recipient")


def test_root_only_spool_is_opened_as_root_and_chowned(env: LocalEnv, tmp_path: Path) -> None:
    spool = env.pub / "rootspool"
    spool.mkdir(mode=0o755)
    env.start(home_mailbox="", mail_spool_directory=str(spool))
    [reply] = env.deliver(f"mtatest2@{HOST}")
    assert reply["status"] == 0, reply
    pw = env.users["mtatest2"]
    st = (spool / "mtatest2").stat()
    assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid)


def test_home_mbox_and_size_limit(env: LocalEnv) -> None:
    env.start(home_mailbox="Mailbox", mailbox_size_limit="400")
    [reply] = env.deliver(f"mtatest1@{HOST}")
    assert (reply["status"], reply["reason"]) == (0, "delivered to mailbox")
    mailbox = Path(env.users["mtatest1"].pw_dir) / "Mailbox"
    assert mailbox.stat().st_uid == env.users["mtatest1"].pw_uid
    size = mailbox.stat().st_size
    [reply] = env.deliver(f"mtatest1@{HOST}", content=b"Subject: big\n\n" + b"x" * 600 + b"\n")
    assert (reply["status"], reply["dsn"]) == (5, "5.2.2")
    assert reply["reason"].endswith("error writing message: File too large")
    assert mailbox.stat().st_size == size  # truncated back


def test_spool_maildir(env: LocalEnv) -> None:
    spool = env.pub / "mdspool"
    spool.mkdir(mode=0o1777)
    spool.chmod(0o1777)
    env.start(home_mailbox="", mail_spool_directory=f"{spool}/")
    [reply] = env.deliver(f"mtatest2@{HOST}")
    assert (reply["status"], reply["reason"]) == (0, "delivered to maildir")
    [new] = list((spool / "mtatest2" / "new").iterdir())
    assert new.stat().st_uid == env.users["mtatest2"].pw_uid


def test_mailbox_command_runs_as_user_with_environment(env: LocalEnv) -> None:
    out = env.pub / "mbcmd"
    command = f"cat > {out}.$USER.$EXTENSION; (id -u; echo $HOME; echo $RECIPIENT; echo $SENDER) >> {out}.env"
    env.start(mailbox_command=command, recipient_delimiter="+")
    [reply] = env.deliver(f"mtatest1+foo@{HOST}")
    assert (reply["status"], reply["reason"]) == (0, f"delivered to command: {command}")
    pw = env.users["mtatest1"]
    assert (env.pub / "mbcmd.env").read_text().split("\n")[:4] == [
        str(pw.pw_uid), pw.pw_dir, f"mtatest1+foo@{HOST}", SENDER]
    delivered = (env.pub / "mbcmd.mtatest1.foo").read_bytes()
    assert delivered.startswith(f"From {SENDER}  ".encode())
    assert b"\nDelivered-To: mtatest1+foo@mail.example.test\nSubject: test\n" in delivered


def test_mailbox_command_for_root_runs_as_default_privs(env: LocalEnv) -> None:
    out = env.pub / "rootcmd.txt"
    env.start(mailbox_command=f"id -u > {out}")
    [reply] = env.deliver(f"root@{HOST}")
    assert reply["status"] == 0, reply
    assert out.read_text().strip() == "65534"


def test_mbox_format_quotes_and_terminates() -> None:
    assert mbox_format(b"H\n", b"From x\nFromage\n From y") == b"H\n>From x\nFromage\n From y\n\n"
    assert mbox_format(b"", b"") == b"\n"
