"""The ``harden`` command: argument parsing only; each subcommand calls one module."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from harden import __version__
from harden.errors import HardenError


def _validate(args: argparse.Namespace) -> int:
    from harden.validate import validate_config_dir

    findings = validate_config_dir(args.config_dir)
    for finding in findings:
        print(finding)
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    print(f"{args.config_dir}: {errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0


def _provision(args: argparse.Namespace) -> int:
    from harden.inventory import inventory_load
    from harden.provision import provision
    from harden.report import ProvisionReport

    inventory = inventory_load(args.inventory)
    hosts = inventory.select(args.limit)
    with ProvisionReport(len(hosts), check=args.check, diff=args.diff, as_json=args.json) as report:
        results = provision(inventory, args.limit, check=args.check, want_diff=args.diff, forks=args.forks,
                            on_done=report.host_done, templates=Path(args.templates) if args.templates else None,
                            audit_after=not args.no_audit)
    report.finish(results)
    if not all(r.status in ("ok", "changed") for r in results):
        return 2
    return 1 if any(r.findings for r in results) else 0


def _diff(args: argparse.Namespace) -> int:
    from harden.drift import drift, drift_exit_status
    from harden.drift_report import drift_print
    from harden.inventory import inventory_load

    try:
        inventory = inventory_load(args.inventory)
    except HardenError as exc:  # nothing could be compared: 2, never the 1 of a drifted host
        print(f"harden: error: {exc}", file=sys.stderr)
        return 2
    results = drift(inventory, args.limit, forks=args.forks,
                    templates=Path(args.templates) if args.templates else None)
    drift_print(results, as_json=args.json)
    return drift_exit_status(results)


def _rollout(args: argparse.Namespace) -> int:
    import os
    import signal

    from harden.inventory import inventory_load
    from harden.rollout import rollout
    from harden.rollout_report import RolloutReport
    from harden.waivers import waivers_load

    try:
        inventory = inventory_load(args.inventory)
        waivers = waivers_load(Path(args.waivers)) if args.waivers else []
        total = len(inventory.select(args.limit))
    except HardenError as exc:
        print(f"harden: error: {exc}", file=sys.stderr)
        return 2

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the rollout as Ctrl-C does: hosts in progress finish

    signal.signal(signal.SIGTERM, terminate)
    report = RolloutReport(total, check=args.check, diff=args.diff, as_json=args.json)
    try:
        with report:
            result = rollout(inventory, args.limit, serial=args.serial, max_fail_percentage=args.max_fail_percentage,
                             check=args.check, want_diff=args.diff, resume=args.resume,
                             journal_path=Path(args.journal) if args.journal else None, forks=args.forks,
                             templates=Path(args.templates) if args.templates else None, waivers=waivers,
                             events=report)
    except HardenError as exc:
        print(f"harden: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the second one: leave now; the journal has every finished step
        print("harden: rollout abandoned mid-step; harden rollout --resume continues it", file=sys.stderr)
        sys.stdout.flush()
        os._exit(130)
    report.finish(result)
    if result.status == "interrupted":
        return 130
    if any(h.status == "failed" and h.restored is False for h in result.hosts):
        return 2
    if result.status == "halted" or any(h.failed and not h.earlier for h in result.hosts):
        return 1
    return 0


def _fleet_arguments(parser: argparse.ArgumentParser, done: str) -> None:
    """The inventory, --limit and --forks options every fleet command takes."""
    parser.add_argument("-i", "--inventory", required=True, help="Ansible-style YAML inventory file")
    parser.add_argument("-l", "--limit", help="hosts or groups to act on (Ansible pattern: a,b  a:!b  a:&b  glob*)")
    parser.add_argument("--forks", type=int, default=10, help=f"hosts {done} at once (default 10)")


def _audit(args: argparse.Namespace) -> int:
    from harden.audit import audit, exit_status
    from harden.audit_report import report_html, report_json, report_junit, report_table
    from harden.inventory import inventory_load
    from harden.waivers import waivers_load

    try:
        inventory = inventory_load(args.inventory)
        waivers = waivers_load(Path(args.waivers)) if args.waivers else []
    except HardenError as exc:  # nothing could be audited: 2, never the 1 of a failed check
        print(f"harden: error: {exc}", file=sys.stderr)
        return 2
    audits = audit(inventory, args.limit, forks=args.forks, waivers=waivers)
    if args.format == "table":
        if args.output:
            with open(args.output, "w") as out:
                report_table(audits, out)
        else:
            report_table(audits)
    else:
        text = {"json": report_json, "junit": report_junit, "html": report_html}[args.format](audits)
        if args.output:
            Path(args.output).write_text(text)
        else:
            sys.stdout.write(text)
    return exit_status(audits)


def _lab_up(args: argparse.Namespace) -> int:
    from harden.lab.clientfiles import INVENTORY, SSH_CONFIG
    from harden.lab.fleet import lab_up

    report = lab_up(args.count, Path(args.dir), first_address=args.first_address, timeout=args.timeout,
                    postfix=[h for spec in args.postfix or [] for h in spec.split(",") if h])
    if report.installed:
        print(f"installed from Debian's packages: {', '.join(report.installed)}")
    for host in report.hosts:
        print(f"{host.name:20s} {host.address:15s} pid {host.init_pid:<8d} groups {','.join(host.groups)}")
    lab_dir = Path(args.dir).resolve()
    print(f"{len(report.hosts)} host(s) up in {report.seconds:.1f}s; "
          f"ssh -F {lab_dir / SSH_CONFIG} gw1; inventory {lab_dir / INVENTORY}")
    return 0


def _lab_down(args: argparse.Namespace) -> int:
    from harden.lab.fleet import lab_down

    state = lab_down(Path(args.dir))
    print(f"no lab in {args.dir}" if state is None else f"{len(state.hosts)} host(s) down, {args.dir} cleaned")
    return 0


def _lab_status(args: argparse.Namespace) -> int:
    from harden.lab.fleet import lab_status

    rows = lab_status(Path(args.dir))
    for row in rows:
        state = "reachable" if row.reachable else ("running" if row.alive else "down")
        print(f"{row.host.name:20s} {row.host.address:15s} pid {row.host.init_pid or '-'!s:8s} "
              f"{state:10s} {row.detail}")
    return 0 if all(row.reachable for row in rows) else 1


def _lab_ssh(args: argparse.Namespace) -> int:
    import os

    from harden.lab.fleet import ssh_command

    argv = ssh_command(Path(args.dir), args.host, args.cmd, tty=not args.cmd and sys.stdin.isatty())
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 1  # not reached


def _lab_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from harden.lab.fleet import DEFAULT_DIR
    from harden.lab.model import FIRST_ADDRESS

    lab = sub.add_parser(
        "lab",
        help="a local lab of real SSH hosts in Linux namespaces, for trying changes and for tests",
        description=(
            "Build, inspect and remove a lab of SSH hosts on this machine (root needed). Each host "
            "has its own mount, PID and UTS namespaces, a private writable layer over the machine's /, "
            "its own /proc, /tmp and /run, and a real sshd on its own loopback address (127.0.0.11, "
            ".12, ...) port 22, root login by a generated ed25519 key only. The lab directory gets "
            "known_hosts, ssh_config and inventory.yml (groups gateways and dmz)."
        ),
    )
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="ACTION")
    lab_sub.required = True

    def with_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--dir", default=str(DEFAULT_DIR), help=f"lab directory (default {DEFAULT_DIR})")
        return p

    up = with_dir(lab_sub.add_parser("up", help="build N hosts (an earlier lab in DIR is taken down first)"))
    up.add_argument("count", metavar="N", type=int, help="number of hosts (gw1 ... gwN)")
    up.add_argument("--first-address", default=FIRST_ADDRESS,
                    help=f"address of gw1; the others follow (default {FIRST_ADDRESS})")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for every sshd (default 60)")
    up.add_argument("--postfix", metavar="HOSTS", action="append",
                    help="hosts (e.g. gw4, comma-separated) that run Debian's Postfix instead of waiting to be "
                         "provisioned; they form the inventory group 'postfix'")
    up.set_defaults(run=_lab_up)
    down = with_dir(lab_sub.add_parser("down", help="stop every lab process by pid, remove addresses and files"))
    down.set_defaults(run=_lab_down)
    status = with_dir(lab_sub.add_parser("status", help="address, pid and SSH reachability of each host"))
    status.set_defaults(run=_lab_status)
    ssh = with_dir(lab_sub.add_parser("ssh", help="log in to a host, or run CMD there"))
    ssh.add_argument("host", metavar="HOST", help="gw1, gw1.lab.example or its address")
    ssh.add_argument("cmd", metavar="CMD", nargs=argparse.REMAINDER, help="command to run (default: a shell)")
    ssh.set_defaults(run=_lab_ssh)


def build_parser() -> argparse.ArgumentParser:
    """Top-level parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="harden",
        description="Provision, harden and audit internet-facing mail gateways.",
    )
    parser.add_argument("--version", action="version", version=f"harden {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    validate = sub.add_parser(
        "validate",
        help="parse a Postfix-style configuration directory back and report problems",
        description=(
            "Parse main.cf, master.cf, the aliases files named by alias_database and the "
            "hash: tables named in main.cf with the MTA's own configuration layer. Each "
            "finding names the file, line and cause. Exit status 1 when any error is found."
        ),
    )
    validate.add_argument("config_dir", metavar="DIR", help="configuration directory, e.g. /etc/postfix")
    validate.set_defaults(run=_validate)
    prov = sub.add_parser(
        "provision",
        help="turn the inventory's hosts into hardened mail gateways running the bundled MTA",
        description=(
            "For each host: connect over SSH (host keys checked strictly), install or upgrade the "
            "bundled MTA, render main.cf, master.cf, aliases, access and transport from the inventory "
            "and parse them back, build the chroot jail, then run only the handlers a change needs "
            "(newaliases, postmap, reload, start) and verify the MTA answers SMTP. A host that already "
            "matches is left untouched. Each changed host is then audited (harden audit). Exit status 2 when "
            "any host failed or was unreachable, 1 when the audit found a failure on a changed host."
        ),
    )
    _fleet_arguments(prov, "provisioned")
    prov.add_argument("--check", action="store_true", help="change nothing; report what would change")
    prov.add_argument("--diff", action="store_true", help="show a unified diff of each configuration file")
    prov.add_argument("--json", action="store_true", help="one JSON object per host on stdout, nothing else")
    prov.add_argument("--no-audit", action="store_true",
                      help="do not run harden audit on the hosts that were changed (it runs by default)")
    prov.add_argument("--templates", metavar="DIR",
                      help="site templates replacing the built-in ones (copy harden/templates/ and edit)")
    prov.set_defaults(run=_provision)
    aud = sub.add_parser(
        "audit",
        help="check that the inventory's hosts are hardened (testinfra checks over SSH, live SMTP probes)",
        description=(
            "Run every check of harden/checks against each host, hosts in parallel: one SSH connection per "
            "host (host keys checked strictly), the host's facts gathered in one command, SMTP probed live "
            "from this machine (banner, VRFY, relay attempts in every routed-address form, STARTTLS). Checks "
            "also run under plain pytest: pytest --hosts=ssh://HOST harden/checks. Exit status: 0 every "
            "check passed, was skipped or waived; 1 a check failed; 2 a host was unreachable, a check "
            "could not run, or the inventory or waivers file is unusable."
        ),
    )
    _fleet_arguments(aud, "audited")
    aud.add_argument("--format", choices=("table", "json", "junit", "html"), default="table",
                     help="report format (default: a table on the terminal)")
    aud.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    aud.add_argument("--waivers", metavar="FILE",
                     help="YAML list of accepted exceptions: id, hosts (pattern), justification, expires")
    aud.set_defaults(run=_audit)
    dif = sub.add_parser(
        "diff",
        help="show where each host's configuration files drifted from what the inventory renders",
        description=(
            "Render main.cf, master.cf, aliases, access and transport for each host as provision would, "
            "and compare them with the files on the host (content, owner root:root, mode 0644), hosts in "
            "parallel over SSH (host keys checked strictly). Nothing is written. Each differing file is "
            "shown as a unified diff from the host's file (a/) to the rendered one (b/). Exit status 0 when "
            "every host matches, 1 when any host drifted, 2 when a host was unreachable or could not be "
            "compared."
        ),
    )
    _fleet_arguments(dif, "compared")
    dif.add_argument("--json", action="store_true", help="one JSON object per host on stdout, nothing else")
    dif.add_argument("--templates", metavar="DIR", help="site templates, as given to provision")
    dif.set_defaults(run=_diff)
    roll = sub.add_parser(
        "rollout",
        help="push a configuration change to the fleet in batches, verify each host, roll back what fails",
        description=(
            "Roll out what the inventory renders (main.cf, master.cf, aliases, access, transport; a new MTA bundle) "
            "to provisioned hosts in batches: the first batch is the canary, each next batch starts only when the "
            "one before is healthy, hosts of a batch run in parallel. Per host: snapshot the files about to change "
            "and the MTA version, write the files atomically, validate with the MTA's own postconf, postconf -M, "
            "postalias and check (any failing refuses the change before any reload), reload, "
            "then verify with the audit checks and a live probe (a test message sent through the host must be "
            "delivered where the inventory says). A host that fails is restored from its snapshot, reloaded and "
            "verified again. Every step is journaled on this machine (--journal), so --resume continues an "
            "interrupted rollout without redoing finished hosts. Ctrl-C or SIGTERM: hosts in progress finish, no "
            "new one starts. Exit status: 0 every host changed or already matched; 1 a host failed (and was "
            "restored) or the rollout halted; 2 it could not start, or a host could not be restored; 130 "
            "interrupted."
        ),
    )
    _fleet_arguments(roll, "changed at once within a batch")
    roll.add_argument("--serial", default="1,10%,100%", metavar="SIZES",
                      help="batch sizes, counts or percentages of the hosts; the last repeats (default 1,10%%,100%%)")
    roll.add_argument("--max-fail-percentage", type=int, default=0, metavar="N",
                      help="halt when more than N%% of a batch fails, unreachable hosts included (default 0: any "
                           "failure halts; a failure in the canary batch always halts)")
    roll.add_argument("--check", action="store_true", help="change nothing; report what would change on each host")
    roll.add_argument("--diff", action="store_true", help="show a unified diff of each file changed")
    roll.add_argument("--resume", action="store_true",
                      help="continue the interrupted rollout recorded in the journal (same batches, same change)")
    roll.add_argument("--journal", metavar="FILE",
                      help="the rollout journal (default: INVENTORY.rollout.jsonl next to the inventory)")
    roll.add_argument("--json", action="store_true",
                      help="one JSON object per host, then {\"rollout\": ...}, on stdout; nothing else")
    roll.add_argument("--templates", metavar="DIR", help="site templates, as given to provision")
    roll.add_argument("--waivers", metavar="FILE", help="audit waivers honoured by the verification (as for audit)")
    roll.set_defaults(run=_rollout)
    _lab_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harden`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except HardenError as exc:
        print(f"harden: error: {exc}", file=sys.stderr)
        return 1
