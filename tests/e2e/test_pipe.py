"""End to end: the seed's procmail pipe(8) service, routed by a hash transport_maps, with a stand-in procmail.

The master.cf entry is the seed's, as written, except that argv= names a
small /bin/sh stand-in for procmail in the scratch directory and user= is an
e2e test user. The stand-in behaves as ``procmail -t -m USER=... EXT=...
rcfile`` would with an rcfile that files mail per user: it records its
arguments and the message, defers (EX_TEMPFAIL, as -t makes procmail do for
a temporary problem) for the user ``busy`` and says EX_NOUSER for the user
``nosuch``.
"""

from __future__ import annotations

import os
import pwd
import smtplib
from pathlib import Path

import psutil

from tests.e2e.conftest import DOMAIN, Mta, home, maildir_messages, wait_for

U1, U2 = "mtae2e1", "mtae2e2"
PIPE_DOMAIN = "pipe.example"

SEED_ENTRY = """\
procmail  unix  -       n       n       -       -       pipe
    flags=R user={user} argv={procmail} -t -m
    USER=${{user}} EXT=${{extension}} /etc/procmailrc
"""

STAND_IN = """\
#!/bin/sh
# Stand-in for procmail -t -m VAR=value... rcfile: one file set per USER under @OUT@.
OUT=@OUT@
soft=no filter=no rcfile= user= ext=
for arg in "$@"; do
    case "$arg" in
        -t) soft=yes ;;
        -m) filter=yes ;;
        USER=*) user=${arg#USER=} ;;
        EXT=*) ext=${arg#EXT=} ;;
        -*) echo "procmail: unknown option $arg"; exit 64 ;;
        *) rcfile=$arg ;;
    esac
done
[ "$filter" = yes ] && [ -n "$rcfile" ] || { echo "procmail: -m needs an rcfile"; exit 64; }
case "$user" in
    busy) [ "$soft" = yes ] && { echo "mailbox locked"; exit 75; }; exit 1 ;;
    nosuch) echo "no such user: $user"; exit 67 ;;
esac
for arg in "$@"; do printf '%s\\n' "$arg"; done > "$OUT/$user.argv"
printf 'USER=%s EXT=%s rcfile=%s uid=%s\\n' "$user" "$ext" "$rcfile" "$(id -un)" > "$OUT/$user.vars"
cat > "$OUT/$user.msg"
"""


def send(mta: Mta, rcpt: str, sender: str, subject: str) -> None:
    msg = f"From: {sender}\nTo: {rcpt}\nSubject: {subject}\n\nbody of {subject}\n"
    with smtplib.SMTP("127.0.0.1", mta.port, timeout=30) as client:
        client.ehlo("client.example.test")
        client.sendmail(sender, [rcpt], msg)


def test_seed_procmail_service(make_mta, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    """user+ext@pipe.example reaches the stand-in as USER=user EXT=ext after a Return-Path: header;
    busy@ defers (EX_TEMPFAIL) and nosuch@ bounces (EX_NOUSER) with a DSN to the sender."""
    out = scratch / "procmail-out"
    out.mkdir()
    os.chmod(out, 0o1777)
    procmail = scratch / "procmail"
    procmail.write_text(STAND_IN.replace("@OUT@", str(out)))
    procmail.chmod(0o755)
    for sub in ("new", "cur", "tmp"):
        box = Path(home(U2)) / "Maildir" / sub
        for old in box.iterdir() if box.is_dir() else ():
            old.unlink()

    mta = make_mta()
    (mta.etc / "transport").write_text(f"{PIPE_DOMAIN}  procmail:\n")
    mta.run("postmap", f"hash:{mta.etc / 'transport'}")
    with open(mta.etc / "main.cf", "a") as main_cf:
        main_cf.write(f"transport_maps = hash:{mta.etc / 'transport'}\nrecipient_delimiter = +\n")
    with open(mta.etc / "master.cf", "a") as master_cf:
        master_cf.write(SEED_ENTRY.format(user=U1, procmail=procmail))
    listed = mta.run("postconf", "-M", "procmail/unix").stdout.decode()
    assert f"user={U1} argv={procmail} -t -m USER=${{user}} EXT=${{extension}} /etc/procmailrc" in listed
    mta.start()
    sender = f"{U2}@{DOMAIN}"

    # Delivered: USER and EXT from the recipient, the message after a Return-Path: header (flag R).
    send(mta, f"{U1}+lists@{PIPE_DOMAIN}", sender, "to procmail")
    wait_for(lambda: "status=sent (delivered via procmail service)" in mta.log(), what="the sent status line")
    assert f"to=<{U1}+lists@{PIPE_DOMAIN}>, relay=procmail, delay=" in mta.log()
    assert (out / f"{U1}.argv").read_text().splitlines() == [
        "-t", "-m", f"USER={U1}", "EXT=lists", "/etc/procmailrc"]
    assert (out / f"{U1}.vars").read_text() == f"USER={U1} EXT=lists rcfile=/etc/procmailrc uid={U1}\n"
    message = (out / f"{U1}.msg").read_bytes()
    assert message.startswith(f"Return-Path: <{sender}>\n".encode())
    assert b"Subject: to procmail" in message and b"body of to procmail" in message
    # SECURITY: the idle pipe process keeps mail_owner's effective ids, root's real and saved ones.
    master = psutil.Process(mta.master_pid())
    [agent] = [child for child in master.children() if child.name() == "pipe"]
    owner = pwd.getpwnam("postfix")
    assert tuple(agent.uids()) == (0, owner.pw_uid, 0) and agent.gids().effective == owner.pw_gid

    # EX_TEMPFAIL defers: the message stays queued with the reason.
    send(mta, f"busy@{PIPE_DOMAIN}", sender, "to a busy mailbox")
    wait_for(lambda: "to=<busy@pipe.example>, relay=procmail" in mta.log(), what="the deferral")
    assert "status=deferred (temporary failure. Command output: mailbox locked)" in mta.log()
    wait_for(lambda: len(mta.queue_files("deferred")) == 1, what="the deferred queue file")

    def listing() -> str:
        text = mta.run("postqueue", "-p").stdout.decode()
        return text if "(temporary failure. Command output: mailbox locked)" in text else ""
    assert "busy@pipe.example" in str(wait_for(listing, what="the reason in postqueue -p"))

    # EX_NOUSER bounces: a DSN goes back to the sender.
    send(mta, f"nosuch@{PIPE_DOMAIN}", sender, "to nobody there")
    wait_for(lambda: len(maildir_messages(home(U2))) == 1, what="the bounce for nosuch@pipe.example")
    dsn = maildir_messages(home(U2))[0]
    assert b"Final-Recipient: rfc822; nosuch@pipe.example" in dsn and b"Status: 5.1.1" in dsn
    assert b"user unknown. Command output: no such user: nosuch" in dsn.replace(b"\n ", b" ")
    assert b"Subject: to nobody there" in dsn
    assert "status=bounced (user unknown. Command output: no such user: nosuch)" in mta.log()
    assert not (out / "busy.msg").exists() and not (out / "nosuch.msg").exists()
    assert "fatal" not in mta.log() and "uncaught exception" not in mta.log()


def test_bad_pipe_attributes_are_fatal_and_logged_by_the_master(make_mta) -> None:  # type: ignore[no-untyped-def]
    """user=root: each pipe process stops in pre_init with a fatal naming the service; the mail stays queued."""
    mta = make_mta(main_extra="transport_maps = inline:{ {bad.example=badpipe:} }\n")
    with open(mta.etc / "master.cf", "a") as master_cf:
        master_cf.write("badpipe   unix  -       n       n       -       -       pipe\n"
                        "    flags=R user=root argv=/bin/cat\n")
    mta.start()
    send(mta, "someone@bad.example", f"{U2}@{DOMAIN}", "to a broken transport")
    wait_for(lambda: "service throttled: badpipe/unix" in mta.log(), what="the master throttling badpipe")
    log = mta.log()
    assert "mta/pipe[" in log and "fatal: service badpipe: user=root specifies root privileges" in log
    assert "warning: process mta/pipe pid " in log
    listing = mta.run("postqueue", "-p").stdout.decode()
    assert "someone@bad.example" in listing
    # qmgr's request is turned away (not left waiting for ipc_timeout): the mail is deferred now.
    wait_for(lambda: "to=<someone@bad.example>" in mta.log() and "status=deferred" in mta.log(),
             what="the deferral")
