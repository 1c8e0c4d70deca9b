"""A host's mail settings: the inventory variables checked against a schema and turned into GatewaySettings.

SCHEMA. Each mail variable has a type and a rule (SCHEMA below); a value that
breaks one, an unknown variable (most often a typo: the message suggests the
closest known name), or a service chrooted that must never be is an error
naming the file and line the value came from, the host and the key. Variables
starting with ``ansible_`` are Ansible's; those used here are ansible_host,
ansible_port, ansible_user, ansible_ssh_private_key_file and ansible_become,
the rest are left alone. ``harden_*`` variables configure the automation itself.

ROLES. A host in group ``dmz`` is a DMZ relay, any other host a gateway. Both
run smtpd and the internal services chrooted unless ``chroot: false``; local,
virtual and pipe are never chrooted (seed 7.5.6), and asking for it is an error.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from harden.errors import InventoryError
from harden.inventory import Host

NEVER_CHROOTED = frozenset({"local", "virtual", "pipe"})
CHROOTABLE = frozenset({"smtp", "smtpd", "cleanup", "pickup", "qmgr", "bounce", "defer", "trace", "verify",
                        "flush", "showq", "error", "retry", "discard", "tlsmgr", "anvil", "scache", "rewrite",
                        "relay", "lmtp", "proxymap", "proxywrite", "postlog", "submission", "smtps"})
_HOSTNAME = re.compile(r"(?=.{1,253}$)(?:(?!-)[A-Za-z0-9-]{1,63}(?<!-)\.)*(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_LOCALPART = re.compile(r"[A-Za-z0-9._+-]+")
# relayhost: [name or address] or a name, each with an optional :port
_RELAYHOST = re.compile(r"(?:\[[A-Za-z0-9.:-]{1,253}\]|[A-Za-z0-9.-]{1,253})(?::\d{1,5})?")
_ANSIBLE_USED = {"ansible_host": str, "ansible_port": int, "ansible_user": str,
                 "ansible_ssh_private_key_file": str, "ansible_become": bool}
_HARDEN_VARS = {"harden_known_hosts", "harden_ssh_config", "harden_jump", "harden_prefix"}


def _hostname(value: Any) -> str | None:
    if isinstance(value, str) and (_HOSTNAME.fullmatch(value) or value.startswith("$")):
        return None
    return "expected a host name"


def _str_list(check: Callable[[str], bool], what: str) -> Callable[[Any], str | None]:
    def rule(value: Any) -> str | None:
        if not isinstance(value, list) or not all(isinstance(v, str) and check(v) for v in value):
            return f"expected a list of {what}"
        return None
    return rule


def _network(text: str) -> bool:
    try:
        ipaddress.ip_network(text.strip("[]").replace("]/", "/"), strict=False)
        return True
    except ValueError:
        return False


def _interface(text: str) -> bool:
    if text in ("all", "loopback-only"):
        return True
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return bool(_HOSTNAME.fullmatch(text))


def _int_at_least(low: int) -> Callable[[Any], str | None]:
    def rule(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"expected an integer >= {low}"
        return None
    return rule


def _localpart(value: Any) -> str | None:
    if isinstance(value, str) and _LOCALPART.fullmatch(value):
        return None
    return "expected a local account name"


def _str_map(value_rule: Callable[[Any], bool], what: str) -> Callable[[Any], str | None]:
    def rule(value: Any) -> str | None:
        if not isinstance(value, dict) or not all(isinstance(k, str) and value_rule(v) for k, v in value.items()):
            return f"expected a mapping of {what}"
        return None
    return rule


def _alias_value(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and bool(value)
                                      and all(isinstance(v, str) for v in value))


def _access_action(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip() != ""


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def _path(value: Any) -> str | None:
    return None if isinstance(value, str) and value.startswith("/") else "expected an absolute path"


def _relayhost(value: Any) -> str | None:
    if isinstance(value, str) and _RELAYHOST.fullmatch(value.strip()):
        return None
    return "expected a next hop: [host]:port, [address], host or host:port"


def _chroot_map(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, bool) for k, v in value.items()):
        return "expected a mapping of service name to true or false"
    return None


SCHEMA: dict[str, Callable[[Any], str | None]] = {
    "myhostname": _hostname,
    "mydomain": _hostname,
    "myorigin": _hostname,
    "mydestination": _str_list(lambda v: bool(v.strip()), "domains"),
    "relay_domains": _str_list(lambda v: bool(v.strip()), "domains"),
    "mynetworks": _str_list(_network, "networks (CIDR)"),
    "inet_interfaces": _str_list(_interface, "addresses, 'all' or 'loopback-only'"),
    "transport": _str_map(lambda v: isinstance(v, str) and ":" in v, "domain to 'transport:nexthop'"),
    "relayhost": _relayhost,
    "root_alias": _localpart,
    "aliases": _str_map(_alias_value, "alias name to an address or a list of addresses"),
    "access": _str_map(_access_action, "address, domain or network to an access action"),
    "masquerade_domains": _str_list(lambda v: bool(v.strip()), "domains"),
    "masquerade_exceptions": _str_list(lambda v: bool(_LOCALPART.fullmatch(v)), "account names"),
    "smtpd_recipient_limit": _int_at_least(1),
    "message_size_limit": _int_at_least(0),
    "rbl_domains": _str_list(lambda v: bool(_HOSTNAME.fullmatch(v)), "DNS zones"),
    "tls_cert_file": _path,
    "tls_key_file": _path,
    "chroot": _bool,
    "chroot_services": _chroot_map,
    "mail_owner": _localpart,
    "maillog_file": _path,
    "mydestination_file": _bool,
}


@dataclass
class GatewaySettings:
    """Everything the templates need for one host, checked.

    Defaults follow the seed's gateway (section 7.5): myorigin is $mydomain,
    mydestination covers the host, localhost and $mydomain (unless $mydomain
    is relayed inside), mynetworks is loopback only, root's mail goes to
    root_alias (required).
    """

    name: str
    role: str
    myhostname: str
    mydomain: str
    root_alias: str
    myorigin: str = "$mydomain"
    mydestination: list[str] = field(default_factory=lambda: ["$myhostname", "localhost.$mydomain", "localhost"])
    relay_domains: list[str] = field(default_factory=list)
    mynetworks: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "[::1]/128"])
    inet_interfaces: list[str] = field(default_factory=lambda: ["all"])
    transport: dict[str, str] = field(default_factory=dict)
    relayhost: str = ""
    aliases: dict[str, str | list[str]] = field(default_factory=dict)
    access: dict[str, str] = field(default_factory=dict)
    masquerade_domains: list[str] = field(default_factory=lambda: ["$mydomain"])  # seed 7.5.5
    masquerade_exceptions: list[str] = field(default_factory=lambda: ["root"])
    smtpd_recipient_limit: int = 250  # seed 7.5.8: "should not exceed 250 or so"
    message_size_limit: int = 10240000
    rbl_domains: list[str] = field(default_factory=list)
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    chroot: bool = True
    chroot_services: dict[str, bool] = field(default_factory=dict)
    mail_owner: str = "postfix"
    maillog_file: str = "/var/log/mail.log"
    mydestination_file: bool = False  # list mydestination in config_directory/mydests (seed 7.5.4)

    def expanded(self, value: str) -> str:
        """value with $myhostname and $mydomain (also ${...}) replaced: for files, where Postfix expands nothing."""
        for name in ("myhostname", "mydomain"):
            value = value.replace(f"${{{name}}}", getattr(self, name)).replace(f"${name}", getattr(self, name))
        return value

    def service_chrooted(self, service: str) -> bool:
        """Whether master.cf runs service chrooted on this host."""
        if service in NEVER_CHROOTED:
            return False
        if service in self.chroot_services:
            return self.chroot_services[service]
        return self.chroot and service in CHROOTABLE


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, [*SCHEMA, *_ANSIBLE_USED], n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def settings_from_host(host: Host) -> GatewaySettings:
    """Check host's variables against SCHEMA and build its settings.

    Raises InventoryError listing every problem, one per line:
    ``FILE:LINE: host gw1.example.com: key 'mydomian': unknown variable (did you mean 'mydomain'?)``.
    """
    problems: list[str] = []

    def problem(key: str, text: str) -> None:
        problems.append(f"{host.origin(key)}: host {host.name}: key {key!r}: {text}")

    for key, value in host.vars.items():
        if key.startswith("ansible_"):
            wanted = _ANSIBLE_USED.get(key)
            if wanted is not None and (not isinstance(value, wanted) or (wanted is int and isinstance(value, bool))):
                problem(key, f"expected {wanted.__name__}, got {value!r}")
            elif key == "ansible_port" and isinstance(value, int) and not 1 <= value <= 65535:
                problem(key, f"expected a port number, got {value}")
            continue
        if key in _HARDEN_VARS or key.startswith("harden_"):
            continue
        rule = SCHEMA.get(key)
        if rule is None:
            problem(key, f"unknown variable{_suggest(key)}")
            continue
        error = rule(value)
        if error:
            problem(key, f"{error}, got {value!r}")
    chroot_services = host.vars.get("chroot_services")
    if isinstance(chroot_services, dict):
        for service, wanted in chroot_services.items():
            if wanted is True and service in NEVER_CHROOTED:
                problem("chroot_services", f"{service} must never be chrooted (it delivers as the recipient "
                                           "and needs the real file system)")
    if ("tls_cert_file" in host.vars) != ("tls_key_file" in host.vars):
        missing = "tls_key_file" if "tls_cert_file" in host.vars else "tls_cert_file"
        problem("tls_cert_file" if missing == "tls_key_file" else "tls_key_file",
                f"needs {missing} as well (a certificate and its key go together)")
    root_alias = host.vars.get("root_alias")
    mail_owner = host.vars.get("mail_owner", "postfix")
    if root_alias is None:
        problems.append(f"{host.origin('root_alias')}: host {host.name}: key 'root_alias' is missing: root's mail "
                        "must go to an unprivileged account (seed 7.5.3)")
    elif root_alias in ("root", mail_owner):
        problem("root_alias", f"must name an unprivileged account, not {root_alias!r}")
    if problems:
        raise InventoryError("\n".join(problems))
    myhostname = str(host.vars.get("myhostname") or host.name)
    mydomain = str(host.vars.get("mydomain") or (myhostname.split(".", 1)[1] if "." in myhostname else myhostname))
    known = {k: v for k, v in host.vars.items() if k in SCHEMA and k not in ("myhostname", "mydomain")}
    if "mydestination" not in known:
        # Aliases without a domain (root: mick) are qualified with myorigin ($mydomain):
        # deliver $mydomain here too, unless it is relayed to an inside server.
        relayed = {d.lower() for d in known.get("relay_domains", [])}
        known["mydestination"] = ["$myhostname", "localhost.$mydomain", "localhost"] + (
            [] if mydomain.lower() in relayed or "$mydomain" in relayed else ["$mydomain"])
    return GatewaySettings(name=host.name, role="dmz" if "dmz" in host.groups else "gateway",
                           myhostname=myhostname, mydomain=mydomain, **known)
