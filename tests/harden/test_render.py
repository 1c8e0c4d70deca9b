"""Tests for harden.render: templates render for real inventories, parse back, and errors name template and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harden.errors import TemplateError
from harden.inventory import inventory_load
from harden.render import TEMPLATES, files_check, gateway_files, template_environment
from harden.settings import GatewaySettings, settings_from_host
from mta.service_table import parse_master_cf

REPO = Path(__file__).resolve().parents[2]


def example(name: str = "mx1.dmz.example.com") -> GatewaySettings:
    return settings_from_host(inventory_load(REPO / "inventory/example.yml").hosts[name])


def test_example_hosts_render_and_parse_back() -> None:
    for name in ("gw1.example.com", "mx1.dmz.example.com"):
        files = gateway_files(example(name))
        assert files_check(name, files) == []
        assert set(files) >= {"main.cf", "master.cf", "aliases", "access"}
    files = gateway_files(example())
    assert "transport_maps = hash:/etc/postfix/transport" in files["main.cf"]
    assert "example.com\tsmtp:[mail.internal.example.com]:25" in files["transport"]
    assert "\nroot: mick\n" in files["aliases"] and "\npostmaster: root\n" in files["aliases"]


def test_chroot_column_follows_the_settings(tmp_path: Path) -> None:
    s = example()
    (tmp_path / "master.cf").write_text(gateway_files(s)["master.cf"])
    rows = {row.service: row for row in parse_master_cf(tmp_path / "master.cf") if row.type != "unix"
            or row.service != "smtp"}
    assert rows["smtp"].chroot and rows["cleanup"].chroot and rows["qmgr"].chroot
    assert not rows["local"].chroot
    s.chroot = False
    s.chroot_services = {"smtpd": True}
    (tmp_path / "master.cf").write_text(gateway_files(s)["master.cf"])
    rows = {row.service: row for row in parse_master_cf(tmp_path / "master.cf") if row.type != "unix"
            or row.service != "smtp"}
    assert rows["smtp"].chroot and not rows["cleanup"].chroot and not rows["local"].chroot


def test_settings_reach_main_cf() -> None:
    s = example("gw1.example.com")
    s.rbl_domains = ["zen.spamhaus.example"]
    s.tls_cert_file, s.tls_key_file = "/etc/ssl/gw.pem", "/etc/ssl/gw.key"
    s.access = {"spammer.example": "REJECT", "192.0.2.0/24": "OK"}
    files = gateway_files(s)
    main = files["main.cf"]
    assert "myhostname = gw1.example.com\n" in main and "inet_interfaces = 192.0.2.10\n" in main
    assert "    reject_rbl_client zen.spamhaus.example,\n" in main
    assert "smtpd_tls_cert_file = /etc/ssl/gw.pem\n" in main
    assert "smtpd_recipient_limit = 250\n" in main
    assert "spammer.example\tREJECT" in files["access"]
    assert files_check(s.name, files) == []
    assert "relayhost" not in main
    s.relayhost = "[smarthost.example.com]:587"
    assert "\nrelayhost = [smarthost.example.com]:587\n" in gateway_files(s)["main.cf"]


def test_master_cf_has_the_outbound_services(tmp_path: Path) -> None:
    """smtp and relay (the smtp client) run chrooted with the other internal services."""
    (tmp_path / "master.cf").write_text(gateway_files(example())["master.cf"])
    rows = {(row.service, row.type): row for row in parse_master_cf(tmp_path / "master.cf")}
    for name in ("smtp", "relay"):
        assert rows[(name, "unix")].command == "smtp" and rows[(name, "unix")].chroot


def test_template_typo_names_template_and_line(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "t")
    path = tmp_path / "t/main.cf.j2"
    lines = path.read_text().splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if line.startswith("mydomain ="))
    lines[number - 1] = "mydomain = {{ s.mydomian }}\n"
    path.write_text("".join(lines))
    with pytest.raises(TemplateError, match=rf"templates/main.cf.j2:{number}: .*'mydomian'"):
        gateway_files(example(), env=template_environment(tmp_path / "t"))
    path.write_text("{% if s.chroot %}\nno endif\n")
    with pytest.raises(TemplateError, match=r"templates/main.cf.j2:2: Unexpected end of template"):
        gateway_files(example(), env=template_environment(tmp_path / "t"))


def test_rendered_output_that_does_not_parse_is_refused(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path / "t")
    with open(tmp_path / "t/master.cf.j2", "a") as extra:
        extra.write("broken    unix  n  -\n")
    with pytest.raises(TemplateError, match=r"templates/master.cf.j2 rendered for mx1.dmz.example.com: "
                                            r"master.cf, line \d+: .*\[broken    unix  n  -\]"):
        files_check("mx1.dmz.example.com", gateway_files(example(), env=template_environment(tmp_path / "t")))


def test_mydestination_in_a_file() -> None:
    s = example("gw1.example.com")
    s.mydestination_file = True
    files = gateway_files(s)
    assert "mydestination = /etc/postfix/mydests\n" in files["main.cf"]
    assert [line for line in files["mydests"].splitlines() if not line.startswith("#")] == [
        "gw1.example.com", "localhost.example.com", "localhost", "example.com"]
    assert files_check(s.name, files) == []
