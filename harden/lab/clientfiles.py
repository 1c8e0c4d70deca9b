"""What clients need to reach the lab: known_hosts, an ssh_config and an Ansible-style YAML inventory.

Host keys are pinned: known_hosts lists each host's ed25519 key under its short
name, FQDN and address, and ssh_config sets StrictHostKeyChecking yes, so a
client never trusts a key it was not given. The inventory has the groups
``gateways`` and ``dmz`` and points Ansible-style tools (and ``harden``) at the
same key and ssh_config.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from harden.lab.model import LabHost

KNOWN_HOSTS = "known_hosts"
SSH_CONFIG = "ssh_config"
INVENTORY = "inventory.yml"
CLIENT_KEY = "id_ed25519"
MAIL_USER = "mailadmin"  # the unprivileged account host-init.sh creates on every host


def known_hosts_text(hosts: list[LabHost], host_keys: dict[str, str]) -> str:
    """known_hosts lines: ``gw1,gw1.lab.example,127.0.0.11 ssh-ed25519 AAAA...``.

    + host_keys: host name -> the public key line (``ssh-ed25519 AAAA... comment``).
    """
    lines = []
    for host in hosts:
        key_type, key = host_keys[host.name].split()[:2]
        lines.append(f"{host.short},{host.name},{host.address} {key_type} {key}")
    return "\n".join(lines) + "\n"


def ssh_config_text(lab_dir: Path, hosts: list[LabHost]) -> str:
    """An ssh_config with one Host block per lab host (``ssh -F DIR/ssh_config gw1``)."""
    blocks = []
    for host in hosts:
        blocks.append(
            f"Host {host.short} {host.name} {host.address}\n"
            f"    HostName {host.address}\n"
            f"    HostKeyAlias {host.short}\n"
            "    Port 22\n"
            "    User root\n"
            f"    IdentityFile {lab_dir / CLIENT_KEY}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {lab_dir / KNOWN_HOSTS}\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    StrictHostKeyChecking yes\n"
            "    UpdateHostKeys no\n"
            "    BatchMode yes\n"
            "    ConnectTimeout 10\n"
            "    LogLevel ERROR\n"
        )
    return "# Written by `harden lab up`; host keys are pinned in known_hosts.\n\n" + "\n".join(blocks)


def inventory_data(lab_dir: Path, hosts: list[LabHost]) -> dict[str, object]:
    """The lab as an Ansible-style YAML inventory: ``all.children.{gateways,dmz}.hosts``."""
    groups: dict[str, dict[str, object]] = {}
    for host in hosts:
        for group in host.groups:
            groups.setdefault(group, {"hosts": {}})
            hosts_of = groups[group]["hosts"]
            assert isinstance(hosts_of, dict)
            hosts_of[host.name] = {"ansible_host": host.address, "inet_interfaces": [host.address]}
    return {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_port": 22,
                "ansible_ssh_private_key_file": str(lab_dir / CLIENT_KEY),
                "ansible_ssh_common_args": f"-F {lab_dir / SSH_CONFIG}",
                "harden_ssh_config": str(lab_dir / SSH_CONFIG),
                "harden_known_hosts": str(lab_dir / KNOWN_HOSTS),
                "mydomain": "lab.example",
                "root_alias": MAIL_USER,
                # Only the host itself is trusted: every other loopback address plays the Internet
                # (the audit probes relaying from 127.0.0.250).
                "mynetworks": ["127.0.0.1/32", "[::1]/128"],
            },
            "children": groups,
        }
    }


def client_files_write(lab_dir: Path, hosts: list[LabHost], host_keys: dict[str, str]) -> None:
    """Write known_hosts, ssh_config and inventory.yml into the lab directory."""
    (lab_dir / KNOWN_HOSTS).write_text(known_hosts_text(hosts, host_keys))
    (lab_dir / SSH_CONFIG).write_text(ssh_config_text(lab_dir, hosts))
    header = "# The local lab, written by `harden lab up`; `harden provision/audit/rollout` accept it.\n"
    (lab_dir / INVENTORY).write_text(header + yaml.safe_dump(inventory_data(lab_dir, hosts), sort_keys=False))
