"""What a lab is: its hosts (names, loopback addresses, groups) and the state file that records them.

Host i (from 1) is ``gwI.lab.example`` at FIRST + i - 1, where FIRST defaults
to 127.0.0.11 (the issue's 127.0.0.(10+i)). Every host is in group
``gateways``; every second one (gw2, gw4, ...) is also in ``dmz``. The state
file ``lab.json`` in the lab directory records what ``up`` started and changed
(pids, PID namespaces, loopback addresses it added), so ``down`` undoes exactly
that, also after a crash.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harden.errors import LabError

DOMAIN = "lab.example"
FIRST_ADDRESS = "127.0.0.11"
STATE_FILE = "lab.json"
STATE_VERSION = 1


@dataclass
class LabHost:
    """One lab host and, once started, its processes.

    + name: the FQDN (``gw1.lab.example``); short is ``gw1``.
    + address: its own loopback address; sshd listens there on port 22.
    + groups: inventory groups it belongs to.
    + pid: the ``unshare`` process on the machine; init_pid: the host's PID 1
      (tini) as the machine sees it; pidns: its PID namespace (``pid:[4026...]``).
    """

    name: str
    address: str
    groups: list[str]
    pid: int = 0
    init_pid: int = 0
    pidns: str = ""

    @property
    def short(self) -> str:
        return self.name.split(".", 1)[0]


@dataclass
class LabState:
    """The lab directory's record of its hosts and of the loopback addresses ``up`` added."""

    hosts: list[LabHost] = field(default_factory=list)
    lo_added: list[str] = field(default_factory=list)

    def host(self, name: str) -> LabHost:
        """The host called name (short name, FQDN or address); LabError when there is none."""
        for host in self.hosts:
            if name in (host.name, host.short, host.address):
                return host
        raise LabError(f"no lab host {name!r} (hosts: {', '.join(h.short for h in self.hosts) or 'none'})")


def hosts_plan(count: int, first_address: str = FIRST_ADDRESS) -> list[LabHost]:
    """The hosts of a lab of count hosts whose first address is first_address (all in 127.0.0.0/8)."""
    if not 1 <= count <= 200:
        raise LabError(f"a lab has 1 to 200 hosts, not {count}")
    try:
        first = ipaddress.IPv4Address(first_address)
    except ValueError:
        raise LabError(f"bad first address {first_address!r}") from None
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    if first not in loopback or int(first) < int(loopback[2]) or int(first) + count - 1 >= int(loopback[-1]):
        raise LabError(f"lab addresses must stay inside 127.0.0.2-127.255.255.254: {count} from {first_address}")
    hosts = []
    for i in range(1, count + 1):
        groups = ["gateways", "dmz"] if i % 2 == 0 else ["gateways"]
        hosts.append(LabHost(f"gw{i}.{DOMAIN}", str(first + (i - 1)), groups))
    return hosts


def state_load(lab_dir: Path) -> LabState | None:
    """The lab's state, or None when the directory holds no lab."""
    path = lab_dir / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"{path}: cannot read the lab state: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise LabError(f"{path}: not a lab state file of version {STATE_VERSION}")
    try:
        hosts = [LabHost(**h) for h in data["hosts"]]
        return LabState(hosts, list(data.get("lo_added", [])))
    except (KeyError, TypeError) as exc:
        raise LabError(f"{path}: malformed lab state: {exc}") from None


def state_save(lab_dir: Path, state: LabState) -> None:
    """Write the state atomically (a new file renamed over the old one)."""
    path = lab_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    data = {"version": STATE_VERSION, "hosts": [asdict(h) for h in state.hosts], "lo_added": state.lo_added}
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
