"""smtp: deliver over SMTP to the next hop a delivery request names (Postfix's smtp(8)).

NEXT HOP. ``[host]:port`` or ``[host]`` is used as written (no MX lookup);
``host:port`` or ``host`` (usually the recipient domain) is looked up as
MX records, tried in preference order (RFC 5321 section 5.1; hosts of
equal preference in random order, as it asks), falling back to the name's own address
when it has no MX (its A record, else its AAAA record; ``[ipv6:::1]`` is an
IPv6 address as written). Names are resolved with mta.dns_lookup (set up before
chroot); addresses are used as they are. The port defaults to 25. A name
that does not exist bounces (5.4.4); a lookup that fails defers (4.4.3).

SESSION. EHLO (HELO when refused), STARTTLS when the server offers it and
smtp_tls_security_level is ``may`` (``encrypt`` refuses to go on without
it), MAIL FROM (SIZE, BODY=8BITMIME when the message needs it), one RCPT per
recipient, DATA with the queued message (CRLF line ends, dot-stuffed). With
PIPELINING (RFC 2920) MAIL, the RCPTs and DATA go in one write. Each
recipient's result comes from the reply that decided it: MAIL's, its RCPT
reply, else DATA's or end of data's. 2xx sent, 4xx deferred, 5xx bounced,
with the remote reply in the reason: ``host mx.example[192.0.2.1] said: 550
5.1.1 ... (in reply to RCPT TO command)``. Every phase has its own timeout
(smtp_connect_timeout, smtp_helo_timeout, smtp_mail_timeout,
smtp_rcpt_timeout, smtp_data_init/xfer/done_timeout, smtp_rset_timeout,
smtp_quit_timeout). A server that cannot be reached, or refuses the session
(greeting, EHLO/HELO), makes the next MX host be tried; when none can be
used the reply carries ``hop_status`` and the queue manager marks the
destination dead for minimal_backoff_time.

CONNECTION REUSE. A session that ended cleanly is kept open, per next hop,
for smtp_connection_cache_time_limit seconds (Postfix's default 2s) and used
for the next request to the same next hop this process serves; it is closed
with QUIT when that time passes, after smtp_connection_reuse_time_limit
seconds or smtp_connection_reuse_count_limit uses (0: no limit), and when the
process exits. A kept session that turns out to be gone before its server
answered anything is replaced by a new connection, so nothing is sent twice.

SECURITY. smtp talks to untrusted servers: every socket operation has a
timeout, replies are only parsed by smtplib and logged as text. It reads
only the queue file named in the request; it may run chrooted and
unprivileged (its DNS resolver and TLS context are set up before chroot).
"""

from __future__ import annotations

import dataclasses
import random
import re
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mta import log, proto
from mta.agent import reply_all, request_serve
from mta.config import MainConfig
from mta.dns_lookup import DnsClient
from mta.maps.cidr import address_parse
from mta.queue import MESSAGE_QUEUES, queue_file, queue_id_valid
from mta.record import RecordError, record_read

if TYPE_CHECKING:
    from mta.skeleton import DaemonContext

SERVER = "single"
_BRACKET = re.compile(r"\[([^\]]+)\](?::(\d+))?")
_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each phase of a session (smtp_*_timeout)."""

    connect: float = 30.0
    helo: float = 300.0
    starttls: float = 300.0
    mail: float = 300.0
    rcpt: float = 300.0
    data_init: float = 120.0
    data_xfer: float = 180.0
    data_done: float = 600.0
    rset: float = 20.0
    quit: float = 300.0

    @classmethod
    def from_config(cls, cfg: MainConfig) -> "Timeouts":
        """Every smtp_<phase>_timeout of main.cf."""
        return cls(**{f.name: float(cfg.get_time(f"smtp_{f.name}_timeout", minimum=1))
                      for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class Settings:
    """What a session needs from main.cf.

    + cache_time: smtp_connection_cache_time_limit (0: never keep a session).
    + reuse_time, reuse_count: smtp_connection_reuse_time_limit and _count_limit (0: none).
    """

    queue_dir: Path
    helo_name: str
    tls_level: str = ""
    timeouts: Timeouts = field(default_factory=Timeouts)
    bind_address: str = ""
    cache_time: float = 0.0
    reuse_time: float = 300.0
    reuse_count: int = 0


def settings_load(cfg: MainConfig, queue_dir: Path) -> Settings:
    """Settings from main.cf (with the service's -o overrides)."""
    timeouts = Timeouts.from_config(cfg)
    return Settings(queue_dir, cfg.get("smtp_helo_name") or cfg.get("myhostname"),
                    cfg.get("smtp_tls_security_level").strip().lower(), timeouts,
                    cfg.get("smtp_bind_address").strip(),
                    float(cfg.get_time("smtp_connection_cache_time_limit", minimum=0)),
                    float(cfg.get_time("smtp_connection_reuse_time_limit", minimum=1)),
                    cfg.get_int("smtp_connection_reuse_count_limit", minimum=0))


def tls_context() -> ssl.SSLContext:
    """The client context for opportunistic TLS: encryption without authentication, TLS 1.2 or newer.

    No CA certificates are loaded (nothing is verified), which also spares each
    process reading the system's CA store at start.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(eq=False)
class Session:
    """An open SMTP session with one server, after EHLO (and STARTTLS)."""

    client: smtplib.SMTP
    host: str
    address: str
    port: int
    started: float = field(default_factory=time.monotonic)
    uses: int = 0

    @property
    def relay(self) -> str:
        """``host[address]:port``, as status lines show it."""
        return f"{self.host}[{self.address}]:{self.port}"

    @property
    def said(self) -> str:
        return f"host {self.host}[{self.address}] said:"

    def close(self, timeout: float = 0.0) -> None:
        """Say QUIT when timeout allows it, then close the socket; never raises."""
        try:
            if timeout and self.client.sock is not None:
                self.client.sock.settimeout(timeout)
                self.client.quit()
        except (OSError, smtplib.SMTPException):
            pass
        try:
            self.client.close()
        except OSError:
            pass


class SessionCache:
    """Sessions kept open per next hop between requests (see CONNECTION REUSE).

    One reaper thread (started with the first kept session) closes those idle
    past idle_time; a thread per kept session would cost a clone per message.
    """

    def __init__(self, idle_time: float, quit_timeout: float) -> None:
        self.idle_time = idle_time
        self.quit_timeout = quit_timeout
        self._sessions: dict[str, tuple[Session, float]] = {}
        self._cond = threading.Condition()
        self._reaper: threading.Thread | None = None
        self._wake_at = 0.0  # when the reaper wakes next (it is told of earlier deadlines only)

    def take(self, nexthop: str) -> Session | None:
        """The kept session for nexthop, removed from the cache; None when there is none."""
        with self._cond:
            entry = self._sessions.pop(nexthop, None)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():  # idle too long: the reaper has not got to it yet
            entry[0].close(self.quit_timeout)
            return None
        return entry[0]

    def put(self, nexthop: str, session: Session) -> None:
        """Keep session for idle_time seconds (closing one already kept for nexthop)."""
        if self.idle_time <= 0:
            session.close(self.quit_timeout)
            return
        with self._cond:
            old = self._sessions.pop(nexthop, None)
            until = time.monotonic() + self.idle_time
            self._sessions[nexthop] = (session, until)
            if self._reaper is None:
                self._wake_at = until
                self._reaper = threading.Thread(target=self._reap, name="smtp-cache", daemon=True)
                self._reaper.start()
            elif until < self._wake_at:
                # Waking the reaper costs a thread switch; a session that expires
                # after its next wake-up is seen then.
                self._cond.notify()
        if old is not None:
            old[0].close(self.quit_timeout)

    def _reap(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                expired = [hop for hop, (_, until) in self._sessions.items() if until <= now]
                sessions = [self._sessions.pop(hop)[0] for hop in expired]
                if not sessions:
                    self._wake_at = min((until for _, until in self._sessions.values()), default=now + 60.0)
                    self._cond.wait(max(self._wake_at - now, 0.01))
                    continue
            for session in sessions:
                session.close(self.quit_timeout)

    def close_all(self) -> None:
        """QUIT and close every kept session."""
        with self._cond:
            sessions, self._sessions = [entry[0] for entry in self._sessions.values()], {}
        for session in sessions:
            session.close(self.quit_timeout)


def pre_init(ctx: "DaemonContext") -> None:
    """Read the settings, set up the resolver and the TLS context, before chroot."""
    ctx.state["dns"] = DnsClient()
    ctx.state["settings"] = settings_load(ctx.cfg, ctx.queue_dir)
    ctx.state["tls"] = tls_context()
    settings: Settings = ctx.state["settings"]
    ctx.state["cache"] = SessionCache(settings.cache_time, min(settings.timeouts.quit, 5.0))


def post_init(ctx: "DaemonContext") -> None:
    """Paths are the jail's from here on."""
    ctx.state["settings"] = dataclasses.replace(ctx.state["settings"], queue_dir=ctx.queue_dir)


def pre_exit(ctx: "DaemonContext") -> None:
    """Close the sessions kept for reuse."""
    cache: SessionCache | None = ctx.state.get("cache")
    if cache is not None:
        cache.close_all()


class HopError(Exception):
    """The next hop cannot be used: (status, dsn, reason) for every recipient."""

    def __init__(self, status: int, dsn: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.dsn, self.reason = status, dsn, reason


def _not_found(name: str, rdtype: str, status: str) -> HopError:
    if status == "none":
        return HopError(proto.PERMFAIL, "5.4.4", f"Host or domain name not found. Name service error for "
                                                 f"name={name} type={rdtype}: Host not found")
    return HopError(proto.TEMPFAIL, "4.4.3", f"Host or domain name not found. Name service error for "
                                             f"name={name} type={rdtype}: Host not found, try again")


def hosts_for(nexthop: str, dns: DnsClient) -> list[tuple[str, int]]:
    """The (host, port) list to try for a next hop (see NEXT HOP); HopError when the MX lookup fails."""
    bracket = _BRACKET.fullmatch(nexthop.strip())
    if bracket:
        host = bracket.group(1)
        return [(host[5:] if host.lower().startswith("ipv6:") else host, int(bracket.group(2) or 25))]
    name, _, port_text = nexthop.strip().partition(":")
    port = int(port_text) if port_text.isdigit() else 25
    if address_parse(name) is not None:
        return [(name, port)]
    answer = dns.lookup(name, "MX")
    if answer.status == "found":
        ranked = []
        for value in answer.values:
            pref, _, host = value.partition(" ")
            ranked.append((int(pref) if pref.isdigit() else 65535, random.random(), host.rstrip(".")))
        return [(host, port) for _, _, host in sorted(ranked) if host]
    if answer.status == "tempfail":
        raise _not_found(name, "MX", "tempfail")
    return [(name, port)]


def _address(host: str, dns: DnsClient) -> str:
    """host's address (host itself when it is one): its A record, else its AAAA record (RFC 5321
    section 5.1); HopError when it has neither."""
    if address_parse(host) is not None:
        return host
    statuses = []
    for rdtype in ("A", "AAAA"):
        answer = dns.lookup(host, rdtype)
        if answer.status == "found" and answer.values:
            return answer.values[0]
        statuses.append(answer.status)
    raise _not_found(host, "A", "tempfail" if "tempfail" in statuses else "none")


def _timeout(client: smtplib.SMTP, seconds: float) -> None:
    """Set the session socket's timeout for the next phase."""
    if client.sock is None:
        raise smtplib.SMTPServerDisconnected("connection closed")
    if client.sock.gettimeout() != seconds:  # settimeout() is a system call even when nothing changes
        client.sock.settimeout(seconds)


def _text(code: int, message: bytes) -> str:
    return f"{code} {message.decode('utf-8', 'replace').replace(chr(10), ' ')}"


def _dsn(message: bytes, status: int) -> str:
    found = re.match(rb"([245]\.\d{1,3}\.\d{1,3})\b", message)
    if found and found.group(1).decode()[0] == str(2 if status == proto.OK else status):
        return found.group(1).decode()
    return {proto.OK: "2.0.0", proto.TEMPFAIL: "4.0.0", proto.PERMFAIL: "5.0.0"}[status]


def _status(code: int) -> int:
    return proto.OK if code < 400 else proto.TEMPFAIL if code < 500 else proto.PERMFAIL


def _connect(settings: Settings, tls: ssl.SSLContext | None, host: str, address: str, port: int) -> Session:
    """Open a session: connect, greeting, EHLO/HELO, STARTTLS.

    Raises HopError with the cause (the next host is then tried).
    """
    relay = f"{host}[{address}]:{port}"
    source = (settings.bind_address, 0) if settings.bind_address else None
    try:
        sock = socket.create_connection((address, port), settings.timeouts.connect, source)
    except OSError as exc:
        cause = "Connection timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise HopError(proto.TEMPFAIL, "4.4.1", f"connect to {relay}: {cause}") from None
    client = smtplib.SMTP(local_hostname=settings.helo_name, timeout=settings.timeouts.helo)
    client.sock = sock
    setattr(client, "_host", host)  # what smtplib's starttls() sends as the TLS server name
    session = Session(client, host, address, port)
    stage = "receiving the initial server greeting"
    try:
        _timeout(client, settings.timeouts.helo)
        code, message = client.getreply()
        if code != 220:
            raise HopError(proto.TEMPFAIL, "4.4.2",
                           f"host {host}[{address}] refused to talk to me: {_text(code, message)}")
        stage = "sending EHLO"
        client.ehlo_or_helo_if_needed()
        if client.has_extn("starttls") and settings.tls_level in ("may", "encrypt"):
            stage = "sending STARTTLS"
            _timeout(client, settings.timeouts.starttls)
            client.starttls(context=tls or tls_context())
            _timeout(client, settings.timeouts.helo)
            client.ehlo()
        elif settings.tls_level == "encrypt":
            raise HopError(proto.TEMPFAIL, "4.7.4",
                           f"TLS is required, but was not offered by host {host}[{address}]")
    except HopError:
        session.close(settings.timeouts.quit)
        raise
    except (OSError, smtplib.SMTPException) as exc:
        session.close()
        if isinstance(exc, smtplib.SMTPResponseException):
            text = _text(exc.smtp_code, exc.smtp_error if isinstance(exc.smtp_error, bytes) else b"")
            raise HopError(proto.TEMPFAIL, "4.4.2", f"host {host}[{address}] refused to talk to me: {text}") from None
        raise HopError(proto.TEMPFAIL, "4.4.2", _lost_reason(session, _Lost(False, stage, exc))) from None
    return session


class _Lost(Exception):
    """The session broke; answered is False when the server had not answered anything yet."""

    def __init__(self, answered: bool, stage: str, cause: BaseException) -> None:
        super().__init__(stage)
        self.answered, self.stage, self.cause = answered, stage, cause


def _transaction(settings: Settings, session: Session, sender: str, recipients: list[dict[str, Any]],
                 content: bytes) -> tuple[dict[int, tuple[int, str, str]], bool]:
    """One mail transaction; (results by recipient index, whether the session can be kept)."""
    client, said, timeouts = session.client, session.said, settings.timeouts
    data = content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    options = []
    if client.has_extn("size"):
        options.append(f"SIZE={len(data)}")
    if client.has_extn("8bitmime") and not data.isascii():
        options.append("BODY=8BITMIME")
    mail = f"MAIL FROM:<{sender}>" + "".join(f" {o}" for o in options)
    rcpts = [f"RCPT TO:<{r.get('address', '')}>" for r in recipients]
    pipelining = client.has_extn("pipelining")
    results: dict[int, tuple[int, str, str]] = {}
    answered = False
    stage = "sending MAIL FROM"

    def reply(timeout: float) -> tuple[int, bytes]:
        nonlocal answered
        _timeout(client, timeout)
        code, message = client.getreply()
        answered = True
        return code, message

    try:
        _timeout(client, timeouts.mail)
        if pipelining:
            client.send("".join(f"{line}\r\n" for line in [mail, *rcpts, "DATA"]))
        else:
            client.send(f"{mail}\r\n")
        code, message = reply(timeouts.mail)
        mail_ok = code < 400
        if not mail_ok:
            reason = f"{said} {_text(code, message)} (in reply to MAIL FROM command)"
            results = {i: (_status(code), _dsn(message, _status(code)), reason) for i in range(len(recipients))}
            if not pipelining:
                return results, _rset(session, timeouts.rset)
        stage = "sending RCPT TO"
        accepted = []
        for i, line in enumerate(rcpts):
            if not pipelining:
                client.send(f"{line}\r\n")
            code, message = reply(timeouts.rcpt)
            if not mail_ok:
                continue
            if code in (250, 251):
                accepted.append(i)
            else:
                results[i] = (_status(code), _dsn(message, _status(code)),
                              f"{said} {_text(code, message)} (in reply to RCPT TO command)")
        stage = "sending DATA"
        if not pipelining:
            if not accepted:
                return results, _rset(session, timeouts.rset)
            client.send("DATA\r\n")
        code, message = reply(timeouts.data_init)
        if code != 354:
            for i in accepted:
                results[i] = (_status(code) if code >= 400 else proto.TEMPFAIL, _dsn(message, _status(code)),
                              f"{said} {_text(code, message)} (in reply to DATA command)")
            return results, _rset(session, timeouts.rset)
        stage = "sending end of data"
        if not accepted:  # a server that says 354 with no recipient: send an empty message, keep nothing
            client.send(".\r\n")
            reply(timeouts.data_done)
            return results, _rset(session, timeouts.rset)
        _timeout(client, timeouts.data_xfer)
        body = _DOT.sub(b"..", data)
        client.send(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        code, message = reply(timeouts.data_done)
        status = _status(code)
        reason = _text(code, message) if status == proto.OK else \
            f"{said} {_text(code, message)} (in reply to end of DATA command)"
        for i in accepted:
            results[i] = (status, _dsn(message, status), reason)
        return results, code != 421
    except (OSError, smtplib.SMTPException) as exc:
        raise _Lost(answered, stage, exc) from None


def _rset(session: Session, timeout: float) -> bool:
    """Reset after a transaction that delivered nothing; True when the session is still usable."""
    try:
        _timeout(session.client, timeout)
        code, _ = session.client.rset()
        return code == 250
    except (OSError, smtplib.SMTPException):
        return False


def _lost_reason(session: Session, lost: _Lost) -> str:
    cause = lost.cause
    if isinstance(cause, TimeoutError) or isinstance(cause.__context__, TimeoutError):  # smtplib wraps it
        text = f"conversation with {session.host}[{session.address}] timed out while {lost.stage}"
    else:
        text = f"lost connection with {session.host}[{session.address}] while {lost.stage}"
    return text + (" -- message may be sent more than once" if lost.stage == "sending end of data" else "")


def _reply(recipients: list[dict[str, Any]], results: dict[int, tuple[int, str, str]], relay: str,
           hop: HopError | None = None) -> dict[str, Any]:
    out = []
    for i, rcpt in enumerate(recipients):
        status, dsn, reason = results.get(i, (proto.TEMPFAIL, "4.4.2", "lost connection"))
        out.append({"address": rcpt.get("address", ""), "offset": rcpt.get("offset"), "status": status,
                    "dsn": dsn, "reason": reason})
    reply: dict[str, Any] = {"status": proto.OK, "relay": relay, "recipients": out}
    if hop is not None and hop.status == proto.TEMPFAIL:
        reply["hop_status"] = {"dsn": hop.dsn, "reason": hop.reason}
    return reply


def _finish(cache: SessionCache | None, settings: Settings, nexthop: str, session: Session, keep: bool) -> None:
    session.uses += 1
    worn = (settings.reuse_count and session.uses >= settings.reuse_count) or \
        time.monotonic() - session.started >= settings.reuse_time
    if keep and cache is not None and not worn:
        cache.put(nexthop, session)
    else:
        session.close(settings.timeouts.quit)


def _deliver_on(settings: Settings, cache: SessionCache | None, nexthop: str, session: Session, sender: str,
                recipients: list[dict[str, Any]], content: bytes) -> dict[str, Any]:
    """Run the transaction on session and build the reply; _Lost propagates when nothing was answered."""
    try:
        results, keep = _transaction(settings, session, sender, recipients, content)
    except _Lost as lost:
        session.close()
        if not lost.answered:
            raise
        reason = _lost_reason(session, lost)
        return reply_all(recipients, proto.TEMPFAIL, "4.4.2", reason, session.relay)
    _finish(cache, settings, nexthop, session, keep)
    return _reply(recipients, results, session.relay)


def smtp_deliver(settings: Settings, dns: DnsClient, request: dict[str, Any], cache: SessionCache | None = None,
                 tls: ssl.SSLContext | None = None) -> dict[str, Any]:
    """Handle one delivery request and return the reply (one result per recipient)."""
    queue_name, queue_id = str(request.get("queue_name", "")), str(request.get("queue_id", ""))
    recipients = [r for r in request.get("recipients") or [] if isinstance(r, dict)]
    if queue_name not in MESSAGE_QUEUES or not queue_id_valid(queue_id) or not recipients:
        return proto.reply(proto.PERMFAIL, "malformed delivery request")
    try:
        envelope, content = record_read(queue_file(settings.queue_dir, queue_name, queue_id))
    except (OSError, RecordError) as exc:
        log.msg_warn(f"{queue_id}: cannot read queue file: {exc}")
        return reply_all(recipients, proto.TEMPFAIL, "4.3.0", "cannot read queue file")
    sender = str(request.get("sender") if request.get("sender") is not None else envelope.sender)
    nexthop = str(request.get("nexthop") or "")

    kept = cache.take(nexthop) if cache is not None else None
    if kept is not None:
        try:
            return _deliver_on(settings, cache, nexthop, kept, sender, recipients, content)
        except _Lost:
            pass  # the kept session had gone before the server answered: open a new one

    try:
        hosts = hosts_for(nexthop, dns)
    except HopError as hop:
        return _reply(recipients, {i: (hop.status, hop.dsn, hop.reason) for i in range(len(recipients))},
                      "none", hop)
    failure: HopError | None = None
    for host, port in hosts:
        try:
            address = _address(host, dns)
        except HopError as hop:
            # One MX host of several without an address is not the destination's end: defer, try the next.
            failure = hop if len(hosts) == 1 else HopError(proto.TEMPFAIL, "4.4.3", hop.reason)
            continue
        try:
            session = _connect(settings, tls, host, address, port)
            return _deliver_on(settings, cache, nexthop, session, sender, recipients, content)
        except HopError as hop:
            failure = hop
        except _Lost as lost:  # the server went away before it answered anything of the transaction
            failure = HopError(proto.TEMPFAIL, "4.4.2", _lost_reason(session, lost))
        if len(hosts) > 1:
            log.msg_info(f"{queue_id}: {failure.reason}")  # the next host is tried
    if failure is None:
        failure = HopError(proto.TEMPFAIL, "4.4.3", f"Host or domain name not found. Name service error for "
                                                    f"name={nexthop} type=MX: Host not found, try again")
    return _reply(recipients, {i: (failure.status, failure.dsn, failure.reason) for i in range(len(recipients))},
                  "none", failure)


def service(conn: socket.socket, ctx: "DaemonContext") -> None:
    """Answer one delivery request."""
    request_serve(conn, float(ctx.cfg.get_time("ipc_timeout", minimum=1)), "smtp",
                  lambda request: smtp_deliver(ctx.state["settings"], ctx.state["dns"], request,
                                               ctx.state.get("cache"), ctx.state.get("tls")))
