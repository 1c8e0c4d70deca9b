"""mta sendmail: options, input handling, and submission through a real postdrop (and as nobody)."""

from __future__ import annotations

import io
import os
import shutil
import sys
from contextlib import ExitStack
from typing import Iterator

import pytest

import mta.cleanup as cleanup
import mta.postdrop as postdrop
from mta import cli, pickup
from mta.commands.sendmail import console_main
from mta.record import Envelope, record_read
from tests.mta.cleanup.server import (
    NOBODY,
    UnixServer,
    config_make,
    ctx_make,
    queue_make,
    run_as_nobody,
    world_dir,
)

MESSAGE = b"Subject: hello\n\nline one\n.\nafter the dot\n"


class Env:
    """ROOT/main.cf and ROOT/queue; postdrop (and cleanup) run in threads once started."""

    def __init__(self, stack: ExitStack) -> None:
        self.root = world_dir()
        self.queue = queue_make(self.root)
        self.stack = stack
        self.configure()

    def configure(self, extra: str = "") -> None:
        self.cfg = config_make(self.root, self.queue, extra)

    def postdrop_start(self) -> None:
        ctx = ctx_make("postdrop", self.cfg, self.queue)
        postdrop.pre_init(ctx)
        path = postdrop.postdrop_path(self.queue)
        self.stack.enter_context(UnixServer(path, lambda c: postdrop.service(c, ctx)))

    def cleanup_start(self) -> None:
        ctx = ctx_make("cleanup", self.cfg, self.queue)
        cleanup.pre_init(ctx)
        path = self.queue / "public" / "cleanup"
        self.stack.enter_context(UnixServer(path, lambda c: cleanup.service(c, ctx)))

    def sendmail(self, *argv: str, stdin: bytes = MESSAGE) -> int:
        return console_main([*argv, "-C", str(self.root)], stdin=io.BytesIO(stdin))

    def dropped(self) -> tuple[Envelope, bytes, os.stat_result]:
        [name] = [n for n in os.listdir(self.queue / "maildrop") if not n.startswith(".")]
        path = self.queue / "maildrop" / name
        envelope, content = record_read(path)
        return envelope, content, path.stat()


@pytest.fixture
def env() -> Iterator[Env]:
    with ExitStack() as stack:
        environment = Env(stack)
        yield environment
    shutil.rmtree(environment.root, ignore_errors=True)


def test_recipients_sender_and_full_name(env: Env) -> None:
    env.postdrop_start()
    assert env.sendmail("-f", "sender@example.org", "-F", "Full Name", "a@x.test", "b, Name <c@y.test>") == 0
    envelope, content, _ = env.dropped()
    assert envelope.sender == "sender@example.org"
    assert [r.address for r in envelope.recipients] == ["a@x.test", "b", "c@y.test"]
    assert envelope.attrs == {"fullname": "Full Name", "uid": "0", "origin": "sendmail"}
    assert content == b"Subject: hello\n\nline one\n"  # a lone dot ends the input


@pytest.mark.parametrize("flags", [["-i"], ["-oi"], ["-ti"]])
def test_dot_does_not_end_input_with_i(env: Env, flags: list[str]) -> None:
    env.postdrop_start()
    assert env.sendmail(*flags, "-fjoe", "root", stdin=MESSAGE + b"To: x@y\n") == 0
    _, content, _ = env.dropped()
    assert content.startswith(MESSAGE)


def test_extract_recipients_and_remove_bcc(env: Env) -> None:
    env.postdrop_start()
    message = (b"To: a@x.test, B <b@y.test>\nCc: c@z.test,\n\td@z.test\nBcc: hidden@w.test\n"
               b"Subject: s\n\nbody\n")
    assert env.sendmail("-t", "extra@v.test", stdin=message) == 0
    envelope, content, _ = env.dropped()
    assert [r.address for r in envelope.recipients] == ["extra@v.test", "a@x.test", "b@y.test", "c@z.test",
                                                        "d@z.test", "hidden@w.test"]
    assert content == b"To: a@x.test, B <b@y.test>\nCc: c@z.test,\n\td@z.test\nSubject: s\n\nbody\n"
    assert envelope.sender == "root"  # the login name of the caller


def test_resent_headers_win_with_t(env: Env) -> None:
    env.postdrop_start()
    message = b"To: old@x.test\nResent-To: new@x.test\nResent-Bcc: secret@x.test\n\nbody\n"
    assert env.sendmail("-t", stdin=message) == 0
    envelope, content, _ = env.dropped()
    assert [r.address for r in envelope.recipients] == ["new@x.test", "secret@x.test"]
    assert b"secret" not in content


def test_line_ends_from_line_and_null_sender(env: Env) -> None:
    env.postdrop_start()
    message = b"From joe Mon Jan  1 00:00:00 2024\r\nSubject: s\r\n\r\nb\r\n"
    assert env.sendmail("-f", "<>", "root", stdin=message) == 0
    envelope, content, _ = env.dropped()
    assert envelope.sender == ""
    assert content == b"Subject: s\n\nb\n"


@pytest.mark.parametrize(
    ("argv", "stdin", "status", "message"),
    [
        ([], MESSAGE, 64,
         "root(0): Recipient addresses must be specified on the command line or via the -t option"),
        (["-t"], b"Subject: none\n\n", 64, "root(0): No recipient addresses found in message header"),
        (["-bs"], b"", 64, "unsupported: -bs"),
        (["-bi", "root"], b"", 64, "alias initialization mode requires no recipient"),
        (["-qX"], b"", 64, "-qX is not implemented"),
    ],
)
def test_usage_errors(env: Env, capsys: pytest.CaptureFixture[str], argv: list[str], stdin: bytes,
                      status: int, message: str) -> None:
    env.postdrop_start()
    assert env.sendmail(*argv, stdin=stdin) == status
    assert capsys.readouterr().err.strip().endswith(f"mta/sendmail: fatal: {message}")


def test_unknown_option_is_ex_usage(env: Env) -> None:
    with pytest.raises(SystemExit) as stop:
        env.sendmail("-Z", "root")
    assert stop.value.code == 64


def test_ignored_options(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.postdrop_start()
    argv = ["-N", "never", "-R", "hdrs", "-odb", "-oem", "-B", "8BITMIME", "-U", "-m", "root"]
    assert env.sendmail(*argv) == 0
    err = capsys.readouterr().err
    assert "warning: -N option ignored" in err and "warning: -R option ignored" in err
    env.dropped()


def test_message_size_limit(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.configure("message_size_limit = 50\n")
    env.postdrop_start()
    assert env.sendmail("root", stdin=b"Subject: big\n\n" + b"x" * 100 + b"\n") == 65
    assert "fatal: message file too big" in capsys.readouterr().err
    assert os.listdir(env.queue / "maildrop") == []


def test_non_root_user_submits_through_postdrop(env: Env) -> None:
    env.postdrop_start()
    status, err = run_as_nobody(lambda: env.sendmail("-t", stdin=b"To: root\nSubject: s\n\nbody\n"))
    assert (status, err) == (0, "")
    envelope, _, _ = env.dropped()
    assert envelope.sender == "nobody"
    assert envelope.attrs["uid"] == str(NOBODY)


def test_mail_system_down_for_non_root(env: Env) -> None:
    status, err = run_as_nobody(lambda: env.sendmail("root"))
    assert status == 75
    assert err == (f"mta/sendmail: fatal: the mail system is down (cannot connect to "
                   f"{env.queue}/submit/postdrop)\n")
    assert os.listdir(env.queue / "maildrop") == []


def test_not_allowed_to_submit(env: Env) -> None:
    env.configure("authorized_submit_users = !nobody, static:anyone\n")
    env.postdrop_start()
    status, err = run_as_nobody(lambda: env.sendmail("root"))
    assert status == 77
    assert err.endswith(f"fatal: User nobody({NOBODY}) is not allowed to submit mail\n")


def test_root_writes_maildrop_when_postdrop_is_down(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert env.sendmail("-fjoe", "root") == 0
    envelope, content, info = env.dropped()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (NOBODY, NOBODY, 0o700)  # mail_owner = nobody
    assert envelope.attrs["uid"] == "0" and envelope.attrs["origin"] == "sendmail"
    assert content == b"Subject: hello\n\nline one\n"
    assert "unable to look up public/pickup" in capsys.readouterr().err


def test_mta_sendmail_subcommand(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.postdrop_start()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"To: a@x.test\n\nhi\n")))
    assert cli.main(["-c", str(env.root), "sendmail", "-t", "-oi", "-fjoe@x.test"]) == 0
    envelope, _, _ = env.dropped()
    assert (envelope.sender, [r.address for r in envelope.recipients]) == ("joe@x.test", ["a@x.test"])


def test_newaliases_mode(env: Env) -> None:
    (env.root / "aliases").write_text("postmaster: root\n")
    env.configure(f"alias_database = hash:{env.root}/aliases\n")
    assert env.sendmail("-bi", stdin=b"") == 0
    assert (env.root / "aliases.db").exists()


def test_whole_local_path_as_nobody(env: Env) -> None:
    """sendmail -> postdrop -> maildrop -> pickup -> cleanup -> incoming, submitted by nobody."""
    env.postdrop_start()
    env.cleanup_start()
    status, err = run_as_nobody(lambda: env.sendmail("-t", "-F", "No Body",
                                                     stdin=b"To: root\nBcc: x@y.test\nSubject: s\n\nbody\n"))
    assert (status, err) == (0, "")
    assert pickup.pickup_scan(env.queue) == 1
    [queue_id] = os.listdir(env.queue / "incoming")
    envelope, content = record_read(env.queue / "incoming" / queue_id)
    assert envelope.sender == "nobody@mx.example.test"
    assert [r.address for r in envelope.recipients] == ["root@mx.example.test", "x@y.test"]
    text = content.decode()
    assert text.startswith(f"Received: by mx.example.test (mta, from userid {NOBODY})\n\tid {queue_id}; ")
    assert "\nTo: root@mx.example.test\nSubject: s\n" in text
    assert "\nFrom: No Body <nobody@mx.example.test>\n" in text
    assert "Bcc" not in text


def test_flush_is_delegated(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert env.sendmail("-q", stdin=b"") == 1  # mta flush, with the mail system down
    assert "Cannot flush mail queue - mail system is down" in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        console_main(["--help"])
    assert stop.value.code == 0
    assert "Postfix-compatible sendmail(1)" in capsys.readouterr().out
