"""Load and check what the master runs from: main.cf, master.cf, its users and groups, its directories.

`config_load` is what ``mta start`` and ``mta reload`` check before they act and what
the master reads on start and on SIGHUP, so a configuration the master would refuse
is reported by the command, with file, line and cause, before any signal is sent.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from mta import queue
from mta.config import MainConfig, load_config
from mta.errors import ConfigError
from mta.service_table import ServiceRow, parse_master_cf
from mta.skeleton import daemon_available

MASTER_CF = "master.cf"


@dataclass
class MasterConfig:
    """The master's view of the configuration.

    + config_dir: the configuration directory.
    + cfg: main.cf over the defaults.
    + rows: every master.cf service, in file order.
    + queue_dir: queue_directory.
    + mail_uid, mail_gid: mail_owner's user and primary group.
    + setgid_gid: setgid_group's group id.
    + maillog_file: the log file, or "" for syslog.
    """

    config_dir: Path
    cfg: MainConfig
    rows: list[ServiceRow]
    queue_dir: Path
    mail_uid: int
    mail_gid: int
    setgid_gid: int
    maillog_file: str


def _error(cfg: MainConfig, name: str, reason: str) -> ConfigError:
    """A ConfigError naming the parameter and, when main.cf sets it, its file and line."""
    definition = cfg.parsed.definitions.get(name)
    if definition is not None:
        return ConfigError(f"parameter {name}: {reason}", definition.path, definition.line)
    return ConfigError(f"parameter {name}: {reason}", cfg.path)


def _user(cfg: MainConfig, name: str) -> pwd.struct_passwd:
    value = cfg.get(name)
    try:
        return pwd.getpwnam(value)
    except KeyError:
        raise _error(cfg, name, f"unknown user name value: {value}") from None


def config_load(config_dir: str | Path) -> MasterConfig:
    """Read main.cf and master.cf and check the identities the master needs.

    + config_dir: the configuration directory.

    Raises ConfigError (file, line, cause) when a file does not parse, mail_owner,
    default_privs or setgid_group is unknown, mail_owner is root or shares its user
    with default_privs or its group with setgid_group, queue_directory is not
    absolute, or maillog_file lies outside maillog_file_prefixes.
    """
    config_dir = Path(config_dir)
    cfg = load_config(config_dir)
    rows = parse_master_cf(config_dir / MASTER_CF, cfg.get("compatibility_level"),
                           cfg.get_int("default_process_limit", minimum=0))
    owner = _user(cfg, "mail_owner")
    if owner.pw_uid == 0:
        raise _error(cfg, "mail_owner", f"user {owner.pw_name} has privileged user ID: 0")
    privs = _user(cfg, "default_privs")
    if privs.pw_uid == owner.pw_uid:
        raise _error(cfg, "default_privs",
                     f"user {privs.pw_name} has same user ID as mail_owner user {owner.pw_name}")
    group_name = cfg.get("setgid_group")
    try:
        setgid_gid = grp.getgrnam(group_name).gr_gid
    except KeyError:
        raise _error(cfg, "setgid_group", f"unknown group name: {group_name}") from None
    if setgid_gid == owner.pw_gid:
        raise _error(cfg, "setgid_group",
                     f"group {group_name} has same group ID as the mail_owner's group")
    queue_dir = Path(cfg.get("queue_directory"))
    if not queue_dir.is_absolute():
        raise _error(cfg, "queue_directory", f"not an absolute path: {queue_dir}")
    maillog_file = cfg.get("maillog_file").strip()
    if maillog_file:
        _maillog_check(cfg, maillog_file)
    return MasterConfig(config_dir, cfg, rows, queue_dir, owner.pw_uid, owner.pw_gid, setgid_gid,
                        maillog_file)


def _maillog_check(cfg: MainConfig, path: str) -> None:
    """The master, as root, appends to maillog_file: only under maillog_file_prefixes (Postfix's rule)."""
    if not os.path.isabs(path):
        raise _error(cfg, "maillog_file", f"not an absolute path: {path}")
    prefixes = cfg.get_list("maillog_file_prefixes")
    for prefix in prefixes:
        base = prefix.rstrip("/")
        if path == prefix or path.startswith(base + "/"):
            return
    raise _error(cfg, "maillog_file",
                 f'"{path}" does not match any prefix in maillog_file_prefixes ({", ".join(prefixes)})')


def dirs_create(mc: MasterConfig) -> list[str]:
    """Create the queue directories (Postfix's owners and modes) and data_directory; return what was made."""
    try:
        created = queue.queue_dirs_create(mc.queue_dir, mc.mail_uid, mc.setgid_gid)
        data_dir = Path(mc.cfg.get("data_directory"))
        if not data_dir.is_dir():
            data_dir.mkdir(mode=0o700, parents=True)
            created.append(str(data_dir))
        os.chown(data_dir, mc.mail_uid, mc.mail_gid)
        os.chmod(data_dir, 0o700)
    except OSError as exc:
        raise ConfigError(f"create directories: {exc.filename}: {os.strerror(exc.errno or 0)}",
                          mc.cfg.path) from None
    return created


def rows_runnable(rows: list[ServiceRow]) -> tuple[list[ServiceRow], list[str]]:
    """Split master.cf rows into those this MTA can run and a warning for each of the others."""
    runnable: list[ServiceRow] = []
    warnings: list[str] = []
    for row in rows:
        if row.type not in ("inet", "unix"):
            warnings.append(f"service {row.name_type}: transport type {row.type} "
                            "is not supported by this MTA; service disabled")
        elif not daemon_available(row.command):
            warnings.append(f"service {row.name_type}: command {row.command} "
                            "is not available in this MTA; service disabled")
        else:
            runnable.append(row)
    return runnable, warnings


def queue_access_warnings(mc: MasterConfig) -> list[str]:
    """Warn when mail_owner cannot reach queue_directory and an unprivileged service is not chrooted.

    Such a daemon works in the queue by absolute path after its privilege drop, so
    every directory above the queue must be searchable by mail_owner (chrooted
    daemons are unaffected: the chroot happens while still root).
    """
    if not any(row.unpriv and not row.chroot for row in mc.rows):
        return []
    for parent in mc.queue_dir.parents:
        try:
            st = os.stat(parent)
        except OSError:
            return []
        if st.st_uid == mc.mail_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == mc.mail_gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return [f"queue_directory {mc.queue_dir}: mail_owner cannot search {parent} "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}); unprivileged services that are "
                    "not chrooted will fail"]
    return []
