"""One lab host: its keys and sshd_config, its namespaces started with unshare, and stopping it by pid.

The host's PID 1 is harden/lab/host-init.sh, run by ``unshare --mount --pid
--uts --ipc --fork --kill-child`` in a new session; the script builds the
host's file system (see its header) and execs tini running sshd. Stopping a
host sends SIGKILL to its PID 1, which ends every process in its PID namespace
at once; every mount it made lives in its own mount namespace and goes with it.
A pid is only signalled after checking it is still ours: the recorded PID
namespace for PID 1, the init script on unshare's command line.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from harden.errors import LabError
from harden.lab.model import LabHost

INIT_SCRIPT = Path(__file__).with_name("host-init.sh")
HOST_KEY = "ssh_host_ed25519_key"


def host_dir(lab_dir: Path, host: LabHost) -> Path:
    """The machine-side directory of a host: keys, sshd_config, console.log, layer/ and disk/."""
    return lab_dir / "hosts" / host.short


def sshd_config_text(host: LabHost) -> str:
    """sshd_config for a host: its own address, root by public key only, no PAM, no forwarding."""
    return (
        "# Written by `harden lab up`.\n"
        f"ListenAddress {host.address}:22\n"
        f"HostKey /etc/ssh/{HOST_KEY}\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "AuthorizedKeysFile .ssh/authorized_keys\n"
        "UsePAM no\n"
        "UseDNS no\n"
        "X11Forwarding no\n"
        "AllowTcpForwarding yes\n"  # jump-host (ProxyJump) tests go through lab hosts

        "PidFile /run/sshd.pid\n"
        "PrintMotd no\n"
        "MaxStartups 100:30:200\n"
        "MaxSessions 50\n"
        "Subsystem sftp internal-sftp\n"
    )


def keygen(path: Path, comment: str) -> str:
    """Make an ed25519 key pair at path (path.pub too) unless it exists; return the public key line."""
    if not path.exists():
        done = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise LabError(f"ssh-keygen {path}: {done.stderr.strip()}")
    return path.with_name(path.name + ".pub").read_text().strip()


def host_prepare(lab_dir: Path, host: LabHost) -> str:
    """Create the host's directory, host key and sshd_config; return its public host key."""
    hdir = host_dir(lab_dir, host)
    (hdir / "layer").mkdir(parents=True, exist_ok=True)
    (hdir / "disk").mkdir(exist_ok=True)
    public = keygen(hdir / HOST_KEY, f"root@{host.name}")
    (hdir / "sshd_config").write_text(sshd_config_text(host))
    return public


def host_start(lab_dir: Path, host: LabHost, layer_size: str = "1g") -> None:
    """Start the host's namespaces and its init script; fill in host.pid, init_pid and pidns."""
    hdir = host_dir(lab_dir, host)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LAB_DIR": str(lab_dir),
        "LAB_HOST_DIR": str(hdir),
        "LAB_NAME": host.name,
        "LAB_ADDR": host.address,
        "LAB_DISK": str(hdir / "disk"),
        "LAB_LAYER_SIZE": layer_size,
    }
    # A shell starts unshare in the background and prints its pid, so unshare is the
    # machine init's child, not this process's: no zombie is left here when it ends.
    env["LAB_CONSOLE"] = str(hdir / "console.log")
    launcher = subprocess.run(
        ["/bin/sh", "-c", '"$@" >>"$LAB_CONSOLE" 2>&1 </dev/null & echo $!', "lab-launch",
         "unshare", "--mount", "--pid", "--uts", "--ipc", "--fork", "--kill-child", "/bin/sh", str(INIT_SCRIPT)],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, start_new_session=True,
    )
    try:
        host.pid = int(launcher.stdout.strip())
    except ValueError:
        raise LabError(f"{host.name}: could not start unshare: {launcher.stderr.strip()}") from None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = _children(host.pid)
        if children:
            host.init_pid = children[0]
            host.pidns = _pidns(host.init_pid)
            if host.pidns:
                return
        if not os.path.exists(f"/proc/{host.pid}"):
            break
        time.sleep(0.01)
    raise LabError(f"{host.name}: the host did not start: {console_tail(lab_dir, host)}")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _pidns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def console_tail(lab_dir: Path, host: LabHost, size: int = 600) -> str:
    """The end of the host's console log (its init script's and sshd's messages), on one line."""
    try:
        data = (host_dir(lab_dir, host) / "console.log").read_bytes()[-size:]
    except OSError:
        return "(no console log)"
    return data.decode("utf-8", "replace").strip().replace("\n", " | ") or "(console log empty)"


def host_alive(host: LabHost) -> bool:
    """True while the host's PID 1 runs in the recorded PID namespace."""
    return bool(host.init_pid) and bool(host.pidns) and _pidns(host.init_pid) == host.pidns


def namespace_pids(pidns: str) -> list[int]:
    """Every process on the machine inside the PID namespace pidns."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _pidns(int(entry)) == pidns:
            found.append(int(entry))
    return found


def _is_our_unshare(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].endswith(b"unshare") and str(INIT_SCRIPT).encode() in cmdline


def host_stop(host: LabHost, timeout: float = 10.0) -> None:
    """Kill the host's PID namespace (SIGKILL to its PID 1); wait until it and its unshare are gone."""
    if host.pidns and host_alive(host):
        # unshare, still waiting for its child, reaps it and exits at once; killing
        # unshare as well would leave PID 1 a zombie for the machine's init to reap.
        os.kill(host.init_pid, signal.SIGKILL)
    elif host.pid and _is_our_unshare(host.pid):
        os.kill(host.pid, signal.SIGKILL)  # the namespace never came up
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = namespace_pids(host.pidns) if host.pidns else []
        if not left and not _is_our_unshare(host.pid):
            break
        time.sleep(0.02)
    else:
        raise LabError(f"{host.name}: processes still running after SIGKILL: {namespace_pids(host.pidns)}")
    host.pid = host.init_pid = 0
    host.pidns = ""


def host_wipe(lab_dir: Path, host: LabHost) -> None:
    """Remove the host's machine-side directory (keys, console log, disk); it must be stopped."""
    shutil.rmtree(host_dir(lab_dir, host), ignore_errors=True)


def sshd_ready(host: LabHost, deadline: float) -> bool:
    """Wait until the host's sshd answers with its SSH banner; False at the deadline."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host.address, 22), timeout=1.0) as sock:
                if sock.recv(64).startswith(b"SSH-2.0-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False
