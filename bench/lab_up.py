"""How long `harden lab up N` and `harden lab down` take (target: up 10 in under 30 s on 2 cores).

Runs the real CLI ROUNDS times (up, status, down), prints each round and the
medians. Run as root: `.venv/bin/python bench/lab_up.py [--hosts 10] [--rounds 5]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HARDEN = str(REPO / ".venv/bin/harden")


def timed(*args: str) -> float:
    start = time.monotonic()
    done = subprocess.run([HARDEN, *args], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"harden {' '.join(args)} failed: {done.stderr}{done.stdout}")
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--first-address", default="127.0.0.161")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 1
    lab_dir = f"/var/tmp/harden-lab-bench-{os.getpid()}"
    ups, statuses, downs = [], [], []
    for rnd in range(1, args.rounds + 1):
        ups.append(timed("lab", "up", str(args.hosts), "--dir", lab_dir, "--first-address", args.first_address))
        statuses.append(timed("lab", "status", "--dir", lab_dir))
        downs.append(timed("lab", "down", "--dir", lab_dir))
        print(f"round {rnd}: up {ups[-1]:.2f}s  status (SSH login to every host) {statuses[-1]:.2f}s  "
              f"down {downs[-1]:.2f}s", flush=True)
    print(f"median of {args.rounds}: up {statistics.median(ups):.2f}s (target < 30 s for 10 hosts)  "
          f"status {statistics.median(statuses):.2f}s  down {statistics.median(downs):.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
