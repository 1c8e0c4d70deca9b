"""Tests for harden.lab.fleet and harden.lab.host: a real 10-host lab over real SSH, then nothing left behind."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import paramiko
import pytest

from harden.errors import LabError
from harden.lab import host as lab_host
from harden.lab.fleet import lab_down, lab_state, lab_up
from harden.lab.loopback import lo_addresses
from harden.lab.model import LabHost
from tests.conftest import LabFixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")

HARDEN = str(Path(__file__).resolve().parents[3] / ".venv/bin/harden")
FIRST = "127.0.0.121"


def running(pid: int) -> bool:
    """True for a process that exists and is not a zombie (the machine's init reaps those)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def harden(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HARDEN, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ten() -> Iterator[tuple[LabFixture, list[LabHost]]]:
    """A 10-host lab built with the CLI; the hosts as recorded before it is taken down."""
    lab_dir = Path(f"/var/tmp/harden-lab-fleet-{os.getpid()}")
    done = harden("lab", "up", "10", "--dir", str(lab_dir), "--first-address", FIRST)
    assert done.returncode == 0, done.stderr
    assert "10 host(s) up" in done.stdout
    fixture = LabFixture(lab_dir)
    try:
        yield fixture, [LabHost(h.name, h.address, h.groups, h.pid, h.init_pid, h.pidns) for h in fixture.hosts]
    finally:
        lab_down(lab_dir)


def test_every_host_answers_with_its_own_name(ten: tuple[LabFixture, list[LabHost]]) -> None:
    lab, hosts = ten
    done = harden("lab", "status", "--dir", str(lab.dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("reachable") == 10
    for one in hosts:
        assert lab.ssh(one.short, "hostname").stdout.strip() == one.name
    done = harden("lab", "ssh", "--dir", str(lab.dir), "gw10", "cat /etc/hostname")
    assert (done.returncode, done.stdout.strip()) == (0, "gw10.lab.example")


def test_host_keys_are_checked_strictly(ten: tuple[LabFixture, list[LabHost]], tmp_path: Path) -> None:
    lab, _ = ten
    lines = (lab.dir / "known_hosts").read_text().splitlines()
    key1, key2 = lines[0].split(" ", 1)[1], lines[1].split(" ", 1)[1]
    swapped = [f"{lines[0].split(' ')[0]} {key2}", f"{lines[1].split(' ')[0]} {key1}", *lines[2:]]
    (tmp_path / "known_hosts").write_text("\n".join(swapped) + "\n")
    base = ["ssh", "-F", str(lab.dir / "ssh_config"), "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}"]
    wrong = subprocess.run([*base, "gw1", "true"], capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 255 and "host key" in wrong.stderr.lower()
    (tmp_path / "empty").write_text("")
    unknown = subprocess.run(["ssh", "-F", str(lab.dir / "ssh_config"), "-o",
                              f"UserKnownHostsFile={tmp_path / 'empty'}", "gw3", "true"],
                             capture_output=True, text=True, timeout=30)
    assert unknown.returncode == 255 and "host key verification failed" in unknown.stderr.lower()
    # Root logs in by the lab's key only: no password or keyboard-interactive method is offered.
    no_key = subprocess.run(["ssh", "-F", str(lab.dir / "ssh_config"), "-o", "IdentityFile=/dev/null",
                             "-o", "PreferredAuthentications=password,keyboard-interactive", "gw2", "true"],
                            capture_output=True, text=True, timeout=30)
    assert no_key.returncode == 255 and "permission denied (publickey)" in no_key.stderr.lower()


def test_files_and_processes_stay_on_their_host(ten: tuple[LabFixture, list[LabHost]]) -> None:
    lab, hosts = ten
    marker = f"/etc/lab-marker-{os.getpid()}"
    lab.ssh("gw1", f"echo gw1 > {marker}")
    assert lab.ssh("gw1", f"cat {marker}").stdout.strip() == "gw1"
    assert not os.path.exists(marker)
    for one in hosts[1:]:
        assert lab.ssh(one.short, f"test -e {marker}", check=False).returncode == 1
    # A daemon started over SSH outlives the session and is seen only on its host.
    lab.ssh("gw1", "setsid sleep 321 </dev/null >/dev/null 2>&1 &")
    time.sleep(0.3)
    assert "sleep 321" in lab.ssh("gw1", "ps -eo args").stdout
    assert "sleep 321" not in lab.ssh("gw2", "ps -eo args").stdout
    assert lab.ssh("gw2", "ps -e --no-headers | wc -l").stdout.strip() != ""
    # The lab directory (its keys) is hidden inside every host.
    assert lab.ssh("gw3", f"ls -A {lab.dir}").stdout.strip() == ""
    assert lab.ssh("gw3", "cat /etc/resolv.conf").stdout.startswith("nameserver 127.0.0.1")


def test_one_hundred_commands_per_host(ten: tuple[LabFixture, list[LabHost]]) -> None:
    """100 sequential SSH connections and commands per host, the 10 hosts at once (bounded)."""
    lab, hosts = ten
    known = paramiko.HostKeys(str(lab.dir / "known_hosts"))
    key = paramiko.Ed25519Key.from_private_key_file(str(lab.dir / "id_ed25519"))
    failures: list[str] = []
    done_count = [0]
    lock = threading.Lock()

    def run(one: LabHost) -> None:
        for i in range(100):
            client = paramiko.SSHClient()
            client._host_keys = known  # the lab's pinned keys; unknown keys are rejected
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            try:
                client.connect(one.address, 22, username="root", pkey=key, timeout=20, allow_agent=False,
                               look_for_keys=False)
                _, out, _ = client.exec_command(f"echo {one.short}-{i}", timeout=20)
                text = out.read().decode().strip()
                if text != f"{one.short}-{i}" or out.channel.recv_exit_status() != 0:
                    raise RuntimeError(f"unexpected output {text!r}")
                with lock:
                    done_count[0] += 1
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                with lock:
                    failures.append(f"{one.short} #{i}: {exc!r}")
                return
            finally:
                client.close()

    threads = [threading.Thread(target=run, args=(one,)) for one in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not failures
    assert done_count[0] == 1000


def test_down_leaves_nothing(tmp_path: Path) -> None:
    lab_dir = Path(f"/var/tmp/harden-lab-down-{os.getpid()}")
    lab_up(2, lab_dir, first_address="127.0.0.141")
    hosts = lab_state(lab_dir).hosts
    assert {"127.0.0.141", "127.0.0.142"} <= lo_addresses()
    namespaces = [h.pidns for h in hosts]
    assert all(lab_host.namespace_pids(ns) for ns in namespaces)
    (lab_dir / "debs").mkdir()  # what --postfix downloads goes too
    (lab_dir / "debs" / "postfix_3.7.11-0+deb12u1_amd64.deb").write_bytes(b"x")
    done = harden("lab", "down", "--dir", str(lab_dir))
    assert done.returncode == 0, done.stderr
    assert not lab_dir.exists()
    assert not any(lab_host.namespace_pids(ns) for ns in namespaces)  # (no new namespace was made since)
    assert not any(running(pid) for h in hosts for pid in (h.pid, h.init_pid))
    assert not {"127.0.0.141", "127.0.0.142"} & lo_addresses()
    assert str(lab_dir) not in Path("/proc/self/mountinfo").read_text()
    assert harden("lab", "down", "--dir", str(lab_dir)).stdout.startswith("no lab in")


def test_up_after_a_crash_cleans_leftovers() -> None:
    lab_dir = Path(f"/var/tmp/harden-lab-crash-{os.getpid()}")
    lab_up(2, lab_dir, first_address="127.0.0.151")
    old = lab_state(lab_dir).hosts
    (lab_dir / "hosts" / "gw1" / "disk" / "leftover").write_text("x")
    try:
        # The process that built the lab is gone (as after a crash); its state file remains.
        lab_up(2, lab_dir, first_address="127.0.0.151")
        assert not any(running(pid) for h in old for pid in (h.pid, h.init_pid))
        assert not (lab_dir / "hosts" / "gw1" / "disk" / "leftover").exists()
        new = lab_state(lab_dir).hosts
        assert all(lab_host.host_alive(h) for h in new)
        assert LabFixture(lab_dir).ssh("gw2", "hostname").stdout.strip() == "gw2.lab.example"
    finally:
        lab_down(lab_dir)


def test_up_refuses_addresses_another_lab_holds() -> None:
    first, second = (Path(f"/var/tmp/harden-lab-{n}-{os.getpid()}") for n in ("held", "clash"))
    lab_up(1, first, first_address="127.0.0.161")
    try:
        before = LabFixture(first).ssh("gw1", "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout
        with pytest.raises(LabError, match=r"port 22 is already in use on 127\.0\.0\.161 \(a lab left up"):
            lab_up(2, second, first_address="127.0.0.160")
        assert not second.exists()
        assert "127.0.0.160" not in lo_addresses()
        # The first lab is untouched: same host, same key.
        assert LabFixture(first).ssh("gw1", "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout == before
    finally:
        lab_down(first)


def test_fresh_lab_restores_the_initial_state(lab: LabFixture) -> None:
    lab.ssh("gw1", "echo changed > /etc/motd.lab; echo data > /srv/file")
    lab.restart("gw1")
    assert lab.ssh("gw1", "test -e /etc/motd.lab || test -e /srv/file", check=False).returncode == 1
    assert lab.ssh("gw1", "hostname").stdout.strip() == "gw1.lab.example"
