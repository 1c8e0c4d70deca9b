"""Tests for mta.pipe: attribute parsing, macro expansion, message flags and exit status, with real commands.

The delivery tests write a real queue file, send a real delivery request over
a socketpair to pipe's service() (after its pre_init on a master.cf row) and
let the command, a small /bin/sh script, run as ``nobody``. Everything lives
under a world-searchable scratch directory so that nobody can reach the
script and the queue directory (pytest's tmp_path is root-only).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from mta import pipe, proto
from mta.config import MainConfig, parse_main_cf_text
from mta.queue import ACTIVE, queue_path
from mta.record import Envelope, Recipient, record_encode
from mta.service_table import daemon_operands, row_parse
from mta.skeleton import DaemonContext, DaemonError, daemon_available, daemon_load

NOBODY = pwd.getpwnam("nobody")
SENDER = "sender@example.org"
CONTENT = b"Subject: test\nFrom: sender@example.org\n\nFrom the body\n.leading dot\nend\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pipe runs commands as another user: needs root")


def config(root: Path, **params: str) -> MainConfig:
    text = "".join(f"{name} = {value}\n" for name, value in params.items())
    return MainConfig(root, parse_main_cf_text(text, str(root / "main.cf")))


def parse(args: str, **params: str) -> pipe.PipeAttr:
    row = row_parse(f"procmail unix - n n - - pipe {args}")
    return pipe.pipe_attr_parse("procmail", daemon_operands(row), config(Path("/nonexistent"), **params))


# -- attributes ----------------------------------------------------------------


def test_registered_as_a_daemon() -> None:
    assert daemon_available("pipe") and daemon_load("pipe") is pipe
    assert pipe.CHROOT_FORBIDDEN and pipe.SERVER == "single"


def test_seed_procmail_entry_with_a_real_user() -> None:
    seed = ("procmail  unix  -       n       n       -       -       pipe\n"
            "    flags=R user=nobody argv=/usr/bin/procmail -t -m\n"
            "    USER=${user} EXT=${extension} /etc/procmailrc\n")
    from mta.service_table import parse_master_text
    [row] = parse_master_text(seed)
    attr = pipe.pipe_attr_parse(row.service, daemon_operands(row), config(Path("/nonexistent")))
    assert (attr.service, attr.user, attr.uid, attr.gid) == ("procmail", "nobody", NOBODY.pw_uid, NOBODY.pw_gid)
    assert attr.flags == {"R"} and attr.eol == b"\n" and attr.null_sender == "MAILER-DAEMON"
    assert pipe.argv_expand(attr.argv, {}, [{"user": "u", "extension": "e"}]) == [
        "/usr/bin/procmail", "-t", "-m", "USER=u", "EXT=e", "/etc/procmailrc"]


def test_options_before_the_attributes_are_the_daemons() -> None:
    attr = parse("-v -o procmail_time_limit=5s flags=DRX.> user=nobody:nogroup size=100 eol=\\r\\n "
                 "null_sender= directory=/tmp argv=/bin/cat { a b }")
    assert attr.flags == set("DRX.>") and attr.size_limit == 100 and attr.eol == b"\r\n"
    assert attr.null_sender == "" and attr.directory == "/tmp"
    assert pipe.argv_expand(attr.argv, {}, []) == ["/bin/cat", "a b"]


@pytest.mark.parametrize("args, message", [
    ("argv=/bin/cat", "missing user= command-line attribute"),
    ("user=nobody", "missing argv= command-line attribute"),
    ("user=nobody argv=", "argv= names no command"),
    ("user=root argv=/bin/cat", "user=root specifies root privileges"),
    ("user=postfix argv=/bin/cat", "user=postfix specifies the mail system owner postfix"),
    ("user=nobody:root argv=/bin/cat", "user=nobody:root specifies privileged group id 0"),
    ("user=nobody:postdrop argv=/bin/cat", "user=nobody:postdrop specifies mail system group id"),
    ("user=no-such-user-x argv=/bin/cat", "unknown user name in user=no-such-user-x: no-such-user-x"),
    ("user=nobody:no-such-group-x argv=/bin/cat", "unknown group name in user=nobody:no-such-group-x"),
    ("flags=Rz user=nobody argv=/bin/cat", "unknown flag: z in flags=Rz"),
    ("user=nobody bogus=1 argv=/bin/cat", "unknown attribute name: bogus=1"),
    ("user=nobody stray argv=/bin/cat", "unknown attribute name: stray"),
    ("user=nobody size=10k argv=/bin/cat", "bad size= value: 10k"),
    ("user=nobody chroot=/jail argv=/bin/cat", "chroot= is not supported"),
    ("user=nobody argv=/bin/cat ${nosuch}", 'argv: unknown macro name: "${nosuch}"'),
    ("user=nobody argv=/bin/cat $", "argv: bad $ syntax"),
    ("user=nobody argv=/bin/cat ${user", "argv: missing '}'"),
    ("user=nobody argv=/bin/cat $(a-b)", 'argv: bad macro name "a-b"'),
])
def test_attribute_errors_name_the_service(args: str, message: str) -> None:
    with pytest.raises(DaemonError) as caught:
        parse(args)
    assert str(caught.value).startswith("service procmail: ")
    assert message in str(caught.value)


def test_seed_user_cyrus_is_refused_clearly_when_missing() -> None:
    try:
        pwd.getpwnam("cyrus")
    except KeyError:
        with pytest.raises(DaemonError, match="service procmail: unknown user name in user=cyrus: cyrus"):
            parse("flags=R user=cyrus argv=/usr/bin/procmail -t -m USER=${user} EXT=${extension} /etc/procmailrc")
    else:
        pytest.skip("this host has a cyrus user")


def test_unknown_mail_owner_is_fatal() -> None:
    with pytest.raises(DaemonError, match="service procmail: unknown mail_owner user: no-such-owner-x"):
        parse("user=nobody argv=/bin/cat", mail_owner="no-such-owner-x")


# -- macros ----------------------------------------------------------------------


@pytest.mark.parametrize("text, parts", [
    ("plain", ((False, "plain"),)),
    ("", ((False, ""),)),
    ("${user}", ((True, "user"),)),
    ("$user", ((True, "user"),)),
    ("$(user)", ((True, "user"),)),
    ("-f$sender", ((False, "-f"), (True, "sender"))),
    ("$nexthop!rmail", ((True, "nexthop"), (False, "!rmail"))),
    ("cost $$5", ((False, "cost $5"),)),
    ("$$user", ((False, "$user"),)),
])
def test_macro_parse(text: str, parts: tuple[tuple[bool, str], ...]) -> None:
    assert pipe.macro_parse(text) == parts


P_PLUS = pipe.PipeParams(Path("/"), 1, 1, recipient_delimiter="+")


@pytest.mark.parametrize("address, flags, params, expected", [
    ("user+ext@Example.org", "", P_PLUS,
     {"user": "user", "extension": "ext", "mailbox": "user+ext", "domain": "Example.org",
      "recipient": "user+ext@Example.org"}),
    ("user+ext@dom", "", pipe.PipeParams(Path("/"), 1, 1),  # no recipient_delimiter: no extension
     {"user": "user+ext", "extension": "", "mailbox": "user+ext", "domain": "dom"}),
    ("a+b+c@dom", "", P_PLUS, {"user": "a", "extension": "b+c"}),
    ("owner-list@dom", "", pipe.PipeParams(Path("/"), 1, 1, recipient_delimiter="-"),  # owner_request_special
     {"user": "owner-list", "extension": ""}),
    ("list-x@dom", "", pipe.PipeParams(Path("/"), 1, 1, recipient_delimiter="-"),
     {"user": "list", "extension": "x"}),
    ("Bob+X@Example.ORG", "h", P_PLUS,
     {"user": "Bob", "extension": "X", "domain": "example.org", "recipient": "Bob+X@example.org"}),
    ("Bob+X@Example.ORG", "u", P_PLUS,
     {"user": "bob", "extension": "x", "mailbox": "bob+x", "domain": "Example.ORG",
      "recipient": "bob+x@Example.ORG"}),
    ("A B@Example.ORG", "qhu", P_PLUS, {"recipient": '"a b"@example.org', "mailbox": "a b"}),
    ("+folder@dom", "", P_PLUS, {"user": "+folder", "extension": ""}),
    ("bare", "", P_PLUS, {"user": "bare", "domain": "", "mailbox": "bare"}),
])
def test_rcpt_macros(address: str, flags: str, params: pipe.PipeParams, expected: dict[str, str]) -> None:
    got = pipe.rcpt_macros(address, "", frozenset(flags), params)
    assert {name: got[name] for name in expected} == expected
    assert got["original_recipient"] == got["recipient"]  # no original: the recipient itself


def test_argument_with_a_recipient_macro_repeats_per_recipient() -> None:
    argv = [pipe.macro_parse(a) for a in ("/bin/x", "-f", "$sender", "--", "${recipient}", "<$user>", "$nexthop")]
    rcpts = [pipe.rcpt_macros(a, "", frozenset(), P_PLUS) for a in ("a+1@d", "b@d", "@d")]
    assert pipe.argv_expand(argv, {"sender": "", "nexthop": "d"}, rcpts) == [
        "/bin/x", "-f", "", "--", "a+1@d", "b@d", "@d", "<a>", "<b>", "d"]  # "@d" has no user: <$user> dropped


# -- delivery ----------------------------------------------------------------------

CAPTURE = """#!/bin/sh
# Stand-in for a delivery command: arguments, input, identity and environment go to $OUT.
OUT={out}
for arg in "$@"; do printf '%s\\n' "$arg"; done > $OUT/argv
cat > $OUT/stdin
id -u > $OUT/uid
pwd > $OUT/pwd
env > $OUT/env
{tail}
"""


@dataclass
class PipeEnv:
    """A queue directory, a capture script and its output directory, all reachable by nobody."""

    base: Path
    count: int = 0

    @property
    def queue_dir(self) -> Path:
        return self.base / "queue"

    @property
    def out(self) -> Path:
        return self.base / "out"

    def script(self, tail: str = "exit 0", name: str = "capture") -> Path:
        path = self.base / name
        path.write_text(CAPTURE.format(out=self.out, tail=tail))
        path.chmod(0o755)
        return path

    def captured(self, name: str) -> bytes:
        return (self.out / name).read_bytes()

    def deliver(self, attributes: str, recipients: list[str] | None = None, *, content: bytes = CONTENT,
                sender: str = SENDER, attrs: dict[str, str] | None = None, nexthop: str = "example.org",
                originals: list[str] | None = None, service: str = "pipetest",
                **params: str) -> dict[str, Any]:
        """Queue a message, run pre_init on a pipe row with attributes, serve one request; return the reply."""
        recipients = recipients or ["user+ext@example.org"]
        originals = originals or [""] * len(recipients)
        self.count += 1
        queue_id = f"B1BE{self.count:08X}"
        envelope = Envelope(sender, [Recipient(r, o) for r, o in zip(recipients, originals)], time.time() - 3,
                            attrs or {})
        queue_path(self.queue_dir, ACTIVE, queue_id).write_bytes(record_encode(envelope, content))
        row = row_parse(f"{service} unix - n n - - pipe {attributes}")
        ctx = DaemonContext(row, config(self.base, queue_directory=str(self.queue_dir), **params), self.queue_dir)
        pipe.pre_init(ctx)
        request = {"op": "deliver", "queue_name": ACTIVE, "queue_id": queue_id, "sender": sender,
                   "nexthop": nexthop, "attrs": attrs or {},
                   "recipients": [{"address": r, "original": o, "offset": 100 + i}
                                  for i, (r, o) in enumerate(zip(recipients, originals))]}
        ours, theirs = socket.socketpair()
        client = proto.Channel(ours, timeout=120)
        try:
            client.send(request)
            pipe.service(theirs, ctx)
            received = client.receive()
        finally:
            client.close()
        assert received is not None
        return received[0]


@pytest.fixture
def env() -> Iterator[PipeEnv]:
    base = Path(tempfile.mkdtemp(prefix="mta-pipe-"))
    base.chmod(0o755)
    (base / "queue" / ACTIVE).mkdir(parents=True)
    (base / "out").mkdir(mode=0o1777)
    (base / "out").chmod(0o1777)
    yield PipeEnv(base)
    shutil.rmtree(base, ignore_errors=True)


def results(reply: dict[str, Any]) -> list[tuple[int, str, str]]:
    assert reply["status"] == proto.OK, reply
    return [(r["status"], r["dsn"], r["reason"]) for r in reply["recipients"]]


def test_delivers_to_the_seed_style_command_as_the_user(env: PipeEnv) -> None:
    script = env.script()
    reply = env.deliver(f"flags=R user=nobody argv={script} -t -m "
                        "USER=${user} EXT=${extension} /etc/procmailrc",
                        recipient_delimiter="+")
    assert results(reply) == [(0, "2.0.0", "delivered via pipetest service")]
    assert reply["relay"] == "pipetest" and reply["recipients"][0]["offset"] == 100
    assert reply["recipients"][0]["action"] == "relayed"
    assert env.captured("argv").decode().splitlines() == ["-t", "-m", "USER=user", "EXT=ext", "/etc/procmailrc"]
    assert env.captured("stdin") == b"Return-Path: <sender@example.org>\n" + CONTENT
    assert env.captured("uid").decode().strip() == str(NOBODY.pw_uid)
    assert env.captured("pwd").decode().strip() == str(env.queue_dir)  # the default directory


def test_flag_x_is_final_delivery(env: PipeEnv) -> None:
    reply = env.deliver(f"flags=X user=nobody argv={env.script()}")
    assert results(reply) == [(0, "2.0.0", "delivered via pipetest service")]
    assert reply["recipients"][0]["action"] == "delivered"


def test_envelope_flags_and_content_transforms(env: PipeEnv) -> None:
    reply = env.deliver(f"flags=FRDOB.> eol=\\r\\n user=nobody argv={env.script()}",
                        ["Rcpt@example.org"], originals=["alias@example.org"],
                        pipetest_destination_recipient_limit="1")
    assert results(reply)[0][0] == 0
    lines = env.captured("stdin").split(b"\r\n")
    from_ = b"From sender@example.org  "
    assert lines[0].startswith(from_) and len(lines[0]) == len(from_) + 24  # + asctime()
    assert lines[1:5] == [b"Return-Path: <sender@example.org>", b"X-Original-To: alias@example.org",
                          b"Delivered-To: Rcpt@example.org", b"Subject: test"]
    assert lines[7:] == [b">From the body", b"..leading dot", b"end", b"", b""]  # B: a blank line at the end
    assert b"\n" not in env.captured("stdin").replace(b"\r\n", b"")


def test_null_sender(env: PipeEnv) -> None:
    env.deliver(f"flags=FR user=nobody argv={env.script()} -f $sender", sender="")
    assert env.captured("argv").decode().splitlines() == ["-f", "MAILER-DAEMON"]
    assert env.captured("stdin").split(b"\n")[1] == b"Return-Path: <MAILER-DAEMON>"
    env.deliver(f"flags=FR null_sender= user=nobody argv={env.script()} -f $sender", sender="")
    assert env.captured("argv") == b"-f\n\n"
    first, second = env.captured("stdin").split(b"\n")[:2]
    assert first.startswith(b"From MAILER-DAEMON  ") and second == b"Return-Path: <>"


def test_message_macros(env: PipeEnv) -> None:
    attrs = {"client_address": "192.0.2.7", "client_name": "mx.example.net", "helo": "helo.example.net",
             "client_port": "40000", "protocol": "ESMTP", "sasl_username": "bob"}
    reply = env.deliver(f"flags=hq user=nobody argv={env.script()} ${{nexthop}} $size $queue_id $client_address "
                        "$client_hostname $client_helo $client_port $client_protocol ${sasl_username} "
                        "x${sasl_method}x $sender ${recipient} ${original_recipient}",
                        ["a b@Example.ORG", "c@example.org"], originals=["orig@example.org", ""],
                        sender="s t@example.org", attrs=attrs, nexthop="Example.ORG")
    assert [r[0] for r in results(reply)] == [0, 0]
    queue_id = f"B1BE{env.count:08X}"
    assert env.captured("argv").decode().splitlines() == [
        "example.org", str(len(CONTENT)), queue_id, "192.0.2.7", "mx.example.net", "helo.example.net", "40000",
        "ESMTP", "bob", "xx", '"s t"@example.org', '"a b"@example.org', "c@example.org", "orig@example.org",
        "c@example.org"]


def test_environment_is_minimal(env: PipeEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPE_TEST_SECRET", "leak")
    env.deliver(f"user=nobody argv={env.script()}", export_environment="MAIL_CONFIG=/etc/mta")
    names = {line.split("=", 1)[0] for line in env.captured("env").decode().splitlines()}
    assert {"PATH", "MAIL_CONFIG"} <= names
    assert names <= {"PATH", "MAIL_CONFIG", "PWD", "OLDPWD", "SHLVL", "_"}, names


@pytest.mark.parametrize("tail, expected", [
    ("exit 75", (4, "4.3.0", "temporary failure")),
    ("echo try later; exit 75", (4, "4.3.0", "temporary failure. Command output: try later")),
    ("exit 67", (5, "5.1.1", "user unknown")),
    ("exit 71", (4, "4.3.0", "system resource problem")),
    ("echo 5.2.2 mailbox full; exit 75", (5, "5.2.2", "mailbox full")),
    ("echo 4.7.1 greylisted >&2; exit 1", (4, "4.7.1", "greylisted")),
    ("exit 3", (5, "5.3.0", 'Command died with status 3: "{script}"')),
    ("kill -KILL $$", (4, "4.3.0", 'Command died with signal 9: "{script}"')),
])
def test_exit_status_maps_to_defer_or_bounce(env: PipeEnv, tail: str, expected: tuple[int, str, str]) -> None:
    script = env.script(tail)
    reply = env.deliver(f"user=nobody argv={script}", ["a@example.org", "b@example.org"])
    status, dsn, reason = expected
    assert results(reply) == [(status, dsn, reason.format(script=script))] * 2


def test_time_limit_bounces(env: PipeEnv) -> None:
    script = env.script("sleep 30")
    started = time.monotonic()
    reply = env.deliver(f"user=nobody argv={script}", pipetest_time_limit="1s", command_time_limit="100s")
    assert results(reply) == [(5, "5.3.0", f'Command time limit exceeded: "{script}"')]
    reply = env.deliver(f"user=nobody argv={script}", command_time_limit="1s")
    assert results(reply) == [(5, "5.3.0", f'Command time limit exceeded: "{script}"')]
    assert time.monotonic() - started < 20


def test_size_limit_bounces_without_running_the_command(env: PipeEnv) -> None:
    reply = env.deliver(f"size={len(CONTENT) - 1} user=nobody argv={env.script()}")
    assert results(reply) == [(5, "5.2.3", "message too large")]
    assert not (env.out / "stdin").exists()
    reply = env.deliver(f"size={len(CONTENT)} user=nobody argv={env.script()}")
    assert results(reply) == [(0, "2.0.0", "delivered via pipetest service")]


def test_flag_d_refuses_a_loop(env: PipeEnv) -> None:
    looped = b"Delivered-To: Rcpt@Example.org\n" + CONTENT
    reply = env.deliver(f"flags=D user=nobody argv={env.script()}", ["rcpt@example.org"], content=looped,
                        pipetest_destination_recipient_limit="1")
    assert results(reply) == [(5, "5.4.6", "mail forwarding loop for rcpt@example.org")]
    assert not (env.out / "stdin").exists()
    reply = env.deliver(f"user=nobody argv={env.script()}", ["rcpt@example.org"], content=looped)
    assert results(reply)[0][0] == 0  # without D there is no loop check


@pytest.mark.parametrize("flag", ["D", "O"])
def test_flags_d_and_o_need_one_recipient_per_request(env: PipeEnv, flag: str) -> None:
    reply = env.deliver(f"flags={flag} user=nobody argv={env.script()}", ["a@example.org", "b@example.org"])
    reason = f"mail system configuration error: flag {flag} requires pipetest_destination_recipient_limit = 1"
    assert results(reply) == [(4, "4.3.5", reason)] * 2
    assert not (env.out / "stdin").exists()


def test_directory(env: PipeEnv) -> None:
    env.deliver(f"directory=/tmp user=nobody argv={env.script()}")
    assert env.captured("pwd").decode().strip() == "/tmp"
    private = env.base / "private"
    private.mkdir(mode=0o700)
    reply = env.deliver(f"directory={private} user=nobody argv={env.script()}")
    assert results(reply) == [(4, "4.3.0", f"chdir {private}: Permission denied")]
    reply = env.deliver(f"directory={env.base}/none user=nobody argv={env.script()}")
    assert results(reply) == [(4, "4.3.0", f"chdir {env.base}/none: No such file or directory")]


def test_missing_program_defers(env: PipeEnv) -> None:
    reply = env.deliver("user=nobody argv=/nonexistent/procmail")
    assert results(reply) == [
        (4, "4.3.0", 'cannot run command "/nonexistent/procmail": No such file or directory')]


def test_unreadable_queue_file_and_bad_request(env: PipeEnv) -> None:
    attr = pipe.pipe_attr_parse("pipetest", ["user=nobody", "argv=/bin/cat"], config(env.base))
    params = pipe.pipe_params_load("pipetest", config(env.base), env.queue_dir)
    request = {"queue_name": ACTIVE, "queue_id": "ABCDEF0099", "sender": "", "nexthop": "x",
               "recipients": [{"address": "a@x", "offset": 5}]}
    reply = pipe.pipe_deliver(attr, params, request)
    assert results(reply) == [(4, "4.3.0", "cannot read queue file")]
    for bad in ({**request, "queue_name": "../etc"}, {**request, "recipients": []},
                {**request, "queue_id": "../../x"}):
        assert pipe.pipe_deliver(attr, params, bad)["status"] == proto.PERMFAIL


def test_recipient_limit_warning_at_start(env: PipeEnv, caplog: pytest.LogCaptureFixture) -> None:
    row = row_parse(f"pipetest unix - n n - - pipe flags=O user=nobody argv={env.script()}")
    ctx = DaemonContext(row, config(env.base), env.queue_dir)
    pipe.pre_init(ctx)
    assert "flag O requires pipetest_destination_recipient_limit = 1 (it is 50)" in caplog.text
