"""cleanup: canonicalise one message and write it to incoming/, then wake qmgr (Postfix's cleanup(8)).

A client (smtpd, pickup, bounce) connects to ``public/cleanup`` and sends one
``{"op": "submit", "sender", "recipients": [{"address", "original"?}], "attrs"}``
request followed by the content. cleanup validates it, rewrites the envelope
(always in the "local" context: append_at_myorigin, append_dot_mydomain) and
masquerades the envelope sender, fixes up the header (mta.cleanup.message),
writes ``incoming/ID`` (0600, fsync, 0700, fsync of the directory) and only then
replies ``{"status": 0, "queue_id": ID}`` and triggers qmgr. A refusal is a
reply with status 5 (or 4) plus dsn and reason; an internal error replies 4 and
removes the embryonic file, so nothing half-written is ever left in incoming/.
Request flags (smtpd's access actions): ``hold`` writes the file to hold/
instead, where qmgr does not look (postsuper -H releases it); ``discard``
takes a queue ID for the client's reply and keeps nothing.

HEADER REWRITING (Postfix ≥ 2.2) applies to mail from sendmail/pickup, to mail
without a client address (mail made by the MTA itself) and to clients in
local_header_rewrite_clients; otherwise headers use the "remote" context when
remote_header_rewrite_domain is set, or are left alone. Missing Message-Id,
Date and From headers are added only when header rewriting applies, or when
always_add_missing_headers = yes (Postfix ≥ 2.6).

SECURITY. cleanup's input comes from smtpd and pickup, which are less trusted:
every request field is checked before use, control characters never reach a
queue-file record or a header, and the content is parsed only as far as the
primary header. cleanup runs chrooted as mail_owner (master.cf); it reads its
configuration, opens its tables and learns the interface addresses in
pre_init, before the jail.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mta import clients, log, proto
from mta.cleanup.message import (
    HeaderPolicy,
    headers_missing,
    headers_process,
    message_render,
    message_split,
    received_header,
)
from mta.cleanup.rewrite import (
    Masquerade,
    RewriteClients,
    RewriteContext,
    address_rewrite,
    masquerade_address,
    masquerade_create,
)
from mta.config import MainConfig
from mta.derived import interface_addresses
from mta.errors import ConfigError
from mta.match_list import network_list
from mta.queue import HOLD, INCOMING, queue_abort, queue_create, queue_finish
from mta.record import Envelope, Recipient, record_write
from mta.skeleton import DaemonContext

SERVER = "single"
LOCAL_ORIGINS = ("pickup", "sendmail")


class CleanupReject(Exception):
    """The message is refused; status, dsn and reason go into the reply."""

    def __init__(self, status: int, dsn: str, reason: str) -> None:
        super().__init__(f"{dsn} {reason}")
        self.status, self.dsn, self.reason = status, dsn, reason


@dataclass
class CleanupSettings:
    """main.cf as cleanup uses it, read once in pre_init."""

    myhostname: str
    local: RewriteContext
    remote: RewriteContext | None
    masq: Masquerade
    clients: RewriteClients
    always_add: bool
    drop: frozenset[str]
    hopcount_limit: int
    size_limit: int
    empty_recipient: str
    standard_from: bool
    timeout: int
    delay_warning: int = 0


def _myorigin(cfg: MainConfig) -> str:
    """$myorigin; a /file/name value means that file's first line (Debian's /etc/mailname)."""
    value = cfg.get("myorigin").strip()
    if not value.startswith("/"):
        return value
    try:
        with open(value, encoding="utf-8", errors="replace") as fh:
            return fh.readline().strip()
    except OSError as exc:
        raise ConfigError(f"myorigin: open {value}: {os.strerror(exc.errno or 0)}") from None


def own_addresses(cfg: MainConfig) -> list[str]:
    """This host's addresses for permit_inet_interfaces: inet_interfaces, proxy_interfaces, loopback."""
    out = ["127.0.0.1", "::1"]
    listed = cfg.get_list("inet_interfaces")
    if any(item.lower() == "all" for item in listed):
        out.extend(str(iface.ip) for iface in interface_addresses(cfg.get("inet_protocols")))
    else:
        out.extend(item for item in listed if item.lower() != "loopback-only")
    out.extend(cfg.get_list("proxy_interfaces"))
    return out


def settings_create(cfg: MainConfig) -> CleanupSettings:
    """Read every parameter cleanup uses; ConfigError for a bad value."""
    at_origin = cfg.get_bool("append_at_myorigin")
    dot_domain = cfg.get_bool("append_dot_mydomain")
    bang, percent = cfg.get_bool("swap_bangpath"), cfg.get_bool("allow_percent_hack")
    local = RewriteContext(_myorigin(cfg) if at_origin else "", cfg.get("mydomain") if dot_domain else "",
                           bang, percent)
    remote_domain = cfg.get("remote_header_rewrite_domain").strip()
    remote = None
    if remote_domain:
        remote = RewriteContext(remote_domain if at_origin else "", remote_domain if dot_domain else "",
                                bang, percent)
    entries = cfg.get_list("local_header_rewrite_clients")
    wants_networks = "permit_mynetworks" in (e.lower() for e in entries)
    networks = network_list(cfg, "mynetworks") if wants_networks else None
    from_format = cfg.get("header_from_format").strip().lower()
    if from_format not in ("standard", "obsolete"):
        raise ConfigError(f"invalid header_from_format value: {from_format}")
    return CleanupSettings(
        myhostname=cfg.get("myhostname"),
        local=local,
        remote=remote,
        masq=masquerade_create(cfg.get_list("masquerade_domains"), cfg.get_list("masquerade_exceptions"),
                               cfg.get_list("masquerade_classes")),
        clients=RewriteClients(entries, own_addresses(cfg), networks),
        always_add=cfg.get_bool("always_add_missing_headers"),
        drop=frozenset(name.lower() for name in cfg.get_list("message_drop_headers")),
        hopcount_limit=cfg.get_int("hopcount_limit", minimum=1),
        size_limit=cfg.get_int("message_size_limit", minimum=0),
        empty_recipient=cfg.get("empty_address_recipient") or "MAILER-DAEMON",
        standard_from=from_format == "standard",
        timeout=cfg.get_time("ipc_timeout", minimum=1),
        delay_warning=cfg.get_time("delay_warning_time", minimum=0),
    )


def pre_init(ctx: DaemonContext) -> None:
    """Read main.cf, open masquerade_exceptions tables, learn interface addresses (before chroot)."""
    ctx.state["settings"] = settings_create(ctx.cfg)


def post_init(ctx: DaemonContext) -> None:
    """Nothing to do after chroot and privilege drop."""


def service(conn: socket.socket, ctx: DaemonContext) -> None:
    """Serve one client connection: each request gets one reply; qmgr is woken after each success."""
    settings: CleanupSettings = ctx.state.get("settings") or settings_create(ctx.cfg)
    ctx.state["settings"] = settings
    channel = proto.Channel(conn, timeout=settings.timeout)
    try:
        while True:
            try:
                received = channel.receive()
            except (proto.ProtocolError, OSError) as exc:
                log.msg_warn(f"cleanup: read request: {exc}")
                return
            if received is None:
                return
            answer = cleanup_request(ctx.queue_dir, settings, received[0], received[1])
            try:
                channel.send(answer)
            except OSError as exc:
                log.msg_warn(f"cleanup: send reply: {exc}")
            if answer["status"] == proto.OK and not set(request_flags(received[0])) & {"hold", "discard"}:
                clients.qmgr_trigger(ctx.queue_dir, b"I")
    finally:
        channel.close()


_CONTROLS = {**{c: "?" for c in range(32)}, 0x7F: "?"}


def _clean(value: Any) -> str:
    """An attribute value as text with control characters replaced (they would break records)."""
    text = value if isinstance(value, str) else str(value)
    return text.translate(_CONTROLS)


def _address(value: Any, dsn: str, what: str) -> str:
    if not isinstance(value, str):
        raise CleanupReject(proto.TEMPFAIL, "4.3.0", "internal protocol error")
    if any(c in value for c in "\r\n\0"):
        raise CleanupReject(proto.PERMFAIL, dsn, f"bad {what} address syntax")
    return value


def request_parse(request: dict[str, Any],
                  content: bytes | None) -> tuple[str, list[tuple[str, str]], dict[str, str]]:
    """Check a submit request: (sender, [(address, original)], attrs) or CleanupReject."""
    if request.get("op") != "submit" or content is None:
        raise CleanupReject(proto.TEMPFAIL, "4.3.0", "internal protocol error")
    sender = _address(request.get("sender"), "5.1.7", "sender")
    recipients: list[tuple[str, str]] = []
    raw = request.get("recipients")
    if not isinstance(raw, list):
        raise CleanupReject(proto.TEMPFAIL, "4.3.0", "internal protocol error")
    for item in raw:
        if isinstance(item, str):
            item = {"address": item}
        if not isinstance(item, dict):
            raise CleanupReject(proto.TEMPFAIL, "4.3.0", "internal protocol error")
        recipients.append((_address(item.get("address"), "5.1.3", "recipient"),
                           _address(item.get("original", ""), "5.1.3", "recipient")))
    if not recipients:
        raise CleanupReject(proto.PERMFAIL, "5.1.0", "no recipients specified")
    attrs = request.get("attrs") or {}
    if not isinstance(attrs, dict):
        raise CleanupReject(proto.TEMPFAIL, "4.3.0", "internal protocol error")
    return sender, recipients, {_clean(k).replace("=", "?"): _clean(v) for k, v in attrs.items()}


def request_flags(request: dict[str, Any]) -> list[str]:
    """The request's known flags: hold (write to hold/), discard (an ID, nothing kept)."""
    flags = request.get("flags") or []
    return [f for f in flags if f in ("hold", "discard")] if isinstance(flags, list) else []


def header_context(settings: CleanupSettings, attrs: dict[str, str]) -> RewriteContext | None:
    """The context for header addresses, None when headers are not rewritten (see HEADER REWRITING)."""
    if attrs.get("origin") in LOCAL_ORIGINS or not attrs.get("client_address"):
        return settings.local
    if settings.clients.match(attrs):
        return settings.local
    return settings.remote


def envelope_rewrite(settings: CleanupSettings, sender: str,
                     recipients: list[tuple[str, str]]) -> tuple[str, list[Recipient]]:
    """Rewrite the envelope in the local context; masquerade per masquerade_classes; drop duplicates."""
    masq = settings.masq
    sender = address_rewrite(settings.local, sender)
    if masq.applies("envelope_sender"):
        sender = masquerade_address(masq, sender)
    out: list[Recipient] = []
    seen: set[tuple[str, str]] = set()
    for address, original in recipients:
        final = address_rewrite(settings.local, address or settings.empty_recipient)
        if masq.applies("envelope_recipient"):
            final = masquerade_address(masq, final)
        original = original or (address if address != final else "")
        if (final, original) not in seen:
            seen.add((final, original))
            out.append(Recipient(final, original))
    return sender, out


def _arrival(attrs: dict[str, str], now: float) -> float:
    """The arrival time: pickup passes the maildrop file's; never in the future."""
    try:
        when = float(attrs.pop("arrival_time", ""))
    except ValueError:
        return now
    return when if 0 < when <= now else now


def cleanup_request(queue_dir: Path, settings: CleanupSettings, request: dict[str, Any],
                    content: bytes | None) -> dict[str, Any]:
    """Handle one submit request and return the reply (see the module docstring)."""
    try:
        sender, recipients, attrs = request_parse(request, content)
    except CleanupReject as exc:
        log.msg_warn(f"NOQUEUE: reject: {exc.dsn} {exc.reason}")
        return proto.reply(exc.status, exc.reason, exc.dsn)
    assert content is not None
    if settings.size_limit and len(content) > settings.size_limit:
        log.msg_info(f"NOQUEUE: reject: 5.3.4 message file too big; from=<{sender}>")
        return proto.reply(proto.PERMFAIL, "message file too big", "5.3.4")
    flags = request_flags(request)
    try:
        qf = queue_create(queue_dir, HOLD if "hold" in flags else INCOMING)
        if "discard" in flags:  # smtpd's DISCARD: the client gets an ID, nothing is kept (smtpd logged why)
            queue_abort(qf)
            return proto.reply(proto.OK, queue_id=qf.queue_id)
    except Exception as exc:  # noqa: BLE001 - any failure here is "try again later"
        log.msg_warn(f"cleanup: {exc}")
        return proto.reply(proto.TEMPFAIL, "queue file write error", "4.3.0")
    try:
        message_ids = _enqueue(qf.fd, qf.queue_id, settings, sender, recipients, attrs, content)
        queue_finish(qf)
    except CleanupReject as exc:
        queue_abort(qf)
        log.msg_info(f"{qf.queue_id}: reject: {exc.dsn} {exc.reason}; from=<{sender}>")
        return proto.reply(exc.status, exc.reason, exc.dsn)
    except Exception as exc:  # noqa: BLE001 - nothing half-written may stay in incoming/
        queue_abort(qf)
        log.msg_warn(f"{qf.queue_id}: queue file write error: {exc}")
        return proto.reply(proto.TEMPFAIL, "queue file write error", "4.3.0")
    except BaseException:
        queue_abort(qf)
        raise
    for line in message_ids:
        log.msg_info(f"{qf.queue_id}: {line}")
    return proto.reply(proto.OK, queue_id=qf.queue_id)


def _enqueue(fd: int, queue_id: str, settings: CleanupSettings, sender: str,
             recipients: list[tuple[str, str]], attrs: dict[str, str], content: bytes) -> list[str]:
    """Build the final message and write the queue file to fd; return the message-id log lines."""
    now = time.time()
    arrival = _arrival(attrs, now)
    context = header_context(settings, attrs)
    env_sender, env_recipients = envelope_rewrite(settings, sender, recipients)
    message = message_split(content)
    found = headers_process(message.headers, HeaderPolicy(context, settings.masq, settings.drop))
    if found.hops + 1 >= settings.hopcount_limit:
        log.msg_warn(f"{queue_id}: message rejected: hopcount exceeded")
        raise CleanupReject(proto.PERMFAIL, "5.4.0", "too many hops")
    added: list[str] = []
    if context is not None or settings.always_add:
        added = headers_missing(found, queue_id, now, arrival, settings.myhostname, env_sender,
                                attrs.get("fullname", ""), settings.standard_from)
    logged = [f"{name}={value}" for name, value in found.message_ids]
    for header in added:
        name, _, value = header.partition(": ")
        if name.lower().endswith("message-id"):
            logged.append(f"{name.lower()}={value}")
    if not any(line.startswith("message-id=") for line in logged):
        logged.append("message-id=<>")
    received = received_header(attrs, settings.myhostname, queue_id,
                               [r.original or r.address for r in env_recipients], arrival)
    final = message_render(received, found.lines, added, message.body)
    # DELAY WARNING. As Postfix's cleanup, the time a delay warning is due is
    # fixed when the message is queued (a W record); qmgr sends it at most once.
    warn_time = arrival + settings.delay_warning if settings.delay_warning > 0 else 0.0
    record_write(fd, Envelope(env_sender, env_recipients, arrival, attrs, warn_time), final)
    return logged
