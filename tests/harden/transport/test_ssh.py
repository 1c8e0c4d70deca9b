"""Tests for harden.transport.ssh against the lab's real sshd: strict host keys, ssh_config, jump hosts, sudo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harden.errors import TransportError
from harden.transport import transport_open
from harden.transport.base import file_put
from tests.conftest import LabFixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


def test_commands_and_files_through_ssh_config(lab: LabFixture) -> None:
    t = transport_open("ssh", host="gw1", ssh_config=str(lab.dir / "ssh_config"))
    try:
        assert t.run("hostname").stdout.strip() == "gw1.lab.example"
        done = t.run("echo out; echo err >&2; exit 4", check=False)
        assert (done.exit_code, done.stdout, done.stderr) == (4, "out\n", "err\n")
        with pytest.raises(TransportError, match="gw1: exit 4: .*: err"):
            t.run("echo err >&2; exit 4")
        assert t.run("wc -c", stdin=b"x" * 100000).stdout.strip() == "100000"
        assert file_put(t, b"one\n", "/etc/harden-ssh-test", mode=0o640) is True
        assert file_put(t, b"one\n", "/etc/harden-ssh-test", mode=0o640) is False
        assert t.run("stat -c '%a %U' /etc/harden-ssh-test; cat /etc/harden-ssh-test").stdout == "640 root\none\n"
    finally:
        t.run("rm -f /etc/harden-ssh-test", check=False)
        t.close()


def test_explicit_settings(lab: LabFixture) -> None:
    gw2 = lab.hosts[1]
    t = transport_open("ssh", host=gw2.name, address=gw2.address, user="root", key_file=str(lab.dir / "id_ed25519"),
                       known_hosts=[str(lab.dir / "known_hosts")])
    assert t.run("hostname").stdout.strip() == gw2.name
    t.close()


def test_unknown_host_key_is_refused_with_advice(lab: LabFixture, tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("")
    gw1 = lab.hosts[0]
    with pytest.raises(TransportError, match=rf"unknown host key for {gw1.address}:22: refusing to connect\. "
                                             r"To trust it, check its fingerprint .*ssh-keyscan"):
        transport_open("ssh", host="gw1", address=gw1.address, user="root", key_file=str(lab.dir / "id_ed25519"),
                       known_hosts=[str(tmp_path / "empty")])


def test_changed_host_key_is_refused(lab: LabFixture, tmp_path: Path) -> None:
    gw1 = lab.hosts[0]
    gw2_key = next(line for line in (lab.dir / "known_hosts").read_text().splitlines() if line.startswith("gw2,"))
    (tmp_path / "known_hosts").write_text(f"{gw1.address} {gw2_key.split(' ', 1)[1]}\n")
    with pytest.raises(TransportError, match=r"host key of .* has CHANGED"):
        transport_open("ssh", host="gw1", address=gw1.address, user="root", key_file=str(lab.dir / "id_ed25519"),
                       known_hosts=[str(tmp_path / "known_hosts")])


def test_jump_host(lab: LabFixture) -> None:
    gw1, gw2 = lab.hosts[0], lab.hosts[1]
    t = transport_open("ssh", host="gw2", ssh_config=str(lab.dir / "ssh_config"), jump=f"root@{gw1.address}")
    try:
        assert t.run("hostname").stdout.strip() == gw2.name
        # The connection really goes through gw1: gw1's sshd holds the TCP connection to gw2.
        seen = lab.ssh("gw1", f"ss -Htnp state established dst {gw2.address}:22").stdout
        assert "sshd" in seen
    finally:
        t.close()


def test_sudo_for_a_non_root_login(lab: LabFixture) -> None:
    gw3 = lab.hosts[2]
    # usermod -p '*': no password, but not locked (sshd without PAM refuses locked accounts).
    lab.ssh("gw3", "useradd -m -s /bin/sh deploy && usermod -p '*' deploy && mkdir -p ~deploy/.ssh && cp /root/.ssh/authorized_keys ~deploy/.ssh/ "
                   "&& chown -R deploy: ~deploy/.ssh && echo 'deploy ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deploy "
                   "&& chmod 0440 /etc/sudoers.d/deploy")
    try:
        t = transport_open("ssh", host="gw3", address=gw3.address, user="deploy", key_file=str(lab.dir / "id_ed25519"),
                           known_hosts=[str(lab.dir / "known_hosts")])
        assert t.become and t.run("id -un").stdout.strip() == "root"
        plain = transport_open("ssh", host="gw3", address=gw3.address, user="deploy", become=False,
                               key_file=str(lab.dir / "id_ed25519"), known_hosts=[str(lab.dir / "known_hosts")])
        assert plain.run("id -un").stdout.strip() == "deploy"
        t.close()
        plain.close()
        # sudo that asks for a password (sudo -S reads it from the command's stdin first).
        lab.ssh("gw3", "echo 'deploy:s3cret-pw' | chpasswd && echo 'deploy ALL=(ALL) ALL' > /etc/sudoers.d/deploy")
        asks = transport_open("ssh", host="gw3", address=gw3.address, user="deploy", sudo_password="s3cret-pw",
                              key_file=str(lab.dir / "id_ed25519"), known_hosts=[str(lab.dir / "known_hosts")])
        assert asks.run("id -un").stdout.strip() == "root"
        assert asks.run("cat", stdin=b"data after the password").stdout == "data after the password"
        asks.close()
        wrong = transport_open("ssh", host="gw3", address=gw3.address, user="deploy", sudo_password="wrong",
                               key_file=str(lab.dir / "id_ed25519"), known_hosts=[str(lab.dir / "known_hosts")])
        with pytest.raises(TransportError, match="gw3: exit 1"):
            wrong.run("id -un")
        wrong.close()
    finally:
        lab.restart("gw3")
