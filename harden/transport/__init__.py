"""How harden reaches a host: a Transport per host, chosen by a small registry (testinfra's BACKENDS shape).

``transport_open(kind, **options)`` returns a connected Transport: ``local``
(this machine, subprocess) or ``ssh`` (Fabric/Paramiko, strict host keys).
"""

from __future__ import annotations

import importlib
import shlex
from typing import TYPE_CHECKING, Any

from harden.errors import TransportError
from harden.transport.base import Result, Transport

if TYPE_CHECKING:
    from harden.inventory import Host

TRANSPORTS: dict[str, str] = {
    "local": "harden.transport.local:LocalTransport",
    "ssh": "harden.transport.ssh:SshTransport",
}


def transport_open(kind: str, **options: Any) -> Transport:
    """Open a transport of the given kind; options go to its constructor."""
    target = TRANSPORTS.get(kind)
    if target is None:
        raise TransportError(f"unknown transport {kind!r} (known: {', '.join(TRANSPORTS)})")
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    transport: Transport = cls(**options)
    return transport


def transport_for(host: "Host") -> Transport:
    """An SSH transport from the host's inventory variables (harden_* first, then Ansible's)."""
    v = host.vars
    ssh_config = v.get("harden_ssh_config")
    jump = v.get("harden_jump")
    common = shlex.split(str(v.get("ansible_ssh_common_args") or ""))
    for i, arg in enumerate(common[:-1]):
        if arg == "-F" and not ssh_config:
            ssh_config = common[i + 1]
        if arg == "-J" and not jump:
            jump = common[i + 1]
    known = v.get("harden_known_hosts")
    return transport_open(
        "ssh", host=host.name, address=v.get("ansible_host"), port=v.get("ansible_port"),
        user=v.get("ansible_user"), key_file=v.get("ansible_ssh_private_key_file"),
        known_hosts=[known] if isinstance(known, str) else list(known or []), ssh_config=ssh_config, jump=jump,
        become=v.get("ansible_become"),
        sudo_password=v.get("ansible_become_password") or v.get("ansible_become_pass"),
    )


__all__ = ["Result", "Transport", "TransportError", "transport_for", "transport_open", "TRANSPORTS"]
