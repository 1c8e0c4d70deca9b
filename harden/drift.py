"""Drift: each host's configuration files against what the inventory renders for it (``harden diff``).

WHAT IS COMPARED. The files provisioning writes (main.cf, master.cf,
aliases, access, transport, mydests under /etc/postfix): their content, and
their owner and mode (root:root 0644). A file the inventory renders that is
missing on the host is drift; so is a hand edit, and so is a changed mode.
The MTA bundle, the jail and the accounts are provisioning's business
(``harden provision --check`` lists every difference); this reports what an
admin edited by hand, which the next rollout would overwrite.

HOW. One SSH command per host reads the digests, owners and modes of every
file (harden.provision.host_facts); only files whose digest differs are then
read whole, for the unified diff (host's file as ``a/``, rendered as ``b/``).
Nothing on the host is written.

RESULTS. Each host ends ``same``, ``drifted`` (with the files), ``failed``
(the inventory cannot be rendered for it, or the host could not be read) or
``unreachable``. Hosts run in parallel (``forks``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harden.inventory import Host, Inventory
from harden.provision import config_diff, file_state, host_facts, host_run
from harden.render import CONFIG_DIRECTORY
from harden.settings import GatewaySettings
from harden.transport import Transport, transport_for
from harden.transport.base import file_get


@dataclass
class FileDrift:
    """One file that differs: its path, the unified diff (empty when only owner or mode differ), and a note."""

    path: str
    diff: str = ""
    note: str = ""  # "missing on the host", "mode 600 root root, want 644 root root"


@dataclass
class HostDrift:
    """How one host's files compare with the inventory."""

    host: str
    status: str = "same"  # same, drifted, failed, unreachable
    files: list[FileDrift] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0


def _compare(t: Transport, name: str, text: str, state: str | None) -> FileDrift | None:
    """The drift of one file, None when the host holds exactly what was rendered."""
    want = file_state(text)
    if state == want:
        return None
    path = f"{CONFIG_DIRECTORY}/{name}"
    if state is None:
        return FileDrift(path, config_diff(name, None, text), "missing on the host")
    digest, _, owner_mode = state.partition(" ")
    want_digest, _, want_owner_mode = want.partition(" ")
    note = "" if owner_mode == want_owner_mode else f"mode {owner_mode}, want {want_owner_mode}"
    diff = "" if digest == want_digest else config_diff(name, file_get(t, path), text)
    return FileDrift(path, diff, note)


def host_drift(host: Host, *, connect: Callable[[Host], Transport] = transport_for,
               templates: Path | None = None) -> HostDrift:
    """Compare one host's configuration files with the inventory's; never raises."""
    result = HostDrift(host.name)

    def work(t: Transport, settings: GatewaySettings, files: dict[str, str]) -> str:
        facts = host_facts(t, settings)
        for name, text in files.items():
            found = _compare(t, name, text, facts.get(f"file:{name}"))
            if found is not None:
                result.files.append(found)
        return "drifted" if result.files else "same"

    host_run(host, result, work, connect=connect, templates=templates)
    return result


def drift(inventory: Inventory, limit: str | None = None, *, forks: int = 10,
          connect: Callable[[Host], Transport] = transport_for, templates: Path | None = None) -> list[HostDrift]:
    """Compare the selected hosts, forks at a time; results in inventory order."""
    hosts = inventory.select(limit)
    with ThreadPoolExecutor(max_workers=max(1, forks)) as pool:
        return list(pool.map(lambda h: host_drift(h, connect=connect, templates=templates), hosts))


def drift_exit_status(results: list[HostDrift]) -> int:
    """0 when every host matches, 1 when one drifted, 2 when one could not be compared."""
    if any(r.status in ("failed", "unreachable") for r in results):
        return 2
    return 1 if any(r.status == "drifted" for r in results) else 0
