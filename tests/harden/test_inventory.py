"""Tests for harden.inventory: Ansible's YAML format, group_vars/host_vars precedence, origins, errors, --limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from harden.errors import InventoryError
from harden.inventory import host_pattern_expand, inventory_load

INVENTORY = """\
all:
  vars:
    level: all-inventory
    only_all: 1
  children:
    gateways:
      vars:
        level: gateways-inventory
      hosts:
        gw1.example.test:
          ansible_host: 192.0.2.1
        gw2.example.test:
          level: gw2-inventory
      children:
        edge:
          vars:
            level: edge-inventory
          hosts:
            gw3.example.test:
    dmz:
      hosts:
        mx[1:2].dmz.example.test:
"""


def write(base: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text)
    return base / "hosts.yml"


def test_groups_hosts_and_order(tmp_path: Path) -> None:
    inv = inventory_load(write(tmp_path, {"hosts.yml": INVENTORY}))
    assert list(inv.hosts) == ["gw1.example.test", "gw2.example.test", "gw3.example.test",
                               "mx1.dmz.example.test", "mx2.dmz.example.test"]
    assert inv.hosts["gw3.example.test"].groups == ["all", "gateways", "edge"]
    assert inv.hosts["mx2.dmz.example.test"].groups == ["all", "dmz"]
    assert inv.hosts["gw1.example.test"].address() == "192.0.2.1"
    assert inv.hosts["gw2.example.test"].address() == "gw2.example.test"


@pytest.mark.parametrize("files, host, expected", [
    # Inventory-file group vars: deeper groups win over their parents and over all.
    ({}, "gw1.example.test", "gateways-inventory"),
    ({}, "gw3.example.test", "edge-inventory"),
    ({}, "mx1.dmz.example.test", "all-inventory"),
    # group_vars/all beats every group's vars in the inventory file (Ansible's order).
    ({"group_vars/all.yml": "level: all-file\n"}, "gw3.example.test", "all-file"),
    # group_vars/GROUP beats group_vars/all; the deeper group file wins.
    ({"group_vars/all.yml": "level: all-file\n", "group_vars/gateways.yaml": "level: gateways-file\n"},
     "gw1.example.test", "gateways-file"),
    ({"group_vars/gateways": "level: gateways-file\n", "group_vars/edge.yml": "level: edge-file\n"},
     "gw3.example.test", "edge-file"),
    # Host vars in the inventory file beat every group file.
    ({"group_vars/gateways.yml": "level: gateways-file\n"}, "gw2.example.test", "gw2-inventory"),
    # host_vars beats everything.
    ({"group_vars/gateways.yml": "level: gateways-file\n", "host_vars/gw2.example.test.yml": "level: host-file\n"},
     "gw2.example.test", "host-file"),
    # A directory of files, read in name order: the later file wins.
    ({"group_vars/dmz/a.yml": "level: dmz-a\n", "group_vars/dmz/b.yml": "level: dmz-b\n"},
     "mx2.dmz.example.test", "dmz-b"),
])
def test_precedence(tmp_path: Path, files: dict[str, str], host: str, expected: str) -> None:
    inv = inventory_load(write(tmp_path, {"hosts.yml": INVENTORY, **files}))
    assert inv.hosts[host].vars["level"] == expected
    assert inv.hosts[host].vars["only_all"] == 1


def test_group_priority_breaks_ties(tmp_path: Path) -> None:
    text = """\
all:
  children:
    a:
      vars: {x: from-a, ansible_group_priority: 5}
      hosts: {h1: null}
    b:
      vars: {x: from-b}
      hosts: {h1: null}
"""
    inv = inventory_load(write(tmp_path, {"hosts.yml": text}))
    assert inv.hosts["h1"].vars["x"] == "from-a"  # same depth: the higher priority applies last


def test_origins_name_file_and_line(tmp_path: Path) -> None:
    inv = inventory_load(write(tmp_path, {"hosts.yml": INVENTORY, "host_vars/gw1.example.test.yml": "\nlevel: x\n"}))
    host = inv.hosts["gw1.example.test"]
    assert host.origin("ansible_host") == f"{tmp_path / 'hosts.yml'}:11"
    assert host.origin("level") == f"{tmp_path / 'host_vars/gw1.example.test.yml'}:2"


@pytest.mark.parametrize("text, message", [
    ("all:\n  hosts:\n    h1:\n      a: 1\n      a: 2\n", r"hosts.yml: line 5: duplicate key 'a' \(first at line 4\)"),
    ("all:\n  hosts:\n    h1: {a: [1, 2}\n", r"hosts.yml:3: YAML syntax error"),
    ("all:\n  host:\n    h1:\n", r"hosts.yml:2: group 'all': unknown key 'host'"),
    ("all:\n  hosts: [h1, h2]\n", r"hosts.yml:2: hosts of group 'all' must be a mapping"),
    ("all:\n  children:\n    a:\n      children:\n        b:\n          children:\n            a:\n",
     r"group 'a' is its own ancestor"),
    ("", r"hosts.yml: the inventory is empty"),
    ("all:\n  vars: {a: 1}\n", r"hosts.yml: the inventory has no hosts"),
    ("all:\n  children:\n    bad name:\n", r"hosts.yml:3: bad group name 'bad name'"),
])
def test_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        inventory_load(write(tmp_path, {"hosts.yml": text}))


def test_group_vars_errors_name_their_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"group_vars/gateways.yml:3: YAML syntax error"):
        inventory_load(write(tmp_path, {"hosts.yml": INVENTORY, "group_vars/gateways.yml": "a: 1\nb: [\n"}))


def test_ranges() -> None:
    assert host_pattern_expand("gw[08:10].x") == ["gw08.x", "gw09.x", "gw10.x"]
    assert host_pattern_expand("h[1:5:2]") == ["h1", "h3", "h5"]
    assert host_pattern_expand("r[1:2]c[1:2]") == ["r1c1", "r1c2", "r2c1", "r2c2"]
    with pytest.raises(InventoryError, match="bad host range"):
        host_pattern_expand("h[5:1]")


@pytest.mark.parametrize("pattern, expected", [
    (None, ["gw1", "gw2", "gw3", "mx1", "mx2"]),
    ("gateways", ["gw1", "gw2", "gw3"]),
    ("edge", ["gw3"]),
    ("gateways:!edge", ["gw1", "gw2"]),
    ("all:&dmz", ["mx1", "mx2"]),
    ("gw1*,mx2*", ["gw1", "mx2"]),
])
def test_select(tmp_path: Path, pattern: str | None, expected: list[str]) -> None:
    inv = inventory_load(write(tmp_path, {"hosts.yml": INVENTORY}))
    assert [h.name.split(".")[0] for h in inv.select(pattern)] == expected


def test_select_unknown_is_an_error(tmp_path: Path) -> None:
    inv = inventory_load(write(tmp_path, {"hosts.yml": INVENTORY}))
    with pytest.raises(InventoryError, match="--limit 'gatways' matches no host or group"):
        inv.select("gatways")


def test_the_labs_inventory_loads(tmp_path: Path) -> None:
    from harden.lab.clientfiles import client_files_write
    from harden.lab.model import hosts_plan

    hosts = hosts_plan(3)
    client_files_write(tmp_path, hosts, {h.name: "ssh-ed25519 AAAA x" for h in hosts})
    inv = inventory_load(tmp_path / "inventory.yml")
    assert [h.name for h in inv.select("dmz")] == ["gw2.lab.example"]
    assert inv.hosts["gw3.lab.example"].address() == "127.0.0.13"
