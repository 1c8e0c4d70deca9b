"""Tests for harden.drift and ``harden diff`` on the lab: a hand edit and a mode change are drift, nothing is written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harden.cli import main
from harden.drift import drift
from harden.inventory import inventory_load
from harden.provision import provision
from tests.conftest import LabFixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


def test_hand_edit_is_reported_until_provision_puts_it_back(fresh_lab: LabFixture,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    lab = fresh_lab
    inventory = lab.dir / "inventory.yml"
    inv = inventory_load(inventory)
    assert [r.status for r in provision(inv, "gw1*,gw2*", audit_after=False)] == ["changed", "changed"]
    assert [r.status for r in drift(inv, "gw1*,gw2*")] == ["same", "same"]
    assert main(["diff", "-i", str(inventory), "-l", "gw1*,gw2*"]) == 0

    # An admin edits main.cf on gw2 by hand and loosens the mode of its access table source.
    lab.ssh("gw2", "sed -i 's/^smtpd_recipient_limit = .*/smtpd_recipient_limit = 5000/' /etc/postfix/main.cf"
                   " && chmod 666 /etc/postfix/aliases")
    before = lab.ssh("gw2", "sha256sum /etc/postfix/main.cf; stat -c %a /etc/postfix/aliases").stdout
    capsys.readouterr()
    assert main(["diff", "-i", str(inventory), "-l", "gw1*,gw2*"]) == 1
    out = capsys.readouterr().out
    assert "-smtpd_recipient_limit = 5000\n+smtpd_recipient_limit = 250\n" in out
    assert "--- a/etc/postfix/main.cf\n+++ b/etc/postfix/main.cf\n" in out
    assert "/etc/postfix/aliases (mode 666 root root, want 644 root root)" in out
    lines = out.splitlines()
    assert any(line.startswith("same") and "gw1.lab.example" in line for line in lines)
    assert any(line.startswith("drifted") and "gw2.lab.example" in line and "2 file(s)" in line for line in lines)
    assert lab.ssh("gw2", "sha256sum /etc/postfix/main.cf; stat -c %a /etc/postfix/aliases").stdout == before

    # --json: one object per host.
    assert main(["diff", "-i", str(inventory), "-l", "gw2*", "--json"]) == 1
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["host"] == "gw2.lab.example" and record["status"] == "drifted"
    assert sorted(f["path"] for f in record["files"]) == ["/etc/postfix/aliases", "/etc/postfix/main.cf"]

    # provision puts back what the inventory says; then nothing has drifted.
    assert provision(inv, "gw2*", audit_after=False)[0].status == "changed"
    assert main(["diff", "-i", str(inventory), "-l", "gw2*"]) == 0


def test_missing_file_unreachable_host_and_bad_inventory(fresh_lab: LabFixture, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    lab = fresh_lab
    inventory = lab.dir / "inventory.yml"
    inv = inventory_load(inventory)
    # gw3 was never provisioned: every rendered file is missing there.
    [result] = drift(inv, "gw3*")
    assert result.status == "drifted"
    assert {f.note for f in result.files} == {"missing on the host"}
    assert "/etc/postfix/main.cf" in {f.path for f in result.files}
    # A host whose address nothing answers on is unreachable: exit 2.
    text = inventory.read_text().replace(lab.hosts[2].address, "127.0.0.171")
    (tmp_path / "inventory.yml").write_text(text)
    assert main(["diff", "-i", str(tmp_path / "inventory.yml"), "-l", "gw3*"]) == 2
    assert "unreachable" in capsys.readouterr().out
    (tmp_path / "bad.yml").write_text("all: [\n")
    assert main(["diff", "-i", str(tmp_path / "bad.yml")]) == 2
    assert "bad.yml" in capsys.readouterr().err
