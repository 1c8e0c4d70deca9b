"""Rollout speed: `harden rollout --serial 100%` against the equivalent Ansible playbook (forks=20).

A lab of HOSTS hosts is built and provisioned once with harden (not
measured). Then, in interleaved rounds (harden, Ansible, harden, ...), each
tool rolls out a real change to every host: smtpd_recipient_limit takes a
new value in main.cf each time. harden runs its whole rollout: per host
read the state, snapshot, write atomically, validate (mta postconf, mta
check), reload and wait for smtpd, then verify (every audit check and a
probe message delivered). Ansible runs bench/rollout/playbook.yml: the 4
files templated from what harden renders for the changed inventory, the
handlers (newaliases, postmap, reload), and a verify command (mta check, a
220 greeting). Both check host keys strictly against the lab's known_hosts.

Printed: wall time per round and tool, medians and their ratio (target:
harden at least 5x faster), and from harden's JSON the seconds its hosts
spent in each step, summed: the added steps (snapshot and verify) against
the apply (target: less than half). Apply is counted two ways: the apply
and reload steps alone, and everything else the rollout does for the change
on the host (connect, read the state, write, validate, reload).

Run as root: `bash bench/rollout.sh [--rounds 3] [--hosts 20]`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.fleet import fleet_arguments, provisioned_lab  # noqa: E402
from bench.timing import timed  # noqa: E402
from harden.inventory import inventory_load  # noqa: E402
from harden.render import gateway_files  # noqa: E402
from harden.settings import settings_from_host  # noqa: E402

FILES = ("main.cf", "master.cf", "aliases", "access")


def inventory_with(base: Path, out: Path, limit: int) -> None:
    """base with smtpd_recipient_limit set to limit for every host, written to out."""
    data = yaml.safe_load(base.read_text())
    data["all"]["vars"]["smtpd_recipient_limit"] = limit
    out.write_text(yaml.safe_dump(data, sort_keys=False))


def templates_for(inventory: Path, directory: Path) -> None:
    """The files harden renders for each host of inventory, as HOST/NAME.j2 for the playbook."""
    for host in inventory_load(inventory).hosts.values():
        files = gateway_files(settings_from_host(host))
        (directory / host.name).mkdir(parents=True, exist_ok=True)
        for name in FILES:
            (directory / host.name / f"{name}.j2").write_text(files[name])


def harden_round(inventory: Path, hosts: int, env: dict[str, str]) -> tuple[float, list[dict[str, object]]]:
    """Wall time of one rollout and its per-host JSON records."""
    cmd = [str(REPO / ".venv/bin/harden"), "rollout", "-i", str(inventory), "--serial", "100%", "--forks",
           str(hosts), "--json"]
    start = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"harden rollout failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    hosts_out = [r for r in records if "host" in r]
    if len(hosts_out) != hosts or any(r["status"] != "changed" for r in hosts_out):
        raise SystemExit(f"harden rollout did not change every host: {[r['status'] for r in hosts_out]}")
    return elapsed, hosts_out


def main() -> int:
    args = fleet_arguments(__doc__, 20, "127.0.0.71")
    tools = Path(args.tools_venv)
    with provisioned_lab(args.hosts, args.first_address, "rollout") as (work, lab_dir, env):
        base = lab_dir / "inventory.yml"
        inventory = work / "fleet.yml"
        tool_env = dict(env, ANSIBLE_HOST_KEY_CHECKING="True", ANSIBLE_NOCOLOR="1",
                        PATH=f"{tools / 'bin'}:{env.get('PATH', '')}")
        wall: dict[str, list[float]] = {"harden": [], "ansible": []}
        steps: dict[str, float] = {}
        print(f"{args.hosts} lab hosts, {args.rounds} interleaved rounds; each run changes smtpd_recipient_limit "
              "in main.cf on every host", flush=True)
        limit = 200  # the audit wants at most 250 (SMTP-LIMIT-01): a larger value fails verification
        for rnd in range(1, args.rounds + 1):
            limit += 1
            inventory_with(base, inventory, limit)
            seconds, records = harden_round(inventory, args.hosts, env)
            wall["harden"].append(seconds)
            for record in records:
                for step, value in dict(record["steps"], total=record["seconds"]).items():  # type: ignore[arg-type]
                    steps[step] = steps.get(step, 0.0) + float(value)
            limit += 1
            inventory_with(base, inventory, limit)
            templates = work / f"templates-{limit}"
            templates_for(inventory, templates)
            ansible_cmd = [str(tools / "bin/ansible-playbook"), "-i", str(inventory), "-f", str(args.hosts),
                           "-e", f"templates={templates}", "-e", "ansible_python_interpreter=/usr/bin/python3",
                           str(REPO / "bench/rollout/playbook.yml")]
            wall["ansible"].append(timed(ansible_cmd, "ansible-playbook", tool_env))
            print(f"  round {rnd}: harden {wall['harden'][-1]:6.2f}s  ansible {wall['ansible'][-1]:6.2f}s", flush=True)
        h, a = statistics.median(wall["harden"]), statistics.median(wall["ansible"])
        print()
        print(f"median wall time: harden rollout {h:.2f}s, ansible-playbook {a:.2f}s: harden is {a / h:.1f}x faster "
              "(target >= 5x)")
        added = steps.get("snapshot", 0.0) + steps.get("verify", 0.0)
        applied = steps.get("apply", 0.0) + steps.get("reload", 0.0)
        rest = steps.get("total", 0.0) - added
        print(f"harden host-seconds over all rounds: snapshot {steps.get('snapshot', 0):.2f}, apply "
              f"{steps.get('apply', 0):.2f}, reload {steps.get('reload', 0):.2f}, verify {steps.get('verify', 0):.2f}, "
              f"whole host {steps.get('total', 0):.2f}")
        print(f"added steps (snapshot + verify) / apply: {added / applied:.2f} against the apply and reload steps; "
              f"{added / rest:.2f} against everything else per host (connect, read state, write, validate, reload); "
              "target < 0.5")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
