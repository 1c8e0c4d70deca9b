"""smtp: deliver over SMTP to the next hop a delivery request names (Postfix's smtp(8), first part).

NEXT HOP. ``[host]:port`` or ``[host]`` is used as written (no MX lookup);
``host:port`` or ``host`` (usually the recipient domain) is looked up as
MX records, tried in preference order (RFC 5321 section 5.1; hosts of
equal preference in random order, as it asks), falling back to the name's own address
when it has no MX. Names are resolved with mta.dns_lookup (set up before
chroot); addresses are used as they are. The port defaults to 25.

SESSION. One connection per request (the queue manager groups the
recipients of one message per destination): EHLO (HELO when refused),
STARTTLS when the server offers it and smtp_tls_security_level is ``may``
(``encrypt`` refuses to go on without it), MAIL FROM, one RCPT per
recipient, DATA with the queued message (CRLF line ends, dot-stuffed by
smtplib), QUIT. Each recipient's result comes from the reply that decided
it: its RCPT reply, else the DATA reply. 2xx sent, 4xx deferred, 5xx bounced,
with the remote reply in the reason: ``host mx.example[192.0.2.1] said: 550
5.1.1 ... (in reply to RCPT TO command)``. A server that cannot be reached
or drops the connection defers every recipient with the cause; the next MX
host is tried first.

SECURITY. smtp talks to untrusted servers: every socket operation has
smtp_*_timeout, replies are only parsed by smtplib and logged as text. It
reads only the queue file named in the request; it may run chrooted and
unprivileged (its DNS resolver is set up before chroot).
"""

from __future__ import annotations

import dataclasses
import random
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mta import log, proto
from mta.agent import reply_all, request_serve
from mta.dns_lookup import DnsClient
from mta.queue import MESSAGE_QUEUES, queue_id_valid, queue_path
from mta.record import RecordError, record_read

if TYPE_CHECKING:
    from mta.skeleton import DaemonContext

SERVER = "single"
_BRACKET = re.compile(r"\[([^\]]+)\](?::(\d+))?")


@dataclass(frozen=True)
class Settings:
    """What a session needs from main.cf."""

    queue_dir: Path
    helo_name: str
    timeout: float
    tls_level: str


def pre_init(ctx: "DaemonContext") -> None:
    """Read the settings and set up the resolver, before chroot."""
    ctx.state["dns"] = DnsClient()
    ctx.state["settings"] = Settings(ctx.queue_dir, ctx.cfg.get("smtp_helo_name") or ctx.cfg.get("myhostname"),
                                     float(ctx.cfg.get_time("smtp_connect_timeout", minimum=1)),
                                     ctx.cfg.get("smtp_tls_security_level").strip().lower())


def post_init(ctx: "DaemonContext") -> None:
    """Paths are the jail's from here on."""
    ctx.state["settings"] = dataclasses.replace(ctx.state["settings"], queue_dir=ctx.queue_dir)


def hosts_for(nexthop: str, dns: DnsClient) -> list[tuple[str, int]]:
    """The (host, port) list to try for a next hop (see NEXT HOP); empty when the name does not resolve."""
    bracket = _BRACKET.fullmatch(nexthop.strip())
    if bracket:
        return [(bracket.group(1), int(bracket.group(2) or 25))]
    name, _, port_text = nexthop.strip().partition(":")
    port = int(port_text) if port_text.isdigit() else 25
    answer = dns.lookup(name, "MX")
    if answer.status == "found":
        ranked = []
        for value in answer.values:
            pref, _, host = value.partition(" ")
            ranked.append((int(pref) if pref.isdigit() else 65535, random.random(), host.rstrip(".")))
        return [(host, port) for _, _, host in sorted(ranked) if host]
    return [(name, port)]


def _address(host: str, dns: DnsClient) -> str | None:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return host
    except OSError:
        pass
    answer = dns.lookup(host, "A")
    return answer.values[0] if answer.status == "found" and answer.values else None


def _text(code: int, message: bytes) -> str:
    return f"{code} {message.decode('utf-8', 'replace').replace(chr(10), ' ')}"


def smtp_deliver(settings: Settings, dns: DnsClient, request: dict[str, Any]) -> dict[str, Any]:
    """Handle one delivery request and return the reply (one result per recipient)."""
    queue_name, queue_id = str(request.get("queue_name", "")), str(request.get("queue_id", ""))
    recipients = [r for r in request.get("recipients") or [] if isinstance(r, dict)]
    if queue_name not in MESSAGE_QUEUES or not queue_id_valid(queue_id) or not recipients:
        return proto.reply(proto.PERMFAIL, "malformed delivery request")

    try:
        envelope, content = record_read(queue_path(settings.queue_dir, queue_name, queue_id))
    except (OSError, RecordError) as exc:
        log.msg_warn(f"{queue_id}: cannot read queue file: {exc}")
        return reply_all(recipients, proto.TEMPFAIL, "4.3.0", "cannot read queue file")
    nexthop = str(request.get("nexthop") or "")
    hosts = hosts_for(nexthop, dns)
    failure = f"Host or domain name not found. Name service error for name={nexthop}"
    for host, port in hosts:
        address = _address(host, dns)
        if address is None:
            failure = f"Host or domain name not found. Name service error for name={host}"
            continue
        relay = f"{host}[{address}]:{port}"
        try:
            return _session(settings, request, recipients, content, envelope.sender, host, address, port, relay)
        except (OSError, smtplib.SMTPException) as exc:
            failure = f"connect to {relay}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
            continue
    return reply_all(recipients, proto.TEMPFAIL, "4.4.1", failure)


def _session(settings: Settings, request: dict[str, Any], recipients: list[dict[str, Any]], content: bytes,
             queued_sender: str, host: str, address: str, port: int, relay: str) -> dict[str, Any]:
    sender = str(request.get("sender") if request.get("sender") is not None else queued_sender)
    results: dict[int, tuple[int, str, str]] = {}
    said = f"host {host}[{address}] said:"
    with smtplib.SMTP(timeout=settings.timeout, local_hostname=settings.helo_name) as client:
        client.connect(address, port)
        client.ehlo_or_helo_if_needed()
        if client.has_extn("starttls") and settings.tls_level in ("may", "encrypt"):
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # opportunistic TLS: encryption without authentication
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            client.starttls(context=context)
            client.ehlo()
        elif settings.tls_level == "encrypt":
            reason = f"TLS is required, but was not offered by host {host}[{address}]"
            return reply_all(recipients, proto.TEMPFAIL, "4.7.4", reason, relay)
        options = ["BODY=8BITMIME"] if client.has_extn("8bitmime") and any(b > 127 for b in content) else []
        code, message = client.mail(sender, options)
        if code >= 400:
            status = proto.TEMPFAIL if code < 500 else proto.PERMFAIL
            reason = f"{said} {_text(code, message)} (in reply to MAIL FROM command)"
            return _reply(recipients, {i: (status, _dsn(message, status), reason) for i in range(len(recipients))},
                          relay)
        accepted = []
        for i, rcpt in enumerate(recipients):
            code, message = client.rcpt(str(rcpt.get("address", "")))
            if code in (250, 251):
                accepted.append(i)
            else:
                status = proto.TEMPFAIL if code < 500 else proto.PERMFAIL
                results[i] = (status, _dsn(message, status), f"{said} {_text(code, message)} (in reply to RCPT TO "
                                                             "command)")
        if accepted:
            data = content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            try:
                code, message = client.data(data)
            except smtplib.SMTPDataError as exc:
                code = exc.smtp_code
                message = exc.smtp_error if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error).encode()
            status = proto.OK if code < 400 else proto.TEMPFAIL if code < 500 else proto.PERMFAIL
            reason = f"{_text(code, message)}" if status == proto.OK else \
                f"{said} {_text(code, message)} (in reply to end of DATA command)"
            for i in accepted:
                results[i] = (status, _dsn(message, status), reason)
        else:
            client.rset()
    return _reply(recipients, results, relay)


def _dsn(message: bytes, status: int) -> str:
    found = re.match(rb"([245]\.\d{1,3}\.\d{1,3})\b", message)
    if found and found.group(1).decode()[0] == str(2 if status == proto.OK else status):
        return found.group(1).decode()
    return {proto.OK: "2.0.0", proto.TEMPFAIL: "4.0.0", proto.PERMFAIL: "5.0.0"}[status]


def _reply(recipients: list[dict[str, Any]], results: dict[int, tuple[int, str, str]], relay: str) -> dict[str, Any]:
    out = []
    for i, rcpt in enumerate(recipients):
        status, dsn, reason = results.get(i, (proto.TEMPFAIL, "4.4.2", "lost connection"))
        out.append({"address": rcpt.get("address", ""), "offset": rcpt.get("offset"), "status": status,
                    "dsn": dsn, "reason": reason})
    return {"status": proto.OK, "relay": relay, "recipients": out}


def service(conn: socket.socket, ctx: "DaemonContext") -> None:
    """Answer one delivery request."""
    request_serve(conn, float(ctx.cfg.get_time("ipc_timeout", minimum=1)), "smtp",
                  lambda request: smtp_deliver(ctx.state["settings"], ctx.state["dns"], request))
