"""End-to-end tests for the local daemon over its private/local socket: requests, replies, Maildir."""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from mta import clients, local, proto
from mta.queue import ACTIVE
from tests.mta.local.conftest import HOST, SENDER, LocalEnv


def test_root_alias_lands_in_unprivileged_maildir(env: LocalEnv, caplog: pytest.LogCaptureFixture) -> None:
    """Seed step 5: mail to root follows the root alias into the user's Maildir, owned by the user."""
    env.aliases("root: mtatest1\npostmaster: root\n")
    caplog.set_level("INFO", logger="mta")
    replies = env.deliver(f"root@{HOST}", f"postmaster@{HOST}")
    assert (f"to=<mtatest1@{HOST}>, orig_to=<root@{HOST}>, relay=local, delay=" in caplog.text
            and "dsn=2.0.0, status=sent (delivered to maildir)" in caplog.text)
    assert [(r["status"], r["dsn"], r["reason"]) for r in replies] == [
        (0, "2.0.0", "delivered to maildir"), (0, "2.0.0", "delivered to maildir")]
    pw = env.users["mtatest1"]
    messages = env.maildir("mtatest1")
    assert len(messages) == 1  # one mailbox, one copy per request
    assert messages[0].startswith(
        f"Return-Path: <{SENDER}>\nX-Original-To: root@{HOST}\nDelivered-To: root@{HOST}\n".encode())
    maildir = Path(pw.pw_dir) / "Maildir"
    for path in [maildir, maildir / "new", maildir / "cur", maildir / "tmp", *(maildir / "new").iterdir()]:
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid), path
        assert stat.S_IMODE(st.st_mode) == (0o700 if path.is_dir() else 0o600), path


def test_reply_keeps_offsets_and_reports_each_recipient(env: LocalEnv) -> None:
    queue_id = env.queue([f"mtatest1@{HOST}", f"nobody-here@{HOST}"])
    env.start()
    request = {"queue_name": ACTIVE, "queue_id": queue_id, "sender": SENDER,
               "recipients": [{"address": f"mtatest1@{HOST}", "original": "", "offset": 77},
                              {"address": f"nobody-here@{HOST}", "original": "", "offset": 99}]}
    reply = clients.deliver_request(env.queue_dir, "local", request, timeout=60)
    assert reply == {"status": 0, "recipients": [
        {"address": f"mtatest1@{HOST}", "offset": 77, "status": 0, "dsn": "2.0.0",
         "reason": "delivered to maildir"},
        {"address": f"nobody-here@{HOST}", "offset": 99, "status": 5, "dsn": "5.1.1",
         "reason": 'unknown user: "nobody-here"'},
    ]}


def test_unknown_user_bounces_5_1_1(env: LocalEnv) -> None:
    [reply] = env.deliver(f"No.Such.User@{HOST}")
    assert (reply["status"], reply["dsn"], reply["reason"]) == (5, "5.1.1", 'unknown user: "no.such.user"')


def test_postmaster_without_alias_is_discarded(env: LocalEnv) -> None:
    env.aliases("abuse: root\n")
    [reply] = env.deliver(f"mailer-daemon@{HOST}")
    assert (reply["status"], reply["reason"]) == (0, "discarded")


def test_root_without_alias_goes_to_roots_mailbox(env: LocalEnv) -> None:
    env.start(home_mailbox="")
    [reply] = env.deliver(f"root@{HOST}")
    assert (reply["status"], reply["reason"]) == (0, "delivered to mailbox")
    mbox = env.spool / "root"
    assert mbox.stat().st_uid == 0
    assert mbox.read_bytes().startswith(f"From {SENDER}  ".encode())


def test_recipient_delimiter_extension(env: LocalEnv) -> None:
    env.aliases("zzlist+ext: mtatest2\n")
    env.start(recipient_delimiter="+")
    replies = env.deliver(f"mtatest1+foo@{HOST}", f"zzlist+ext@{HOST}", f"zzlist+other@{HOST}")
    assert [r["status"] for r in replies] == [0, 0, 5]
    assert replies[2]["reason"] == 'unknown user: "zzlist"'
    assert len(env.maildir("mtatest1")) == 1
    assert len(env.maildir("mtatest2")) == 1


def test_missing_alias_database_defers(env: LocalEnv) -> None:
    env.start(alias_maps=f"hash:{env.root / 'etc' / 'missing'}")
    [reply] = env.deliver(f"mtatest1@{HOST}")
    assert (reply["status"], reply["dsn"], reply["reason"]) == (4, "4.3.0", "alias database unavailable")


def test_rebuilt_alias_table_is_reopened(env: LocalEnv) -> None:
    env.aliases("team: mtatest1\n")
    env.start()
    env.deliver(f"team@{HOST}")
    env.aliases("team: mtatest2\n")
    env.deliver(f"team@{HOST}")
    assert (len(env.maildir("mtatest1")), len(env.maildir("mtatest2"))) == (1, 1)


def test_bad_requests_get_an_error_reply(env: LocalEnv) -> None:
    env.start()
    for request in ({"op": "frobnicate"},
                    {"op": "deliver", "queue_name": "active", "queue_id": "../../etc", "recipients": []}):
        channel = proto.unix_connect(str(env.queue_dir / "private" / "local"))
        try:
            reply = channel.request(request)
        finally:
            channel.close()
        assert reply["status"] == 5
    missing = {"queue_name": ACTIVE, "queue_id": "0123456789AB", "sender": "",
               "recipients": [{"address": f"mtatest1@{HOST}", "offset": 5}]}
    reply = clients.deliver_request(env.queue_dir, "local", missing)
    assert reply["recipients"][0]["status"] == 4


class _FakeCleanup:
    """A cleanup service stand-in on public/cleanup that records what it was given."""

    def __init__(self, queue_dir: Path) -> None:
        self.requests: list[tuple[dict[str, Any], bytes | None]] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(queue_dir / "public" / "cleanup"))
        self.server.listen(1)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            channel = proto.Channel(conn)
            received = channel.receive()
            assert received is not None
            self.requests.append(received)
            channel.send({"status": 0, "queue_id": "F0F0F0F0F0F0"})
            channel.close()


def test_remote_alias_targets_are_resubmitted_through_cleanup(env: LocalEnv) -> None:
    env.aliases("ext: someone@remote.example, Other@Remote.Example, mtatest1\n")
    env.start()
    [reply] = env.deliver(f"ext@{HOST}")
    assert (reply["status"], reply["dsn"]) == (4, "4.3.0")
    assert "mail forwarding transaction failed" in reply["reason"]

    cleanup = _FakeCleanup(env.queue_dir)
    try:
        [reply] = env.deliver(f"ext@{HOST}")
    finally:
        cleanup.server.close()
    assert (reply["status"], reply["reason"]) == (0, "delivered to maildir")
    [(request, content)] = cleanup.requests
    assert request["sender"] == SENDER
    assert [r["address"] for r in request["recipients"]] == ["someone@remote.example", "Other@Remote.Example"]
    assert request["attrs"]["origin"] == "local"
    assert content is not None and content.startswith(f"Delivered-To: ext@{HOST}\nSubject: test\n".encode())


def test_settings_refuse_root_default_privs(env: LocalEnv) -> None:
    with pytest.raises(Exception, match="default_privs"):
        env.start(default_privs="root")


def test_module_contract() -> None:
    assert local.SERVER == "single"
    assert callable(local.pre_init) and callable(local.post_init) and callable(local.service)
    assert os.geteuid() == 0
