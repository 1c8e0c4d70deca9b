"""How harden reaches a host: a Transport per host, chosen by a small registry (testinfra's BACKENDS shape).

``transport_open(kind, **options)`` returns a connected Transport: ``local``
(this machine, subprocess) or ``ssh`` (Fabric/Paramiko, strict host keys).
"""

from __future__ import annotations

import importlib
from typing import Any

from harden.errors import TransportError
from harden.transport.base import Result, Transport

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


__all__ = ["Result", "Transport", "TransportError", "transport_open", "TRANSPORTS"]
