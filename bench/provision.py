"""Provisioning speed: `harden provision` against an equivalent Ansible playbook and pyinfra deploy.

A lab of HOSTS hosts is built and provisioned once with harden (the MTA bundle,
the jail, the accounts: not measured). Then, in interleaved rounds, each tool
applies the same 4 files (main.cf, master.cf, aliases, access; owner, group,
mode) with the same handlers (newaliases, postmap, reload), twice: a first run
right after the 4 files were changed behind its back on every host, and a
no-change run. Ansible and pyinfra template the files harden rendered for each
host (bench/provision/playbook.yml, deploy.py); harden does its whole run,
which also compares the bundle version, the links, the accounts and the jail.
Every tool checks host keys strictly against the lab's known_hosts.

Run as root: `bash bench/provision.sh [--rounds 3] [--hosts 10]`.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.fleet import fleet_arguments, provisioned_lab  # noqa: E402
from bench.timing import timed  # noqa: E402
from harden.inventory import inventory_load  # noqa: E402
from harden.lab.fleet import lab_state  # noqa: E402
from harden.render import gateway_files  # noqa: E402
from harden.settings import settings_from_host  # noqa: E402

FILES = ("main.cf", "master.cf", "aliases", "access")


def main() -> int:
    args = fleet_arguments(__doc__, 10, "127.0.0.61")
    tools = Path(args.tools_venv)
    with provisioned_lab(args.hosts, args.first_address, "provision") as (work, lab_dir, env):
        inventory_path = lab_dir / "inventory.yml"
        harden_cmd = [str(REPO / ".venv/bin/harden"), "provision", "-i", str(inventory_path), "--forks",
                      str(args.hosts), "--json"]
        inventory = inventory_load(inventory_path)
        templates = work / "templates"
        for host in inventory.hosts.values():
            files = gateway_files(settings_from_host(host))
            (templates / host.name).mkdir(parents=True)
            for name in FILES:
                (templates / host.name / f"{name}.j2").write_text(files[name])
        pyinfra_inventory = work / "pyinfra_inventory.py"
        lines = ["hosts = ["]
        for host in inventory.hosts.values():
            lines.append(f"    ({host.name!r}, {{'ssh_hostname': {host.address()!r}, 'ssh_user': 'root', "
                         f"'ssh_key': {str(lab_dir / 'id_ed25519')!r}, "
                         f"'ssh_known_hosts_file': {str(lab_dir / 'known_hosts')!r}, "
                         f"'ssh_strict_host_key_checking': 'yes'}}),")
        lines.append("]")
        pyinfra_inventory.write_text("\n".join(lines) + "\n")
        ansible_cmd = [str(tools / "bin/ansible-playbook"), "-i", str(inventory_path), "-f", str(args.hosts),
                       "-e", f"templates={templates}", "-e", "ansible_python_interpreter=/usr/bin/python3",
                       str(REPO / "bench/provision/playbook.yml")]
        pyinfra_cmd = [str(tools / "bin/pyinfra"), "-y", "--parallel", str(args.hosts), str(pyinfra_inventory),
                       str(REPO / "bench/provision/deploy.py")]
        tool_env = dict(env, TEMPLATES=str(templates), ANSIBLE_HOST_KEY_CHECKING="True",
                        ANSIBLE_NOCOLOR="1", PATH=f"{tools / 'bin'}:{env.get('PATH', '')}")
        commands = {"harden": harden_cmd, "ansible": ansible_cmd, "pyinfra": pyinfra_cmd}
        hosts = lab_state(lab_dir).hosts
        results: dict[str, dict[str, list[float]]] = {name: {"first": [], "nochange": []} for name in commands}
        print(f"{args.hosts} lab hosts, {args.rounds} interleaved rounds; per round and tool: a first run after "
              "the 4 files changed on every host, then a no-change run")
        for rnd in range(1, args.rounds + 1):
            for name, cmd in commands.items():
                for host in hosts:  # change the 4 files behind the tool's back (through the host's root)
                    for file in FILES:
                        path = Path(f"/proc/{host.init_pid}/root/etc/postfix/{file}")
                        path.write_text(path.read_text() + "# changed behind the tool's back\n")
                first = timed(cmd, f"{name} first run", tool_env)
                nochange = timed(cmd, f"{name} no-change run", tool_env)
                results[name]["first"].append(first)
                results[name]["nochange"].append(nochange)
                print(f"  round {rnd} {name:8s}: first run {first:6.2f}s  no-change run {nochange:6.2f}s", flush=True)
        med = {name: {kind: statistics.median(values) for kind, values in r.items()} for name, r in results.items()}
        print()
        for name, m in med.items():
            print(f"median {name:8s}: first run {m['first']:6.2f}s  no-change run {m['nochange']:6.2f}s")
        h, a, p = med["harden"], med["ansible"], med["pyinfra"]
        print(f"speed-up of harden: vs ansible {a['first'] / h['first']:.1f}x first, {a['nochange'] / h['nochange']:.1f}x "
              f"no-change (target >= 5x); vs pyinfra {p['first'] / h['first']:.1f}x first, "
              f"{p['nochange'] / h['nochange']:.1f}x no-change (target > 1x)")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
