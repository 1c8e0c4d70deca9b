"""local: deliver to local recipients through aliases, ~/.forward, :include:, /file, |command, Maildir and mbox.

Serves one delivery request per connection from the queue manager
(mta.clients.deliver_request): ``{"op": "deliver", "queue_name", "queue_id",
"sender", "recipients": [{"address", "original", "offset"}], ...}``. It reads
the message from the queue file, delivers each recipient (local(8)
semantics: see mta.local.recipient) and replies ``{"status": 0,
"recipients": [{"address", "offset", "status", "dsn", "reason"}]}`` with
status 0 sent, 4 deferred or 5 bounced per recipient; marking recipients done,
writing defer/bounce logs and logging each recipient's outcome is the queue
manager's job. Deliveries made for a recipient through an expansion are
logged here, as Postfix's local(8) does: ``QUEUEID: to=<bob@example.com>,
orig_to=<root@example.com>, relay=local, delay=0.12, dsn=2.0.0, status=sent
(delivered to maildir)``.

SECURITY. local runs as root and is never chrooted (master.cf ``unpriv`` and
``chroot`` are ``n``): it must become each recipient. The root process only
reads main.cf, the alias tables, root-owned :include: files and the queue
file. Every delivery runs with a user's rights: a forked child switches to the
recipient's uid (mailbox, Maildir) or to the alias/:include:/.forward owner's
uid (/file, |command; default_privs when that owner is root) before it opens
anything. File and command deliveries never run as root; the one delivery made
as root is root's own mailbox (local(8) DELIVERY RIGHTS). Recipient-supplied
text reaches a command only through the environment, filtered by
command_expansion_filter.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

from mta import log, proto
from mta.agent import reply_all
from mta.config import MainConfig
from mta.delivered_hdr import delivered_find
from mta.errors import ConfigError, MapError
from mta.local.alias import alias_tables_open
from mta.local.indirect import forward_flush
from mta.local.recipient import deliver_recipient
from mta.local.state import Delivery, Message, Result, Settings, delivery_summary, user_find
from mta.maps import Map, open_map
from mta.queue import MESSAGE_QUEUES, queue_file, queue_id_valid
from mta.record import RecordError, record_read
from mta.skeleton import DaemonContext

SERVER = "single"
CHROOT_FORBIDDEN = True  # delivers as the recipient into the real file system (master(5))

_STATUS_WORD = {proto.OK: "sent", proto.TEMPFAIL: "deferred", proto.PERMFAIL: "bounced"}


def _unescape(text: str) -> str:
    r"""Expansion filters may spell characters as ``\t`` or octal ``\40`` (Postfix's unescape())."""
    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        if code[0] in "01234567":
            return chr(int(code, 8))
        return {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(code, code)
    return re.sub(r"\\([0-7]{1,3}|.)", one, text)


def _words(cfg: MainConfig, name: str) -> frozenset[str]:
    return frozenset(word.lower() for word in cfg.get_list(name))


def settings_load(cfg: MainConfig, queue_dir: Path) -> Settings:
    """Read every parameter local uses and open alias_maps (raises ConfigError for a bad default_privs)."""
    privs = user_find(cfg.get("default_privs"))
    if privs is None:
        raise ConfigError(f"unknown default_privs user: {cfg.get('default_privs')}", cfg.path)
    if privs.uid == 0:
        raise ConfigError("privileged default user id: default_privs must not be root", cfg.path)
    domains, domain_maps = [], []
    for entry in cfg.get_list("mydestination"):
        if ":" in entry and not entry.startswith("["):
            try:
                domain_maps.append(open_map(entry, cfg))
            except MapError as exc:
                log.msg_error(f"mydestination: {exc}")
        else:
            domains.append(entry.lower().rstrip("."))
    tables, alias_error = alias_tables_open(cfg)
    return Settings(
        queue_dir=queue_dir,
        myorigin=cfg.get("myorigin"),
        mydestination=domains,
        mydestination_maps=domain_maps,
        recipient_delimiter=cfg.get("recipient_delimiter"),
        owner_request_special=cfg.get_bool("owner_request_special"),
        alias_tables=tables,
        alias_error=alias_error,
        forward_path=cfg.get("forward_path"),
        forward_filter=_unescape(cfg.get("forward_expansion_filter")),
        home_mailbox=cfg.get("home_mailbox"),
        mail_spool_directory=cfg.get("mail_spool_directory"),
        mailbox_command=cfg.get("mailbox_command"),
        allow_commands=_words(cfg, "allow_mail_to_commands"),
        allow_files=_words(cfg, "allow_mail_to_files"),
        prepend_delivered=_words(cfg, "prepend_delivered_header"),
        default_privs=privs,
        command_time_limit=cfg.get_time("command_time_limit", minimum=1),
        command_filter=_unescape(cfg.get("command_expansion_filter")),
        exec_directory=cfg.get("command_execution_directory"),
        exec_directory_filter=_unescape(cfg.get("execution_directory_expansion_filter")),
        export_environment=cfg.get_list("export_environment"),
        local_command_shell=cfg.get("local_command_shell"),
        mailbox_lock=_words(cfg, "mailbox_delivery_lock"),
        lock_attempts=cfg.get_int("deliver_lock_attempts", minimum=1),
        lock_delay=float(cfg.get_time("deliver_lock_delay", minimum=1)),
        stale_lock_time=cfg.get_time("stale_lock_time", minimum=1),
        strict_mailbox_ownership=cfg.get_bool("strict_mailbox_ownership"),
        mailbox_size_limit=cfg.get_int("mailbox_size_limit", minimum=0),
        luser_relay=cfg.get("luser_relay"),
    )


def _tables(settings: Settings) -> list[Map]:
    return [table.map for table in settings.alias_tables] + settings.mydestination_maps


def pre_init(ctx: DaemonContext) -> None:
    """Read the configuration and open alias_maps and mydestination tables (as root, before serving)."""
    ctx.state["settings"] = settings_load(ctx.cfg, ctx.queue_dir)


def post_init(ctx: DaemonContext) -> None:
    """Ignore SIGXFSZ (a write past mailbox_size_limit then fails with EFBIG); warn when not root."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if os.geteuid() != 0:
        log.msg_warn("local: not running as root; deliveries as other users will fail")


def _settings(ctx: DaemonContext) -> Settings:
    """The current settings, reloaded when an alias table was rebuilt since it was opened."""
    settings: Settings = ctx.state["settings"]
    changed = [table for table in _tables(settings) if getattr(table, "changed", lambda: False)()]
    if changed:
        log.msg_info(f"table {changed[0].spec} has changed -- reopening tables")
        for table in _tables(settings):
            table.close()
        settings = ctx.state["settings"] = settings_load(ctx.cfg, ctx.queue_dir)
    return settings


def service(conn: socket.socket, ctx: DaemonContext) -> None:
    """Serve one delivery request on conn."""
    channel = proto.Channel(conn, timeout=ctx.cfg.get_time("ipc_timeout"))
    try:
        received = channel.receive()
        if received is None:
            return
        channel.send(local_deliver(_settings(ctx), received[0]))
    except (OSError, proto.ProtocolError) as exc:
        log.msg_warn(f"local: delivery request: {exc}")
    finally:
        channel.close()


def _delay(seconds: float) -> str:
    """A delay the way Postfix logs it: 0.12, 1.5, 31."""
    seconds = max(0.0, seconds)
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.2f}"


def _log_result(message: Message, delivery: Delivery, result: Result) -> None:
    target = result.target or delivery.top
    orig = f"orig_to=<{delivery.top}>, " if target.lower() != delivery.top.lower() else ""
    delay = _delay(time.time() - message.arrival)
    log.msg_info(f"{message.queue_id}: to=<{target}>, {orig}relay=local, delay={delay}, "
                 f"dsn={result.dsn}, status={_STATUS_WORD[result.status]} ({result.reason})")


def local_deliver(settings: Settings, request: dict[str, Any]) -> dict[str, Any]:
    """Handle one delivery request (see the module docstring) and return the reply."""
    if request.get("op") != "deliver":
        return proto.reply(proto.PERMFAIL, f"unknown request: {request.get('op')!r}")
    queue_name, queue_id = str(request.get("queue_name", "")), str(request.get("queue_id", ""))
    recipients = request.get("recipients")
    if queue_name not in MESSAGE_QUEUES or not queue_id_valid(queue_id) or not isinstance(recipients, list):
        return proto.reply(proto.PERMFAIL, "malformed delivery request")
    try:
        envelope, content = record_read(queue_file(settings.queue_dir, queue_name, queue_id))
    except (OSError, RecordError) as exc:
        log.msg_warn(f"{queue_id}: cannot read queue file {queue_name}/{queue_id}: {exc}")
        return reply_all(recipients, proto.TEMPFAIL, "4.3.0", "cannot read queue file", relay=None)
    sender = request.get("sender")
    message = Message(queue_id, envelope.sender if sender is None else str(sender), envelope.arrival,
                      content, envelope.attrs, delivered_find(content))
    done: dict[str, Result | None] = {}
    logged: set[int] = set()
    replies = []
    for rcpt in recipients:
        address = str(rcpt.get("address", ""))
        delivery = Delivery(settings, message, address, str(rcpt.get("original") or address), done)
        try:
            deliver_recipient(delivery, address)
            forward_flush(delivery)
        except Exception as exc:  # noqa: BLE001 - one broken recipient must not lose the others
            log.msg_error(f"{queue_id}: local delivery to {address}: {type(exc).__name__}: {exc}")
            delivery.results.append(Result(proto.TEMPFAIL, "4.3.0", "local delivery agent error", address))
        for result in delivery.results:
            # The queue manager logs each recipient's summary; the expansions are logged here.
            if id(result) not in logged and (result.target or address).lower() != address.lower():
                logged.add(id(result))
                _log_result(message, delivery, result)
        summary = delivery_summary(delivery.results)
        replies.append({"address": address, "offset": rcpt.get("offset"), "status": summary.status,
                        "dsn": summary.dsn, "reason": summary.reason})
    return {"status": proto.OK, "recipients": replies}
