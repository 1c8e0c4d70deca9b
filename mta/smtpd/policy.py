"""Basic relay control and local recipient validation at RCPT time (a subset of Postfix's smtpd_check).

RELAY CONTROL (the fixed policy until the restriction language arrives: it is
Postfix's ``permit_mynetworks, defer_unauth_destination``):

1. A client that matches mynetworks may send to any destination.
2. Otherwise an address with sender-specified routing (``%``, ``!`` or a second
   ``@`` in the local part) is never an authorized destination.
3. A domain that is final for this host (mydestination, or ``[address]`` of one
   of inet_interfaces / proxy_interfaces) or that matches relay_domains is
   authorized; anything else gets ``454 4.7.1 <addr>: Relay access denied``.

An address without a domain is qualified with myorigin first (append_at_myorigin),
as trivial-rewrite does; bare ``postmaster`` is always accepted (RFC 5321
section 4.5.1).

UNKNOWN LOCAL USERS (smtpd_reject_unlisted_recipient = yes). For a final domain
the address must be found in local_recipient_maps, searched in
mail_addr_find's order: ``user+ext@domain``, ``user@domain``, ``user+ext``,
``user``, ``@domain`` (recipient_delimiter stripping by mta.access rules).
postmaster, MAILER-DAEMON and the double-bounce address always exist. A miss
is ``550 5.1.1 <addr>: Recipient address rejected: User unknown in local
recipient table`` (unknown_local_recipient_reject_code, show_user_unknown_table_name);
a table that failed turns a miss into ``451 4.3.0 <addr>: Temporary lookup
failure``, so a missing aliases.db defers mail rather than bouncing it. An
empty local_recipient_maps turns the check off.

QUEUE SPACE. queue_space_ok() is Postfix's check at MAIL time: ``452 4.3.1
Insufficient system storage`` unless the queue file system has queue_minfree
and 1.5 times message_size_limit free.

CHROOT. Everything is opened in pre_init: the system passwd user names
(``unix:passwd.byname``, with or without ``proxy:``) are read with pwd.getpwall()
because the jail has no /etc/passwd, and the alias tables are opened.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from mta import log
from mta.access import localpart_strip
from mta.errors import ConfigError, MapError
from mta.maps import MAP_TYPES, Map, open_map, split_spec
from mta.match_list import DomainList, FailedMap, NetworkList, domain_list, network_list

if TYPE_CHECKING:
    from mta.config import MainConfig

PASSWD_TABLES = ("unix:passwd.byname",)
ALWAYS_LOCAL = ("postmaster", "mailer-daemon")


class PasswdMap(Map):
    """``unix:passwd.byname`` as a set of user names read before chroot."""

    type_name = "unix"
    fixed = True

    def __init__(self, spec: str, names: Iterable[str]) -> None:
        super().__init__(spec)
        self.names = frozenset(names)

    def lookup(self, key: str) -> str | None:
        return "" if key in self.names else None


def system_user_names() -> list[str]:
    """Every user name in the system passwd database (files, NSS)."""
    return [entry.pw_name for entry in pwd.getpwall()]


def recipient_maps_open(specs: Iterable[str], cfg: "MainConfig",
                        user_names: Iterable[str] | None = None) -> list[Map]:
    """Open local_recipient_maps.

    + specs: the parameter's entries (``proxy:unix:passwd.byname``, ``hash:/etc/aliases``...).
    + user_names: the passwd names to use (default: read the system database).
    A table that cannot be opened is logged and kept as a failing table; ``nis:``
    is skipped with a warning (no NIS client here, as Postfix without a NIS
    domain); any other unknown type is a ConfigError.
    """
    maps: list[Map] = []
    for spec in specs:
        target = spec[len("proxy:"):] if spec.startswith("proxy:") else spec
        if target in PASSWD_TABLES:
            maps.append(PasswdMap(target, system_user_names() if user_names is None else user_names))
            continue
        type_name = split_spec(target)[0]
        if type_name == "nis":
            log.msg_warn(f"local_recipient_maps: {target}: NIS is not supported - lookups disabled")
            continue
        if type_name not in MAP_TYPES:
            raise ConfigError(f"local_recipient_maps: unsupported dictionary type: {target}")
        try:
            maps.append(open_map(target, cfg))
        except (MapError, OSError) as exc:
            log.msg_warn(f"local_recipient_maps: {target}: {exc}")
            maps.append(FailedMap(target, str(exc)))
    return maps


def own_address_literals(cfg: "MainConfig") -> frozenset[str]:
    """``[address]`` domain literals that mean this host: inet_interfaces and proxy_interfaces."""
    words = [w.lower() for w in cfg.get_list("inet_interfaces")]
    addresses: list[str] = []
    if "all" in words:
        from mta.derived import interface_addresses
        addresses += [str(iface.ip) for iface in interface_addresses(cfg.get("inet_protocols"))]
    if "loopback-only" in words:
        addresses += ["127.0.0.1", "::1"]
    addresses += [w for w in words if w not in ("all", "loopback-only")]
    addresses += cfg.get_list("proxy_interfaces")
    literals = set()
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text.strip("[]"))
        except ValueError:
            continue  # a host name: Postfix would resolve it; leave it out rather than use DNS
        literals.add(f"[{ip}]" if ip.version == 4 else f"[ipv6:{ip}]")
    return frozenset(literals)


def literal_normalize(domain: str) -> str:
    """``[IPv6:2001:DB8::1]`` -> ``[ipv6:2001:db8::1]``, so literals compare equal."""
    inner = domain[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return f"[ipv6:{ipaddress.IPv6Address(inner[5:])}]"
        return f"[{ipaddress.IPv4Address(inner)}]"
    except ValueError:
        return domain


@dataclass(frozen=True)
class Resolved:
    """Where an envelope recipient goes, as far as relay control cares.

    + local, domain: the local part and the (lowercased, qualified) domain.
    + routed: the address routes through this host to another (see RecipientPolicy.resolve).
    + final: the address is delivered here (local is then the user, domain the final domain).
    """

    local: str
    domain: str
    routed: bool
    final: bool


class RecipientPolicy:
    """The fixed relay and recipient policy of one smtpd process.

    + mynetworks, mydestination, relay_domains: the match lists.
    + local_maps: local_recipient_maps, opened; empty disables the user check.
    + literals: own ``[address]`` literals (own_address_literals()).
    + myorigin, recipient_delimiter, double_bounce_sender: as in main.cf.
    + unknown_code: unknown_local_recipient_reject_code; show_table: show_user_unknown_table_name.
    """

    def __init__(self, *, mynetworks: NetworkList, mydestination: DomainList,
                 relay_domains: DomainList, local_maps: list[Map], literals: frozenset[str],
                 myorigin: str, recipient_delimiter: str = "", double_bounce_sender: str = "double-bounce",
                 unknown_code: int = 550, show_table: bool = True) -> None:
        self.mynetworks = mynetworks
        self.mydestination = mydestination
        self.relay_domains = relay_domains
        self.local_maps = local_maps
        self.literals = literals
        self.myorigin = myorigin.lower()
        self.recipient_delimiter = recipient_delimiter
        self.double_bounce_sender = double_bounce_sender.lower()
        self.unknown_code = unknown_code
        self.show_table = show_table
        self._resolved: dict[str, Resolved] = {}

    @classmethod
    def from_config(cls, cfg: "MainConfig", user_names: Iterable[str] | None = None) -> "RecipientPolicy":
        """Build the policy from main.cf, opening every table (call before chroot)."""
        return cls(
            mynetworks=network_list(cfg, "mynetworks"),
            mydestination=domain_list(cfg, "mydestination"),
            relay_domains=domain_list(cfg, "relay_domains"),
            local_maps=recipient_maps_open(cfg.get_list("local_recipient_maps"), cfg, user_names),
            literals=own_address_literals(cfg),
            myorigin=cfg.get("myorigin"),
            recipient_delimiter=cfg.get("recipient_delimiter"),
            double_bounce_sender=cfg.get("double_bounce_sender"),
            unknown_code=cfg.get_int("unknown_local_recipient_reject_code", 400, 599),
            show_table=cfg.get_bool("show_user_unknown_table_name"),
        )

    def client_trusted(self, address: str, name: str = "") -> bool | None:
        """True when the client matches mynetworks; None when a mynetworks table lookup failed."""
        if self.mynetworks.match(address, name):
            return True
        return None if self.mynetworks.error else False

    def _final(self, domain: str) -> bool | None:
        """True when domain (lowercase, no trailing dot) is delivered here; None when a table failed."""
        if domain.startswith("["):
            return literal_normalize(domain) in self.literals
        found = self.mydestination.match(domain)
        return None if self.mydestination.error else found

    def resolve(self, recipient: str) -> Resolved | None:
        """Resolve a recipient as trivial-rewrite does; None when a domain table lookup failed.

        Results are remembered per process (bounded; lookups that failed are not kept),
        since the relay, recipient and unknown-user checks all resolve the same address.

        ROUTED ADDRESSES (reference §8, Postfix's resolve.c). The address is
        taken apart from the right: an ``@domain`` that is final here is
        stripped and the rest resolved again; without an ``@``, ``site!user``
        becomes ``user@site`` (swap_bangpath) and the last ``%`` becomes ``@``
        (allow_percent_hack). An address left with a remote domain is
        *routed* when its local part still holds ``@``, ``!`` or ``%``:
        ``x%remote@relay.example`` is routed (never an authorized
        destination), while ``x%relay.example@here`` resolves to
        ``x@relay.example`` and ``here!a@here`` to the local user a, as
        Postfix 3.7.11 does (golden/relay_routed*.ref).
        """
        cached = self._resolved.get(recipient)
        if cached is not None:
            return cached
        found = self._resolve(recipient)
        if found is not None:
            if len(self._resolved) >= 1024:
                self._resolved.clear()
            self._resolved[recipient] = found
        return found

    def _resolve(self, recipient: str) -> Resolved | None:
        address = recipient if any(c in recipient for c in "@!%") else f"{recipient}@{self.myorigin}"
        stripped = ""
        for _ in range(64):
            address = address.rstrip(".")
            if "@" in address:
                local, _, domain = address.rpartition("@")
                domain = domain.lower().rstrip(".")
                final = self._final(domain) if domain else True
                if final is None:
                    return None
                if final:
                    stripped, address = domain or stripped, local
                    continue
                break
            if "!" in address:
                site, _, user = address.partition("!")
                address = f"{user}@{site}"
                continue
            if "%" in address:
                cut = address.rfind("%")
                address = f"{address[:cut]}@{address[cut + 1:]}"
                continue
            # A local user: delivered here, in the last final domain stripped (or myorigin's).
            return Resolved(address, stripped or self.myorigin, False, True)
        else:
            return Resolved(recipient, "", True, False)  # too many local domains: treat as routed
        local, _, domain = address.rpartition("@")
        routed = any(c in local for c in "@!%")
        return Resolved(local, domain.lower().rstrip("."), routed, False)

    def auth_destination(self, recipient: str) -> bool | None:
        """permit_auth_destination's question: is recipient a destination this host takes from anyone?

        True for a final domain or one matching relay_domains, when the address
        has no sender-specified routing; None when a table lookup failed.
        """
        if recipient.lower() == "postmaster":
            return True
        resolved = self.resolve(recipient)
        if resolved is None:
            return None
        if resolved.final:
            return True
        if resolved.routed:
            return False
        relayed = self.relay_domains.match(resolved.domain)
        return None if self.relay_domains.error else relayed

    def check_unlisted(self, recipient: str) -> str | None:
        """reject_unlisted_recipient: the reply for an unknown user in a final domain, else None."""
        if recipient.lower() == "postmaster":
            return None
        resolved = self.resolve(recipient)
        if resolved is None:
            return self._retry(recipient)
        if resolved.final and self.local_maps:
            return self._check_local(recipient, resolved)
        return None

    def check_rcpt(self, recipient: str, trusted: bool | None) -> str | None:
        """Postfix's default recipient checks: ``permit_mynetworks, defer_unauth_destination``, then
        reject_unlisted_recipient. The reject reply, or None to accept.

        + recipient: the address from RCPT TO, internal form, without ``<>``.
        + trusted: client_trusted() for this session.
        """
        if recipient.lower() == "postmaster":
            return None
        if trusted is None:
            return self._retry(recipient)
        if not trusted:
            authorized = self.auth_destination(recipient)
            if authorized is None:
                return self._retry(recipient)
            if not authorized:
                return f"454 4.7.1 <{recipient}>: Relay access denied"
        return self.check_unlisted(recipient)

    def _retry(self, recipient: str) -> str:
        return f"451 4.3.0 <{recipient}>: Temporary lookup failure"

    def _check_local(self, recipient: str, resolved: Resolved) -> str | None:
        local = resolved.local.lower()
        if local in ALWAYS_LOCAL or local == self.double_bounce_sender:
            return None
        found = self.local_find(resolved.local, resolved.domain)
        if found:
            return None
        if found is None:
            return self._retry(recipient)
        code = self.unknown_code
        table = " in local recipient table" if self.show_table else ""
        return f"{code} {str(code)[0]}.1.1 <{recipient}>: Recipient address rejected: User unknown{table}"

    def local_find(self, local: str, domain: str) -> bool | None:
        """True when a local_recipient_maps table knows the address; None when a miss is uncertain."""
        bare = localpart_strip(local, self.recipient_delimiter,
                               double_bounce_sender=self.double_bounce_sender)
        keys = [(f"{local}@{domain}", False)]
        if bare is not None:
            keys.append((f"{bare}@{domain}", True))
        keys.append((local, True))
        if bare is not None:
            keys.append((bare, True))
        keys.append((f"@{domain}", True))
        failed = False
        for key, partial in keys:
            for table in self.local_maps:
                if partial and not table.fixed:
                    continue
                try:
                    if table.lookup(key.lower() if table.fold_case else key) is not None:
                        return True
                except (MapError, OSError, sqlite3.Error) as exc:
                    if not isinstance(table, FailedMap):
                        log.msg_warn(f"local_recipient_maps: {table.spec}: table lookup problem: {exc}")
                    failed = True
        return None if failed else False


def queue_space_ok(queue_dir: Path, minfree: int, message_size_limit: int) -> bool:
    """Postfix's smtpd_check_queue: the queue file system has queue_minfree and 1.5 x message_size_limit free.

    A file system that cannot be asked counts as having room.
    """
    try:
        st = os.statvfs(queue_dir)
    except OSError:
        return True
    free = st.f_bavail * st.f_frsize
    if free > max(minfree, int(1.5 * message_size_limit)):
        return True
    log.msg_warn(f"not enough free space in mail queue: {free} bytes < 1.5*message size limit")
    return False
