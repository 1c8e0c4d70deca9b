"""Tests for harden.lab.clientfiles: pinned host keys, ssh_config and the YAML inventory."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from harden.lab.clientfiles import client_files_write
from harden.lab.model import hosts_plan


def test_files(tmp_path: Path) -> None:
    hosts = hosts_plan(3)
    keys = {h.name: f"ssh-ed25519 AAAAkey{i} root@{h.name}" for i, h in enumerate(hosts)}
    client_files_write(tmp_path, hosts, keys)
    known = (tmp_path / "known_hosts").read_text().splitlines()
    assert known[1] == "gw2,gw2.lab.example,127.0.0.12 ssh-ed25519 AAAAkey1"
    inventory = yaml.safe_load((tmp_path / "inventory.yml").read_text())
    children = inventory["all"]["children"]
    assert sorted(children["gateways"]["hosts"]) == ["gw1.lab.example", "gw2.lab.example", "gw3.lab.example"]
    assert list(children["dmz"]["hosts"]) == ["gw2.lab.example"]
    assert children["dmz"]["hosts"]["gw2.lab.example"]["ansible_host"] == "127.0.0.12"
    assert inventory["all"]["vars"]["ansible_user"] == "root"
    # OpenSSH itself reads the config: strict host key checking, the lab's key and known_hosts.
    done = subprocess.run(["ssh", "-G", "-F", str(tmp_path / "ssh_config"), "gw3"], capture_output=True, text=True,
                          check=True)
    options = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert options["hostname"] == "127.0.0.13" and options["user"] == "root" and options["port"] == "22"
    assert options["stricthostkeychecking"] == "true"
    assert options["userknownhostsfile"] == str(tmp_path / "known_hosts")
    assert options["identityfile"] == str(tmp_path / "id_ed25519")
