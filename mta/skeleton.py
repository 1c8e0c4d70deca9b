"""The daemon side of master: context handed to each daemon, privilege drop and the server loops.

CONTRACT. A daemon is a module named in master.DAEMONS. It defines:

    SERVER: str                       "single" (one connection at a time) or "trigger"
    def pre_init(ctx) -> None         before chroot and privilege drop: import, open tables
    def post_init(ctx) -> None        after them
    def service(conn, ctx) -> None    SERVER == "single": serve one accepted connection
    def trigger(data, ctx) -> None    SERVER == "trigger": handle trigger bytes (b"W" on wakeup)

Daemons keep per-process state in ctx.state. After chroot the queue directory is
"/", so daemons build every queue path from ctx.queue_dir, never from main.cf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mta.config import MainConfig
from mta.service_table import ServiceRow


@dataclass
class DaemonContext:
    """What a daemon process knows about itself.

    + service: its master.cf row (name, type, columns, -o overrides).
    + cfg: main.cf with the row's -o overrides applied.
    + queue_dir: the queue directory as seen by this process ("/" once chrooted).
    + state: the daemon's own per-process data.
    """

    service: ServiceRow
    cfg: MainConfig
    queue_dir: Path
    state: dict[str, Any] = field(default_factory=dict)

    def private(self, name: str) -> str:
        """Path of a private service socket, e.g. ctx.private("local")."""
        return str(self.queue_dir / "private" / name)

    def public(self, name: str) -> str:
        """Path of a public service socket, e.g. ctx.public("qmgr")."""
        return str(self.queue_dir / "public" / name)
