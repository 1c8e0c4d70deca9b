"""Postfix defaults computed from the machine, never from DNS: myhostname, mydomain, mynetworks."""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, Union

from mta.errors import ConfigError

Interface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]


def system_hostname() -> str:
    """The name from gethostname(2), as Postfix uses it for myhostname."""
    return socket.gethostname()


def default_myhostname(hostname: str, mydomain_setting: str | None) -> str:
    """myhostname's default: the FQDN from gethostname(), else name + '.' + $mydomain or .localdomain."""
    if "." in hostname:
        return hostname
    return f"{hostname}.{mydomain_setting or 'localdomain'}"


def default_mydomain(myhostname: str) -> str:
    """mydomain's default: myhostname minus its first label; ``localdomain`` when there is no dot.

    >>> default_mydomain("gw.example.com")
    'example.com'
    >>> default_mydomain("com")
    'localdomain'
    """
    _, dot, rest = myhostname.partition(".")
    return rest if dot and rest else "localdomain"


def interface_addresses(protocols: str = "all") -> list[Interface]:
    """Addresses of the machine's interfaces with their netmasks, IPv4 first, in interface order."""
    import psutil  # imported here: only mynetworks' default needs it

    v4: list[ipaddress.IPv4Interface] = []
    v6: list[ipaddress.IPv6Interface] = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and addr.netmask:
                v4.append(ipaddress.IPv4Interface(f"{addr.address}/{addr.netmask}"))
            elif addr.family == socket.AF_INET6 and addr.netmask:
                host = addr.address.split("%", 1)[0]
                prefix = bin(int(ipaddress.IPv6Address(addr.netmask))).count("1")
                v6.append(ipaddress.IPv6Interface(f"{host}/{prefix}"))
    wanted: list[Interface] = []
    protos = set(protocols.lower().replace(",", " ").split()) or {"all"}
    if protos & {"all", "ipv4"}:
        wanted.extend(v4)
    if protos & {"all", "ipv6"}:
        wanted.extend(v6)
    return wanted


def format_network(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """A network as Postfix writes it in mynetworks: IPv6 in brackets."""
    if net.version == 6:
        return f"[{net.network_address}]/{net.prefixlen}"
    return str(net)


def default_mynetworks(style: str, interfaces: Iterable[Interface]) -> str:
    """mynetworks from mynetworks_style: host (own addresses), subnet (own subnets) or class.

    + style: host, subnet or class (class is the IPv4 class A/B/C network; IPv6 uses subnet).
    """
    style = style.strip().lower()
    if style not in ("host", "subnet", "class"):
        raise ConfigError(f"unknown mynetworks_style value: {style}")
    out: list[str] = []
    for iface in interfaces:
        if style == "host":
            net = ipaddress.ip_network(f"{iface.ip}/{iface.max_prefixlen}")
        elif style == "class" and iface.version == 4:
            first = int(str(iface.ip).split(".")[0])
            prefix = 8 if first < 128 else 16 if first < 192 else 24 if first < 224 else 32
            net = ipaddress.ip_network(f"{iface.ip}/{prefix}", strict=False)
        else:
            net = iface.network
        text = format_network(net)
        if text not in out:
            out.append(text)
    return " ".join(out)
