"""mta check: warn about problems in the configuration, file ownership and modes, and a stale chroot jail.

Like ``postfix check`` (reference §11.4): main.cf and master.cf must load (a
problem there is fatal, exit status 1); then warnings, exit status 0:

- the configuration directory, main.cf, master.cf, queue_directory and its
  pid/ not owned by root, or writable by group or other (a writable main.cf
  is as good as root);
- queue subdirectories not owned by mail_owner; public/ and maildrop/ not in
  setgid_group;
- anything under queue_directory's bin, etc, lib, lib64, sbin or usr (the
  chroot jail) not owned by root, and jail files that differ from their
  counterpart outside: ``/var/spool/postfix/etc/resolv.conf and
  /etc/resolv.conf differ`` (a stale copy).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import stat
from pathlib import Path

from mta import log, queue
from mta.errors import ConfigError
from mta.master.check import config_load

SUMMARY = "warn about bad ownership, modes and stale chroot files"
JAIL_DIRS = ("bin", "etc", "lib", "lib64", "sbin", "usr")
_OWNED_BY_MAIL = (queue.ACTIVE, queue.BOUNCE_LOG, queue.CORRUPT, queue.DEFER_LOG, queue.DEFERRED, queue.FLUSH,
                  queue.HOLD, queue.INCOMING, queue.SAVED, queue.TRACE_LOG, "private", "public", "maildrop")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options besides the common -c and -v."""


def _root_owned(path: Path, warnings: list[str]) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if st.st_uid != 0:
        warnings.append(f"not owned by root: {path}")
    if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        warnings.append(f"group or other writable: {path}")


def check_warnings(config_dir: Path) -> list[str]:
    """Every warning for the configuration in config_dir; ConfigError when it does not load."""
    mc = config_load(config_dir)
    warnings: list[str] = []
    for path in (mc.config_dir, mc.config_dir / "main.cf", mc.config_dir / "master.cf", mc.queue_dir,
                 mc.queue_dir / "pid"):
        _root_owned(path, warnings)
    for name in _OWNED_BY_MAIL:
        path = mc.queue_dir / name
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if st.st_uid != mc.mail_uid:
            warnings.append(f"not owned by {mc.cfg.get('mail_owner')}: {path}")
        if name in ("public", "maildrop") and st.st_gid != mc.setgid_gid:
            warnings.append(f"not owned by group {mc.cfg.get('setgid_group')}: {path}")
    for top in JAIL_DIRS:
        base = mc.queue_dir / top
        if base.exists() and os.lstat(base).st_uid != 0:
            warnings.append(f"not owned by root: {base}")
        for dirpath, dirnames, filenames in os.walk(base):
            for name in [*dirnames, *filenames]:
                path = Path(dirpath) / name
                if os.lstat(path).st_uid != 0:
                    warnings.append(f"not owned by root: {path}")
                outside = Path("/") / path.relative_to(mc.queue_dir)
                if (name in filenames and not path.is_symlink() and path.is_file() and outside.is_file()
                        and not filecmp.cmp(path, outside, shallow=False)):
                    warnings.append(f"{path} and {outside} differ")
    corrupt = mc.queue_dir / queue.CORRUPT
    if corrupt.is_dir():
        warnings += [f"damaged message: {queue.CORRUPT}/{name}" for name in sorted(os.listdir(corrupt))]
    return warnings


def run(args: argparse.Namespace) -> int:
    """Print the warnings; exit 1 only when the configuration does not load."""
    try:
        warnings = check_warnings(Path(args.config_dir))
    except ConfigError as exc:
        log.msg_fatal(str(exc))
        return 1
    for warning in warnings:
        log.msg_warn(warning)
    return 0
