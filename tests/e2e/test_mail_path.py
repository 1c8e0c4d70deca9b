"""End to end: real master, smtpd, cleanup, pickup, qmgr, local processes; real SMTP clients on loopback."""

from __future__ import annotations

import email
import os
import pwd
import smtplib
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import find_postfix_root
from tests.e2e.conftest import DOMAIN, Mta, home, maildir_messages, wait_for

U1, U2 = "mtae2e1", "mtae2e2"


def send(mta: Mta, rcpts: list[str], body: str = "hello", sender: str = f"alice@{DOMAIN}",
         subject: str = "test") -> None:
    msg = f"From: {sender}\nTo: {', '.join(rcpts)}\nSubject: {subject}\n\n{body}\n"
    with smtplib.SMTP("127.0.0.1", mta.port, timeout=30) as client:
        client.ehlo("client.example.test")
        client.sendmail(sender, rcpts, msg)


@pytest.fixture(autouse=True)
def _clean(clean_maildirs: None) -> None:
    """Every test here starts with empty Maildirs."""


def test_root_mail_reaches_unprivileged_maildir_through_alias(make_mta) -> None:  # type: ignore[no-untyped-def]
    mta = make_mta(aliases=f"root: {U1}\n")
    mta.start()
    send(mta, [f"root@{DOMAIN}"], body="for root")
    wait_for(lambda: len(maildir_messages(home(U1))) == 1, what="delivery to the root alias")
    msg = maildir_messages(home(U1))[0]
    assert b"for root" in msg and b"Delivered-To: root@" in msg
    st = os.stat(next((Path(home(U1)) / "Maildir" / "new").iterdir()))
    assert st.st_uid == pwd.getpwnam(U1).pw_uid
    assert "status=sent" in mta.log()
    assert mta.queue_files("incoming") == [] and mta.queue_files("active") == []


def test_list_and_include_deliver_once_each(make_mta, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    members = scratch / "members"
    members.write_text(f"{U1}\n{U2}\n{U1}\n")
    mta = make_mta(aliases=f"team: {U1}, {U2}, {U1}\nlist: :include:{members}\n")
    mta.start()
    for alias, expected in (("team", 1), ("list", 2)):
        send(mta, [f"{alias}@{DOMAIN}"], body=f"to {alias}")
        wait_for(lambda: len(maildir_messages(home(U1))) >= expected
                 and len(maildir_messages(home(U2))) >= expected, what=f"{alias} deliveries")
        time.sleep(1.0)  # a duplicate would have arrived by now
        assert len(maildir_messages(home(U1))) == expected, alias
        assert len(maildir_messages(home(U2))) == expected, alias


def test_file_and_pipe_aliases_run_unprivileged(make_mta, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    out = scratch / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    mta = make_mta(aliases=f'archive: {out}/archive.mbox\nrun: "|/usr/bin/id -u > {out}/uid"\n')
    mta.start()
    send(mta, [f"archive@{DOMAIN}", f"run@{DOMAIN}"], body="archived body")
    wait_for(lambda: (out / "uid").exists() and (out / "archive.mbox").exists(), what="file and pipe")
    assert int((out / "uid").read_text()) != 0
    mbox = out / "archive.mbox"
    assert b"archived body" in mbox.read_bytes() and mbox.read_bytes().startswith(b"From ")
    assert os.stat(mbox).st_uid != 0


def test_sendmail_t_as_non_root_user(make_mta) -> None:  # type: ignore[no-untyped-def]
    mta = make_mta()
    mta.start()
    message = f"To: {U2}@{DOMAIN}\nBcc: {U1}@{DOMAIN}\nSubject: local\n\nfrom the shell\n".encode()
    mta.run("sendmail", "-t", "-i", user=U1, input=message)
    wait_for(lambda: len(maildir_messages(home(U2))) == 1 and len(maildir_messages(home(U1))) == 1,
             what="sendmail -t deliveries")
    got = maildir_messages(home(U2))[0]
    assert b"from the shell" in got and b"Bcc:" not in got
    assert f"Return-Path: <{U1}@{DOMAIN}>".encode() in got


def test_tempfail_defers_then_flush_delivers(make_mta, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    flag = scratch / "broken"
    flag.write_text("")
    os.chmod(scratch, 0o755)
    script = scratch / "deliver.sh"
    script.write_text(f"#!/bin/sh\n[ -e {flag} ] && exit 75\ncat > {scratch}/delivered\n")
    os.chmod(script, 0o755)
    out = scratch
    os.chmod(out, 0o777)
    mta = make_mta(aliases=f'flaky: "|{script}"\n', main_extra="minimal_backoff_time = 300s\n"
                   "maximal_backoff_time = 600s\nqueue_run_delay = 300s\n")
    mta.start()
    send(mta, [f"flaky@{DOMAIN}"], body="eventually")
    wait_for(lambda: len(mta.queue_files("deferred")) == 1, what="deferral")
    deferred = mta.queue_files("deferred")[0]
    assert os.stat(deferred).st_mtime > time.time() + 200  # next retry in the future
    assert "status=deferred" in mta.log()
    flag.unlink()
    mta.run("flush")
    # The command creates the file before it writes the message: wait for the content, not the file.
    delivered = scratch / "delivered"
    wait_for(lambda: delivered.exists() and b"eventually" in delivered.read_bytes(), what="delivery after flush")
    wait_for(lambda: mta.queue_files("deferred") == [], what="deferred queue to empty")


def test_lifetime_expiry_bounces_to_sender(make_mta, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    script = scratch / "fail.sh"
    script.write_text("#!/bin/sh\necho 'try again later'\nexit 75\n")
    os.chmod(script, 0o755)
    mta = make_mta(aliases=f'stuck: "|{script}"\n', main_extra="maximal_queue_lifetime = 0\n")
    mta.start()
    send(mta, [f"stuck@{DOMAIN}"], sender=f"{U1}@{DOMAIN}", subject="will expire")
    # This message's bounce, picked by the subject it quotes: not whatever else reached U1's Maildir.
    bounces = wait_for(lambda: [m for m in maildir_messages(home(U1)) if b"Subject: will expire" in m],
                       what="the bounce")
    assert isinstance(bounces, list) and len(bounces) == 1
    raw: bytes = bounces[0]
    dsn = email.message_from_bytes(raw)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["Return-Path"] == "<>"
    parts = [part.get_content_type() for part in dsn.walk()]
    assert "message/delivery-status" in parts and "text/rfc822-headers" in parts
    assert b"Final-Recipient: rfc822; stuck@" in raw and b"Subject: will expire" in raw
    wait_for(lambda: mta.queue_files("deferred") == [] and mta.queue_files("active") == [],
             what="the queue to empty")


def test_queue_files_are_private(make_mta) -> None:  # type: ignore[no-untyped-def]
    mta = make_mta()
    mta.start()
    for name in ("incoming", "active", "deferred", "maildrop"):
        mode = stat.S_IMODE(os.stat(mta.spool / name).st_mode)
        assert mode & 0o007 == 0, f"{name} is accessible to others: {oct(mode)}"


def _load(mta: Mta, count: int, accepted: list[str], stop: threading.Event) -> None:
    """Send up to count messages, one session each; record the tag of every message that got 250."""
    name = threading.current_thread().name
    for i in range(count):
        if stop.is_set():
            return
        tag = f"{name}-{i}"
        try:
            with smtplib.SMTP("127.0.0.1", mta.port, timeout=30) as client:
                client.sendmail(f"load@{DOMAIN}", [f"{U2}@{DOMAIN}"], f"Subject: load {tag}\n\nn={tag}\n")
                accepted.append(tag)
        except (smtplib.SMTPException, OSError):
            time.sleep(0.05)


def test_reload_under_load_loses_nothing(make_mta) -> None:  # type: ignore[no-untyped-def]
    mta = make_mta()
    mta.start()
    accepted: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(mta, 40, accepted, stop)) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(3):
        time.sleep(0.5)
        mta.run("reload")
    for t in threads:
        t.join(timeout=120)
    assert len(accepted) == 120
    wait_for(lambda: len(maildir_messages(home(U2))) == len(accepted), timeout=60, what="all deliveries")


def test_kill_9_loses_no_accepted_message(make_mta) -> None:  # type: ignore[no-untyped-def]
    mta = make_mta()
    mta.start()
    accepted: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(mta, 200, accepted, stop)) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    mta.kill_tree()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    got_250 = len(accepted)
    assert got_250 > 0
    mta.start()
    wait_for(lambda: len(maildir_messages(home(U2))) >= got_250, timeout=120,
             what=f"{got_250} accepted messages to be delivered after the crash")
    bodies = {m.split(b"n=")[-1].strip() for m in maildir_messages(home(U2))}
    assert {s.encode() for s in accepted} <= bodies


def test_swaks_client_and_smtp_replies(make_mta) -> None:  # type: ignore[no-untyped-def]
    """A second real SMTP client (swaks, from Debian's package) gets Postfix's replies and delivers."""
    root = find_postfix_root()
    swaks = root / "usr/bin/swaks" if root else None
    if swaks is None or not swaks.exists():
        if os.environ.get("CI"):
            pytest.fail("swaks not unpacked: run scripts/fetch-postfix.sh")
        pytest.skip("swaks not unpacked: run scripts/fetch-postfix.sh")
    mta = make_mta(aliases=f"root: {U1}\n")
    mta.start()
    done = subprocess.run(
        ["perl", str(swaks), "--server", f"127.0.0.1:{mta.port}", "--helo", "client.example.test",
         "--from", f"alice@{DOMAIN}", "--to", f"root@{DOMAIN}", "--body", "sent by swaks"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "<-  250 2.1.0 Ok" in done.stdout and "<-  250 2.1.5 Ok" in done.stdout
    assert "<-  354 End data with <CR><LF>.<CR><LF>" in done.stdout
    assert "<-  250 2.0.0 Ok: queued as " in done.stdout and "<-  221 2.0.0 Bye" in done.stdout
    wait_for(lambda: any(b"sent by swaks" in m for m in maildir_messages(home(U1))), what="swaks delivery")
    relay = subprocess.run(
        ["perl", str(swaks), "--server", f"127.0.0.1:{mta.port}", "--local-interface", "127.0.0.2",
         "--from", f"alice@{DOMAIN}", "--to", "victim@elsewhere.example", "--quit-after", "RCPT"],
        capture_output=True, text=True, timeout=60,
    )
    assert "<** 454 4.7.1 <victim@elsewhere.example>: Relay access denied" in relay.stdout


def test_hold_and_discard_actions(make_mta) -> None:  # type: ignore[no-untyped-def]
    """smtpd's HOLD puts the message in hold/ (postqueue marks it !, postsuper -H releases it);
    DISCARD gives the client a queue ID and keeps nothing."""
    mta = make_mta(main_extra="smtpd_sender_restrictions = check_sender_access inline:{ "
                              "{held@remote.example=HOLD}, {junk@remote.example=DISCARD} }\n")
    mta.start()
    for sender in ("held@remote.example", "junk@remote.example"):
        with smtplib.SMTP("127.0.0.1", mta.port, timeout=30, source_address=("127.0.0.2", 0)) as client:
            client.ehlo("client.example.test")  # a client outside mynetworks
            client.mail(sender)
            assert client.rcpt(f"{U1}@{DOMAIN}")[0] == 250
            assert client.rcpt("bob@elsewhere.example")[0] == (454 if sender.startswith("held") else 250)
            code, text = client.data(b"Subject: action\r\n\r\nbody\r\n")
            assert code == 250 and text.startswith(b"2.0.0 Ok: queued as ")
    wait_for(lambda: "NOQUEUE: discard:" in mta.log(), what="the discard log line")
    time.sleep(1.5)  # a wrongly queued message would be delivered by now
    assert maildir_messages(home(U1)) == []
    [held] = mta.queue_files("hold")
    assert mta.queue_files("incoming") == [] and mta.queue_files("active") == []
    log = mta.log()
    assert ("[127.0.0.2]: <held@remote.example>: Sender address triggers "
            f"HOLD action; from=<held@remote.example> to=<{U1}@{DOMAIN}> proto=ESMTP helo=<client.example.test>") in log
    assert log.count("NOQUEUE: hold:") == 1 and log.count("NOQUEUE: discard:") == 1
    listing = mta.run("postqueue", "-p").stdout.decode()
    assert f"{held.name}!" in listing and "junk@remote.example" not in listing
    mta.run("postsuper", "-H", held.name)
    mta.run("postqueue", "-f")
    wait_for(lambda: len(maildir_messages(home(U1))) == 1, what="delivery after release from hold")


def test_error_retry_and_discard_transports(make_mta) -> None:  # type: ignore[no-untyped-def]
    """transport_maps sends a closed domain to error (a bounce naming the text), a trap to discard
    (sent, nothing delivered) and a domain to retry (deferred with the text)."""
    mta = make_mta(main_extra="transport_maps = inline:{ {closed.example=error:5.1.1 this domain is closed}, "
                              "{trap.example=discard:spam trap}, {later.example=retry:4.4.1 come back later} }\n")
    mta.start()
    send(mta, ["x@closed.example", "y@trap.example", "z@later.example"], sender=f"{U1}@{DOMAIN}",
         subject="three ways")
    wait_for(lambda: len(maildir_messages(home(U1))) == 1, what="the bounce for closed.example")
    raw = maildir_messages(home(U1))[0]
    assert b"Final-Recipient: rfc822; x@closed.example" in raw and b"Status: 5.1.1" in raw
    assert b"this domain is closed" in raw
    assert b"y@trap.example" not in raw.split(b"Content-Type: text/rfc822-headers")[0]  # only x bounced
    log = mta.log()
    assert "to=<y@trap.example>, relay=none" in log and "status=sent (spam trap)" in log
    assert "to=<z@later.example>, relay=none" in log and "status=deferred (come back later)" in log
    wait_for(lambda: len(mta.queue_files("deferred")) == 1, what="the message deferred for later.example")
    listing = mta.run("postqueue", "-p").stdout.decode()
    assert "z@later.example" in listing and "come back later" in listing and "x@closed.example" not in listing
