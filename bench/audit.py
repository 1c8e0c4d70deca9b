"""Audit speed: `harden audit` against the same checks run by plain pytest with testinfra.

A lab of HOSTS hosts is built and provisioned once (not measured). Then, in
interleaved rounds (A B C A B C ...), three runs of the same check modules
(harden/checks) against every host:

- harden: ``harden audit -i INVENTORY --format json``: one SSH connection per
  host (Paramiko, RejectPolicy on the lab's known_hosts), hosts in parallel;
- testinfra-ssh: ``pytest --hosts=ssh://gw1,... --ssh-config=LAB/ssh_config``,
  testinfra's default backend (an OpenSSH process per command, strict host
  keys from the lab's ssh_config), serial, as most users run it;
- testinfra-paramiko-n10: ``pytest -n HOSTS --hosts=paramiko://...``, its
  fastest configuration (pytest-xdist, one worker per host); its paramiko
  backend does not verify host keys.

Prints each round's wall time, the medians and the ratios. Run as root:
``bash bench/audit.sh [--rounds 3] [--hosts 10]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.timing import timed  # noqa: E402
from harden.inventory import inventory_load  # noqa: E402
from harden.lab.fleet import lab_down, lab_state, lab_up  # noqa: E402
from harden.provision import provision  # noqa: E402

FIRST = "127.0.0.31"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    lab_dir = Path(tempfile.mkdtemp(prefix="harden-bench-audit-", dir="/var/tmp"))
    try:
        lab_up(args.hosts, lab_dir, first_address=FIRST)
        inv_path = lab_dir / "inventory.yml"
        results = provision(inventory_load(inv_path), audit_after=False)
        assert all(r.status == "changed" for r in results), [(r.host, r.error) for r in results]
        names = [h.name for h in lab_state(lab_dir).hosts]
        python = str(REPO / ".venv/bin/python")
        checks = str(REPO / "harden/checks")
        ssh_config = f"--ssh-config={lab_dir / 'ssh_config'}"
        runs = {
            "harden": [str(REPO / ".venv/bin/harden"), "audit", "-i", str(inv_path), "--format", "json",
                       "-o", "/dev/null", "--forks", str(args.hosts)],
            "testinfra-ssh": [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", ssh_config,
                              "--hosts=" + ",".join(f"ssh://{n}" for n in names), checks],
            "testinfra-paramiko-n10": [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", ssh_config,
                                       "-n", str(args.hosts),
                                       "--hosts=" + ",".join(f"paramiko://{n}" for n in names), checks],
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        print(f"{args.hosts} hosts, {args.rounds} interleaved rounds; the same {checks} modules in every run")
        for round_no in range(1, args.rounds + 1):
            for name, cmd in runs.items():
                elapsed = timed(cmd, name, cwd=REPO / "harden")
                times[name].append(elapsed)
                print(f"  round {round_no} {name:24s} {elapsed:6.2f} s", flush=True)
        medians = {name: statistics.median(values) for name, values in times.items()}
        print()
        for name, value in medians.items():
            print(f"median {name:24s} {value:6.2f} s")
        ours = medians["harden"]
        for name in ("testinfra-ssh", "testinfra-paramiko-n10"):
            print(f"harden audit is {medians[name] / ours:.1f}x faster than {name}")
        print(f"target: under 5 s for {args.hosts} hosts ({'met' if ours < 5 else 'missed'}), and faster than "
              f"testinfra's fastest ({'met' if ours < medians['testinfra-paramiko-n10'] else 'missed'})")
    finally:
        lab_down(lab_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
