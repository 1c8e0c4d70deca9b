"""Fleet rollouts: a configuration change pushed to provisioned gateways in batches, verified, rolled back on failure.

BATCHES. ``--serial`` lists batch sizes, each a count or a percentage of
the hosts (``1,10%,100%``; the last one repeats until every host has a
batch; a percentage rounds down, never below 1). The first batch is the
canary: any failure there halts the rollout. Each later batch starts only
when the one before it is healthy: its failed and unreachable hosts are no
more than ``--max-fail-percentage`` of it (default 0). Hosts of a batch
run in parallel (``forks``); batches run one after another. When a rollout
halts, the hosts of later batches are not connected to at all and are
reported ``untouched``.

PER HOST (each step one SSH command on one connection):
1. facts: the bundle version, whether the MTA runs, each config file's
   digest, owner and mode. A host that already matches is ``ok`` and
   nothing more is done. A host without the MTA running is refused
   (``harden provision`` first).
2. snapshot: the content, owner and mode of each file about to change
   (or that it is absent) and the MTA version, written to the journal
   before anything on the host is touched.
3. apply: a new MTA bundle when the version differs (the previous one
   stays installed), then every changed file written to a temporary name
   and renamed over the old one (atomic per file), the changed tables
   rebuilt (newaliases, postmap), and the result validated on the host
   by the MTA's own tools before anything is reloaded: ``postconf`` and
   ``postconf -M`` (main.cf and master.cf load), ``postalias -s`` (the
   alias tables read) and ``check``, in one process.
4. reload: ``mta reload`` (a restart for a new bundle; systemctl where
   systemd runs), then the MTA must hold its pid lock and smtpd must greet
   with 220 within 30 s.
5. verify: every audit check (harden.checks; a check that does not apply
   skips itself) over the same connection, their configuration facts
   taken from the apply's validation (the same files, not read twice) and
   everything else (modes, owners, the jail, processes, listeners, SMTP)
   read after the reload, and a live probe
   (harden.delivery_probe): a test message sent through the host must be
   delivered where the inventory says. A failed check or a probe not
   delivered fails the host.
On any failure after the snapshot the host is restored: its files put
back from the snapshot (files that did not exist removed), the tables
rebuilt, the previous bundle made current again and restarted if it had
changed (else a reload), then the restored state is verified the same
way. A lost connection is reopened for the restore. The host ends
``failed`` with ``restored`` saying whether it got back; a host whose
restore could not even be attempted keeps its snapshot in the journal and
``--resume`` restores it. On the host, every step holds a lock
(/run/mailgate-rollout.lock), so a step left running by a killed rollout
never interleaves with the next one's.

JOURNAL AND RESUME (harden.journal). Every step is recorded on the
control machine before the next begins. ``--resume`` reads the journal of
an interrupted rollout (Ctrl-C, SIGTERM, a crash or kill of the control
machine) and goes on with the same batches: hosts that finished are not
touched again, a host caught mid-way continues from its last recorded step
(files already written are not written again), hosts not reached run as
usual. It refuses when the inventory would now render different files than
when the rollout began. On a halted rollout ``--resume`` only restores
hosts whose restore could not be done.

INTERRUPTS. The first Ctrl-C (or SIGTERM, through the CLI) starts no
new host: hosts in progress finish their step sequence, restore included,
so none is left half-changed; the journal ends ``interrupted``. A second
Ctrl-C leaves at once (the journal still knows every finished step).

--check connects and reports what would change on each host (with
``--diff``, the unified diffs), writes nothing and keeps no journal.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import re
import shlex
import tarfile
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from harden import bundle as bundle_mod
from harden.audit import ERROR, FAIL, STATUSES, audit_run
from harden.checks import Check, checks_all
from harden.checks.facts import tools_command, tools_errors
from harden.delivery_probe import (
    ANYWHERE,
    PROBE_SECONDS,
    RECIPIENT_VAR,
    ProbePlan,
    log_size,
    probe_address,
    probe_plan,
    probe_send,
    probe_wait,
)
from harden.errors import HardenError, TransportError
from harden.inventory import Host, Inventory
from harden.journal import HostEntry, Journal, JournalError, JournalState, journal_default
from harden.provision import (
    CONFIG_MODE,
    MTA,
    Change,
    config_diff,
    file_state,
    host_facts,
    host_run,
    service_commands,
    service_verify,
)
from harden.render import CONFIG_DIRECTORY, gateway_files, template_environment
from harden.settings import GatewaySettings, settings_from_host
from harden.transport import Transport, transport_for
from harden.waivers import Waiver

DEFAULT_SERIAL = "1,10%,100%"
HOST_LOCK = "/run/mailgate-rollout.lock"
_TOOLS_BEGIN, _TOOLS_END = "@@tools-output", "@@tools-output-end"  # around the validation's output
LOCK_SECONDS = 60  # how long a step waits for the host's rollout lock
RECONNECT_TRIES = 3  # to restore a host whose connection was lost
RECONNECT_PAUSE = 2.0
TABLES = ("aliases", "access", "transport")
_SERIAL_ITEM = re.compile(r"([1-9][0-9]*)(%?)")


def serial_parse(text: str) -> list[str]:
    """``1,10%,100%`` -> ["1", "10%", "100%"]; HardenError naming the bad item."""
    items = [item.strip() for item in text.split(",")]
    for item in items:
        found = _SERIAL_ITEM.fullmatch(item)
        if not found or (found.group(2) and int(found.group(1)) > 100):
            raise HardenError(f"--serial {text!r}: {item!r} is not a host count (5) or a percentage (10%, at most "
                              "100%)")
    return items


def batches_plan(names: list[str], serial: list[str]) -> list[list[str]]:
    """Split names into batches by the serial sizes; the last size repeats."""
    out: list[list[str]] = []
    rest = list(names)
    index = 0
    while rest:
        item = serial[min(index, len(serial) - 1)]
        size = max(1, math.floor(len(names) * int(item[:-1]) / 100)) if item.endswith("%") else int(item)
        out.append(rest[:size])
        rest = rest[size:]
        index += 1
    return out


@dataclass
class HostRollout:
    """How the rollout went on one host.

    + status: changed, ok (already matched), failed, unreachable, untouched (not reached).
    + restored: for a failed host that had been touched: whether its snapshot was put back.
    + steps: seconds spent in each step (snapshot, apply, reload, verify, rollback).
    + earlier: its result comes from the journal of the rollout being resumed.
    """

    host: str
    batch: int
    status: str = "untouched"
    changes: list[Change] = field(default_factory=list)
    error: str = ""
    restored: bool | None = None
    rollback_error: str = ""
    probe: str = ""
    audit: dict[str, int] | None = None
    steps: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    earlier: bool = False

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "unreachable")


@dataclass
class BatchOutcome:
    """One batch: its hosts, how many failed, and whether the rollout could go on after it."""

    index: int
    hosts: list[str]
    failed: int
    healthy: bool


@dataclass
class RolloutResult:
    """The whole rollout: finished, halted, interrupted, checked, or restored (a --resume of a halted one)."""

    status: str
    hosts: list[HostRollout]
    batches: list[BatchOutcome]
    journal: str = ""
    reason: str = ""


class RolloutEvents(Protocol):
    """What a progress display is told; called from worker threads (host_step, host_done) too."""

    def batch_start(self, index: int, total: int, hosts: list[str]) -> None: ...

    def host_step(self, host: str, step: str) -> None: ...

    def host_done(self, result: HostRollout) -> None: ...

    def batch_done(self, outcome: BatchOutcome) -> None: ...

    def stopping(self) -> None: ...


class _Silent:
    def batch_start(self, index: int, total: int, hosts: list[str]) -> None:
        pass

    def host_step(self, host: str, step: str) -> None:
        pass

    def host_done(self, result: HostRollout) -> None:
        pass

    def batch_done(self, outcome: BatchOutcome) -> None:
        pass

    def stopping(self) -> None:
        pass


@dataclass
class _Context:
    """What every host of a rollout shares."""

    rollout_id: str
    bundle: bundle_mod.Bundle
    check: bool
    want_diff: bool
    connect: Callable[[Host], Transport]
    templates: Path | None
    checks: list[Check]
    waivers: list[Waiver]
    today: date
    events: RolloutEvents
    stop: threading.Event
    probe_timeout: float
    journal: Journal | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, host: str, step: str, **fields: Any) -> None:
        if self.journal is not None:
            with self.lock:
                self.journal.append(dict(fields, type="host", host=host, step=step))


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _locked(script: str) -> str:
    """script run in bash under the host's rollout lock, stopping at the first error.

    The script runs to its end even when the control machine goes away
    (SIGHUP and SIGPIPE ignored, output kept in a file and sent at exit), so
    a lost connection never stops it between two renames. It works in $d, a
    new directory next to the configuration files (a rename from there is
    atomic); directories left by a step that was killed are removed.
    """
    c = CONFIG_DIRECTORY
    return (f"set -e; trap '' HUP PIPE; exec 9>{HOST_LOCK}; flock -w {LOCK_SECONDS} 9 || "
            f"{{ echo 'another rollout step holds {HOST_LOCK}' >&2; exit 75; }}; "
            f"mkdir -p {c}; for o in {c}/.harden-rollout.*; do [ -e \"$o\" ] && rm -rf \"$o\"; done; "
            f"umask 077; d=$(mktemp -d {c}/.harden-rollout.XXXXXX); exec 8>&1 >\"$d/.log\" 2>&1; "
            "trap 'cat \"$d/.log\" >&8 2>/dev/null; rm -rf \"$d\"' EXIT; " + script)


def _detached(command: str) -> str:
    """command without the lock's and the output's descriptors: a master it starts must not hold the lock."""
    return f"( {command} ) 8>&- 9>&- </dev/null"


def _stage_failed(host: str, what: str, output: str) -> HardenError:
    stage, _, tail = output.rpartition("@@stage ")
    name, _, rest = tail.partition("\n")
    lines = [line for line in rest.strip().splitlines() if line.strip()][-5:]
    return HardenError(f"{host}: {what}: {name or 'script'} failed: " + (" | ".join(lines) or "no output"))


class _HostRun:
    """One host's steps, its snapshot, and its restore."""

    def __init__(self, host: Host, result: HostRollout, ctx: _Context, entry: HostEntry | None) -> None:
        self.host, self.result, self.ctx = host, result, ctx
        self.entry = entry if entry is not None and entry.step else None
        self.snapshot: dict[str, Any] | None = self.entry.snapshot if self.entry else None
        self.done_recorded = False
        self.facts: dict[str, str] = {}
        self.tools_output: str | None = None  # the apply's validation output, for the verification's audit

    def _step(self, name: str) -> float:
        self.ctx.events.host_step(self.host.name, name)
        return time.monotonic()

    def _took(self, name: str, started: float) -> None:
        self.result.steps[name] = round(self.result.steps.get(name, 0.0) + time.monotonic() - started, 3)

    def _done(self, status: str, **fields: Any) -> None:
        self.ctx.record(self.host.name, "done", status=status, **fields)
        self.done_recorded = True

    def work(self, t: Transport, s: GatewaySettings, files: dict[str, str]) -> str:
        """The steps on an open connection; the host's status. HardenError after a restore when it failed."""
        name = self.host.name
        facts = self.facts = host_facts(t, s)
        if not facts.get("version"):
            raise HardenError(f"{name}: the bundled MTA is not installed; provision the host first (harden provision)")
        if facts.get("running") != "1" and self.entry is None:
            raise HardenError(f"{name}: the MTA is not running; a rollout changes running gateways (start it, or "
                              "run harden provision)")
        changed = [n for n in files if facts.get(f"file:{n}") != file_state(files[n])]
        new_bundle = facts["version"] != self.ctx.bundle.version
        file_changes = {n: Change("file", f"{CONFIG_DIRECTORY}/{n}") for n in changed}
        self.result.changes = list(file_changes.values())
        if new_bundle:
            self.result.changes.insert(0, Change("bundle", f"MTA {facts['version']} -> {self.ctx.bundle.version}"))
        if self.ctx.check:
            if self.ctx.want_diff:  # the snapshot's read, one command for every file; nothing is kept
                self._diffs(file_changes, self._snapshot_take(t, changed, facts), files)
            return "changed" if self.result.changes else "ok"
        if self.snapshot is None:
            if not self.result.changes:
                self._done("ok")
                return "ok"
            started = self._step("snapshot")
            self.snapshot = self._snapshot_take(t, changed, facts)
            self.ctx.record(name, "snapshot", snapshot=self.snapshot)
            self._took("snapshot", started)
        try:
            if self.ctx.want_diff:
                self._diffs(file_changes, self.snapshot, files)
            reload_needed = bool(self.result.changes) or (self.entry is not None and self.entry.step != "reloaded")
            if self.result.changes:
                started = self._step("apply")
                self._apply(t, {n: files[n] for n in changed}, new_bundle)
                self.ctx.record(name, "applied")
                self._took("apply", started)
            if reload_needed:
                started = self._step("reload")
                self._reload(t, s)
                self.ctx.record(name, "reloaded")
                self._took("reload", started)
            started = self._step("verify")
            self._verify(t, s)
            self._took("verify", started)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the host is put back first
            self.result.error = str(exc) if isinstance(exc, HardenError) else f"{name}: {type(exc).__name__}: {exc}"
            self._restore(t, s)
            if isinstance(exc, HardenError):
                raise
            raise HardenError(self.result.error) from exc
        self._done("changed")
        return "changed"

    @staticmethod
    def _diffs(changes: dict[str, Change], snapshot: dict[str, Any], files: dict[str, str]) -> None:
        """Each changed file's unified diff, from its content in snapshot to the rendered one."""
        for n, change in changes.items():
            old = snapshot["files"].get(n)
            change.diff = config_diff(n, None if old is None else old["data"].encode("latin-1"), files[n])

    def _snapshot_take(self, t: Transport, names: list[str], facts: dict[str, str]) -> dict[str, Any]:
        """The current content, owner and mode of names on the host, and the MTA version."""
        q = shlex.quote
        script = "; ".join(
            f"if [ -f {q(f'{CONFIG_DIRECTORY}/{n}')} ]; then echo \"F {n} $(stat -c '%a %U %G' "
            f"{q(f'{CONFIG_DIRECTORY}/{n}')}) $(base64 -w0 < {q(f'{CONFIG_DIRECTORY}/{n}')})\"; else echo 'A {n}'; fi"
            for n in names)
        snap_files: dict[str, dict[str, str] | None] = {}
        for line in t.run(script).stdout.splitlines():
            parts = line.split(" ")
            if parts[0] == "A" and len(parts) == 2:
                snap_files[parts[1]] = None
            elif parts[0] == "F" and len(parts) in (5, 6):
                data = base64.b64decode(parts[5]) if len(parts) == 6 else b""
                snap_files[parts[1]] = {"mode": parts[2], "owner": parts[3], "group": parts[4],
                                        "data": data.decode("latin-1")}
        missing = [n for n in names if n not in snap_files]
        if missing:
            raise HardenError(f"{t.host}: snapshot: could not read {', '.join(missing)}")
        return {"files": snap_files, "version": facts.get("version", "")}

    def _apply(self, t: Transport, files: dict[str, str], new_bundle: bool) -> None:
        """Install the bundle if new, write the files atomically, rebuild their tables, validate.

        The validation is the MTA's own reading of the files: postconf
        (main.cf), postconf -M (master.cf), postalias -s (the alias tables)
        and check, any failure refusing the change. They run in one process
        (facts.tools_command), and their output is kept: the verification's
        audit reuses it rather than reading the same files again.
        """
        if new_bundle:
            bundle_mod.bundle_install(t, self.ctx.bundle)
        script = self._write_script(list(files)) + (
            f"; echo '@@stage mta postconf, postalias, check'; echo {_TOOLS_BEGIN}; {tools_command()}; "
            f"echo {_TOOLS_END}")
        done = t.run(_locked(script), check=False, stdin=_tar({n: v.encode() for n, v in files.items()}),
                     timeout=120)
        if not done.ok:
            raise _stage_failed(t.host, "apply", done.stdout + done.stderr)
        _, _, rest = done.stdout.partition(f"{_TOOLS_BEGIN}\n")
        output, ended, _ = rest.partition(f"{_TOOLS_END}\n")
        errors = tools_errors(output) if ended else ["the MTA's tools gave no output"]
        if errors:
            raise HardenError(f"{t.host}: apply: the host refuses the new configuration: " + "; ".join(errors))
        self.tools_output = output

    @staticmethod
    def _write_script(names: list[str], modes: dict[str, tuple[str, str, str]] | None = None,
                      remove: Sequence[str] = ()) -> str:
        """Shell (within _locked): unpack the tar on stdin into $d, rename each file into place, rebuild tables."""
        q = shlex.quote
        parts = ["echo '@@stage write'; tar -xf - -C \"$d\" --no-same-owner"]
        for n in names:
            mode, owner, group = (modes or {}).get(n, (f"{CONFIG_MODE:o}", "root", "root"))
            parts.append(f"chown {q(owner)}:{q(group)} \"$d\"/{q(n)}; chmod {q(mode)} \"$d\"/{q(n)}")
        if names:
            parts.append("sync \"$d\"/*")
        for n in names:
            parts.append(f"mv -f \"$d\"/{q(n)} {q(f'{CONFIG_DIRECTORY}/{n}')}")
        for n in remove:
            parts.append(f"rm -f {q(f'{CONFIG_DIRECTORY}/{n}')}")
        parts.append(f"sync {CONFIG_DIRECTORY}")
        mta = f"{MTA} -c {CONFIG_DIRECTORY}"
        for n in [*names, *remove]:
            if n == "aliases":
                parts.append(f"echo '@@stage mta newaliases'; {mta} newaliases")
            elif n in TABLES:
                parts.append(f"if [ -f {CONFIG_DIRECTORY}/{n} ]; then echo '@@stage mta postmap {n}'; "
                             f"{mta} postmap hash:{CONFIG_DIRECTORY}/{n}; fi")
        return "; ".join(parts)

    def _reload(self, t: Transport, s: GatewaySettings) -> None:
        """Reload (restart for a new bundle, start when not running), then wait until smtpd greets."""
        assert self.snapshot is not None
        service = service_commands(self.facts.get("init", ""))
        if self.snapshot.get("version") != self.ctx.bundle.version:
            command = service["restart"]
        else:
            command = service["reload" if self.facts.get("running") == "1" else "start"]
        done = t.run(_locked(_detached(command)), check=False, timeout=120)
        if not done.ok:
            raise HardenError(f"{t.host}: reload: `{command}` failed (exit {done.exit_code}): {done.tail()}")
        service_verify(t, s)

    def _verify(self, t: Transport, s: GatewaySettings, restored: bool = False) -> None:
        """Audit checks and the live delivery probe on the open connection; HardenError saying what failed.

        + restored: the host holds its old files again, which the inventory no
          longer describes: the probe must be delivered, wherever it goes.
        """
        recipient = self.host.vars.get(RECIPIENT_VAR)
        plan = probe_plan(s, str(recipient) if recipient else None)
        if restored:
            plan = ProbePlan(plan.recipient, ANYWHERE)
        offset = log_size(t, s.maillog_file)
        token = f"{self.ctx.rollout_id}.{uuid.uuid4().hex[:8]}"
        queue_id = probe_send(probe_address(s, self.host.address()), plan, token, self.host.name)
        audited = audit_run(self.host, t, self.ctx.checks, self.ctx.waivers, self.ctx.today,
                            None if restored else self.tools_output)
        delivered = probe_wait(t, s.maillog_file, offset, queue_id, plan, self.ctx.probe_timeout)
        if not restored:  # the result reports the change's verification, not the restored state's
            self.result.audit = {status: audited.count(status) for status in STATUSES}
            self.result.probe = delivered
        bad = [f"{r.check.id}: {r.message}" for r in audited.results if r.status in (FAIL, ERROR)]
        if bad:
            raise HardenError(f"{t.host}: verify: the audit failed: " + "; ".join(bad[:5])
                              + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""))

    def _restore(self, t: Transport, s: GatewaySettings) -> None:
        """Put the snapshot back (reconnecting if the connection was lost), reload, verify; never raises."""
        started = self._step("rollback")
        try:
            try:
                self._restore_on(t, s)
            except TransportError:
                t = self._reconnect()
                try:
                    self._restore_on(t, s)
                finally:
                    t.close()
            self.result.restored = True
        except HardenError as exc:
            self.result.restored = self.result.restored or False
            self.result.rollback_error = str(exc)
        finally:
            self._took("rollback", started)
            self._done("failed", restored=self.result.restored, error=self.result.error,
                       rollback_error=self.result.rollback_error)

    def _reconnect(self) -> Transport:
        last: HardenError | None = None
        for _ in range(RECONNECT_TRIES):
            try:
                return self.ctx.connect(self.host)
            except HardenError as exc:
                last = exc
                time.sleep(RECONNECT_PAUSE)
        raise HardenError(f"{self.host.name}: rollback: the connection was lost and could not be reopened "
                          f"({last}); the snapshot is in the journal: harden rollout --resume restores it")

    def _restore_on(self, t: Transport, s: GatewaySettings) -> None:
        assert self.snapshot is not None
        if not self.facts:  # a restore left over from an earlier run: nothing read yet on this connection
            self.facts = host_facts(t, s)
        snap_files: dict[str, dict[str, str] | None] = self.snapshot["files"]
        present = {n: v for n, v in snap_files.items() if v is not None}
        absent = [n for n, v in snap_files.items() if v is None]
        version = str(self.snapshot.get("version", ""))
        q = shlex.quote
        script = self._write_script(list(present), {n: (v["mode"], v["owner"], v["group"])
                                                     for n, v in present.items()}, absent)
        current = f"{bundle_mod.PREFIX}/current"
        script += (f"; echo '@@stage bundle'; if [ \"$(readlink {current})\" != {q(version)} ] && "
                   f"[ -d {q(f'{bundle_mod.PREFIX}/{version}')} ]; then ln -sfn {q(version)} {current}.new && "
                   f"mv -T {current}.new {current}; echo @@switched; fi")
        done = t.run(_locked(script), check=False, stdin=_tar({n: v["data"].encode("latin-1")
                                                                         for n, v in present.items()}), timeout=120)
        if not done.ok:
            raise _stage_failed(t.host, "rollback", done.stdout + done.stderr)
        self.result.restored = True  # the files and the bundle are back; what follows checks they work
        service = service_commands(self.facts.get("init", ""))
        if "@@switched" in done.stdout:
            command = service["restart"]
        else:  # a master that is not running (it failed to start on the new files) is started
            mta = f"{MTA} -c {CONFIG_DIRECTORY}"
            command = f"if {mta} status >/dev/null 2>&1; then {service['reload']}; else {service['start']}; fi"
        ran = t.run(_locked(_detached(command)), check=False, timeout=120)
        if not ran.ok:
            raise HardenError(f"{t.host}: rollback: `{command}` failed (exit {ran.exit_code}): {ran.tail()}")
        service_verify(t, s)
        try:
            self._verify(t, s, restored=True)
        except HardenError as exc:
            raise HardenError(f"the restored state does not verify either: {exc}") from None


def _host_rollout(host: Host, batch: int, ctx: _Context, entry: HostEntry | None) -> HostRollout:
    result = HostRollout(host.name, batch)
    if ctx.stop.is_set():
        return result
    run = _HostRun(host, result, ctx, entry)
    ctx.events.host_step(host.name, "connect")
    host_run(host, result, run.work, connect=ctx.connect, templates=ctx.templates)
    if not ctx.check and not run.done_recorded and result.status in ("failed", "unreachable"):
        # Failed before anything was written (unreachable, not provisioned, snapshot unreadable);
        # a host resumed mid-way that cannot be reached keeps its state for the next --resume.
        if run.snapshot is None:
            ctx.record(host.name, "done", status=result.status, error=result.error)
    ctx.events.host_done(result)
    return result


def _restore_only(host: Host, batch: int, ctx: _Context, entry: HostEntry) -> HostRollout:
    """--resume of a host the journal says failed without being restored: restore it, nothing else."""
    result = HostRollout(host.name, batch, status="failed", error=entry.error, earlier=True)
    run = _HostRun(host, result, ctx, None)
    run.snapshot = entry.snapshot

    def work(t: Transport, s: GatewaySettings, files: dict[str, str]) -> str:
        run._restore(t, s)
        return "failed"

    ctx.events.host_step(host.name, "connect")
    host_run(host, result, work, connect=ctx.connect, templates=ctx.templates)
    result.status = "failed"
    if result.restored is None:
        result.restored = False
    ctx.events.host_done(result)
    return result


def _targets(hosts: list[Host], templates: Path | None) -> dict[str, dict[str, str]]:
    """Each host's rendered files as SHA-256 digests; HardenError naming the hosts that cannot be rendered."""
    env = template_environment(templates) if templates else None
    out: dict[str, dict[str, str]] = {}
    problems = []
    for host in hosts:
        try:
            files = gateway_files(settings_from_host(host), env=env)
        except HardenError as exc:
            problems.append(str(exc))
            continue
        out[host.name] = {n: hashlib.sha256(text.encode()).hexdigest() for n, text in files.items()}
    if problems:
        raise HardenError("nothing was changed: the inventory cannot be rendered for every host:\n"
                          + "\n".join(problems))
    return out


def rollout(inventory: Inventory, limit: str | None = None, *, serial: str = DEFAULT_SERIAL,
            max_fail_percentage: int = 0, check: bool = False, want_diff: bool = False, resume: bool = False,
            journal_path: Path | None = None, forks: int = 10, templates: Path | None = None,
            waivers: list[Waiver] | None = None, events: RolloutEvents | None = None,
            connect: Callable[[Host], Transport] = transport_for, stop: threading.Event | None = None,
            probe_timeout: float = PROBE_SECONDS) -> RolloutResult:
    """Roll the inventory's configuration out to the selected hosts (see the module docstring).

    Raises HardenError (JournalError) when the rollout cannot start: a bad
    --serial, a host that cannot be rendered, a journal held or unfinished.
    A first KeyboardInterrupt stops it gracefully (status ``interrupted``);
    a second one propagates.
    """
    if not 0 <= max_fail_percentage <= 100:
        raise HardenError(f"--max-fail-percentage {max_fail_percentage}: must be 0 to 100")
    path = journal_path or journal_default(Path(inventory.path))
    ctx = _Context(rollout_id="", bundle=bundle_mod.bundle_build(), check=check, want_diff=want_diff,
                   connect=connect, templates=templates, checks=[] if check else checks_all(),
                   waivers=waivers or [], today=date.today(), events=events or _Silent(),
                   stop=stop or threading.Event(), probe_timeout=probe_timeout)
    state: JournalState | None = None
    journal: Journal | None = None
    if resume:
        if check:
            raise HardenError("--check and --resume do not go together")
        journal, state = Journal.reopen(path)
        try:
            names = [n for batch in state.start["batches"] for n in batch]
            unknown = [n for n in names if n not in inventory.hosts]
            if unknown:
                raise JournalError(f"{path}: the journal's hosts {', '.join(unknown)} are no longer in the inventory")
            batches = [list(b) for b in state.start["batches"]]
            if state.start.get("bundle") != ctx.bundle.version:
                raise JournalError(f"{path}: the MTA bundle changed since the rollout began "
                                   f"({state.start.get('bundle')} -> {ctx.bundle.version}); a resumed rollout must "
                                   "apply the same change")
            targets = _targets([inventory.hosts[n] for n in names], templates)
            moved = [n for n in names if targets[n] != state.start["targets"].get(n)]
            if moved:
                raise JournalError(f"{path}: the inventory now renders different files for {', '.join(moved)} than "
                                   "when the rollout began; a resumed rollout must apply the same change (put the "
                                   "inventory back, or remove the journal and start a new rollout)")
            if state.status == "finished" and not state.unrestored():
                journal.close()
                return RolloutResult("finished", [_from_journal(n, i, state.hosts.get(n)) for i, b in
                                                  enumerate(batches, 1) for n in b], [], str(path),
                                     "the rollout had already finished: nothing to resume")
        except BaseException:
            journal.close()
            raise
        ctx.rollout_id = str(state.start.get("id", ""))
    else:
        hosts = inventory.select(limit)
        batches = batches_plan([h.name for h in hosts], serial_parse(serial))
        ctx.rollout_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
        targets = _targets(hosts, templates)
        journal = None if check else Journal.create(path, {
            "id": ctx.rollout_id, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "inventory": str(Path(inventory.path).resolve()), "limit": limit, "serial": serial,
            "max_fail_percentage": max_fail_percentage, "bundle": ctx.bundle.version, "batches": batches,
            "targets": targets})
    ctx.journal = journal
    try:
        return _run(inventory, batches, state, ctx, max_fail_percentage if state is None
                    else int(state.start.get("max_fail_percentage", 0)), forks, str(path) if journal else "")
    finally:
        if journal is not None:
            journal.close()


def _from_journal(name: str, batch: int, entry: HostEntry | None) -> HostRollout:
    if entry is None or entry.step != "done":
        return HostRollout(name, batch)
    return HostRollout(name, batch, status=entry.status, error=entry.error, restored=entry.restored, earlier=True)


def _pool_run(jobs: Sequence[Callable[[], HostRollout]], forks: int, ctx: _Context) -> list[HostRollout]:
    """Run jobs in parallel; a first KeyboardInterrupt sets ctx.stop and waits for the jobs in progress."""
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(jobs)))) as pool:
        futures: list[Future[HostRollout]] = [pool.submit(job) for job in jobs]
        pending = set(futures)
        try:
            while pending:
                _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        except KeyboardInterrupt:
            ctx.stop.set()
            ctx.events.stopping()
            wait(pending)  # a second KeyboardInterrupt leaves from here
        return [f.result() for f in futures]


def _run(inventory: Inventory, batches: list[list[str]], state: JournalState | None, ctx: _Context,
         max_fail: int, forks: int, journal: str) -> RolloutResult:
    results: dict[str, HostRollout] = {}
    outcomes: list[BatchOutcome] = []
    halted_before = state is not None and state.status == "halted"
    # Hosts a previous run could not restore: restore them before anything else.
    if state is not None and state.unrestored():
        jobs = [partial(_restore_only, inventory.hosts[n], index, ctx, state.hosts[n])
                for index, batch in enumerate(batches, 1) for n in batch if n in state.unrestored()]
        for r in _pool_run(jobs, forks, ctx):
            results[r.host] = r
    if halted_before:
        assert state is not None
        hosts = [results.get(n) or _from_journal(n, i, state.hosts.get(n)) for i, b in enumerate(batches, 1) for n in b]
        if ctx.journal is not None:
            ctx.journal.append({"type": "end", "status": "halted"})
        return RolloutResult("restored" if results else "halted", hosts, [], journal,
                             "the rollout had been halted; " + ("its unrestored hosts were restored" if results
                                                                 else "nothing to restore") +
                             "; fix the cause and start a new rollout")
    status, reason = "checked" if ctx.check else "finished", ""
    for index, batch in enumerate(batches, 1):
        if ctx.stop.is_set():
            break
        earlier = {n: state.hosts[n] for n in batch if state is not None and n in state.hosts
                   and state.hosts[n].finished and n not in results}
        for n, entry in earlier.items():
            results[n] = _from_journal(n, index, entry)
        todo = [n for n in batch if n not in results]
        if todo:
            ctx.events.batch_start(index, len(batches), batch)
            entries = state.hosts if state is not None else {}
            for r in _pool_run([partial(_host_rollout, inventory.hosts[n], index, ctx, entries.get(n)) for n in todo],
                               forks, ctx):
                results[r.host] = r
        if ctx.stop.is_set() and any(results[n].status == "untouched" for n in batch):
            status = "interrupted"
            break
        failed = sum(1 for n in batch if results[n].failed)
        healthy = failed == 0 if index == 1 else failed * 100 <= max_fail * len(batch)
        outcome = BatchOutcome(index, batch, failed, healthy)
        outcomes.append(outcome)
        if todo:
            ctx.events.batch_done(outcome)
        if ctx.journal is not None:
            ctx.journal.append({"type": "batch", "index": index, "failed": failed, "healthy": healthy})
        if not healthy and not ctx.check:
            status = "halted"
            reason = (f"batch {index} (the canary)" if index == 1 else f"batch {index}") + \
                f": {failed} of {len(batch)} host(s) failed" + \
                ("" if index == 1 else f" ({100 * failed / len(batch):.0f}% > {max_fail}%)")
            break
    if ctx.stop.is_set() and status == "finished":
        status = "interrupted"
    if status == "interrupted":
        reason = "interrupted: hosts in progress finished; harden rollout --resume continues"
    if ctx.journal is not None:
        ctx.journal.append({"type": "end", "status": status})
    hosts = [results.get(n) or HostRollout(n, i) for i, b in enumerate(batches, 1) for n in b]
    return RolloutResult(status, hosts, outcomes, journal, reason)
