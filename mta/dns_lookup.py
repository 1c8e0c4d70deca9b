"""DNS lookups for smtpd's restrictions (RBL, RHSBL, domain existence), with dnspython.

The resolver is configured before chroot from /etc/resolv.conf, or from the
file MTA_RESOLV_CONF names (when import_environment lets it through), which is how the
tests point the MTA at their own DNS server on 127.0.0.x. Answers are
``found`` (records), ``none`` (the name or type does not exist) or
``tempfail`` (no answer could be had); restrictions treat tempfail as
Postfix does: a 4xx, never an accept that should have been a reject.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

import dns.exception
import dns.rdata
import dns.resolver

ENV = "MTA_RESOLV_CONF"

# Every record type's parser now, before chroot: dnspython otherwise imports one
# on first use, which a jailed smtpd cannot do (the sources are outside the jail).
dns.rdata.load_all_types()


@dataclass(frozen=True)
class Answer:
    """A lookup result: status is found, none or tempfail; values are the records as text."""

    status: str
    values: tuple[str, ...] = ()


class DnsClient:
    """A stub resolver (one per process, made before chroot).

    + resolv_conf: the configuration file (default: $MTA_RESOLV_CONF or /etc/resolv.conf).
    + timeout: seconds for one whole lookup.
    """

    def __init__(self, resolv_conf: str | None = None, timeout: float = 5.0) -> None:
        path = resolv_conf or os.environ.get(ENV) or "/etc/resolv.conf"
        try:
            self.resolver = dns.resolver.Resolver(filename=path)
        except (dns.resolver.NoResolverConfiguration, OSError):
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = ["127.0.0.1"]
        self.resolver.lifetime = timeout
        self.resolver.cache = dns.resolver.LRUCache(1000)

    def lookup(self, name: str, rdtype: str) -> Answer:
        """Records of rdtype at name."""
        try:
            answer = self.resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return Answer("none")
        except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.LifetimeTimeout):
            return Answer("tempfail")
        except dns.exception.DNSException:
            return Answer("tempfail")
        if rdtype == "TXT":
            return Answer("found", tuple(b"".join(r.strings).decode("utf-8", "replace") for r in answer))
        return Answer("found", tuple(r.to_text() for r in answer))

    def domain_exists(self, domain: str) -> str:
        """found when the domain has an MX, A or AAAA record; none when it has none; tempfail."""
        statuses = []
        for rdtype in ("MX", "A", "AAAA"):
            answer = self.lookup(domain, rdtype)
            if answer.status == "found":
                return "found"
            statuses.append(answer.status)
        return "tempfail" if "tempfail" in statuses else "none"


def reverse_name(address: str, zone: str) -> str | None:
    """The DNSBL query name for an address under zone: 4.3.2.1.zone, nibbles for IPv6; None when invalid."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 4:
        return ".".join(reversed(str(ip).split("."))) + "." + zone
    return ".".join(reversed(ip.exploded.replace(":", ""))) + "." + zone
