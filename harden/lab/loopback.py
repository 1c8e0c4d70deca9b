"""The lab's 127.0.0.x addresses on ``lo``: added as /32 where missing, removed again by exactly that list.

127.0.0.0/8 already routes to lo, so hosts can bind their address without
this; daemons that compare their listen address with the interface list
(Postfix's inet_interfaces) need it listed on an interface. Nothing but lo is
touched, and no address outside 127.0.0.0/8 is ever added.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import subprocess

from harden.errors import LabError


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {done.stderr.strip() or f'exit status {done.returncode}'}")
    return done.stdout


def lo_addresses() -> set[str]:
    """The IPv4 addresses listed on lo with a /32 prefix."""
    found = set()
    for line in _ip("-4", "-o", "addr", "show", "dev", "lo").splitlines():
        fields = line.split()
        if "inet" in fields:
            addr = fields[fields.index("inet") + 1]
            if addr.endswith("/32"):
                found.add(addr[:-3])
    return found


def lo_add(addresses: list[str]) -> list[str]:
    """Add each address to lo as /32 unless it is there; return those this call added."""
    present = lo_addresses()
    added = []
    for address in addresses:
        if not ipaddress.IPv4Address(address).is_loopback:
            raise LabError(f"refusing to add {address} to lo: not a loopback address")
        if address not in present:
            _ip("addr", "add", f"{address}/32", "dev", "lo")
            added.append(address)
    return added


def lo_remove(addresses: list[str]) -> None:
    """Remove exactly these /32 addresses from lo (ones already gone are skipped)."""
    present = lo_addresses()
    for address in addresses:
        if address in present:
            _ip("addr", "del", f"{address}/32", "dev", "lo")


def ports_in_use(addresses: list[str], port: int) -> list[str]:
    """The addresses where something already listens on port (a lab left up, another sshd).

    A lab host's sshd that cannot bind would leave the old listener answering
    with another host key; finding it before starting names the real cause.
    """
    busy = []
    for address in addresses:
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                busy.append(address)
        finally:
            probe.close()
    return busy
