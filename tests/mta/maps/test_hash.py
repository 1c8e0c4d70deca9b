"""Tests for hash: tables built by postmap: contents, errors, and rebuilds under concurrent readers."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mta.commands.postmap import postmap_build
from mta.errors import MapError
from mta.maps import open_map
from mta.maps.hash import HashMap, hash_build, hash_db_path


@pytest.fixture(autouse=True)
def _mta_log_reaches_caplog(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli.main() (other tests) stops the mta logger from propagating; caplog needs it."""
    monkeypatch.setattr(logging.getLogger("mta"), "propagate", True)


def test_db_path() -> None:
    assert hash_db_path("/etc/postfix/access") == Path("/etc/postfix/access.db")


def test_build_and_read(tmp_path: Path) -> None:
    src = tmp_path / "access"
    src.write_text("b.example REJECT\nA.example OK\n")
    assert postmap_build(src) == 2
    table = open_map(f"hash:{src}")
    assert isinstance(table, HashMap)
    assert (table.lookup("a.example"), table.lookup("A.example"), table.lookup("c")) == ("OK", None, None)
    assert table.items() == [("a.example", "OK"), ("b.example", "REJECT")]
    assert (table.fold_case, table.fixed) == (True, True)
    table.close()


def test_changed_after_rebuild(tmp_path: Path) -> None:
    src = tmp_path / "access"
    src.write_text("a 1\n")
    postmap_build(src)
    table = HashMap(f"hash:{src}", str(src))
    assert not table.changed()
    postmap_build(src)
    assert table.changed()
    assert table.lookup("a") == "1"        # the old file stays readable
    table.close()


def test_answers_are_remembered_per_open_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "access"
    src.write_text("a 1\n")
    postmap_build(src)
    table = HashMap(f"hash:{src}", str(src))
    assert (table.lookup("a"), table.lookup("b")) == ("1", None)
    src.write_text("a 2\nb 3\n")
    postmap_build(src)
    # The handle still reads the file it opened (replaced by rename): same answers, from memory or not.
    assert (table.lookup("a"), table.lookup("b")) == ("1", None)
    assert (open_map(f"hash:{src}").lookup("a"), open_map(f"hash:{src}").lookup("b")) == ("2", "3")
    monkeypatch.setattr("mta.maps.hash.ANSWERS_MAX", 2)
    fresh = HashMap(f"hash:{src}", str(src))
    for key in ("a", "b", "c", "a"):
        fresh.lookup(key)
    assert len(fresh._answers) <= 2  # bounded: full means start afresh
    table.close()
    fresh.close()


def test_older_db_than_source_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "access"
    src.write_text("a 1\n")
    postmap_build(src)
    past = time.time() - 100
    os.utime(hash_db_path(src), (past, past))
    with caplog.at_level(logging.WARNING, logger="mta"):
        HashMap(f"hash:{src}", str(src)).close()
    assert caplog.messages == [f"database {src}.db is older than source file {src}"]


def test_not_our_format(tmp_path: Path) -> None:
    (tmp_path / "access.db").write_bytes(b"\x00\x06\x15\x61 Berkeley DB hash file, not ours" * 64)
    with pytest.raises(MapError, match="not an mta indexed table"):
        open_map(f"hash:{tmp_path / 'access'}")


def test_failed_build_keeps_old_table(tmp_path: Path) -> None:
    db = tmp_path / "access.db"
    hash_build(db, [("a", "1")])
    with pytest.raises(MapError, match="duplicate key"):
        hash_build(db, [("b", "2"), ("b", "3")])
    assert HashMap("hash:x", str(tmp_path / "access")).items() == [("a", "1")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["access.db"]


# ---------------------------------------------------------------------------
# CONCURRENCY: readers never see a partial table while postmap rebuilds it.

READER = r"""
import json, os, random, sys
from mta.maps.hash import HashMap
path, stop = sys.argv[1], sys.argv[2]
counts = {"A": int(sys.argv[3]), "B": int(sys.argv[4])}
rng = random.Random(7)
opens, failures, versions = 0, [], set()
while not os.path.exists(stop):
    try:
        table = HashMap("hash:" + path, path)
    except Exception as exc:
        failures.append(f"open: {exc!r}")
        continue
    try:
        version = table.lookup("__version__")
        if version not in counts:
            failures.append(f"marker: {version!r}")
            continue
        versions.add(version)
        for _ in range(25):
            i = rng.randrange(counts[version])
            got = table.lookup(f"k{i}")
            if got != f"{version}-{i}":
                failures.append(f"{version}: k{i} -> {got!r}")
        absent = table.lookup(f"k{counts[version]}")
        if absent is not None:
            failures.append(f"{version}: k{counts[version]} present: {absent!r}")
        size = len(table.items())
        if size != counts[version] + 1:
            failures.append(f"{version}: {size} entries")
        opens += 1
    except Exception as exc:
        failures.append(f"read: {exc!r}")
    finally:
        table.close()
print(json.dumps({"opens": opens, "failures": failures[:20], "count": len(failures),
                  "versions": sorted(versions)}))
"""


def _version_text(name: str, count: int) -> bytes:
    lines = [f"__version__ {name}"] + [f"k{i} {name}-{i}" for i in range(count)]
    return ("\n".join(lines) + "\n").encode()


def test_rebuilds_under_concurrent_readers(tmp_path: Path) -> None:
    counts = {"A": 20000, "B": 20001}
    texts = {name: _version_text(name, count) for name, count in counts.items()}
    src, stop = tmp_path / "access", tmp_path / "stop"
    src.write_bytes(texts["A"])
    postmap_build(src)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(src), str(stop), str(counts["A"]), str(counts["B"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        builds = 0
        for n in range(30):
            if time.monotonic() > deadline:
                break
            name = "B" if n % 2 == 0 else "A"
            src.write_bytes(texts[name])
            assert postmap_build(src) == counts[name] + 1
            builds += 1
            time.sleep(0.02)
        stop.touch()
        out, err = reader.communicate(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0, err
    report = json.loads(out)
    assert report["count"] == 0, report["failures"]
    assert builds >= 10
    assert report["opens"] >= 10
    assert report["versions"] == ["A", "B"]
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["access", "access.db", "stop"]
