"""Relay benchmark: this MTA and real Postfix 3.7 as a gateway between smtp-source and smtp-sink.

Each round starts Postfix's smtp-sink on 127.0.0.46 (it throws mail away and
counts it) and a fresh gateway (own queue) on 127.0.0.45 that relays
relay.bench.example to it: relay_domains, and transport_maps naming
smtp:[127.0.0.46]:PORT, a bracketed next hop (no MX lookup). smtp-source then
sends N messages of SIZE bytes over S parallel sessions to a recipient in that
domain, and the round measures:

- accepted/s: messages divided by smtp-source's wall time (every message got 250);
- relayed/s: messages divided by the time from the first submission until the
  sink has received all of them (smtp-sink -c counts each end of data);
- peak memory: the largest sum of PSS over all of the gateway's processes,
  sampled every second during the round;
- CPU per message of each daemon (user + system milliseconds), sampled every
  200 ms (see bench/mta_throughput.py; the sink's and smtp-source's are not counted).

Rounds alternate between the two MTAs (A B A B ...) because this machine's
speed drifts; medians of each side are compared. Both gateways fsync the queue
file before 250 (their default), run unchrooted, keep their default delivery
concurrency and SMTP connection caching, and never ask DNS: the next hop is an
address, smtpd_peername_lookup = no, Postfix has smtp_dns_support_level =
disabled and this MTA a resolv.conf (MTA_RESOLV_CONF) naming 127.0.0.54, where
nothing answers.

A round that stalls (the sink short of N messages after --timeout seconds)
ends the run with an error naming the sink's count, the gateway's queue and
the tail of its maillog; the gateway, its processes and the sink are stopped.

Run as root: `bash bench/relay_throughput.sh [--rounds 3] [--messages 10000]`.
With --profile DIR every daemon of this MTA also writes a cProfile file there
(mta.profiling; read them with `python -m pstats DIR/smtp.*.prof`).
"""

from __future__ import annotations

import argparse
import errno
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.mta_throughput import (  # noqa: E402
    MtaInstance,
    PostfixInstance,
    TreeSampler,
    cpu_by_daemon,
)

GATEWAY = "127.0.0.45"  # the gateway's smtpd (tests use other 127.0.0.x addresses)
SINK = "127.0.0.46"  # smtp-sink
RELAY_DOMAIN = "relay.bench.example"
GATEWAY_HOST = "gw.bench.example.test"
SENDER = "bench@source.bench.example"
RECIPIENT = f"sink@{RELAY_DOMAIN}"
NO_RESOLVER = "nameserver 127.0.0.54\noptions timeout:1 attempts:1\n"  # nothing listens there

# What both gateways share: relay one domain to the sink, deliver nothing locally.
RELAY_MAIN_CF = """\
myhostname = {host}
mydestination = localhost
mynetworks = 127.0.0.1/32
relay_domains = {domain}
transport_maps = inline:{{ {{{domain}=smtp:[{sink}]:{sink_port}}} }}
default_transport = error:outbound disabled
smtpd_peername_lookup = no
alias_maps =
alias_database =
"""


@dataclass
class Result:
    accepted_per_s: float
    relayed_per_s: float
    peak_mb: float
    cpu_ms: dict[str, tuple[float, float]]  # daemon -> (user, system) ms per message
    extra: int  # messages the sink received beyond those sent (duplicates)


class RelayPostfix(PostfixInstance):
    """Postfix 3.7 as the gateway: Debian's master.cf (smtp unix service included), no DNS."""

    host = GATEWAY

    def __init__(self, base: Path, port: int, root: Path, sink_port: int) -> None:
        super().__init__(base, port, base, root)
        self.sink_port = sink_port

    def main_cf(self) -> str:
        return self.main_cf_paths("loopback-only") + RELAY_MAIN_CF.format(
            host=GATEWAY_HOST, domain=RELAY_DOMAIN, sink=SINK, sink_port=self.sink_port) + """\
smtp_dns_support_level = disabled
smtp_host_lookup = native
biff = no
"""


class RelayMta(MtaInstance):
    """This MTA as the gateway: the daemons of tests/e2e/conftest.py's MASTER_CF, DNS to 127.0.0.54."""

    host = GATEWAY

    def __init__(self, base: Path, port: int, sink_port: int, profile_dir: str | None = None) -> None:
        super().__init__(base, port, base)  # the parent's profile line would replace import_environment
        self.sink_port = sink_port
        self.relay_profile_dir = profile_dir

    def setup(self) -> None:
        super().setup()
        (self.etc / "resolv.conf").write_text(NO_RESOLVER)

    def main_cf(self) -> str:
        env = f"MAIL_CONFIG TZ LANG=C MTA_RESOLV_CONF={self.etc}/resolv.conf"
        if self.relay_profile_dir:
            env += f" MTA_PROFILE_DIR={self.relay_profile_dir}"
        return self.main_cf_paths() + RELAY_MAIN_CF.format(
            host=GATEWAY_HOST, domain=RELAY_DOMAIN, sink=SINK, sink_port=self.sink_port) + f"""\
# Name lookups go to the resolv.conf in etc/ (nothing answers there), never to the machine's.
import_environment = {env}
"""

    def master_cf(self) -> str:
        """The local-delivery daemons of bench/mta_throughput.py, and those relaying and bouncing need."""
        return super().master_cf() + """\
showq     unix  n       -       n       -       -       showq
anvil     unix  -       -       n       -       1       anvil
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
postdrop  unix  n       -       n       -       -       postdrop
"""


def listening(pid: int, address: str, port: int) -> bool:
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and tuple(c.laddr) == (address, port) for c in conns)


def port_free(address: str, port: int) -> bool:
    """Nothing listens on address:port (nor on the wildcard address with that port)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT of a past run is fine
        try:
            probe.bind((address, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise
    return True


class Sink:
    """Postfix's smtp-sink on SINK:port, run as an unprivileged user, counting the messages it receives."""

    COUNTER = re.compile(rb"mesg=(\d+)")

    def __init__(self, binary: Path, env: dict[str, str], port: int, user: str) -> None:
        self.binary = binary
        self.env = env
        self.port = port
        self.user = user
        self.proc: subprocess.Popen[bytes] | None = None
        self.count = 0
        self.stderr = b""
        self._threads: list[threading.Thread] = []

    def _read_counts(self, stream: IO[bytes]) -> None:
        fd = stream.fileno()
        tail = b""
        while chunk := os.read(fd, 65536):
            tail = (tail + chunk)[-256:]
            found = self.COUNTER.findall(tail)
            if found:
                self.count = int(found[-1])

    def _read_stderr(self, stream: IO[bytes]) -> None:
        fd = stream.fileno()
        while chunk := os.read(fd, 65536):
            self.stderr = (self.stderr + chunk)[-4000:]

    def start(self) -> None:
        # -c: running counters on stdout ("sess=N quit=N mesg=N\r"); -t: command timeout; 1024: backlog.
        self.proc = subprocess.Popen(
            [str(self.binary), "-4", "-c", "-u", self.user, "-t", "100", f"{SINK}:{self.port}", "1024"],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for target, stream in ((self._read_counts, self.proc.stdout), (self._read_stderr, self.proc.stderr)):
            thread = threading.Thread(target=target, args=(stream,), daemon=True)
            thread.start()
            self._threads.append(thread)
        deadline = time.monotonic() + 10
        while not listening(self.proc.pid, SINK, self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"smtp-sink did not start listening on {SINK}:{self.port}: "
                                   f"{self.stderr.decode(errors='replace')}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for thread in self._threads:
            thread.join(5)
        self._threads = []
        self.proc = None


def gateway_procs(inst: PostfixInstance | MtaInstance) -> list[psutil.Process]:
    """The gateway's master and its descendants, as the instance we started them as."""
    try:
        master = psutil.Process(inst.master_pid())
        return [master, *master.children(recursive=True)]
    except (OSError, ValueError, IndexError, psutil.Error):
        return []


def stop_gateway(inst: PostfixInstance | MtaInstance) -> None:
    """Stop the gateway with its own command, then make sure its master and children are gone
    (SIGTERM, then SIGKILL, to those processes only), each step bounded in time."""
    procs = gateway_procs(inst)
    try:
        inst.stop()
    except (subprocess.SubprocessError, RuntimeError, OSError) as e:
        print(f"bench: {inst.name} stop failed: {e}", file=sys.stderr)
    procs += [p for p in gateway_procs(inst) if p not in procs]  # a master the stop command left behind
    _gone, alive = psutil.wait_procs(procs, timeout=30)
    if alive:
        print(f"bench: {inst.name}: {len(alive)} processes still running 30 s after stop; terminating them",
              file=sys.stderr)
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            for p in alive:
                try:
                    p.send_signal(sig)
                except psutil.Error:
                    pass
            _gone, alive = psutil.wait_procs(alive, timeout=wait)
            if not alive:
                break
        if alive:
            print(f"bench: {inst.name}: could not stop pids {[p.pid for p in alive]}", file=sys.stderr)


QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


def queue_sizes(inst: PostfixInstance | MtaInstance) -> dict[str, int]:
    spool = inst.base / "spool"
    return {queue: sum(len(files) for _dir, _subdirs, files in os.walk(spool / queue)) for queue in QUEUES}


def queue_counts(inst: PostfixInstance | MtaInstance) -> str:
    return ", ".join(f"{queue} {n}" for queue, n in queue_sizes(inst).items())


def maillog_summary(inst: PostfixInstance | MtaInstance, lines: int = 25) -> str:
    path = inst.base / "maillog"
    text = path.read_text(errors="replace") if path.exists() else ""
    status = {s: text.count(f"status={s}") for s in ("sent", "deferred", "bounced")}
    tail = "\n".join(text.splitlines()[-lines:])
    return (f"maillog {path}: " + ", ".join(f"status={s} x{n}" for s, n in status.items())
            + f"\nlast {lines} lines:\n{tail}")


def run_round(inst: PostfixInstance | MtaInstance, sink: Sink, smtp_source: Path, env: dict[str, str],
              messages: int, size: int, sessions: int, timeout: float) -> Result:
    left = sum(queue_sizes(inst).values())
    if left:
        raise RuntimeError(f"{inst.name}: {left} messages left in the queue by an earlier round "
                           f"({queue_counts(inst)})")
    sink.start()
    try:
        try:
            try:
                inst.start()
            except subprocess.CalledProcessError as e:
                raise RuntimeError(f"{inst.name}: start failed: {e.stderr!r}\n{maillog_summary(inst)}") from None
            sampler = TreeSampler(inst.master_pid())
            sampler.start()
            try:
                t0 = time.monotonic()
                deadline = t0 + timeout
                try:
                    subprocess.run(
                        [str(smtp_source), "-s", str(sessions), "-l", str(size), "-m", str(messages),
                         "-f", SENDER, "-t", RECIPIENT, f"{GATEWAY}:{inst.port}"],
                        env=env, check=True, capture_output=True, timeout=timeout,
                    )
                except subprocess.CalledProcessError as e:
                    raise RuntimeError(f"{inst.name}: smtp-source failed (exit {e.returncode}): "
                                       f"{e.stderr.decode(errors='replace')[-2000:]}\n"
                                       f"{maillog_summary(inst)}") from None
                except subprocess.TimeoutExpired:
                    raise RuntimeError(f"{inst.name}: smtp-source did not finish in {timeout} s "
                                       f"(sink has {sink.count})\n{maillog_summary(inst)}") from None
                accepted = time.monotonic() - t0
                while sink.count < messages and time.monotonic() < deadline:
                    time.sleep(0.02)
                relayed_at = time.monotonic() - t0
            finally:
                sampler.stop()
            got = sink.count
            if got < messages:
                raise RuntimeError(f"{inst.name}: the sink received only {got} of {messages} messages in "
                                   f"{timeout} s; gateway queue: {queue_counts(inst)}\n{maillog_summary(inst)}")
            # Not timed: let the gateway hear the last 250s and empty its queue before it stops, so
            # that nothing is left for the next round (and late duplicates reach the sink's count).
            drain = time.monotonic() + 30
            while sum(queue_sizes(inst).values()) and time.monotonic() < drain:
                time.sleep(0.05)
        finally:
            stop_gateway(inst)
    finally:
        sink.stop()
    return Result(messages / accepted, messages / relayed_at, sampler.peak / 2**20,
                  cpu_by_daemon(sampler.seen, messages), sink.count - messages)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each MTA (default 3)")
    parser.add_argument("--messages", type=int, default=10000, help="messages per round (default 10000)")
    parser.add_argument("--size", type=int, default=1024, help="bytes per message (default 1024)")
    parser.add_argument("--sessions", type=int, default=20, help="parallel smtp-source sessions (default 20)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per round (default 600)")
    parser.add_argument("--base", default="/var/tmp", help="directory for the queues (a real disk)")
    parser.add_argument("--postfix-root", default=str(REPO / ".cache/postfix-3.7/root"))
    parser.add_argument("--only", choices=("mta", "postfix"), help="run one side only")
    parser.add_argument("--profile", metavar="DIR", help="also write this MTA's daemon profiles to DIR")
    parser.add_argument("--keep", action="store_true", help="keep the queues and maillogs (printed path)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (Postfix's master and smtp-sink start as root and drop privileges)",
              file=sys.stderr)
        return 1
    if min(args.rounds, args.messages, args.size, args.sessions) < 1 or args.timeout <= 0:
        parser.error("--rounds, --messages, --size, --sessions and --timeout must be positive")
    root = Path(args.postfix_root)
    smtp_source = root / "usr/sbin/smtp-source"
    smtp_sink = root / "usr/sbin/smtp-sink"
    for binary in (smtp_source, smtp_sink):
        if not os.access(binary, os.X_OK):
            print(f"bench: {binary} missing (bash scripts/fetch-postfix.sh unpacks it)", file=sys.stderr)
            return 1
    sink_user = "nobody"
    pwd.getpwnam(sink_user)
    env = dict(os.environ, LD_LIBRARY_PATH=str(root / "usr/lib/postfix"))
    # side name, gateway port, sink port
    plan = [("postfix", 2525, 2500), ("mta", 2526, 2501)]
    plan = [p for p in plan if args.only in (None, p[0])]
    busy = [f"{addr}:{port}" for _name, gw, sk in plan for addr, port in ((GATEWAY, gw), (SINK, sk))
            if not port_free(addr, port)]
    if busy:
        print(f"bench: something already listens on {', '.join(busy)}", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="mta-relay-bench-", dir=args.base))
    os.chmod(base, 0o755)  # the MTAs' unprivileged users traverse it
    failed = True  # until the end: keep the queues and maillogs of a run that went wrong
    try:
        sides: list[tuple[PostfixInstance | MtaInstance, Sink]] = []
        for name, gw_port, sink_port in plan:
            inst: PostfixInstance | MtaInstance
            if name == "postfix":
                inst = RelayPostfix(base / "postfix", gw_port, root, sink_port)
            else:
                profile = None
                if args.profile:
                    os.makedirs(args.profile, exist_ok=True)
                    profile = os.path.abspath(args.profile)
                inst = RelayMta(base / "mta", gw_port, sink_port, profile)
            inst.setup()
            sides.append((inst, Sink(smtp_sink, env, sink_port, sink_user)))
        results: dict[str, list[Result]] = {inst.name: [] for inst, _sink in sides}
        print(f"{args.messages} messages x {args.size} bytes over {args.sessions} sessions relayed "
              f"{GATEWAY} -> smtp-sink {SINK}, {args.rounds} interleaved rounds, queues under {base}")
        for rnd in range(1, args.rounds + 1):
            for inst, sink in sides:
                try:
                    r = run_round(inst, sink, smtp_source, env, args.messages, args.size, args.sessions,
                                  args.timeout)
                except RuntimeError as e:
                    print(f"bench: round {rnd}: {e}", file=sys.stderr)
                    return 1
                results[inst.name].append(r)
                cpu = "  ".join(f"{name} {user:.2f}+{system:.2f}" for name, (user, system) in sorted(r.cpu_ms.items()))
                total = sum(user + system for user, system in r.cpu_ms.values())
                dup = f"  ({r.extra} more than sent!)" if r.extra else ""
                print(f"  round {rnd} {inst.name:8s}: accepted {r.accepted_per_s:7.1f}/s  "
                      f"relayed {r.relayed_per_s:7.1f}/s  peak PSS {r.peak_mb:7.1f} MB{dup}\n"
                      f"      CPU ms/message (user+system): {cpu}  total {total:.2f}", flush=True)
        print()
        med: dict[str, tuple[float, float, float]] = {}
        for name, rs in results.items():
            med[name] = (statistics.median(r.accepted_per_s for r in rs),
                         statistics.median(r.relayed_per_s for r in rs),
                         statistics.median(r.peak_mb for r in rs))
            cpu_total = statistics.median(sum(u + s for u, s in r.cpu_ms.values()) for r in rs)
            print(f"median {name:8s}: accepted {med[name][0]:7.1f}/s  relayed {med[name][1]:7.1f}/s"
                  f"  peak PSS {med[name][2]:7.1f} MB  CPU {cpu_total:.2f} ms/message")
        if "mta" in med and "postfix" in med:
            a, p = med["mta"], med["postfix"]
            print(f"ratio mta/postfix: accepted {a[0] / p[0]:.2f}x  relayed {a[1] / p[1]:.2f}x (target >= 0.8)  "
                  f"memory {a[2] / p[2]:.1f}x")
        failed = False
        return 0
    finally:
        if args.keep or failed:
            print(f"bench: queues and maillogs kept in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
