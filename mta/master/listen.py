"""Listening sockets the master opens for its services: TCP for inet rows, unix sockets in the queue.

ENDPOINTS. An inet row ``[host:]port`` binds host, or, with no host, every address
of inet_interfaces (``all``: the wildcard of each protocol in inet_protocols;
``loopback-only``: 127.0.0.1 and ::1; otherwise the listed addresses or names).
A unix row listens at queue_directory/private/NAME (private = y) or public/NAME,
mode 0666 and owned by mail_owner, as Postfix does: the directories carry the
access control (private/ 0700, public/ 0710 group setgid_group). The one exception
is a postdrop service, which listens at submit/NAME in a root-owned 0755 directory
so that every local user can submit mail (docs/mail-path.md, "Local submission").

A listener's key is what it is bound to. On reload a service whose key is
unchanged keeps its sockets, so no connection in the backlog is lost.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from mta.config import MainConfig
from mta.errors import MtaError
from mta.service_address import inet_service_split
from mta.service_table import ServiceRow

BACKLOG = socket.SOMAXCONN
SUBMIT_DIR = "submit"

Address = tuple[int, str, int]  # (family, address, port)


class ListenError(MtaError):
    """A listener cannot be set up; the message names the endpoint and the cause."""


@dataclass
class Listener:
    """One service's listening sockets.

    + key: ("inet", addresses) or ("unix", path): what the sockets are bound to.
    + label: the endpoint for messages, e.g. ``127.0.0.1:2525`` or ``public/qmgr``.
    + socks: the bound, listening, non-blocking sockets.
    + path: the socket file of a unix listener.
    + addresses: the (family, address, port) triples of an inet listener.
    """

    key: tuple[object, ...]
    label: str
    socks: list[socket.socket]
    path: Path | None = None
    addresses: tuple[Address, ...] = ()

    def fds(self) -> list[int]:
        """The sockets' descriptors, handed to each child."""
        return [sock.fileno() for sock in self.socks]

    def close(self) -> None:
        """Stop listening, close the sockets and remove a unix socket file.

        Children hold copies of the sockets, so closing ours alone would keep the
        port open until the last of them exits. shutdown() acts on the socket
        itself: new clients are refused at once, and idle children see their
        accept() fail and exit.
        """
        for sock in self.socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.socks = []
        if self.path is not None:
            try:
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    self.path.unlink()
            except FileNotFoundError:
                pass

    def wakeup(self, data: bytes = b"W") -> bool:
        """Connect as a client and send trigger bytes (the master's wakeup timer); False on failure."""
        address: str | tuple[str, int]
        if self.path is not None:
            family: int = socket.AF_UNIX
            address = str(self.path)
        else:
            family, host, port = self.addresses[0]
            address = ({"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host), port)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Never let the master hang: a unix connect either succeeds or fails at once.
            if family == socket.AF_UNIX:
                sock.setblocking(False)
            else:
                sock.settimeout(1.0)
            sock.connect(address)
            sock.send(data)
            return True
        except OSError:
            return False
        finally:
            sock.close()


def _families(cfg: MainConfig) -> list[int]:
    """Address families from inet_protocols, without IPv6 when the kernel lacks it."""
    wanted = [item.lower() for item in cfg.get_list("inet_protocols")]
    families: list[int] = []
    for item in wanted:
        if item == "all":
            families += [socket.AF_INET, socket.AF_INET6]
        elif item == "ipv4":
            families.append(socket.AF_INET)
        elif item == "ipv6":
            families.append(socket.AF_INET6)
        else:
            raise ListenError(f"bad inet_protocols value: {item}")
    if socket.AF_INET6 in families:
        try:
            socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
        except OSError:
            families = [f for f in families if f != socket.AF_INET6]
    return list(dict.fromkeys(families))


def _resolve(name: str, families: list[int]) -> list[tuple[int, str]]:
    """An address literal, or the addresses of a host name, in the allowed families."""
    name = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        ip = ipaddress.ip_address(name)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return [(family, ip.compressed)] if family in families else []
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ListenError(f"host {name}: {exc.strerror}") from None
    return [(info[0], str(info[4][0])) for info in infos if info[0] in families]


def inet_addresses(row: ServiceRow, cfg: MainConfig) -> list[Address]:
    """The (family, address, port) triples an inet row binds, per inet_interfaces and inet_protocols."""
    host, port_name = inet_service_split(row.service)
    if port_name.isdigit():
        port = int(port_name)
    else:
        try:
            port = socket.getservbyname(port_name, "tcp")
        except OSError:
            raise ListenError(f"service {row.name_type}: unknown service: {port_name}/tcp") from None
    families = _families(cfg)
    pairs: list[tuple[int, str]] = []
    if host is not None:
        pairs = _resolve(host, families)
    else:
        interfaces = [item.lower() for item in cfg.get_list("inet_interfaces")]
        if interfaces == ["all"]:
            pairs = [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]
        elif interfaces == ["loopback-only"]:
            pairs = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
        else:
            for name in interfaces:
                pairs += _resolve(name, families)
    addresses = list(dict.fromkeys((f, a, port) for f, a in pairs if f in families))
    if not addresses:
        raise ListenError(f"service {row.name_type}: no address to listen on "
                          "(see inet_interfaces and inet_protocols)")
    return addresses


def unix_path(row: ServiceRow, queue_dir: Path) -> Path:
    """Where a unix row's socket lives: private/NAME, public/NAME, or submit/NAME for postdrop."""
    name = row.service
    if "/" in name or name in (".", ".."):
        raise ListenError(f"service {row.name_type}: a unix service name must not contain '/'")
    if posixpath.basename(row.command) == "postdrop":
        return queue_dir / SUBMIT_DIR / name
    return queue_dir / ("private" if row.private else "public") / name


def listener_key(row: ServiceRow, cfg: MainConfig, queue_dir: Path) -> tuple[object, ...]:
    """What a row's listener is bound to; equal keys mean the sockets can be kept on reload."""
    if row.type == "inet":
        return ("inet", tuple(inet_addresses(row, cfg)))
    return ("unix", str(unix_path(row, queue_dir)))


def _label(address: Address) -> str:
    family, host, port = address
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


def listener_open(row: ServiceRow, cfg: MainConfig, queue_dir: Path, uid: int, gid: int) -> Listener:
    """Bind and listen for a row; raise ListenError naming the endpoint and the cause.

    + uid, gid: mail_owner's, the owner of unix socket files.
    """
    if row.type == "inet":
        addresses = tuple(inet_addresses(row, cfg))
        socks: list[socket.socket] = []
        try:
            for address in addresses:
                socks.append(_inet_open(address))
        except ListenError:
            for sock in socks:
                sock.close()
            raise
        return Listener(("inet", addresses), ", ".join(_label(a) for a in addresses), socks,
                        addresses=addresses)
    path = unix_path(row, queue_dir)
    return Listener(("unix", str(path)), str(path.relative_to(queue_dir)), [_unix_open(path, uid, gid)], path)


def _inet_open(address: Address) -> socket.socket:
    family, host, port = address
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenError(f"bind {host} port {port}: {os.strerror(exc.errno or 0)}") from None
    return sock


def _unix_open(path: Path, uid: int, gid: int) -> socket.socket:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        # A socket left by a master that died is stale (only one master runs: pid lock).
        if not stat.S_ISSOCK(mode):
            raise ListenError(f"{path}: exists and is not a socket")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chown(path, uid, gid)
        os.chmod(path, 0o666)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenError(f"bind {path}: {os.strerror(exc.errno or 0)}") from None
    return sock
