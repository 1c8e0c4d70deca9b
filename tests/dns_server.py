"""A small authoritative DNS server on loopback for the tests (dnspython messages over UDP).

The tests point the MTA at it (MTA_RESOLV_CONF or DnsClient(resolv_conf=...)),
so nothing ever asks the machine's own resolver. Records are a dict
``{(name, type): [rdata text, ...]}``; names not in it get NXDOMAIN, a known
name with another type gets an empty answer; names in ``fail`` get SERVFAIL.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsServer:
    """Serve records on address:53 (root needed) until close()."""

    def __init__(self, address: str, records: dict[tuple[str, str], list[str]], fail: set[str] | None = None,
                 port: int = 53) -> None:
        self.records = {(name.lower().rstrip("."), rdtype.upper()): values for (name, rdtype), values in records.items()}
        self.names = {name for name, _ in self.records}
        self.fail = {name.lower().rstrip(".") for name in fail or set()}
        self.queries: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.settimeout(0.2)
        self.address = address
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def resolv_conf(self, directory: Path) -> Path:
        """Write a resolv.conf that names only this server; return its path."""
        path = directory / "resolv.conf"
        path.write_text(f"nameserver {self.address}\noptions timeout:1 attempts:1\n")
        return path

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            try:
                query = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001 - ignore garbage
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            question = query.question[0]
            name = question.name.to_text().lower().rstrip(".")
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype))
            if name in self.fail:
                response.set_rcode(dns.rcode.SERVFAIL)
            elif name not in self.names:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                values = self.records.get((name, rdtype), [])
                if values:
                    response.answer.append(dns.rrset.from_text_list(question.name, 300, dns.rdataclass.IN,
                                                                   question.rdtype, values))
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()
