"""Real Postfix on a lab host (``harden lab up N --postfix gw3``): Debian's package, installed inside the host.

The audit must work on hosts running Debian's Postfix as well as on the
bundled MTA. A lab host's writable layer takes the package like a real
machine would: the postfix .deb (``apt-get download postfix``, kept in
DIR/debs) is copied to the host's /srv and installed there with dpkg under a
policy-rc.d that keeps its scripts from starting anything, with debconf
answers for an "Internet Site" named after the host. The only dependency the
machine may lack, cpio, is installed first (on the machine by ``lab up``,
else inside the host). Then, as Debian's
init script would: main.cf listens on the host's own address only (every lab
host shares the machine's network), configure-instance.sh fills the chroot
jail, and ``postfix start``. As on every lab host, mynetworks is the host
alone (the other loopback addresses play the Internet). Everything else is
Debian's default, so the audit sees what a fresh Debian Postfix looks like.

The host is put in the inventory group ``postfix`` instead of ``gateways``;
``harden provision`` would refuse it anyway, since its /usr/sbin/sendmail
belongs to another MTA.
"""

from __future__ import annotations

import glob
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from harden.errors import LabError
from harden.lab.model import LabHost

DEBS = "debs"
GROUP = "postfix"
RunOnHost = Callable[[LabHost, str], "tuple[int, str]"]  # runs a script on a host as root: (exit code, output)


def postfix_deb(lab_dir: Path) -> Path:
    """Debian's postfix package in DIR/debs, downloaded on first use."""
    debs = lab_dir / DEBS
    found = sorted(glob.glob(str(debs / "postfix_*.deb")))
    if found:
        return Path(found[-1])
    debs.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["apt-get", "download", "postfix"], cwd=debs, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
        done = subprocess.run(["apt-get", "download", "postfix"], cwd=debs, capture_output=True, text=True,
                              timeout=600)
    found = sorted(glob.glob(str(debs / "postfix_*.deb")))
    if done.returncode != 0 or not found:
        raise LabError(f"apt-get download postfix: {done.stderr.strip()[-300:] or 'no package'}")
    return Path(found[-1])


def install_script(host: LabHost, deb_name: str) -> str:
    """The commands run inside the host (as root over SSH) to install and start Debian's Postfix."""
    q = shlex.quote
    return "\n".join([
        "set -e",
        "export DEBIAN_FRONTEND=noninteractive",
        "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d",
        f"echo {q('postfix postfix/main_mailer_type select Internet Site')} | debconf-set-selections",
        f"echo {q('postfix postfix/mailname string ' + host.name)} | debconf-set-selections",
        # postfix depends on cpio; the machine may not have it (then the host installs it in its own layer)
        "command -v cpio >/dev/null || apt-get install -y -q --no-install-recommends cpio >/srv/apt.log 2>&1 "
        "|| { apt-get update -q >/srv/apt.log 2>&1 && apt-get install -y -q --no-install-recommends cpio "
        ">>/srv/apt.log 2>&1; }",
        f"dpkg -i /srv/{q(deb_name)} >/srv/dpkg.log 2>&1 || {{ tail -n 20 /srv/dpkg.log >&2; exit 1; }}",
        "rm -f /usr/sbin/policy-rc.d",
        f"postconf -e {q('inet_interfaces = ' + host.address)} 'inet_protocols = ipv4' "
        "'mynetworks = 127.0.0.1/32'",
        "/usr/lib/postfix/configure-instance.sh - >/dev/null 2>&1 || true",
        "postfix start >/dev/null 2>&1",
        "for i in $(seq 1 50); do postfix status >/dev/null 2>&1 && break; sleep 0.1; done",
        "postfix status",
    ])


def postfix_install(lab_dir: Path, host: LabHost, run: RunOnHost) -> None:
    """Install and start Debian's Postfix on host; LabError with the reason on failure."""
    deb = postfix_deb(lab_dir)
    disk = lab_dir / "hosts" / host.name.split(".")[0] / "disk"
    shutil.copy(deb, disk / deb.name)
    code, output = run(host, install_script(host, deb.name))
    if code != 0:
        raise LabError(f"{host.name}: installing Debian's Postfix failed: {output.strip()[-500:]}")

