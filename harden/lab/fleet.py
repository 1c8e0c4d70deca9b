"""``harden lab up|down|status|ssh``: build the lab's hosts, take them down, report on them, log in.

UP. Leftovers of an earlier lab in the same directory (after a crash) are taken
down first. sshd and tini are installed from Debian's packages when missing
(with service start-up denied, so no sshd appears on the machine itself). Then
the client key, each host's key and sshd_config, the hosts' loopback
addresses, the hosts themselves (started in parallel), and once every sshd
answers, known_hosts, ssh_config and inventory.yml. A failure part-way takes
down what was started.

DOWN. Kills each host's PID namespace by pid, removes the loopback addresses
``up`` added, and deletes the files the lab wrote, then the directory when
nothing else is in it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harden.errors import LabError
from harden.lab import clientfiles, host, loopback, model
from harden.lab import postfix as lab_postfix
from harden.lab.model import LabHost, LabState

DEFAULT_DIR = Path("/var/lib/harden/lab")
PACKAGES = {"/usr/sbin/sshd": "openssh-server", "/usr/bin/tini": "tini", "/usr/bin/ssh": "openssh-client",
            "/usr/bin/sudo": "sudo"}  # sudo: for non-root logins (ansible_become)
_WRITTEN = [model.STATE_FILE, clientfiles.KNOWN_HOSTS, clientfiles.SSH_CONFIG, clientfiles.INVENTORY,
            clientfiles.CLIENT_KEY, clientfiles.CLIENT_KEY + ".pub"]


def packages_ensure(extra: dict[str, str] | None = None) -> list[str]:
    """Install the Debian packages the hosts need when their programs are missing; return those installed.

    The hosts see the machine's / as their lower layer, so programs must be on
    the machine. A temporary policy-rc.d keeps the package scripts from starting
    an sshd on the machine itself.
    """
    missing = sorted({pkg for path, pkg in {**PACKAGES, **(extra or {})}.items() if not os.path.exists(path)})
    if not missing:
        return []
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\n# harden lab: no services start while packages are installed\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0 and cmd[1] == "install":
                raise LabError(f"apt-get install {' '.join(missing)}: {done.stderr.strip()[-500:]}")
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)
    return missing


@dataclass
class UpReport:
    """What ``up`` did: the hosts and how long it took."""

    hosts: list[LabHost]
    seconds: float
    installed: list[str]


def lab_up(count: int, lab_dir: Path = DEFAULT_DIR, first_address: str = model.FIRST_ADDRESS,
           timeout: float = 60.0, layer_size: str = "1g", postfix: list[str] | None = None) -> UpReport:
    """Build a lab of count hosts in lab_dir; LabError (with everything started taken down) on failure.

    + postfix: hosts (gw3 or gw3.lab.example) that get Debian's Postfix instead of waiting to be
      provisioned (harden.lab.postfix); they form the inventory group ``postfix``.
    """
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, mounts, loopback addresses)")
    start = time.monotonic()
    lab_dir = lab_dir.resolve()
    if model.state_load(lab_dir) is not None:
        lab_down(lab_dir)
    hosts = model.hosts_plan(count, first_address)
    busy = loopback.ports_in_use([h.address for h in hosts], 22)
    if busy:
        raise LabError(f"port 22 is already in use on {', '.join(busy)} (a lab left up? see `harden lab status "
                       "--dir DIR` and `harden lab down --dir DIR`); choose other addresses with --first-address")
    wanted = set(postfix or [])
    for one in hosts:
        if one.name in wanted or one.name.split(".")[0] in wanted:
            one.groups = [lab_postfix.GROUP]
            wanted.discard(one.name)
            wanted.discard(one.name.split(".")[0])
    if wanted:
        raise LabError(f"--postfix names no host of this lab: {', '.join(sorted(wanted))}")
    installed = packages_ensure({"/usr/bin/cpio": "cpio"} if postfix else None)
    lab_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(lab_dir, 0o700)
    state = LabState(hosts)
    model.state_save(lab_dir, state)
    try:
        host.keygen(lab_dir / clientfiles.CLIENT_KEY, "harden-lab")
        with ThreadPoolExecutor(max_workers=8) as pool:
            keys = dict(zip((h.name for h in hosts), pool.map(lambda h: host.host_prepare(lab_dir, h), hosts)))
        state.lo_added = loopback.lo_add([h.address for h in hosts])
        model.state_save(lab_dir, state)
        for one in hosts:
            host.host_start(lab_dir, one, layer_size)
            model.state_save(lab_dir, state)
        deadline = time.monotonic() + timeout
        for one in hosts:
            if not host.sshd_ready(one, deadline):
                raise LabError(f"{one.name}: sshd did not answer on {one.address}:22 within {timeout:.0f}s: "
                               f"{host.console_tail(lab_dir, one)}")
        clientfiles.client_files_write(lab_dir, hosts, keys)
        for one in hosts:
            if lab_postfix.GROUP in one.groups:
                lab_postfix.postfix_install(lab_dir, one, lambda h, script: run_on_host(lab_dir, h, script))
    except BaseException:
        try:
            lab_down(lab_dir)
        except LabError:
            pass  # the first error is the one to report
        raise
    return UpReport(hosts, time.monotonic() - start, installed)


def lab_down(lab_dir: Path = DEFAULT_DIR) -> LabState | None:
    """Take the lab in lab_dir down; return what it was (None when there was no lab)."""
    lab_dir = lab_dir.resolve()
    state = model.state_load(lab_dir)
    if state is None:
        return None
    errors = []
    for one in state.hosts:
        try:
            host.host_stop(one)
        except LabError as exc:
            errors.append(str(exc))
    model.state_save(lab_dir, state)
    loopback.lo_remove(state.lo_added)
    if errors:
        raise LabError("; ".join(errors))
    shutil.rmtree(lab_dir / "hosts", ignore_errors=True)
    shutil.rmtree(lab_dir / lab_postfix.DEBS, ignore_errors=True)  # Debian's postfix .deb, if --postfix fetched it
    for name in _WRITTEN:
        (lab_dir / name).unlink(missing_ok=True)
    try:
        lab_dir.rmdir()
    except OSError:
        pass  # something else lives there: leave it
    return state


def host_restart(lab_dir: Path, name: str, timeout: float = 30.0) -> LabHost:
    """Restart one host from a clean slate: a new writable layer, an empty /srv disk, the same keys."""
    lab_dir = lab_dir.resolve()
    state = lab_state(lab_dir)
    one = state.host(name)
    host.host_stop(one)
    model.state_save(lab_dir, state)
    disk = host.host_dir(lab_dir, one) / "disk"
    shutil.rmtree(disk, ignore_errors=True)
    disk.mkdir()
    host.host_start(lab_dir, one)
    model.state_save(lab_dir, state)
    if not host.sshd_ready(one, time.monotonic() + timeout):
        raise LabError(f"{one.name}: sshd did not answer after a restart: {host.console_tail(lab_dir, one)}")
    return one


def lab_state(lab_dir: Path = DEFAULT_DIR) -> LabState:
    """The lab in lab_dir; LabError when there is none."""
    state = model.state_load(lab_dir.resolve())
    if state is None:
        raise LabError(f"no lab in {lab_dir} (run `harden lab up N --dir {lab_dir}`)")
    return state


def ssh_command(lab_dir: Path, name: str, command: list[str], tty: bool = False) -> list[str]:
    """The OpenSSH command line that runs command on a lab host with the lab's pinned keys."""
    state = lab_state(lab_dir)
    target = state.host(name)
    return ["ssh", "-F", str(lab_dir.resolve() / clientfiles.SSH_CONFIG), *(["-t"] if tty else []),
            target.short, *command]


@dataclass
class HostStatus:
    """One line of ``harden lab status``."""

    host: LabHost
    alive: bool
    reachable: bool
    detail: str


def lab_status(lab_dir: Path = DEFAULT_DIR) -> list[HostStatus]:
    """Each host's address, pid, whether it runs and whether an SSH login works (strict host keys)."""
    state = lab_state(lab_dir)

    def check(one: LabHost) -> HostStatus:
        alive = host.host_alive(one)
        if not alive:
            return HostStatus(one, False, False, "not running")
        done = subprocess.run(ssh_command(lab_dir, one.short, ["true"]), capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
        detail = "ssh ok" if done.returncode == 0 else (done.stderr.strip() or f"ssh exit {done.returncode}")
        return HostStatus(one, True, done.returncode == 0, detail)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(check, state.hosts))


def run_on_host(lab_dir: Path, host: LabHost, script: str) -> tuple[int, str]:
    """Run a bash script on a lab host over SSH (the lab's pinned keys); (exit code, stdout and stderr)."""
    done = subprocess.run(ssh_command(lab_dir, host.name, ["bash", "-c", shlex.quote(script)]),
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout + done.stderr
