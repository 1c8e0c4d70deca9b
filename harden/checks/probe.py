"""Live SMTP probes from the auditing machine: banner, VRFY, relay attempts, STARTTLS; once per host.

WHERE FROM. The target is the address the audit runner set on the Host
(``harden audit``: the inventory's), else the first address in the host's
inet_interfaces. Relay must be probed from outside mynetworks: for a
loopback target (the lab) the probe binds a loopback source outside it;
otherwise it connects from this machine's own address and, when that is
inside mynetworks, says so (the relay check is then skipped, unless
mynetworks trusts everyone, which is itself an open relay).

WHAT. One session: greeting, EHLO, ``VRFY root``, then MAIL FROM and a RCPT
for each relay form (a plain remote address and every routed form Postfix's
trivial-rewrite knows: percent hack, bang path, source route, quoted local
part, trailing dot, double @), then RSET and QUIT: no message is ever sent.
A second session tries STARTTLS when the host offers it, once with TLS 1.2
or newer and once limited to TLS 1.1. Every socket has a timeout.
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
import warnings
from dataclasses import dataclass, field
from typing import Any

from harden.checks.facts import Facts, host_facts

ADDRESS_ATTRIBUTE = "_harden_address"
CACHE_ATTRIBUTE = "_harden_probe"
TIMEOUT = 10.0
REMOTE = "relay-test@audit-probe.example"
SOURCE_CANDIDATES = ("127.0.0.250", "127.0.0.251", "127.1.0.250", "127.255.0.250")


@dataclass
class Probe:
    """What the SMTP server answered (error: why there was no answer)."""

    address: str
    source: str | None = None
    source_trusted: bool = False  # our source address is inside the host's mynetworks
    bind: bool = False  # the probes bind source (a loopback target: the lab)
    error: str = ""
    banner: str = ""
    ehlo: list[str] = field(default_factory=list)
    vrfy: tuple[int, str] = (0, "")
    relayed: list[tuple[str, int, str]] = field(default_factory=list)  # (recipient, code, text) accepted
    refused: list[tuple[str, int, str]] = field(default_factory=list)
    tls_version: str = ""  # negotiated with TLS 1.2+ allowed
    tls_error: str = ""
    tls_old_accepted: str = ""  # a TLS 1.1 or older handshake that succeeded


def _networks(facts: Facts) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for word in facts.param_list("mynetworks"):
        word = word.strip("[]").replace("]/", "/")
        try:
            out.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    return out


def _inside(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in networks)


def probe_address(host: Any, facts: Facts) -> str:
    """The address the probes connect to."""
    given = getattr(host, ADDRESS_ATTRIBUTE, None)
    if given:
        return str(given)
    for word in facts.param_list("inet_interfaces"):
        try:
            ipaddress.ip_address(word)
            return word
        except ValueError:
            continue
    return str(getattr(getattr(host, "backend", None), "hostname", "127.0.0.1"))


def relay_forms(myhostname: str) -> list[str]:
    """The recipients a relay attempt uses: plain remote, and every routed form through this host."""
    user, domain = REMOTE.split("@")
    return [REMOTE, f"{user}%{domain}@{myhostname}", f"{domain}!{user}@{myhostname}",
            f"@{myhostname}:{REMOTE}", f'"{REMOTE}"@{myhostname}', f"{REMOTE}.", f"{REMOTE}@{myhostname}"]


def _session(p: Probe, facts: Facts) -> None:
    source = (p.source, 0) if p.bind and p.source else None
    with smtplib.SMTP(timeout=TIMEOUT) as smtp:
        code, text = smtp.connect(p.address, 25, source_address=source)
        p.banner = text.decode("utf-8", "replace")
        if p.source is None:
            p.source = smtp.sock.getsockname()[0] if smtp.sock else None
            p.source_trusted = bool(p.source and _inside(p.source, _networks(facts)))
        code, text = smtp.ehlo("audit-probe.example")
        p.ehlo = text.decode("utf-8", "replace").splitlines()
        p.vrfy = (lambda r: (r[0], r[1].decode("utf-8", "replace")))(smtp.docmd("VRFY", "root"))
        code, text = smtp.docmd("MAIL", "FROM:<audit@audit-probe.example>")
        if code != 250:
            p.error = f"MAIL FROM refused: {code} {text.decode('utf-8', 'replace')}"
            return
        for rcpt in relay_forms(facts.params.get("myhostname", p.address)):
            code, text = smtp.docmd("RCPT", f"TO:<{rcpt}>")
            entry = (rcpt, code, text.decode("utf-8", "replace"))
            (p.relayed if code in (250, 251) else p.refused).append(entry)
        smtp.docmd("RSET")


def _tls(p: Probe, newest: bool) -> str:
    """Negotiate STARTTLS; the TLS version, or raise."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the audit checks the protocol version, not the certificate
    if newest:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    else:
        with warnings.catch_warnings():  # asking for a deprecated version is the point of this probe
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("ALL:@SECLEVEL=0")
    source = (p.source, 0) if p.bind and p.source else None
    with smtplib.SMTP(p.address, 25, timeout=TIMEOUT, source_address=source) as smtp:
        smtp.ehlo("audit-probe.example")
        smtp.starttls(context=context)
        sock = smtp.sock
        return sock.version() or "" if isinstance(sock, ssl.SSLSocket) else ""


def host_probe(host: Any) -> Probe:
    """The probe results for a host: run on first use, then kept on the Host object."""
    cached = getattr(host, CACHE_ATTRIBUTE, None)
    if isinstance(cached, Probe):
        return cached
    facts = host_facts(host)
    p = Probe(probe_address(host, facts))
    networks = _networks(facts)
    if _is_ip(p.address) and ipaddress.ip_address(p.address).is_loopback:
        p.bind = True
        p.source = next((a for a in SOURCE_CANDIDATES if not _inside(a, networks)), SOURCE_CANDIDATES[0])
        p.source_trusted = _inside(p.source, networks)
    try:
        _session(p, facts)
    except (OSError, smtplib.SMTPException) as exc:
        p.error = p.error or f"{type(exc).__name__}: {exc}"
    if not p.error and any("STARTTLS" in line.upper() for line in p.ehlo):
        try:
            p.tls_version = _tls(p, newest=True)
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            p.tls_error = f"{type(exc).__name__}: {exc}"
        try:
            p.tls_old_accepted = _tls(p, newest=False)
        except (OSError, smtplib.SMTPException, ssl.SSLError, ValueError):
            p.tls_old_accepted = ""
    setattr(host, CACHE_ATTRIBUTE, p)
    return p


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def networks_too_wide(facts: Facts) -> list[str]:
    """mynetworks entries that trust the public Internet at large (0/0, or a public /8 or wider)."""
    wide = []
    for net in _networks(facts):
        if net.prefixlen <= (8 if net.version == 4 else 16) and not (net.is_private or net.is_loopback):
            wide.append(str(net))
    return wide

