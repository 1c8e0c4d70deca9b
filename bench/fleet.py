"""Shared by the fleet benchmarks: a lab of N hosts, provisioned once by harden (not measured), then taken down."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.timing import timed  # noqa: E402
from harden.lab.fleet import lab_down, lab_up  # noqa: E402


@contextmanager
def provisioned_lab(hosts: int, first_address: str, name: str) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """A work directory, its lab directory and an environment (HOME inside work) for the tools.

    The lab's hosts are up and provisioned by ``harden provision``; the lab
    is taken down and the work directory removed on the way out.
    """
    work = Path(tempfile.mkdtemp(prefix=f"harden-bench-{name}-", dir="/var/tmp"))
    lab_dir = work / "lab"
    lab_up(hosts, lab_dir, first_address=first_address)
    try:
        env = dict(os.environ, HOME=str(work / "home"))
        (work / "home").mkdir()
        timed([str(REPO / ".venv/bin/harden"), "provision", "-i", str(lab_dir / "inventory.yml"), "--forks",
               str(hosts), "--json"], "initial harden provision", env)
        yield work, lab_dir, env
    finally:
        lab_down(lab_dir)
        subprocess.run(["rm", "-rf", str(work)])


def fleet_arguments(doc: str | None, hosts: int, first_address: str) -> argparse.Namespace:
    """--hosts, --rounds, --first-address and --tools-venv; SystemExit unless run as root (the lab needs it)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=hosts)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--first-address", default=first_address)
    parser.add_argument("--tools-venv", default=str(REPO / ".cache/bench-venv"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (the lab needs it)")
    return args
