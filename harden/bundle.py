"""The MTA bundle: built once on the control machine, shipped to hosts without Internet access, installed in place.

BUILD. The ``mta`` package is pure Python; its one dependency outside the
standard library, dnspython (smtpd's DNS restrictions), is pure Python too
and travels with it (``VENDORED``: its sources and licence from the
installation harden runs with). So the bundle is a gzipped tar of those
sources under lib/, two launchers (bin/mta, bin/sendmail) and a VERSION file. It is built
reproducibly (sorted members, fixed owner and time stamps), and its version
is the package version plus the SHA-256 of the sources, so a changed source
is a new version and an unchanged one is recognised on the host without
uploading anything.

INSTALL (on the host, as root, under umask 022): unpack into
PREFIX/VERSION.new, byte-compile, rename to PREFIX/VERSION, then switch the
PREFIX/current symlink with one rename (an upgrade in place is atomic; the
previous version stays for a rollback, older ones are removed). The launchers
run ``/usr/bin/python3 -I`` (isolated: no user site directory, no PYTHON*
variables, since every local user runs sendmail). /usr/sbin/sendmail and
/usr/local/sbin/mta are symlinks into PREFIX/current/bin; a sendmail that
belongs to another MTA is never replaced.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shlex
import tarfile
import threading
from pathlib import Path

import dns

import mta
from harden import __version__
from harden.errors import TransportError
from harden.transport.base import Transport

PREFIX = "/opt/mailgate-mta"
LINKS = {"/usr/sbin/sendmail": "sendmail", "/usr/local/sbin/mta": "mta"}

_LAUNCHER = """#!/usr/bin/python3 -I
# {name}: the bundled MTA's {what} (installed by `harden provision`).
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "lib"))
from {module} import {function}

sys.exit({function}())
"""


class Bundle:
    """The bundle: its version (computed at once) and the tar.gz bytes (built on first use, then kept)."""

    def __init__(self, version: str, members: list[tuple[str, bytes, int]]) -> None:
        self.version = version
        self._members = members
        self._data: bytes | None = None
        self._lock = threading.Lock()

    @property
    def data(self) -> bytes:
        with self._lock:
            if self._data is None:
                self._data = _tar(self._members)
            return self._data


def _package(module: object, name: str) -> list[tuple[str, bytes, int]]:
    """The sources (and py.typed marker) of an installed package, as lib/NAME/... members."""
    root = Path(str(getattr(module, "__file__"))).resolve().parent
    paths = sorted(p for p in root.rglob("*") if p.suffix == ".py" or p.name == "py.typed")
    return [(f"lib/{name}/{p.relative_to(root).as_posix()}", p.read_bytes(), 0o644) for p in paths]


def _licence(distribution: str) -> tuple[str, bytes, int]:
    """A vendored distribution's licence, shipped beside its sources."""
    from importlib.metadata import distribution as dist_of

    found = dist_of(distribution)
    name = next(str(f) for f in found.files or [] if Path(str(f)).name.startswith(("LICENSE", "LICENCE")))
    return (f"lib/{distribution}.LICENSE", Path(str(found.locate_file(name))).read_bytes(), 0o644)


def _members() -> list[tuple[str, bytes, int]]:
    files = _package(mta, "mta") + _package(dns, "dns") + [_licence("dnspython")]
    files.append(("bin/mta", _LAUNCHER.format(name="mta", what="admin command", module="mta.cli",
                                              function="main").encode(), 0o755))
    files.append(("bin/sendmail", _LAUNCHER.format(name="sendmail", what="local submission",
                                                   module="mta.commands.sendmail",
                                                   function="console_main").encode(), 0o755))
    return files


def bundle_build() -> Bundle:
    """The bundle of the mta package this harden runs with (the archive itself is made when first needed)."""
    members = _members()
    digest = hashlib.sha256()
    for name, data, mode in members:
        digest.update(f"{name}\0{mode:o}\0{len(data)}\0".encode())
        digest.update(data)
    version = f"{__version__}+{digest.hexdigest()[:12]}"
    members.append(("VERSION", f"{version}\n".encode(), 0o644))
    return Bundle(version, members)


def _tar(members: list[tuple[str, bytes, int]]) -> bytes:
    out = io.BytesIO()
    # The gzip header carries a time stamp: fixed at 0, or two builds a second apart would differ.
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as packed, \
            tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def bundle_install(transport: Transport, bundle: Bundle, prefix: str = PREFIX) -> None:
    """Install bundle on the host and make it current (see INSTALL); TransportError on failure."""
    q = shlex.quote
    new = f"{prefix}/{bundle.version}"
    script = (
        f"set -e; umask 022; mkdir -p {q(prefix)}; rm -rf {q(new + '.new')}; mkdir {q(new + '.new')}; "
        f"tar -xzf - -C {q(new + '.new')} --no-same-owner; "
        f"/usr/bin/python3 -m compileall -q {q(new + '.new/lib')} >/dev/null; "
        f"rm -rf {q(new)}; mv {q(new + '.new')} {q(new)}; sync; "
        f"prev=$(readlink {q(prefix + '/current')} || true); "
        f"ln -sfn {q(bundle.version)} {q(prefix + '/current.new')}; mv -T {q(prefix + '/current.new')} "
        f"{q(prefix + '/current')}; "
        f"for d in {q(prefix)}/*; do b=$(basename \"$d\"); "
        f"[ \"$b\" = current ] || [ \"$b\" = {q(bundle.version)} ] || [ \"$b\" = \"$prev\" ] || rm -rf \"$d\"; done"
    )
    done = transport.run(script, check=False, stdin=bundle.data, timeout=300)
    if not done.ok:
        raise TransportError(f"{transport.host}: install the MTA bundle {bundle.version}: {done.tail()}")


def links_plan(host: str, have: dict[str, str], prefix: str = PREFIX) -> list[str]:
    """The command links (LINKS) missing on a host; TransportError when another MTA owns one.

    + have: each link path -> what is there now: its target, ``OTHER`` for a file, "" when absent.
    """
    missing = []
    for path, name in LINKS.items():
        found = have.get(path, "")
        if found == f"{prefix}/current/bin/{name}":
            continue
        if found and not found.startswith(prefix):
            raise TransportError(f"{host}: {path} belongs to another program ({found}); remove that MTA "
                                 "first, this one will not replace it")
        missing.append(path)
    return missing


def links_install(transport: Transport, paths: list[str], prefix: str = PREFIX) -> None:
    """Create the command links (replacing only links of ours)."""
    for path in paths:
        want = f"{prefix}/current/bin/{LINKS[path]}"
        transport.run(f"mkdir -p $(dirname {shlex.quote(path)}) && ln -sfn {shlex.quote(want)} {shlex.quote(path)}")
