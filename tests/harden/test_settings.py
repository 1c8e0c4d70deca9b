"""Tests for harden.settings: the mail-variable schema, its errors (file, line, host, key) and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from harden.errors import InventoryError
from harden.inventory import inventory_load
from harden.settings import GatewaySettings, settings_from_host


def load(tmp_path: Path, host_vars: str, group: str = "gateways") -> GatewaySettings:
    text = f"all:\n  children:\n    {group}:\n      hosts:\n        gw1.example.test:\n"
    text += "".join(f"          {line}\n" for line in host_vars.splitlines())
    (tmp_path / "hosts.yml").write_text(text)
    return settings_from_host(inventory_load(tmp_path / "hosts.yml").hosts["gw1.example.test"])


def test_defaults_and_role(tmp_path: Path) -> None:
    s = load(tmp_path, "root_alias: mick")
    assert (s.role, s.myhostname, s.mydomain, s.myorigin) == ("gateway", "gw1.example.test", "example.test", "$mydomain")
    assert s.mydestination == ["$myhostname", "localhost.$mydomain", "localhost", "$mydomain"]
    relay = load(tmp_path, "root_alias: mick\nrelay_domains: [example.test]")
    assert relay.mydestination == ["$myhostname", "localhost.$mydomain", "localhost"]
    assert s.service_chrooted("smtpd") and s.service_chrooted("cleanup")
    assert not s.service_chrooted("local") and not s.service_chrooted("pipe") and not s.service_chrooted("virtual")
    assert load(tmp_path, "root_alias: mick", group="dmz").role == "dmz"


def test_values_and_overrides(tmp_path: Path) -> None:
    s = load(tmp_path, "root_alias: mick\nmydomain: corp.test\nchroot: false\nchroot_services: {smtpd: true}\n"
                       "aliases: {abuse: root, team: [a, b]}\naccess: {spam.example: REJECT, 192.0.2.0/24: 550 no}\n"
                       "smtpd_recipient_limit: 50\nmynetworks: [10.0.0.0/8, '[2001:db8::]/32']")
    assert s.mydomain == "corp.test" and s.smtpd_recipient_limit == 50
    assert s.service_chrooted("smtpd") and not s.service_chrooted("qmgr")
    assert s.aliases == {"abuse": "root", "team": ["a", "b"]}


@pytest.mark.parametrize("host_vars, message", [
    ("mydomain: example.test", r"hosts.yml:5: host gw1.example.test: key 'root_alias' is missing"),
    ("root_alias: root", r"hosts.yml:6: host gw1.example.test: key 'root_alias': must name an unprivileged account"),
    ("root_alias: postfix", r"key 'root_alias': must name an unprivileged account, not 'postfix'"),
    ("root_alias: mick\nmydomian: example.test",
     r"hosts.yml:7: host gw1.example.test: key 'mydomian': unknown variable \(did you mean 'mydomain'\?\)"),
    ("root_alias: mick\nsmtpd_recipient_limit: lots", r"hosts.yml:7: .* key 'smtpd_recipient_limit': expected an integer"),
    ("root_alias: mick\nmynetworks: [10.0.0.0/33]", r"key 'mynetworks': expected a list of networks"),
    ("root_alias: mick\nchroot_services: {local: true}", r"key 'chroot_services': local must never be chrooted"),
    ("root_alias: mick\nansible_port: '22'", r"key 'ansible_port': expected int"),
    ("root_alias: mick\ntransport: {example.com: relayhost}", r"key 'transport': expected a mapping of domain"),
    ("root_alias: mick\ntls_cert_file: /etc/ssl/a.pem", r"key 'tls_cert_file': needs tls_key_file as well"),
    ("root_alias: mick\nrelayhost: 'smtp:[x]'", r"key 'relayhost': expected a next hop: \[host\]:port"),
])
def test_errors_name_file_line_host_and_key(tmp_path: Path, host_vars: str, message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        load(tmp_path, host_vars)


def test_every_problem_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as caught:
        load(tmp_path, "mydomian: x\nsmtpd_recipient_limit: 0")
    assert len(str(caught.value).splitlines()) == 3  # typo, bad limit, missing root_alias


def test_the_example_inventory_is_valid() -> None:
    inv = inventory_load(Path(__file__).resolve().parents[2] / "inventory/example.yml")
    roles = {h.name: settings_from_host(h).role for h in inv.hosts.values()}
    assert roles == {"gw1.example.com": "gateway", "mx1.dmz.example.com": "dmz"}
