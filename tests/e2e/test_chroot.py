"""The MTA's privilege separation on a provisioned lab host: smtpd jailed and unprivileged, local not jailed.

Issue 6, point 5: /proc/PID/root of the running smtpd is the queue directory and
of local is /; smtpd runs as mail_owner; in the jail smtpd still resolves the
client's host name and logs the host's local time.
"""

from __future__ import annotations

import os
import smtplib
import socket
import time

import pytest

from harden.inventory import inventory_load
from harden.provision import provision
from tests.conftest import LabFixture
from tests.dns_server import DnsServer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


def pids(lab: LabFixture, host: str, comm: str) -> list[str]:
    return lab.ssh(host, f"pgrep -x {comm} || true").stdout.split()


def test_smtpd_jailed_and_unprivileged_local_not(fresh_lab: LabFixture) -> None:
    lab = fresh_lab
    # The host's own time zone, which the jail's copy must follow.
    lab.ssh("gw1", "ln -sf /usr/share/zoneinfo/Asia/Tokyo /etc/localtime")
    inv = inventory_load(lab.dir / "inventory.yml")
    assert [r.status for r in provision(inv, "gw1*")] == ["changed"]
    gw1 = lab.hosts[0]
    with socket.create_connection((gw1.address, 25), timeout=30, source_address=(gw1.address, 0)) as held:
        assert held.recv(100).startswith(b"220 ")  # an smtpd is now serving this connection
        [smtpd] = pids(lab, "gw1", "smtpd")
        assert lab.ssh("gw1", f"readlink /proc/{smtpd}/root").stdout.strip() == "/var/spool/postfix"
        assert lab.ssh("gw1", f"stat -c %U /proc/{smtpd}").stdout.strip() == "postfix"
        assert lab.ssh("gw1", f"awk '/^Uid:/ {{print $2, $3, $4, $5}}' /proc/{smtpd}/status").stdout.split() == \
            [lab.ssh("gw1", "id -u postfix").stdout.strip()] * 4
    with smtplib.SMTP(gw1.address, 25, timeout=30, source_address=(gw1.address, 0)) as smtp:
        smtp.sendmail("a@example.org", [f"root@{gw1.name}"], "Subject: jail\n\nx\n")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not pids(lab, "gw1", "local"):
        time.sleep(0.1)
    [local] = pids(lab, "gw1", "local")[:1]
    assert lab.ssh("gw1", f"readlink /proc/{local}/root").stdout.strip() == "/"
    log = lab.ssh("gw1", "cat /var/log/mail.log").stdout
    # Reverse lookup inside the jail (its etc/hosts): the client is named, not "unknown".
    assert f"connect from {gw1.name}[{gw1.address}]" in log
    # Time stamps in the host's zone (Tokyo, UTC+9), not UTC.
    stamp = [line for line in log.splitlines() if "mta/smtpd" in line][-1][:15]
    tokyo = lab.ssh("gw1", "date '+%b %e %H:%M'").stdout.strip()
    assert stamp[:12] == tokyo[:12] or stamp[:9] == tokyo[:9]  # same hour (allowing a minute boundary)
    # DNS in the jail. The RBL lookups use the resolver set up before chroot (dnspython, shipped
    # in the bundle); the client's name comes from the C library inside the jail, through the
    # jail's copies of resolv.conf and nsswitch.conf, as Postfix's does.
    code = f"{gw1.address.split('.')[-1]}.0.0.127.rbl.test"
    server = DnsServer("127.0.0.53", {
        (code, "A"): ["127.0.0.2"], (code, "TXT"): ['"listed for tests"'],
        ("201.0.0.127.in-addr.arpa", "PTR"): ["good.rdns.test."], ("good.rdns.test", "A"): ["127.0.0.201"],
        ("202.0.0.127.in-addr.arpa", "PTR"): ["forged.rdns.test."], ("forged.rdns.test", "A"): ["192.0.2.1"],
    })
    try:
        lab.ssh("gw1", "cp /etc/resolv.conf /etc/resolv.conf.test-saved && "
                       "printf 'nameserver 127.0.0.53\\noptions timeout:1 attempts:1\\n' >/etc/resolv.conf && "
                       "cp /etc/resolv.conf /var/spool/postfix/etc/resolv.conf && "
                       "mta -c /etc/postfix postconf -e 'smtpd_client_restrictions = reject_rbl_client rbl.test, "
                       "reject_unknown_client_hostname'")
        lab.ssh("gw1", "mta -c /etc/postfix reload")

        def rcpt(source: str) -> tuple[int, bytes]:
            with smtplib.SMTP(gw1.address, 25, timeout=30, source_address=(source, 0)) as smtp:
                smtp.helo("client.example")
                smtp.mail("a@example.org")
                return smtp.rcpt(f"root@{gw1.name}")

        deadline = time.monotonic() + 30
        while rcpt(gw1.address)[0] != 554 and time.monotonic() < deadline:
            time.sleep(0.2)  # the reload reaches new smtpd processes only
        assert rcpt(gw1.address) == (554, f"5.7.1 Service unavailable; Client host [{gw1.address}] blocked "
                                          "using rbl.test; listed for tests".encode())
        assert (code, "TXT") in server.queries
        assert rcpt("127.0.0.201")[0] == 250  # PTR and A agree
        assert rcpt("127.0.0.202") == (450, b"4.7.25 Client host rejected: cannot find your hostname, "
                                            b"[127.0.0.202]")  # the A record does not lead back
        log = lab.ssh("gw1", "cat /var/log/mail.log").stdout
        assert "connect from good.rdns.test[127.0.0.201]" in log
        assert "connect from unknown[127.0.0.202]" in log
    finally:
        server.close()
        lab.ssh("gw1", "mv /etc/resolv.conf.test-saved /etc/resolv.conf && "
                       "cp /etc/resolv.conf /var/spool/postfix/etc/resolv.conf", check=False)
