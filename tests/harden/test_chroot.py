"""Tests for harden.chroot: the jail per LINUX2, root:root ownership, idempotence and stale copies."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from harden.chroot import Entry, JailFacts, jail_sync, passwd_sanitise, plan
from harden.errors import ChrootError
from harden.transport import transport_open

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="building a jail needs root")


@pytest.fixture
def queue(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


def owners(root: Path) -> set[tuple[int, int]]:
    found = set()
    for top in ("etc", "lib", "lib64", "usr"):
        for dirpath, dirnames, filenames in os.walk(root / top):
            for name in [*dirnames, *filenames]:
                st = os.lstat(os.path.join(dirpath, name))
                found.add((st.st_uid, st.st_gid))
    return found


@needs_root
def test_build_then_nothing_to_do(queue: Path) -> None:
    t = transport_open("local")
    first = jail_sync(t, str(queue))
    assert first and jail_sync(t, str(queue)) == []
    for name in ("localtime", "services", "resolv.conf", "nsswitch.conf", "hosts", "passwd"):
        assert (queue / "etc" / name).is_file() and not (queue / "etc" / name).is_symlink()
    assert os.readlink(queue / "usr/lib/zoneinfo/localtime") == "/etc/localtime"
    libs = os.listdir(queue / "lib/x86_64-linux-gnu")
    assert "libnss_files.so.2" in libs and "libresolv.so.2" in libs
    assert (queue / "etc/localtime").read_bytes() == Path("/etc/localtime").read_bytes()
    assert owners(queue) == {(0, 0)}
    assert all((queue / d).stat().st_mode & 0o7777 == 0o755 for d in ("etc", "lib", "usr", "usr/lib/zoneinfo"))


@needs_root
def test_chown_r_postfix_is_undone(queue: Path) -> None:
    """The SuSE problem (seed 7.5.6): a recursive chown of the queue directory hands the jail to postfix."""
    t = transport_open("local")
    jail_sync(t, str(queue))
    postfix = pwd.getpwnam("postfix")
    subprocess.run(["chown", "-R", "postfix:postdrop", str(queue)], check=True)
    assert (postfix.pw_uid, postfix.pw_gid) in owners(queue) or owners(queue) != {(0, 0)}
    actions = jail_sync(t, str(queue))
    assert actions and {a.kind for a in actions} <= {"chown", "put"}
    assert owners(queue) == {(0, 0)}
    assert jail_sync(t, str(queue)) == []


@needs_root
def test_stale_copies_are_refreshed_and_check_changes_nothing(queue: Path) -> None:
    t = transport_open("local")
    jail_sync(t, str(queue))
    (queue / "etc/resolv.conf").write_text("nameserver 192.0.2.53\n")
    (queue / "lib/x86_64-linux-gnu/libnss_dns.so.2").unlink()
    planned = jail_sync(t, str(queue), check=True)
    assert [a.describe().split()[0] for a in planned] == ["copy", "copy"]
    assert (queue / "etc/resolv.conf").read_text() == "nameserver 192.0.2.53\n"  # --check changed nothing
    jail_sync(t, str(queue))
    assert (queue / "etc/resolv.conf").read_bytes() == Path("/etc/resolv.conf").read_bytes()
    assert (queue / "lib/x86_64-linux-gnu/libnss_dns.so.2").exists()


def test_passwd_has_no_hashes() -> None:
    text = "root:$6$salt$hash:0:0:root:/root:/bin/bash\n#comment\nmick:x:1000:1000::/home/mick:/bin/sh\n"
    assert passwd_sanitise(text) == "root:x:0:0:root:/root:/bin/bash\n#comment\nmick:x:1000:1000::/home/mick:/bin/sh\n"


def test_plan_without_localtime_is_an_error() -> None:
    facts = JailFacts(["/lib/x86_64-linux-gnu"], False, {}, {}, "")
    with pytest.raises(ChrootError, match="no /etc/localtime"):
        plan("/var/spool/postfix", facts)


def test_plan_refuses_a_file_where_a_directory_belongs() -> None:
    sources = {"/etc/localtime": Entry("/etc/localtime", "f", 0o644, 0, 0, "", "ab")}
    jail = {"/q/etc": Entry("/q/etc", "f", 0o644, 0, 0, "", "cd")}
    with pytest.raises(ChrootError, match="/q/etc should be a directory"):
        plan("/q", JailFacts([], False, sources, jail, ""))


@needs_root
def test_library_symlinks_stay_symlinks(queue: Path) -> None:
    jail_sync(transport_open("local"), str(queue))
    links = [p for p in (queue / "lib/x86_64-linux-gnu").iterdir() if p.is_symlink()]
    for link in links:
        assert os.readlink(link).startswith("/lib/")
        assert (queue / os.readlink(link).lstrip("/")).exists()
    shutil.rmtree(queue / "lib")
    assert jail_sync(transport_open("local"), str(queue))  # rebuilt
