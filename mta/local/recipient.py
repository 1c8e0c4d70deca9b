"""Recipient expansion: the delivery switch and the dispatch of alias / .forward / :include: destinations.

CASE FOLDING AND EXTENSIONS. Decisions use the address local part folded to
lowercase. With recipient_delimiter set, ``user+ext`` is looked up as the
alias ``user+ext``, then ``user``; its .forward candidates include
``.forward+ext``; its mailbox is ``user``'s. With owner_request_special and
a ``-`` delimiter, ``owner-list`` and ``list-request`` are never split.

SWITCH (local(8) precedence): aliases, ~/.forward, the mailbox, and finally
luser_relay or "unknown user" (5.1.1). Mail for a postmaster or
mailer-daemon without an alias is discarded with a warning, as Postfix does.

DESTINATIONS of an alias, :include: or .forward: ``/file`` and ``~/file``
(allow_mail_to_files), ``|command`` (allow_mail_to_commands), ``:include:``,
and addresses. An address in mydestination (a bare name gets @$myorigin) is
delivered here, recursively; any other address is forwarded through cleanup.

DUPLICATE ELIMINATION. A recipient is expanded once per level, each
:include: and .forward file once, and each mailbox, file, command or
forwarded address gets one copy per request. Delivered-To: loops bounce.
"""

from __future__ import annotations

from dataclasses import replace

from mta import log
from mta.aliases import AliasItem, AliasKind
from mta.local.alias import deliver_alias, deliver_include
from mta.local.command import deliver_command
from mta.local.delivered import delivered_loop
from mta.local.expand import local_expand, local_macros
from mta.local.file import deliver_file
from mta.local.forward import deliver_dotforward
from mta.local.indirect import forward_append
from mta.local.mailbox import deliver_mailbox
from mta.local.state import NESTING_LIMIT, Delivery, RcptState, Settings
from mta.tok822 import fold_ascii

RESERVED = ("mailer-daemon", "postmaster")


def rcpt_parse(settings: Settings, address: str, original: str) -> RcptState:
    """Split address into folded local part, user, extension and domain."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    local = fold_ascii(local)
    user, extension = local, None
    delims = settings.recipient_delimiter
    special = settings.owner_request_special and "-" in delims and (
        local.startswith("owner-") or local.endswith("-request"))
    if delims and not special:
        cut = next((i for i, ch in enumerate(local) if ch in delims), -1)
        if cut >= 0:
            user, extension = local[:cut], local[cut + 1:]
            if "/" in extension:
                log.msg_warn(f"address with illegal extension: {local}")
                user, extension, local = user, None, user
    return RcptState(address, original, local, user, extension, domain or None)


def address_qualify(settings: Settings, address: str) -> str:
    """Append @$myorigin to a bare name, as cleanup's canonicalisation does."""
    return address if "@" in address else f"{address}@{settings.myorigin}"


def address_is_local(settings: Settings, address: str) -> bool:
    """True when the address's domain is in mydestination."""
    domain = address.rpartition("@")[2].lower().rstrip(".")
    if domain in settings.mydestination:
        return True
    return any(table.lookup(domain) is not None for table in settings.mydestination_maps)


def deliver_recipient(delivery: Delivery, address: str, parent: RcptState | None = None) -> None:
    """Deliver to address: the top-level recipient (parent None) or one reached by expansion."""
    settings = delivery.settings
    if parent is None:
        rcpt = rcpt_parse(settings, address, delivery.original)
    else:
        parsed = rcpt_parse(settings, address, parent.original)
        rcpt = replace(parent, address=parsed.address, local=parsed.local, user=parsed.user,
                       extension=parsed.extension, domain=parsed.domain, level=parent.level + 1)
    if rcpt.level >= NESTING_LIMIT:
        log.msg_warn(f"recipient nesting limit exceeded for {address}")
        delivery.fail(rcpt, "5.4.6", "recipient nesting limit exceeded")
        return
    key = f"recipient {rcpt.level} {address.lower()}"
    if key in delivery.seen:
        return
    delivery.seen.add(key)
    if delivered_loop(delivery, rcpt):
        return
    if not rcpt.user:
        delivery.fail(rcpt, "5.1.3", f'null username in "{address}"')
        return
    if deliver_alias(delivery, rcpt, rcpt.local, deliver_token):
        return
    if rcpt.extension is not None and deliver_alias(delivery, rcpt, rcpt.user, deliver_token):
        return
    if deliver_dotforward(delivery, rcpt, deliver_token):
        return
    if deliver_mailbox(delivery, rcpt):
        return
    deliver_unknown(delivery, rcpt)


def deliver_unknown(delivery: Delivery, rcpt: RcptState) -> None:
    """No alias and no account: luser_relay, discard for reserved names, else 5.1.1."""
    settings = delivery.settings
    key = f"deliver_unknown {rcpt.local}"
    if key in delivery.seen:
        return
    delivery.seen.add(key)
    if settings.luser_relay:
        try:
            relay = local_expand(settings.luser_relay, local_macros(rcpt, None, settings.recipient_delimiter),
                                 None).text
        except ValueError as exc:
            log.msg_warn(f"luser_relay: {exc}")
            delivery.fail(rcpt, "4.3.5", "mail system configuration error")
            return
        relay = address_qualify(settings, relay.strip())
        if relay.lower() != rcpt.address.lower():
            deliver_address(delivery, rcpt, relay)
            return
    if rcpt.user in RESERVED:
        log.msg_warn(f"required alias not found: {rcpt.user}")
        delivery.sent(rcpt, "discarded")
        return
    delivery.fail(rcpt, "5.1.1", f'unknown user: "{rcpt.user}"')


def deliver_address(delivery: Delivery, rcpt: RcptState, address: str) -> None:
    """Deliver to an address found in an expansion: here when local, else through cleanup."""
    address = address_qualify(delivery.settings, address)
    if address_is_local(delivery.settings, address):
        deliver_recipient(delivery, address, rcpt)
    else:
        forward_append(delivery, rcpt, address)


def deliver_token(delivery: Delivery, rcpt: RcptState, item: AliasItem) -> None:
    """Deliver to one destination of an alias, :include: or .forward expansion."""
    settings = delivery.settings
    if item.kind is AliasKind.FILE:
        deliver_file(delivery, rcpt, item.target)
    elif item.kind is AliasKind.COMMAND:
        if rcpt.exp_type not in settings.allow_commands:
            delivery.fail(rcpt, "5.7.1", "mail to command is restricted")
        else:
            deliver_command(delivery, rcpt, item.target, rcpt.usr)
    elif item.kind is AliasKind.INCLUDE:
        deliver_include(delivery, rcpt, item.target, deliver_token)
    elif item.target.startswith("~"):
        if not item.target.startswith("~/"):
            log.msg_warn(f"bad home directory syntax for: {item.target}")
            delivery.fail(rcpt, "5.3.5", "mail system configuration error")
        elif rcpt.usr is None:
            log.msg_warn(f"unknown home directory for: {item.target}")
            delivery.fail(rcpt, "5.3.5", "mail system configuration error")
        else:
            deliver_file(delivery, rcpt, rcpt.usr.home.rstrip("/") + item.target[1:])
    else:
        deliver_address(delivery, rcpt, item.target)
