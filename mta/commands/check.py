"""mta check: report problems in the configuration, file ownership and modes, stale copies, and risky settings.

Like ``postfix check`` (reference §11.4): main.cf and master.cf must load (a
problem there is fatal, exit status 1); then one warning line per finding,
and, unlike Postfix, exit status 1 when there is any (0 only when clean):

- the configuration directory, main.cf, master.cf, queue_directory and its
  pid/ not owned by root, or writable by group or other (a writable main.cf
  is as good as root);
- queue subdirectories not owned by mail_owner; public/ and maildrop/ not in
  setgid_group;
- anything under queue_directory's bin, etc, lib, lib64, sbin or usr (the
  chroot jail) not owned by root, and jail files that differ from their
  counterpart outside: ``/var/spool/postfix/etc/resolv.conf and
  /etc/resolv.conf differ`` (a stale copy);
- with any service chrooted, files the jail should hold (mta.jail) that are missing;
- compiled tables older than their source (``database /etc/postfix/access.db
  is older than source file /etc/postfix/access``), or missing;
- local, virtual or pipe marked chrooted in master.cf (they deliver as the
  recipient into the real file system and refuse to start so);
- smtpd in master.cf with per-client connection limits but no anvil service
  to count them;
- dangerous settings: mynetworks that trusts the whole Internet or a public
  /8 or wider, no relay restriction that can refuse unauthorized relaying,
  an smtpd_banner that names the software or its version, VRFY left enabled.
"""

from __future__ import annotations

import argparse
import filecmp
import ipaddress
import os
import posixpath
import stat
from pathlib import Path

from mta import defaults, log, queue
from mta.config import MainConfig, split_list
from mta.errors import ConfigError
from mta.jail import JAIL_TOPS, jail_expected
from mta.maps import split_spec
from mta.maps.hash import hash_db_path
from mta.master.check import config_load

SUMMARY = "warn about bad ownership, modes and stale chroot files"
NEVER_CHROOTED = frozenset({"local", "virtual", "pipe"})
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
    for top in JAIL_TOPS:
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
    if any(row.chroot for row in mc.rows):
        warnings += [f"chroot jail file missing: {mc.queue_dir / rel} (harden provision builds the jail)"
                     for rel in jail_expected() if not os.path.lexists(mc.queue_dir / rel)]
    warnings += _table_warnings(mc.cfg)
    for row in mc.rows:
        if row.chroot and posixpath.basename(row.command) in NEVER_CHROOTED:
            warnings.append(f"{mc.config_dir / 'master.cf'}: service {row.service} ({row.command}) is chrooted; "
                            f"{row.command} must run with chroot = n")
    commands = {posixpath.basename(row.command) for row in mc.rows}
    if "smtpd" in commands and "anvil" not in commands:
        limits = [name for name in ("smtpd_client_connection_count_limit", "smtpd_client_connection_rate_limit")
                  if mc.cfg.get_int(name, 0)]
        if limits:
            warnings.append(f"{mc.config_dir / 'master.cf'}: no anvil service, so {' and '.join(limits)} "
                            "cannot be enforced (add: anvil unix - - y - 1 anvil)")
    warnings += _setting_warnings(mc.cfg)
    corrupt = mc.queue_dir / queue.CORRUPT
    if corrupt.is_dir():
        warnings += [f"damaged message: {queue.CORRUPT}/{name}" for name in sorted(os.listdir(corrupt))]
    return warnings


def _table_warnings(cfg: MainConfig) -> list[str]:
    """Compiled (hash:) tables named in main.cf that are missing or older than their source."""
    specs: list[str] = []
    for name in cfg.parsed.definitions:
        if name in defaults.RAW:
            continue
        try:
            items = split_list(cfg.get(name))
        except ConfigError:
            continue
        specs += [item for item in items if item.startswith("hash:") and item not in specs]
    out = []
    for spec in specs:
        source = Path(split_spec(spec)[1])
        db = hash_db_path(source)
        if not source.exists():
            continue  # nothing to compile (the lookup itself reports a missing table)
        if not db.exists():
            out.append(f"database {db} is missing: run mta {'postalias' if 'alias' in spec else 'postmap'} {spec}")
        elif db.stat().st_mtime < source.stat().st_mtime:
            out.append(f"database {db} is older than source file {source}")
    return out


def _setting_warnings(cfg: MainConfig) -> list[str]:
    """Settings that make a mail gateway unsafe."""
    out = []
    for entry in cfg.get_list("mynetworks"):
        try:
            network = ipaddress.ip_network(entry.strip("[]").replace("]/", "/"), strict=False)
        except ValueError:
            continue
        wide = network.prefixlen <= (8 if network.version == 4 else 16)
        if network.prefixlen == 0 or (wide and network.is_global):
            out.append(f"mynetworks = {entry} trusts {network.num_addresses:,} addresses of the public "
                       "Internet to relay through this host: list only your own networks")
    working = {"reject_unauth_destination", "defer_unauth_destination", "reject", "defer", "defer_if_permit",
               "check_relay_domains"}
    words = {w.lower() for name in ("smtpd_relay_restrictions", "smtpd_recipient_restrictions")
             for w in split_list(cfg.get(name))}
    if not words & working:
        out.append("neither smtpd_relay_restrictions nor smtpd_recipient_restrictions can refuse unauthorized "
                   "relaying (add reject_unauth_destination or defer_unauth_destination); smtpd will not start")
    if not cfg.get_bool("disable_vrfy_command"):
        out.append("disable_vrfy_command = no lets any client probe which accounts exist (VRFY); "
                   "set disable_vrfy_command = yes (EXPN is never offered)")
    banner = cfg.get("smtpd_banner")
    raw = cfg.parsed.definitions.get("smtpd_banner")
    raw_text = raw.value if raw is not None else defaults.DEFAULTS.get("smtpd_banner", "")
    if any(word in (banner + " " + raw_text).lower() for word in ("postfix", "mail_name", "mail_version")):
        out.append(f"smtpd_banner = {raw_text} tells every client which software and version this is; "
                   "use smtpd_banner = $myhostname ESMTP")
    return out


def run(args: argparse.Namespace) -> int:
    """Print one warning per finding; exit 0 only when there is none (1 also when nothing loads)."""
    try:
        warnings = check_warnings(Path(args.config_dir))
    except ConfigError as exc:
        log.msg_fatal(str(exc))
        return 1
    for warning in warnings:
        log.msg_warn(warning)
    return 1 if warnings else 0
