"""The chroot jail under queue_directory: read the host's facts, plan the difference, apply it.

WHAT GOES IN is listed once, in mta.jail, which ``mta check`` uses too
(Postfix's examples/chroot-setup/LINUX2, reference §11.1, with Debian's
additions from configure-instance.sh, §11.2):

- ``etc/``: localtime (its content, not the symlink), services, resolv.conf,
  nsswitch.conf, host.conf, hosts, and passwd with every password field
  replaced by ``x`` (Debian's rule: the jail needs names and ids, never hashes);
- ``lib/<multiarch>/``: the host's own libnss_*, libresolv*, libgcc_s* and
  libdb-* from each multiarch library directory (``/lib/x86_64-linux-gnu``),
  symlinks kept as symlinks; ``lib64/`` when the host has /lib64;
- ``usr/lib/zoneinfo/localtime`` -> ``/etc/localtime``.

OWNERSHIP (seed 7.5.6). Everything under the jail's bin, etc, lib, lib64 and
usr is root:root, directories 0755, as cp -p under umask 022 leaves them;
never postfix:postdrop: a ``chown -R postfix`` of the queue directory (the
SuSE problem) would let a compromised daemon rewrite the libraries and files
the jail trusts. Any entry found with another owner is put back to root:root.

DIFF. plan() compares the wanted jail with what is on the host and returns
only the actions needed; on a jail that is right it returns none, so a second
run changes nothing. Copies are compared by SHA-256, so a stale resolv.conf or
hosts is copied again on every provision (Debian's copies go stale; README.Debian 2B).
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from dataclasses import dataclass, field

from harden.errors import ChrootError
from harden.transport.base import Transport
from mta.jail import ETC_FILES, JAIL_TOPS, LIB_PATTERNS, ZONEINFO_LINK


@dataclass(frozen=True)
class Entry:
    """A file system entry as find(1) reports it: type f, d or l, mode, owner ids, link target, SHA-256."""

    path: str
    type: str
    mode: int
    uid: int
    gid: int
    target: str = ""
    sha256: str = ""


@dataclass
class JailFacts:
    """What the host has: its multiarch library dirs, /lib64, the source files, the jail as it is."""

    multiarch: list[str]
    lib64: bool
    sources: dict[str, Entry]
    jail: dict[str, Entry]
    passwd: str


@dataclass(frozen=True)
class Action:
    """One change to the jail: kind is mkdir, copy, put, symlink, chown or chmod."""

    kind: str
    path: str
    source: str = ""
    mode: int = 0o644
    data: bytes = field(default=b"", repr=False)

    def describe(self) -> str:
        """One line for reports: ``copy /etc/resolv.conf -> .../etc/resolv.conf``."""
        if self.kind == "copy":
            return f"copy {self.source} -> {self.path}"
        if self.kind == "symlink":
            return f"symlink {self.path} -> {self.source}"
        if self.kind in ("mkdir", "chmod"):
            return f"{self.kind} {self.mode:o} {self.path}"
        if self.kind == "put":
            return f"write {self.path} ({len(self.data)} bytes)"
        return f"{self.kind} root:root {self.path}"

    def command(self) -> str:
        """The shell command that makes the change (run as root)."""
        q = shlex.quote
        path = q(self.path)
        if self.kind == "mkdir":
            return f"mkdir -p {path} && chown root:root {path} && chmod {self.mode:o} {path}"
        if self.kind == "chmod":
            return f"chmod {self.mode:o} {path}"
        if self.kind == "chown":
            return f"chown -h root:root {path}"
        if self.kind == "symlink":
            return f"rm -rf {path} && ln -s {q(self.source)} {path} && chown -h root:root {path}"
        if self.kind == "copy":
            return (f"t=$(mktemp {q(self.path + '.harden.XXXXXX')}) && cp -L {q(self.source)} \"$t\" && "
                    f"chown root:root \"$t\" && chmod {self.mode:o} \"$t\" && rm -rf {path} && mv -f \"$t\" {path}")
        raise ChrootError(f"action {self.kind} has no command (put goes through file_put)")


def _find_lines(output: str) -> dict[str, Entry]:
    """Parse ``TYPE MODE UID GID PATH<tab>TARGET`` lines, then ``SHA  PATH`` lines after ``##sha``."""
    entries: dict[str, Entry] = {}
    shas: dict[str, str] = {}
    in_sha = False
    for line in output.splitlines():
        if line == "##sha":
            in_sha = True
            continue
        if in_sha:
            digest, _, path = line.partition("  ")
            shas[path] = digest
            continue
        head, _, target = line.partition("\t")
        parts = head.split(" ", 4)
        if len(parts) != 5:
            continue
        kind, mode, uid, gid, path = parts
        entries[path] = Entry(path, kind, int(mode, 8), int(uid), int(gid), target)
    return {p: Entry(e.path, e.type, e.mode, e.uid, e.gid, e.target, shas.get(p, "")) for p, e in entries.items()}


def facts_read(transport: Transport, queue_dir: str) -> JailFacts:
    """Read everything plan() needs from the host in one command (sections ##arch, ##sources, ##jail, ##passwd)."""
    q = shlex.quote
    names = " -o ".join(f"-name {q(p)}" for p in LIB_PATTERNS)
    etc = " ".join(q(f"/etc/{name}") for name in ETC_FILES)
    tops = " ".join(q(posixpath.join(queue_dir, t)) for t in JAIL_TOPS)
    fmt = "'%y %m %U %G %p\\t%l\\n'"
    script = (
        "arch=$(for d in /lib/*-linux-gnu; do [ -d \"$d\" ] && echo \"$d\"; done | sort -u); "
        "libs=$arch; [ -d /lib64 ] && libs=\"$libs /lib64\"; "
        "echo '##arch'; echo \"$arch\"; [ -d /lib64 ] && echo LIB64; "
        "echo '##sources'; "
        f"for f in {etc}; do [ -e \"$f\" ] && stat -L -c 'f %a %u %g %n' \"$f\" | sed 's/$/\\t/'; done; "
        f"[ -n \"$libs\" ] && find $libs -maxdepth 1 \\( {names} \\) \\( -type f -o -type l \\) -printf {fmt}; "
        f"echo '##sha'; for f in {etc}; do [ -e \"$f\" ] && sha256sum \"$f\"; done; "
        f"[ -n \"$libs\" ] && find $libs -maxdepth 1 \\( {names} \\) -type f -exec sha256sum {{}} +; "
        f"echo '##jail'; for t in {tops}; do if [ -e \"$t\" ] || [ -L \"$t\" ]; then find \"$t\" -printf {fmt}; fi; "
        f"done; echo '##sha'; for t in {tops}; do [ -d \"$t\" ] && find \"$t\" -type f -exec sha256sum {{}} +; done; "
        "echo '##passwd'; cat /etc/passwd"
    )
    out = transport.run(script).stdout
    sections: dict[str, list[str]] = {}
    current = ""
    for line in out.split("\n"):
        if line in ("##arch", "##sources", "##jail", "##passwd"):
            current = line[2:]
            sections[current] = []
        elif current:
            sections[current].append(line)
    arch = [line for line in sections.get("arch", []) if line]
    multiarch = [d for d in arch if d != "LIB64"]
    return JailFacts(multiarch, "LIB64" in arch, _find_lines("\n".join(sections.get("sources", []))),
                     _find_lines("\n".join(sections.get("jail", []))), "\n".join(sections.get("passwd", [])))


def passwd_sanitise(text: str) -> str:
    """/etc/passwd with every password field replaced by ``x`` (names, ids and homes only)."""
    out = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and not line.startswith("#"):
            fields[1] = "x"
        out.append(":".join(fields))
    return "\n".join(out) + "\n"


def _jail_path(queue_dir: str, source: str, multiarch: list[str]) -> str:
    """Where a host library goes in the jail: /usr/lib/x86_64-linux-gnu/x.so -> QUEUE/lib/x86_64-linux-gnu/x.so."""
    directory, name = posixpath.split(source)
    if directory == "/lib64":
        return posixpath.join(queue_dir, "lib64", name)
    return posixpath.join(queue_dir, "lib", posixpath.basename(directory), name)


def plan(queue_dir: str, facts: JailFacts) -> list[Action]:
    """The actions that turn the host's jail into the wanted one (none when it already is)."""
    if "/etc/localtime" not in facts.sources:
        raise ChrootError("no /etc/localtime on the host: the jail needs one (LINUX2 aborts too)")
    jail = facts.jail
    actions: list[Action] = []
    planned: set[str] = set()

    def want_dir(rel: str) -> None:
        path = posixpath.join(queue_dir, rel)
        planned.add(path)
        have = jail.get(path)
        if have is None:
            actions.append(Action("mkdir", path, mode=0o755))
        elif have.type != "d":
            raise ChrootError(f"{path} should be a directory, found type {have.type}")
        elif have.mode != 0o755:
            actions.append(Action("chmod", path, mode=0o755))

    def want_copy(source: Entry, path: str) -> None:
        planned.add(path)
        have = jail.get(path)
        mode = source.mode & 0o755
        if have is None or have.type != "f" or have.sha256 != source.sha256:
            actions.append(Action("copy", path, source=source.path, mode=mode))
        elif have.mode != mode:
            actions.append(Action("chmod", path, mode=mode))

    def want_link(path: str, target: str) -> None:
        planned.add(path)
        have = jail.get(path)
        if have is None or have.type != "l" or have.target != target:
            actions.append(Action("symlink", path, source=target))

    for rel in ("etc", "lib", "usr", "usr/lib", "usr/lib/zoneinfo"):
        want_dir(rel)
    for directory in facts.multiarch:
        want_dir(posixpath.join("lib", posixpath.basename(directory)))
    if facts.lib64:
        want_dir("lib64")
    for name in ETC_FILES:
        source = facts.sources.get(f"/etc/{name}")
        if source is not None:
            want_copy(Entry(source.path, "f", 0o644, 0, 0, "", source.sha256), posixpath.join(queue_dir, "etc", name))
    passwd = passwd_sanitise(facts.passwd).encode()
    passwd_path = posixpath.join(queue_dir, "etc", "passwd")
    planned.add(passwd_path)
    have_passwd = jail.get(passwd_path)
    if have_passwd is None or have_passwd.sha256 != hashlib.sha256(passwd).hexdigest() or have_passwd.mode != 0o644:
        actions.append(Action("put", passwd_path, mode=0o644, data=passwd))
    for source in sorted(facts.sources.values(), key=lambda e: e.path):
        if source.path.startswith("/etc/"):
            continue
        path = _jail_path(queue_dir, source.path, facts.multiarch)
        if source.type == "l":
            want_link(path, source.target)
        else:
            want_copy(source, path)
    want_link(posixpath.join(queue_dir, ZONEINFO_LINK[0]), ZONEINFO_LINK[1])
    for path, entry in sorted(jail.items()):
        if (entry.uid, entry.gid) != (0, 0) and not any(a.path == path and a.kind in ("copy", "symlink", "put")
                                                        for a in actions):
            actions.append(Action("chown", path))
    return actions


def apply(transport: Transport, actions: list[Action]) -> None:
    """Carry out planned actions on the host, in order, under umask 022; TransportError on the first failure."""
    from harden.transport.base import file_put

    commands: list[str] = []
    for action in actions:
        if action.kind == "put":
            if commands:
                transport.run("umask 022; " + " && ".join(commands))
                commands = []
            file_put(transport, action.data, action.path, mode=action.mode)
        else:
            commands.append(action.command())
    if commands:
        transport.run("umask 022; set -e; " + "; ".join(commands))


def jail_sync(transport: Transport, queue_dir: str, check: bool = False) -> list[Action]:
    """Read facts, plan, and (unless check) apply; return the actions (empty: the jail was right)."""
    actions = plan(queue_dir, facts_read(transport, queue_dir))
    if actions and not check:
        apply(transport, actions)
    return actions
