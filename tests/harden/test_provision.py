"""Tests for harden.provision on the lab: from nothing to delivering gateways, idempotence, --check, errors."""

from __future__ import annotations

import os
import smtplib
import time
from pathlib import Path

import pytest
import yaml

from harden.inventory import inventory_load
from harden.provision import provision
from tests.conftest import LabFixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


def test_from_nothing_then_nothing_to_do(fresh_lab: LabFixture) -> None:
    lab = fresh_lab
    inv = inventory_load(lab.dir / "inventory.yml")
    first = provision(inv)
    assert [r.status for r in first] == ["changed"] * len(lab.hosts), [r.error for r in first]
    kinds = {c.kind for c in first[0].changes}
    assert {"bundle", "link", "file", "jail", "handler"} <= kinds
    second = provision(inv)
    assert [(r.status, r.changes) for r in second] == [("ok", [])] * len(lab.hosts)
    # Mail to root at the gateway reaches the unprivileged account's Maildir through the jail.
    gw1 = lab.hosts[0]
    with smtplib.SMTP(gw1.address, 25, timeout=30) as smtp:
        smtp.sendmail("admin@example.org", [f"root@{gw1.name}"], f"Subject: hello root {os.getpid()}\n\nbody\n")
    deadline = time.monotonic() + 30
    found = ""
    while time.monotonic() < deadline and not found:
        found = lab.ssh("gw1", "cat /home/mailadmin/Maildir/new/* 2>/dev/null", check=False).stdout
        time.sleep(0.2)
    assert f"Subject: hello root {os.getpid()}" in found and f"X-Original-To: root@{gw1.name}" in found
    # The jail is root's, the services are chrooted as master.cf says, local is not.
    owners = lab.ssh("gw2", "find /var/spool/postfix/etc /var/spool/postfix/lib /var/spool/postfix/usr "
                            "-printf '%u:%g\\n' | sort -u").stdout.split()
    assert owners == ["root:root"]
    master_cf = lab.ssh("gw2", "grep -E '^(smtp +inet|local) ' /etc/postfix/master.cf").stdout.split("\n")
    assert master_cf[0].split()[4] == "y" and master_cf[1].split()[4] == "n"


def test_check_reports_and_changes_nothing(fresh_lab: LabFixture, tmp_path: Path) -> None:
    lab = fresh_lab
    inv = inventory_load(lab.dir / "inventory.yml")
    assert all(r.status == "changed" for r in provision(inv, "gw1*"))
    before = lab.ssh("gw1", "sha256sum /etc/postfix/main.cf").stdout
    text = (lab.dir / "inventory.yml").read_text().replace("    root_alias: mailadmin\n",
                                                         "    root_alias: mailadmin\n    smtpd_recipient_limit: 17\n")
    (tmp_path / "inventory.yml").write_text(text)
    changed = inventory_load(tmp_path / "inventory.yml")
    [result] = provision(changed, "gw1*", check=True, want_diff=True)
    assert result.status == "changed"
    assert [(c.kind, c.what) for c in result.changes] == [("file", "/etc/postfix/main.cf"), ("handler", "mta reload")]
    assert "-smtpd_recipient_limit = 250\n+smtpd_recipient_limit = 17\n" in result.changes[0].diff
    assert lab.ssh("gw1", "sha256sum /etc/postfix/main.cf").stdout == before
    [applied] = provision(changed, "gw1*")
    assert applied.status == "changed" and "smtpd_recipient_limit = 17" in lab.ssh("gw1", "cat /etc/postfix/main.cf").stdout


def test_unknown_host_key_is_refused(lab: LabFixture, tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("")
    data = yaml.safe_load((lab.dir / "inventory.yml").read_text())
    settings = data["all"]["vars"]
    for key in ("harden_ssh_config", "ansible_ssh_common_args"):
        del settings[key]
    settings["harden_known_hosts"] = str(tmp_path / "known_hosts")
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(data))
    [result] = provision(inventory_load(tmp_path / "inventory.yml"), "gw3*")
    assert result.status == "unreachable"
    assert "unknown host key" in result.error and "ssh-keyscan" in result.error


def test_inventory_typo_fails_before_connecting(lab: LabFixture, tmp_path: Path) -> None:
    text = (lab.dir / "inventory.yml").read_text().replace("    root_alias: mailadmin\n",
                                                          "    root_alias: mailadmin\n    smtpd_recipent_limit: 5\n")
    (tmp_path / "inventory.yml").write_text(text)
    line = text.splitlines().index("    smtpd_recipent_limit: 5") + 1
    results = provision(inventory_load(tmp_path / "inventory.yml"))
    assert {r.status for r in results} == {"failed"}
    assert (f"{tmp_path / 'inventory.yml'}:{line}: host gw1.lab.example: key 'smtpd_recipent_limit': unknown variable "
            "(did you mean 'smtpd_recipient_limit'?)") in results[0].error


def test_missing_root_alias_account_fails(fresh_lab: LabFixture, tmp_path: Path) -> None:
    text = (fresh_lab.dir / "inventory.yml").read_text().replace("root_alias: mailadmin", "root_alias: nosuchuser")
    (tmp_path / "inventory.yml").write_text(text)
    [result] = provision(inventory_load(tmp_path / "inventory.yml"), "gw2*")
    assert result.status == "failed" and "root_alias 'nosuchuser' is not an account on the host" in result.error


def test_service_commands_follow_the_init_system() -> None:
    from harden.provision import MTA, service_commands

    assert service_commands("systemd")["reload"] == "systemctl reload mailgate-mta"
    assert service_commands("tini")["restart"] == f"{MTA} -c /etc/postfix stop && {MTA} -c /etc/postfix start"


def test_the_systemd_unit_renders_and_names_the_pid_file() -> None:
    from harden.provision import MTA
    from harden.render import render

    text = render("mailgate-mta.service.j2", {"s": type("S", (), {"name": "gw1"})(), "mta": MTA,
                                              "config_directory": "/etc/postfix",
                                              "queue_directory": "/var/spool/postfix"})
    assert "PIDFile=/var/spool/postfix/pid/master.pid\n" in text
    assert f"ExecStart={MTA} -c /etc/postfix start\n" in text and "Type=forking\n" in text


def test_an_upgrade_keeps_queued_mail(fresh_lab: LabFixture) -> None:
    """Mail queued while the old version was stopped is delivered by the new one after the upgrade."""
    lab = fresh_lab
    inv = inventory_load(lab.dir / "inventory.yml")
    assert [r.status for r in provision(inv, "gw2*")] == ["changed"]
    lab.ssh("gw2", "mta -c /etc/postfix stop && printf 'Subject: queued during upgrade\\n\\nbody\\n' | "
                   "/usr/sbin/sendmail -f root root && ls /var/spool/postfix/maildrop | wc -l")
    lab.ssh("gw2", "cd /opt/mailgate-mta && v=$(readlink current) && cp -a $v 0.0.9+old && "
                   "echo 0.0.9+old > 0.0.9+old/VERSION && ln -sfn 0.0.9+old current")
    [result] = provision(inv, "gw2*")
    assert result.status == "changed", result.error
    assert [c.kind for c in result.changes if c.kind in ("bundle", "handler")] == ["bundle", "handler"]
    deadline = time.monotonic() + 30
    found = ""
    while time.monotonic() < deadline and "queued during upgrade" not in found:
        found = lab.ssh("gw2", "cat /home/mailadmin/Maildir/new/* 2>/dev/null", check=False).stdout
        time.sleep(0.2)
    assert "Subject: queued during upgrade" in found
    assert "0.0.9+old" in lab.ssh("gw2", "ls /opt/mailgate-mta").stdout  # the previous version is kept


def test_template_change_under_check_and_template_typo(lab: LabFixture, tmp_path: Path) -> None:
    import shutil

    from harden.render import TEMPLATES

    inv = inventory_load(lab.dir / "inventory.yml")
    assert provision(inv, "gw3*")[0].status in ("ok", "changed")
    before = lab.ssh("gw3", "sha256sum /etc/postfix/main.cf /etc/postfix/master.cf").stdout
    site = tmp_path / "templates"
    shutil.copytree(TEMPLATES, site)
    text = (site / "main.cf.j2").read_text().replace("disable_vrfy_command = yes\n",
                                                     "disable_vrfy_command = yes\nsmtpd_helo_restrictions = permit\n")
    (site / "main.cf.j2").write_text(text)
    [checked] = provision(inv, "gw3*", check=True, want_diff=True, templates=site)
    assert checked.status == "changed"
    assert [(c.kind, c.what) for c in checked.changes] == [("file", "/etc/postfix/main.cf"), ("handler", "mta reload")]
    assert "+smtpd_helo_restrictions = permit\n" in checked.changes[0].diff
    assert lab.ssh("gw3", "sha256sum /etc/postfix/main.cf /etc/postfix/master.cf").stdout == before
    # A typo in a site template fails the host with the template's name and line; nothing is pushed.
    lines = text.splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if line.startswith("myorigin"))
    lines[number - 1] = "myorigin = {{ s.myorgin }}\n"
    (site / "main.cf.j2").write_text("".join(lines))
    [failed] = provision(inv, "gw3*", templates=site)
    assert failed.status == "failed" and f"templates/main.cf.j2:{number}: " in failed.error and "myorgin" in failed.error
    assert lab.ssh("gw3", "sha256sum /etc/postfix/main.cf /etc/postfix/master.cf").stdout == before


def test_a_master_whose_smtpd_cannot_start_fails_verify(lab: LabFixture, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import harden.provision as provision_mod
    from harden.render import TEMPLATES

    inv = inventory_load(lab.dir / "inventory.yml")
    site = tmp_path / "templates"
    shutil.copytree(TEMPLATES, site)
    # No restriction left that can refuse relaying: smtpd refuses to start (as Postfix's does),
    # while the master, which owns the listener, runs on.
    with (site / "main.cf.j2").open("a") as f:
        f.write("smtpd_relay_restrictions = permit_mynetworks\nsmtpd_recipient_restrictions = permit_mynetworks\n")
    monkeypatch.setattr(provision_mod, "VERIFY_SECONDS", 5)
    try:
        started = time.monotonic()
        [failed] = provision(inv, "gw3*", templates=site)
        assert time.monotonic() - started < 30
        assert failed.status == "failed"
        assert "verify: no SMTP banner on" in failed.error and "within 5 s" in failed.error
        assert "the MTA's log says:" in failed.error and "specify at least one working instance" in failed.error
    finally:
        [restored] = provision(inv, "gw3*")
        assert restored.status == "changed", restored.error
