"""Tests for mta.local.alias: lists, :include:, /file and |command rights, loops."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from mta import cli
from tests.mta.local.conftest import HOST, SENDER, LocalEnv

NOBODY = pwd.getpwnam("nobody").pw_uid


def test_comma_list_delivers_each_member_once(env: LocalEnv) -> None:
    env.aliases("team: mtatest1, mtatest2, mtatest1, MTATEST2@mail.example.test\n")
    [reply] = env.deliver(f"team@{HOST}")
    assert (reply["status"], reply["reason"]) == (0, "delivered to maildir")
    assert (len(env.maildir("mtatest1")), len(env.maildir("mtatest2"))) == (1, 1)
    assert env.maildir("mtatest2")[0].startswith(
        f"Return-Path: <{SENDER}>\nX-Original-To: team@{HOST}\nDelivered-To: team@{HOST}\n".encode())


def test_include_list_delivers_each_member_once(env: LocalEnv) -> None:
    members = env.pub / "members"
    members.write_text("# the team\nmtatest1\nmtatest2, mtatest1\n  , mtatest2\n")
    os.chown(members, env.users["mtatest2"].pw_uid, env.users["mtatest2"].pw_gid)
    env.aliases(f"staff: :include:{members}, mtatest1\nteam: mtatest1, mtatest2\n")
    replies = env.deliver(f"staff@{HOST}", f"team@{HOST}")
    assert [r["status"] for r in replies] == [0, 0]
    # Both recipients reach both mailboxes; each mailbox gets one copy per request.
    assert (len(env.maildir("mtatest1")), len(env.maildir("mtatest2"))) == (1, 1)


def test_include_forbids_commands_and_files_by_default(env: LocalEnv) -> None:
    members = env.pub / "members"
    members.write_text(f'"|id -u > {env.pub}/inc.txt"\n{env.pub}/inc.mbox\n')
    env.aliases(f"inc: :include:{members}\n")
    [reply] = env.deliver(f"inc@{HOST}")
    assert (reply["status"], reply["dsn"]) == (5, "5.7.1")
    assert reply["reason"] in ("mail to command is restricted", "mail to file is restricted")
    assert not (env.pub / "inc.txt").exists() and not (env.pub / "inc.mbox").exists()


def test_include_allowed_command_runs_as_include_owner(env: LocalEnv) -> None:
    members = env.pub / "members"
    members.write_text(f'"|id -u > {env.pub}/inc.txt"\n')
    owner = env.users["mtatest2"]
    os.chown(members, owner.pw_uid, owner.pw_gid)
    env.aliases(f"inc: :include:{members}\n")
    env.start(allow_mail_to_commands="alias, forward, include")
    [reply] = env.deliver(f"inc@{HOST}")
    assert reply["status"] == 0, reply
    assert (env.pub / "inc.txt").read_text().strip() == str(owner.pw_uid)


def test_bad_include_files_bounce(env: LocalEnv) -> None:
    writable = env.pub / "writable"
    writable.write_text("mtatest1\n")
    writable.chmod(0o666)
    env.aliases(f"missing: :include:{env.pub}/nope\nrel: :include:relative/path\nww: :include:{writable}\n")
    replies = env.deliver(f"missing@{HOST}", f"rel@{HOST}", f"ww@{HOST}")
    assert [(r["status"], r["dsn"], r["reason"]) for r in replies] == [
        (5, "5.3.5", "mail system configuration error")] * 3
    assert env.maildir("mtatest1") == []


def test_file_and_command_in_root_owned_alias_run_as_default_privs(env: LocalEnv) -> None:
    mbox, uid_file = env.pub / "file.mbox", env.pub / "uid.txt"
    env.aliases(f'filer: {mbox}\npiper: "|id -u > {uid_file}"\n')
    content = b"Subject: t\n\nFrom me\nbody"
    replies = env.deliver(f"filer@{HOST}", f"piper@{HOST}", content=content)
    assert [(r["status"], r["reason"]) for r in replies] == [
        (0, f"delivered to file: {mbox}"), (0, f"delivered to command: id -u > {uid_file}")]
    assert mbox.stat().st_uid == NOBODY
    assert uid_file.read_text().strip() == str(NOBODY)
    data = mbox.read_bytes()
    assert data.startswith(f"From {SENDER}  ".encode())
    header, _, rest = data.partition(b"\n")
    assert rest == (f"Return-Path: <{SENDER}>\nX-Original-To: filer@{HOST}\nDelivered-To: filer@{HOST}\n"
                    "Subject: t\n\n>From me\nbody\n\n").encode()


def test_file_and_command_in_user_owned_alias_run_as_its_owner(env: LocalEnv) -> None:
    owner = env.users["mtatest2"]
    source_dir = env.pub / "owned"
    source_dir.mkdir()
    os.chown(source_dir, owner.pw_uid, owner.pw_gid)
    source = source_dir / "aliases"
    source.write_text(f'userpipe: "|id -u > {env.pub}/owner.txt"\nuserfile: {env.pub}/owner.mbox\n')
    os.chown(source, owner.pw_uid, owner.pw_gid)
    assert cli.main(["-c", str(env.root / "etc"), "postalias", str(source)]) == 0
    assert Path(f"{source}.db").stat().st_uid == owner.pw_uid
    env.start(alias_maps=f"hash:{env.root / 'etc' / 'aliases'}, hash:{source}")
    replies = env.deliver(f"userpipe@{HOST}", f"userfile@{HOST}")
    assert [r["status"] for r in replies] == [0, 0], replies
    assert (env.pub / "owner.txt").read_text().strip() == str(owner.pw_uid)
    assert (env.pub / "owner.mbox").stat().st_uid == owner.pw_uid


def test_file_to_maildir_and_dev_null(env: LocalEnv) -> None:
    env.aliases(f"md: {env.pub}/md/\nnull: /dev/null\n")
    replies = env.deliver(f"md@{HOST}", f"null@{HOST}")
    assert [(r["status"], r["reason"]) for r in replies] == [
        (0, "delivered to maildir"), (0, "delivered to file: /dev/null")]
    [new] = list((env.pub / "md" / "new").iterdir())
    assert new.stat().st_uid == NOBODY


def test_executable_file_is_refused(env: LocalEnv) -> None:
    target = env.pub / "script"
    target.write_text("")
    target.chmod(0o777)
    env.aliases(f"exe: {target}\n")
    [reply] = env.deliver(f"exe@{HOST}")
    assert (reply["status"], reply["dsn"]) == (5, "5.7.1")
    assert reply["reason"] == f"cannot append message to file {target}: file is executable"


def test_name_in_its_own_expansion_goes_to_the_user(env: LocalEnv) -> None:
    env.aliases("mtatest1: mtatest1, mtatest2\n")
    [reply] = env.deliver(f"mtatest1@{HOST}")
    assert reply["status"] == 0
    assert (len(env.maildir("mtatest1")), len(env.maildir("mtatest2"))) == (1, 1)


def test_alias_loop_bounces(env: LocalEnv) -> None:
    env.aliases("loopa: loopb\nloopb: loopa\n")
    [reply] = env.deliver(f"loopa@{HOST}")
    assert (reply["status"], reply["dsn"]) == (5, "5.4.6")
    assert reply["reason"] in ("alias database loop for loopa", "alias database loop for loopb",
                               "recipient nesting limit exceeded")


def test_delivered_to_loop_bounces(env: LocalEnv) -> None:
    env.aliases("fwd: mtatest1\n")
    content = f"Delivered-To: other@x\nDelivered-To: MTATEST1@{HOST}\nSubject: loop\n\nbody\n".encode()
    replies = env.deliver(f"mtatest1@{HOST}", f"fwd@{HOST}", f"mtatest2@{HOST}", content=content)
    assert [(r["status"], r["dsn"], r["reason"]) for r in replies] == [
        (5, "5.4.6", f"mail forwarding loop for mtatest1@{HOST}"),
        (5, "5.4.6", f"mail forwarding loop for mtatest1@{HOST}"),
        (0, "2.0.0", "delivered to maildir"),
    ]
    assert env.maildir("mtatest1") == []
