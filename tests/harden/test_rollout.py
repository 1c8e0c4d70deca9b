"""Tests for harden.rollout on a lab of 6 real SSH hosts running the bundled MTA: batches, rollback, resume, threshold."""

from __future__ import annotations

import json
import os
import shutil
import signal
import smtplib
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from harden.audit import audit, exit_status
from harden.cli import main
from harden.errors import HardenError
from harden.inventory import inventory_load
from harden.journal import journal_read
from harden.provision import provision
from harden.rollout import batches_plan, rollout, serial_parse
from tests.conftest import LabFixture, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")

FIRST = "127.0.0.181"  # away from the session lab (127.0.0.111...)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fleet() -> Iterator[LabFixture]:
    """Six lab hosts (gw1 ... gw6), provisioned again before each test."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    from harden.lab.fleet import lab_down, lab_up

    lab_dir = Path(f"/var/tmp/harden-rollout-tests-{os.getpid()}")
    lab_up(6, lab_dir, first_address=FIRST)
    try:
        yield LabFixture(lab_dir)
    finally:
        lab_down(lab_dir)
        shutil.rmtree(lab_dir, ignore_errors=True)  # the tests' inventories and journals


@pytest.fixture
def lab(fleet: LabFixture) -> LabFixture:
    fleet.restart()
    results = provision(inventory_load(fleet.dir / "inventory.yml"), forks=6, audit_after=False)
    assert [r.status for r in results] == ["changed"] * 6, [r.error for r in results]
    journal = fleet.dir / "changed.yml.rollout.jsonl"
    for stale in (journal, journal.with_name(journal.name + ".prev")):
        stale.unlink(missing_ok=True)
    return fleet


def changed_inventory(lab: LabFixture, **variables: Any) -> Path:
    """The lab's inventory with variables set for all hosts, as changed.yml next to it."""
    data = yaml.safe_load((lab.dir / "inventory.yml").read_text())
    data["all"]["vars"].update(variables)
    path = lab.dir / "changed.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main_cf(lab: LabFixture) -> dict[str, tuple[str, str]]:
    """Each host's main.cf: (inode, smtpd_recipient_limit line)."""
    out = {}
    for host in lab.hosts:
        done = lab.ssh(host.short, "stat -c %i /etc/postfix/main.cf; grep '^smtpd_recipient_limit' /etc/postfix/main.cf")
        inode, line = done.stdout.split("\n", 1)
        out[host.name] = (inode, line.strip())
    return out


def journal_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def delivered_to_postmaster(lab: LabFixture, short: str, address: str) -> None:
    """Send a message to postmaster@HOST from outside and wait until the host's log says local delivered it."""
    count = f"grep -c 'mta/local.*orig_to=<postmaster@{short}.lab.example>.*status=sent' /var/log/mail.log"
    before = int(lab.ssh(short, count, check=False).stdout.strip() or 0)
    with smtplib.SMTP(address, 25, timeout=10) as smtp:
        assert smtp.sendmail("someone@client.example", [f"postmaster@{short}.lab.example"],
                             b"Subject: after the rollback\r\n\r\nstill here\r\n") == {}
    wait_for(lambda: int(lab.ssh(short, count, check=False).stdout.strip() or 0) > before, timeout=20,
             what=f"delivery on {short}")


def test_good_change_rolls_through_batches_of_1_2_3(lab: LabFixture, capsys: pytest.CaptureFixture[str]) -> None:
    before = main_cf(lab)
    assert {line for _, line in before.values()} == {"smtpd_recipient_limit = 250"}
    inventory = changed_inventory(lab, smtpd_recipient_limit=100)
    assert main(["rollout", "-i", str(inventory), "--serial", "1,2,3", "--forks", "3", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    hosts, summary = lines[:-1], lines[-1]["rollout"]
    assert summary["status"] == "finished"
    assert [b["hosts"] for b in summary["batches"]] == [
        ["gw1.lab.example"], ["gw2.lab.example", "gw3.lab.example"],
        ["gw4.lab.example", "gw5.lab.example", "gw6.lab.example"]]
    assert [h["status"] for h in hosts] == ["changed"] * 6
    for host in hosts:
        assert host["changes"] == [{"kind": "file", "what": "/etc/postfix/main.cf", "diff": ""}]
        assert "-> mailadmin@lab.example via local (status=sent" in host["probe"]
        assert host["audit"]["fail"] == 0 and host["audit"]["error"] == 0 and host["audit"]["pass"] >= 20
        assert set(host["steps"]) == {"snapshot", "apply", "reload", "verify"}
    after = main_cf(lab)
    assert {line for _, line in after.values()} == {"smtpd_recipient_limit = 100"}
    # Batches one after another, hosts of a batch at the same time: every host of a batch
    # is applied after the previous batch ended, and before its own batch ends.
    records = journal_records(Path(summary["journal"]))
    ended = [r["at"] for r in records if r["type"] == "batch"]
    batch_of = {h["host"]: h["batch"] for h in hosts}
    for r in records:
        if r["type"] == "host" and r["step"] == "applied":
            index = batch_of[r["host"]]
            assert (index == 1 or r["at"] >= ended[index - 2]) and r["at"] <= ended[index - 1]
    starts = sorted(r["at"] for r in records if r["type"] == "host" and r["step"] == "snapshot"
                    and batch_of[r["host"]] == 3)
    dones = sorted(r["at"] for r in records if r["type"] == "host" and r["step"] == "done" and batch_of[r["host"]] == 3)
    assert starts[-1] < dones[0], "the hosts of batch 3 did not run in parallel"
    # Nothing left to do: a second rollout finds every host matching and touches none.
    result = rollout(inventory_load(inventory), serial="1,2,3")
    assert result.status == "finished" and {h.status for h in result.hosts} == {"ok"}
    assert main_cf(lab) == after


def test_a_change_that_breaks_delivery_fails_on_the_canary_and_is_rolled_back(
        lab: LabFixture, capsys: pytest.CaptureFixture[str]) -> None:
    before = main_cf(lab)
    digests = {h.short: lab.ssh(h.short, "sha256sum /etc/postfix/main.cf").stdout for h in lab.hosts}
    # A typo that drops the host's own name from mydestination: mail for postmaster@gwN is then refused.
    inventory = changed_inventory(lab, mydestination=["localhost"], smtpd_recipient_limit=100)
    assert main(["rollout", "-i", str(inventory), "--serial", "1,2,3"]) == 1
    out = capsys.readouterr().out
    assert "halted: batch 1 (the canary): 1 of 1 host(s) failed" in out
    assert "Relay access denied" in out
    assert "not reached (untouched): gw2.lab.example, gw3.lab.example, gw4.lab.example, gw5.lab.example, " \
           "gw6.lab.example" in out
    state = journal_read(lab.dir / "changed.yml.rollout.jsonl")
    assert state.status == "halted"
    assert set(state.hosts) == {"gw1.lab.example"}
    assert state.hosts["gw1.lab.example"].status == "failed" and state.hosts["gw1.lab.example"].restored is True
    # gw1 holds its old files again, passes its audit and delivers mail; no other host was touched.
    assert main_cf(lab)["gw1.lab.example"][1] == "smtpd_recipient_limit = 250"
    assert {h.short: lab.ssh(h.short, "sha256sum /etc/postfix/main.cf").stdout for h in lab.hosts} == digests
    assert {n: v for n, v in main_cf(lab).items() if n != "gw1.lab.example"} == \
        {n: v for n, v in before.items() if n != "gw1.lab.example"}
    assert exit_status(audit(inventory_load(lab.dir / "inventory.yml"), "gw1*")) == 0
    delivered_to_postmaster(lab, "gw1", lab.hosts[0].address)


def test_a_change_the_host_refuses_is_put_back_before_any_reload(lab: LabFixture) -> None:
    """The host's own validation (mta check) refuses a service account it does not have: nothing is reloaded."""
    digests = {h.short: lab.ssh(h.short, "sha256sum /etc/postfix/main.cf").stdout for h in lab.hosts}
    inventory = changed_inventory(lab, mail_owner="mailsvc")  # renders fine; no host has the account
    result = rollout(inventory_load(inventory), serial="1,2,3")
    assert result.status == "halted"
    assert [h.status for h in result.hosts] == ["failed"] + ["untouched"] * 5
    gw1 = result.hosts[0]
    assert gw1.restored is True and gw1.rollback_error == ""
    assert "apply: the host refuses the new configuration: mta check (exit 1)" in gw1.error
    assert "main.cf, line" in gw1.error and "unknown user name value: mailsvc" in gw1.error
    steps = [r["step"] for r in journal_records(lab.dir / "changed.yml.rollout.jsonl")
             if r["type"] == "host" and r["host"] == "gw1.lab.example"]
    assert steps == ["snapshot", "done"]  # never recorded as applied, never reloaded on the new files
    assert {h.short: lab.ssh(h.short, "sha256sum /etc/postfix/main.cf").stdout for h in lab.hosts} == digests


def test_killed_in_batch_2_then_resumed_changes_every_host_exactly_once(lab: LabFixture) -> None:
    original = main_cf(lab)
    inventory = changed_inventory(lab, smtpd_recipient_limit=100)
    journal = lab.dir / "changed.yml.rollout.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "harden", "rollout", "-i", str(inventory), "--serial", "1,2,3",
                             "--json"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def batch_2_started() -> bool:
            text = journal.read_text() if journal.exists() else ""
            return any('"snapshot"' in line and ('"gw2.lab.example"' in line or '"gw3.lab.example"' in line)
                       for line in text.splitlines())

        wait_for(batch_2_started, timeout=60, what="batch 2 to start")
        proc.send_signal(signal.SIGKILL)  # the control machine dies: no chance to clean up
    finally:
        proc.wait(timeout=30)
    killed = main_cf(lab)
    state = journal_read(journal)
    assert state.status == "interrupted" and state.end is None
    assert state.hosts["gw1.lab.example"].step == "done"
    assert not {"gw4.lab.example", "gw5.lab.example", "gw6.lab.example"} & set(state.hosts)
    # A new rollout is refused while this one is unfinished.
    with pytest.raises(Exception, match="--resume"):
        rollout(inventory_load(inventory), serial="1,2,3")

    result = rollout(inventory_load(inventory), resume=True)
    assert result.status == "finished", result.reason
    assert {h.host: h.status for h in result.hosts} == {h.name: "changed" for h in lab.hosts}
    assert [h.earlier for h in result.hosts][0] is True  # gw1 came from the journal, untouched this time
    resumed = main_cf(lab)
    assert {line for _, line in resumed.values()} == {"smtpd_recipient_limit = 100"}
    for name, (inode, _) in resumed.items():
        if killed[name][0] != original[name][0]:  # written before the kill: not written again
            assert inode == killed[name][0], name
        else:  # not yet written: written by the resume
            assert inode != original[name][0], name
    # The journal shows one finished cycle per host: one done, and gw1 verified once.
    records = journal_records(journal)
    dones = [r["host"] for r in records if r["type"] == "host" and r["step"] == "done"]
    assert sorted(dones) == sorted(h.name for h in lab.hosts)
    assert sum(1 for r in records if r["type"] == "host" and r["host"] == "gw1.lab.example") == 4
    # Resuming again finds nothing to do.
    assert rollout(inventory_load(inventory), resume=True).reason == "the rollout had already finished: nothing to " \
                                                                      "resume"


def test_an_unreachable_host_counts_as_failed_against_the_threshold(lab: LabFixture) -> None:
    inventory = changed_inventory(lab, smtpd_recipient_limit=100)
    data = yaml.safe_load(inventory.read_text())
    for group in data["all"]["children"].values():
        if "gw3.lab.example" in group["hosts"]:
            group["hosts"]["gw3.lab.example"]["ansible_host"] = "127.0.0.171"  # nothing listens there
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    # Default threshold 0%: batch 2 (gw2, gw3) has a failure, so batch 3 never starts.
    result = rollout(inventory_load(inventory), serial="1,2,3")
    assert result.status == "halted"
    assert {h.host: h.status for h in result.hosts} == {
        "gw1.lab.example": "changed", "gw2.lab.example": "changed", "gw3.lab.example": "unreachable",
        "gw4.lab.example": "untouched", "gw5.lab.example": "untouched", "gw6.lab.example": "untouched"}
    assert result.reason == "batch 2: 1 of 2 host(s) failed (50% > 0%)"
    assert main_cf(lab)["gw4.lab.example"][1] == "smtpd_recipient_limit = 250"
    # Up to 50% a batch may fail: the same rollout then carries on (gw1 and gw2 already match).
    (lab.dir / "changed.yml.rollout.jsonl").unlink()
    result = rollout(inventory_load(inventory), serial="1,2,3", max_fail_percentage=50)
    assert result.status == "finished"
    assert [h.status for h in result.hosts] == ["ok", "ok", "unreachable", "changed", "changed", "changed"]
    assert [(b.failed, b.healthy) for b in result.batches] == [(0, True), (1, True), (0, True)]


def test_check_writes_nothing_and_shows_diffs(lab: LabFixture, capsys: pytest.CaptureFixture[str]) -> None:
    before = main_cf(lab)
    inventory = changed_inventory(lab, smtpd_recipient_limit=100)
    assert main(["rollout", "-i", str(inventory), "-l", "gw1*,gw2*", "--check", "--diff"]) == 0
    out = capsys.readouterr().out
    assert "-smtpd_recipient_limit = 250\n+smtpd_recipient_limit = 100" in out.replace("\r", "")
    assert main_cf(lab) == before
    assert not (lab.dir / "changed.yml.rollout.jsonl").exists()  # --check keeps no journal


def test_serial_sizes_and_batches() -> None:
    names = [f"h{i}" for i in range(1, 21)]
    assert [len(b) for b in batches_plan(names, serial_parse("1,10%,100%"))] == [1, 2, 17]
    assert [len(b) for b in batches_plan(names, serial_parse("1, 5"))] == [1, 5, 5, 5, 4]
    assert [len(b) for b in batches_plan(names[:6], serial_parse("1,2,3"))] == [1, 2, 3]
    assert batches_plan(names[:3], serial_parse("1%")) == [["h1"], ["h2"], ["h3"]]  # never below one host
    for bad in ("0", "1,,2", "150%", "x", "-1"):
        with pytest.raises(HardenError, match="--serial"):
            serial_parse(bad)
