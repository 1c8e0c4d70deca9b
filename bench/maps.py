"""Benchmark hash: tables: postmap compile time against Postfix's postmap, and lookup latency.

Run as ``.venv/bin/python bench/maps.py [--entries N] [--rounds N] [--postfix-root DIR]``.

COMPILE. A generated access(5)-style table of --entries lines (100,000 by
default) is compiled in rounds, interleaved A B A B so that drift in machine
load hits both sides alike:
  A1  ours, in-process: mta.commands.postmap.postmap_build()
  A2  ours, as a process: python -m mta postmap FILE (a fair match for B)
  B   Postfix 3.7's postmap -c CFG hash:FILE (Berkeley DB), when found
Postfix's binaries come from --postfix-root, else .cache/postfix-3.7/root in
the project (scripts/fetch-postfix.sh), else /tmp/pfx/root. They run straight
from the unpacked .deb with LD_LIBRARY_PATH=ROOT/usr/lib/postfix. An empty
main.cf is not enough: postmap insists that mail_owner (default "postfix")
exists and that mail_owner, setgid_group and default_privs differ, so the
script writes a main.cf naming an existing unprivileged user and group.

LOOKUP. 200,000 in-process lookups of random present keys, then of absent
keys, through maps_find() (the path daemons use, with case folding); each
lookup is timed on its own and the median is reported.

Targets: compile < 2 s (in-process), lookup median < 20 µs.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mta.commands.postmap import postmap_build
from mta.maps import maps_find, open_map

REPO = Path(__file__).resolve().parent.parent
COMPILE_TARGET_S = 2.0
LOOKUP_TARGET_US = 20.0


def table_generate(path: Path, entries: int, seed: int = 1) -> list[str]:
    """Write an access-style table of distinct keys; return the keys (as looked up)."""
    rng = random.Random(seed)
    actions = ["OK", "REJECT", "DUNNO", "HOLD", "554 5.7.1 go away", "DISCARD spam",
               "PREPEND X-Checked: yes", "REDIRECT abuse@example.net"]
    keys: list[str] = []
    lines: list[str] = []
    for i in range(entries):
        kind = i % 4
        if kind == 0:
            key = f"user{i}@domain{i % 997}.example"
        elif kind == 1:
            key = f"host{i}.sub{i % 101}.example.org"
        elif kind == 2:
            key = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        else:
            key = f"sender{i}@"
        keys.append(key)
        lines.append(f"{key}\t{rng.choice(actions)}")
    path.write_text("\n".join(lines) + "\n")
    return keys


def postfix_root_find(explicit: str | None) -> Path | None:
    """The directory holding Postfix's unpacked usr/sbin/postmap, or None."""
    candidates = [explicit] if explicit else [str(REPO / ".cache/postfix-3.7/root"), "/tmp/pfx/root"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "usr/sbin/postmap").exists():
            return Path(candidate)
    return None


def postfix_config(directory: Path) -> Path:
    """Write a main.cf Postfix's postmap accepts on this machine (see the module docstring)."""
    nobody = pwd.getpwnam("nobody")
    for user in pwd.getpwall():
        if user.pw_uid in (0, nobody.pw_uid) or user.pw_gid == nobody.pw_gid:
            continue
        for group in grp.getgrall():
            if group.gr_gid not in (0, nobody.pw_gid, user.pw_gid):
                (directory / "main.cf").write_text(
                    f"mail_owner = {user.pw_name}\nsetgid_group = {group.gr_name}\n")
                return directory
    raise SystemExit("bench: no unprivileged user and group to use as Postfix's mail_owner")


def run_timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Run a command, fail loudly if it fails, return its wall time in seconds."""
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed ({result.returncode}): "
                         f"{result.stderr.decode(errors='replace').strip()}")
    return elapsed


def lookup_times(spec: str, keys: list[str], count: int, seed: int) -> list[float]:
    """Time count lookups of random keys, one by one; seconds per lookup."""
    table = open_map(spec)
    rng = random.Random(seed)
    sample = [rng.choice(keys) for _ in range(count)]
    times: list[float] = []
    clock = time.perf_counter_ns
    maps = [table]
    misses = 0
    for key in sample:
        start = clock()
        value = maps_find(maps, key)
        times.append((clock() - start) / 1e9)
        misses += value is None
    table.close()
    if misses and not keys[0].startswith("absent"):
        raise SystemExit(f"bench: {misses} present keys not found")
    return times


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs" if seconds < 1e-3 else f"{seconds:.3f} s"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its report; exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--postfix-root", help="unpacked Postfix 3.7 .deb (has usr/sbin/postmap)")
    args = parser.parse_args(argv)

    root = postfix_root_find(args.postfix_root)
    work = Path(tempfile.mkdtemp(prefix="mta-bench-"))
    try:
        ours_dir, theirs_dir, cfg_dir = work / "ours", work / "theirs", work / "cfg"
        for directory in (ours_dir, theirs_dir, cfg_dir):
            directory.mkdir()
        source = ours_dir / "access"
        keys = table_generate(source, args.entries)
        shutil.copy(source, theirs_dir / "access")
        print(f"table: {args.entries} entries, {source.stat().st_size} bytes, in {work}")
        if root is None:
            print("postfix: no Postfix binaries found (try --postfix-root, or "
                  "scripts/fetch-postfix.sh); reporting our figures only")
        else:
            postfix_config(cfg_dir)
            print(f"postfix: {root}/usr/sbin/postmap")
        env = dict(os.environ, LD_LIBRARY_PATH=str(root / "usr/lib/postfix")) if root else None
        ours_cmd = [sys.executable, "-m", "mta", "-c", str(cfg_dir), "postmap", str(source)]
        theirs_cmd = [str(root / "usr/sbin/postmap"), "-c", str(cfg_dir),
                      f"hash:{theirs_dir / 'access'}"] if root else []

        # One untimed round first: the first run of each side pays for cold
        # caches (Postfix's first build took 1.7 s against 0.1 s afterwards).
        postmap_build(source)
        run_timed(ours_cmd)
        if root is not None:
            run_timed(theirs_cmd, env)
        inproc: list[float] = []
        subproc: list[float] = []
        postfix: list[float] = []
        for round_no in range(1, args.rounds + 1):
            start = time.perf_counter()
            count = postmap_build(source)
            inproc.append(time.perf_counter() - start)
            if count != args.entries:
                raise SystemExit(f"bench: built {count} entries, expected {args.entries}")
            if root is not None:
                postfix.append(run_timed(theirs_cmd, env))
            subproc.append(run_timed(ours_cmd))
            line = f"  round {round_no}: ours in-process {fmt(inproc[-1])}, " \
                   f"ours subprocess {fmt(subproc[-1])}"
            if root is not None:
                line += f", postfix {fmt(postfix[-1])}"
            print(line)

        present = lookup_times(f"hash:{source}", keys, args.lookups, seed=2)
        absent_keys = [f"absent{i}@nowhere.example" for i in range(1000)]
        absent = lookup_times(f"hash:{source}", absent_keys, args.lookups, seed=3)

        compile_med = statistics.median(inproc)
        present_med = statistics.median(present)
        absent_med = statistics.median(absent)
        print()
        print(f"compile, ours in-process (median of {args.rounds}): {fmt(compile_med)}  "
              f"target < {COMPILE_TARGET_S:.0f} s: {'PASS' if compile_med < COMPILE_TARGET_S else 'FAIL'}")
        print(f"compile, ours subprocess (median):   {fmt(statistics.median(subproc))}")
        if postfix:
            postfix_med = statistics.median(postfix)
            print(f"compile, postfix postmap (median):   {fmt(postfix_med)}")
            print(f"ratio ours/postfix: in-process {compile_med / postfix_med:.2f}x, "
                  f"subprocess {statistics.median(subproc) / postfix_med:.2f}x")
        for label, times, median in (("present", present, present_med), ("absent", absent, absent_med)):
            verdict = "PASS" if median * 1e6 < LOOKUP_TARGET_US else "FAIL"
            print(f"lookup, {label} keys (median of {args.lookups}): {fmt(median)} "
                  f"(p99 {fmt(sorted(times)[int(len(times) * 0.99)])})  "
                  f"target < {LOOKUP_TARGET_US:.0f} µs: {verdict}")
        ok = (compile_med < COMPILE_TARGET_S and present_med * 1e6 < LOOKUP_TARGET_US
              and absent_med * 1e6 < LOOKUP_TARGET_US)
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
