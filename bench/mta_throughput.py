"""Throughput benchmark: this MTA against real Postfix 3.7, both fed by Postfix's smtp-source.

Each round starts a fresh instance of one MTA (own queue, own Maildir), sends
N messages of SIZE bytes over S parallel SMTP sessions with smtp-source to a
local user, and measures:

- accepted/s: messages divided by smtp-source's wall time (every message got 250);
- delivered/s: messages divided by the time until the last one is in Maildir/new;
- peak memory: the largest sum of PSS over all of the MTA's processes, sampled
  every second during the round (reading PSS walks every page of every process
  in the kernel: five times a second it took about 5% of the machine's CPU,
  measured with perf in rounds of either MTA);
- CPU per message of each daemon (user + system milliseconds), from the CPU
  times of every MTA process sampled every 200 ms during the round (a process
  that exits between two samples loses its last 200 ms; kernel threads that
  write the journal are not counted).

Rounds alternate between the two MTAs (A B A B ...) because this machine's
speed drifts; medians of each side are compared. Both MTAs deliver to Maildir
with their default durability (fsync before 250) and run unchrooted on
127.0.0.1; the queue and the Maildir sit on the same file system (--base).

Run as root: `bash bench/mta_throughput.sh [--rounds 5] [--messages 10000]`.
With --hardened the two sides are this MTA with and without the restrictions a
provisioned gateway runs (HARDENED_MAIN_CF), to show what they cost.
With --profile DIR every daemon of this MTA also writes a cProfile file there
(mta.profiling; read them with `python -m pstats DIR/smtpd.*.prof`).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
USER = "mtabench"
DOMAIN = "bench.example.test"


@dataclass
class Result:
    accepted_per_s: float
    delivered_per_s: float
    peak_mb: float
    cpu_ms: dict[str, tuple[float, float]]  # daemon -> (user, system) ms per message


class Instance:
    """One MTA under test: start, stop, the pid of its master, its Maildir."""

    name = ""
    host = "127.0.0.1"  # the address smtpd listens on

    def __init__(self, base: Path, port: int, home: Path) -> None:
        self.base = base
        self.port = port
        self.home = home

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def master_pid(self) -> int:
        raise NotImplementedError


class PostfixInstance(Instance):
    """Debian's Postfix 3.7 run straight from the unpacked .deb (reference/postfix.md §0)."""

    name = "postfix"

    def __init__(self, base: Path, port: int, home: Path, root: Path) -> None:
        super().__init__(base, port, home)
        self.root = root
        self.etc = base / "etc"
        self.env = dict(os.environ, LD_LIBRARY_PATH=str(root / "usr/lib/postfix"))

    def setup(self) -> None:
        for sub in ("etc", "spool", "data"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.base / "data", "postfix")
        os.chmod(self.base / "data", 0o700)
        (self.etc / "main.cf").write_text(self.main_cf())
        (self.etc / "master.cf").write_text(self.master_cf())

    def main_cf_paths(self, interfaces: str = "") -> str:
        """The main.cf lines every benchmark needs: this instance's directories, log and address.

        Postfix accepts in inet_interfaces only addresses of the machine's interfaces; an other
        127.0.0.x needs interfaces (e.g. loopback-only) and host:port in master.cf.
        """
        r = self.root
        return f"""\
compatibility_level = 3.6
queue_directory = {self.base}/spool
data_directory = {self.base}/data
daemon_directory = {r}/usr/lib/postfix/sbin
command_directory = {r}/usr/sbin
shlib_directory = {r}/usr/lib/postfix
meta_directory = {r}/etc/postfix
import_environment = MAIL_CONFIG TZ LANG=C LD_LIBRARY_PATH={r}/usr/lib/postfix
maillog_file = {self.base}/maillog
maillog_file_prefixes = {self.base}
inet_interfaces = {interfaces or self.host}
inet_protocols = ipv4
"""

    def main_cf(self) -> str:
        """main.cf: deliver to the local user's Maildir, nothing goes out."""
        return self.main_cf_paths() + f"""\
myhostname = {DOMAIN}
mydestination = localhost, $myhostname
home_mailbox = Maildir/
default_transport = error:outbound disabled
relay_transport = error:outbound disabled
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps = unix:passwd.byname
biff = no
"""

    def master_cf(self) -> str:
        """Debian's master.cf, smtpd on host:port, nothing chrooted."""
        lines = []
        for line in (self.root / "usr/share/postfix/master.cf.dist").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 8 and not line[0].isspace() and not line.startswith("#"):
                if fields[0] == "smtp" and fields[1] == "inet":
                    fields[0] = f"{self.host}:{self.port}"
                if fields[4] == "y":
                    fields[4] = "n"  # no chroot jail in the benchmark
                line = " ".join(fields)
            lines.append(line)
        return "\n".join(lines) + "\n"

    def _postfix(self, *args: str) -> None:
        done = subprocess.run([str(self.root / "usr/sbin/postfix"), "-c", str(self.etc), *args],
                              env=self.env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            log = (self.base / "maillog").read_text() if (self.base / "maillog").exists() else ""
            raise RuntimeError(f"postfix {' '.join(args)} failed: {done.stderr}{log[-2000:]}")

    def start(self) -> None:
        self._postfix("start")

    def stop(self) -> None:
        self._postfix("stop")

    def master_pid(self) -> int:
        return int((self.base / "spool/pid/master.pid").read_text().split()[0])


# The hardened restrictions a provisioned gateway runs with (harden/templates/main.cf.j2), with
# access tables of 1,000 entries each, for --hardened (issue 6: within 10% of the plain run).
HARDENED_MAIN_CF = """\
smtpd_helo_required = yes
disable_vrfy_command = yes
smtpd_forbid_bare_newline = normalize
smtpd_client_restrictions = check_client_access hash:{etc}/access
smtpd_helo_restrictions = reject_invalid_helo_hostname, check_helo_access hash:{etc}/access
smtpd_sender_restrictions = reject_non_fqdn_sender, check_sender_access hash:{etc}/access
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = reject_non_fqdn_recipient, reject_unlisted_recipient,
    check_recipient_access hash:{etc}/access, reject_unauth_destination
# The load generator counts as an Internet client: every list runs to its end and anvil
# counts each connection (smtpd_client_connection_count_limit = 50, the default).
mynetworks = 192.0.2.0/24
"""


class MtaInstance(Instance):
    """This project's MTA, from the repository's virtualenv (hardened: with HARDENED_MAIN_CF)."""

    name = "mta"

    def __init__(self, base: Path, port: int, home: Path, profile_dir: str | None = None,
                 hardened: bool = False) -> None:
        super().__init__(base, port, home)
        self.etc = base / "etc"
        self.mta = str(REPO / ".venv/bin/mta")
        self.profile_dir = profile_dir
        self.hardened = hardened
        if hardened:
            self.name = "mta-hard"

    def setup(self) -> None:
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "main.cf").write_text(self.main_cf())
        if self.hardened:
            with open(self.etc / "main.cf", "a") as main_cf:
                main_cf.write(HARDENED_MAIN_CF.format(etc=self.etc))
            entries = "".join(f"spammer{i}.example REJECT\n" for i in range(1000))
            (self.etc / "access").write_text(entries + "192.0.2.0/24 REJECT\n")
            subprocess.run([self.mta, "-c", str(self.etc), "postmap", f"hash:{self.etc}/access"], check=True,
                           capture_output=True, timeout=60)
        if self.profile_dir:
            with open(self.etc / "main.cf", "a") as main_cf:
                main_cf.write(f"import_environment = MAIL_CONFIG TZ LANG=C MTA_PROFILE_DIR={self.profile_dir}\n")
        (self.etc / "master.cf").write_text(self.master_cf())

    def main_cf_paths(self) -> str:
        """The main.cf lines every benchmark needs: this instance's directories, log and address."""
        return f"""\
compatibility_level = 3.6
queue_directory = {self.base}/spool
data_directory = {self.base}/data
maillog_file = {self.base}/maillog
maillog_file_prefixes = {self.base}
inet_interfaces = {self.host}
inet_protocols = ipv4
"""

    def main_cf(self) -> str:
        """main.cf: deliver to the local user's Maildir."""
        return self.main_cf_paths() + f"""\
myhostname = {DOMAIN}
mydestination = localhost, $myhostname
home_mailbox = Maildir/
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps = unix:passwd.byname
"""

    def master_cf(self) -> str:
        """smtpd on host:port and the daemons local delivery needs (anvil when hardened)."""
        return f"""\
{self.host}:{self.port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
local     unix  -       n       n       -       -       local
""" + ("anvil     unix  -       -       n       -       1       anvil\n" if self.hardened else "")

    def start(self) -> None:
        subprocess.run([self.mta, "-c", str(self.etc), "start"], check=True, capture_output=True, timeout=60)

    def stop(self) -> None:
        subprocess.run([self.mta, "-c", str(self.etc), "stop"], check=True, capture_output=True, timeout=120)

    def master_pid(self) -> int:
        return int((self.base / "spool/pid/master.pid").read_text().split()[0])


def tree_pss(pid: int) -> int:
    """Memory of a process and all its descendants, in bytes: the sum of their PSS.

    PSS (proportional set size) charges each shared page to the processes sharing
    it in equal parts, so the sum is the memory the whole tree really uses; a sum
    of RSS would count shared libraries once per process.
    """
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except psutil.Error:
            continue
    return total


def tree_cpu(pid: int, seen: dict[int, tuple[str, float, float]]) -> None:
    """Record (process name, user, system CPU seconds) of a process and its descendants in seen, by pid."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        try:
            times = p.cpu_times()
            seen[p.pid] = ("master" if p.pid == pid else p.name(), times.user, times.system)
        except psutil.Error:
            continue


def cpu_by_daemon(seen: dict[int, tuple[str, float, float]], messages: int) -> dict[str, tuple[float, float]]:
    """Sum sampled CPU times per process name (both MTAs name their daemons), in ms per message."""
    out: dict[str, tuple[float, float]] = {}
    for name, user, system in seen.values():
        old = out.get(name, (0.0, 0.0))
        out[name] = (old[0] + user * 1000 / messages, old[1] + system * 1000 / messages)
    return out


class TreeSampler:
    """Samples an MTA's process tree in a thread: CPU times every 200 ms, peak PSS sum (bytes) every second."""

    PSS_EVERY = 5  # CPU samples per PSS sample

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.seen: dict[int, tuple[str, float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        count = 0
        while not self._stop.is_set():
            if count % self.PSS_EVERY == 0:
                self.peak = max(self.peak, tree_pss(self.pid))
            count += 1
            tree_cpu(self.pid, self.seen)
            time.sleep(0.2)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def count_delivered(maildir: Path) -> int:
    try:
        return len(os.listdir(maildir / "new"))
    except FileNotFoundError:
        return 0


def run_round(inst: Instance, smtp_source: Path, env: dict[str, str], messages: int, size: int,
              sessions: int, timeout: float) -> Result:
    maildir = inst.home / "Maildir"
    shutil.rmtree(maildir, ignore_errors=True)
    inst.start()
    try:
        sampler = TreeSampler(inst.master_pid())
        sampler.start()
        t0 = time.monotonic()
        subprocess.run(
            [str(smtp_source), "-s", str(sessions), "-l", str(size), "-m", str(messages),
             "-f", f"bench@{DOMAIN}", "-t", f"{USER}@{DOMAIN}", f"127.0.0.1:{inst.port}"],
            env=env, check=True, capture_output=True, timeout=timeout,
        )
        accepted = time.monotonic() - t0
        deadline = t0 + timeout
        while count_delivered(maildir) < messages and time.monotonic() < deadline:
            time.sleep(0.02)
        delivered_at = time.monotonic() - t0
        sampler.stop()
        got = count_delivered(maildir)
        if got < messages:
            raise RuntimeError(f"{inst.name}: only {got} of {messages} messages delivered in {timeout} s")
        return Result(messages / accepted, messages / delivered_at, sampler.peak / 2**20,
                      cpu_by_daemon(sampler.seen, messages))
    finally:
        inst.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per round")
    parser.add_argument("--base", default="/var/tmp", help="directory on the file system to test (real disk)")
    parser.add_argument("--postfix-root", default=str(REPO / ".cache/postfix-3.7/root"))
    parser.add_argument("--only", choices=("mta", "postfix"), help="run one side only")
    parser.add_argument("--hardened", action="store_true",
                        help="compare this MTA with and without the hardened restrictions (no Postfix)")
    parser.add_argument("--profile", metavar="DIR", help="also write this MTA's daemon profiles to DIR")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (both MTAs switch to the local user to deliver)", file=sys.stderr)
        return 1
    root = Path(args.postfix_root)
    smtp_source = root / "usr/sbin/smtp-source"
    env = dict(os.environ, LD_LIBRARY_PATH=str(root / "usr/lib/postfix"))
    base = Path(tempfile.mkdtemp(prefix="mta-bench-", dir=args.base))
    os.chmod(base, 0o755)  # the MTAs' unprivileged users traverse it
    home = base / "home"
    created_user = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--home-dir", str(home), "--create-home", "--shell", "/bin/sh", USER],
                       check=True)
        created_user = True
    home = Path(pwd.getpwnam(USER).pw_dir)
    try:
        sides: list[Instance] = []
        if args.hardened:
            for flag, port in ((False, 2526), (True, 2527)):
                profile = os.path.abspath(args.profile) if args.profile and flag else None  # the hardened side's
                inst = MtaInstance(base / f"mta{int(flag)}", port, home, profile, hardened=flag)
                inst.setup()
                sides.append(inst)
        if args.only != "mta" and not args.hardened:
            pf = PostfixInstance(base / "postfix", 2525, home, root)
            pf.setup()
            sides.append(pf)
        if args.only != "postfix" and not args.hardened:
            if args.profile:
                os.makedirs(args.profile, exist_ok=True)
            ours = MtaInstance(base / "mta", 2526, home, os.path.abspath(args.profile) if args.profile else None)
            ours.setup()
            sides.append(ours)
        results: dict[str, list[Result]] = {s.name: [] for s in sides}
        print(f"{args.messages} messages x {args.size} bytes over {args.sessions} sessions, "
              f"{args.rounds} interleaved rounds, queue and Maildir under {base}")
        for rnd in range(1, args.rounds + 1):
            for inst in sides:
                r = run_round(inst, smtp_source, env, args.messages, args.size, args.sessions, args.timeout)
                results[inst.name].append(r)
                cpu = "  ".join(f"{name} {user:.2f}+{system:.2f}" for name, (user, system) in sorted(r.cpu_ms.items()))
                total = sum(user + system for user, system in r.cpu_ms.values())
                print(f"  round {rnd} {inst.name:8s}: accepted {r.accepted_per_s:7.1f}/s  "
                      f"delivered {r.delivered_per_s:7.1f}/s  peak PSS {r.peak_mb:7.1f} MB\n"
                      f"      CPU ms/message (user+system): {cpu}  total {total:.2f}", flush=True)
        med = {name: Result(statistics.median(r.accepted_per_s for r in rs),
                            statistics.median(r.delivered_per_s for r in rs),
                            statistics.median(r.peak_mb for r in rs),
                            {}) for name, rs in results.items()}
        print()
        for name, m in med.items():
            cpu_total = statistics.median(sum(u + s for u, s in r.cpu_ms.values()) for r in results[name])
            print(f"median {name:8s}: accepted {m.accepted_per_s:7.1f}/s  delivered {m.delivered_per_s:7.1f}/s"
                  f"  peak PSS {m.peak_mb:7.1f} MB  CPU {cpu_total:.2f} ms/message")
        if "mta" in med and "mta-hard" in med:
            a, h = med["mta"], med["mta-hard"]
            print(f"hardened/plain: accepted {h.accepted_per_s / a.accepted_per_s:.2f}x  "
                  f"delivered {h.delivered_per_s / a.delivered_per_s:.2f}x (target: within 10%)")
        if "mta" in med and "postfix" in med:
            a, p = med["mta"], med["postfix"]
            print(f"ratio mta/postfix: accepted {a.accepted_per_s / p.accepted_per_s:.2f}x "
                  f"(target >= 1.0)  delivered {a.delivered_per_s / p.delivered_per_s:.2f}x (target >= 0.8)  "
                  f"memory {a.peak_mb / p.peak_mb:.1f}x")
        return 0
    finally:
        if created_user:
            subprocess.run(["userdel", "-r", USER], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
