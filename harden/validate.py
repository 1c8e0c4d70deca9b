"""Parse a Postfix-style configuration directory back with the MTA's own layer and report findings.

Provisioning runs this on every rendered configuration before anything is
pushed; admins can run it on a directory by hand (``harden validate DIR``).
Each finding names the file, the line when known, and the cause.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mta import defaults
from mta.aliases import alias_parse
from mta.config import MainConfig, load_config, split_list
from mta.errors import ConfigError, MtaError
from mta.log import logger as mta_logger
from mta.maps import split_spec
from mta.maps.hash import hash_db_path
from mta.maps.source import source_read
from mta.service_table import parse_master_cf, service_names


@dataclass(frozen=True)
class Finding:
    """One problem found: severity is "error" (the file would not work) or "warning"."""

    severity: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}, line {self.line}" if self.line else self.path
        return f"{self.severity}: {where}: {self.message}"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _mta_warnings() -> Iterator[list[str]]:
    """Collect the warnings the MTA's parsers log while the block runs."""
    handler = _Collect()
    mta_logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        mta_logger.removeHandler(handler)


def _from_error(exc: ConfigError | MtaError, fallback: str) -> Finding:
    if isinstance(exc, ConfigError) and exc.path:
        return Finding("error", exc.path, exc.reason, exc.line)
    return Finding("error", fallback, str(exc))


def _from_warning(text: str, fallback: str) -> Finding:
    # The MTA's messages start with "FILE, line N: " or "FILE: ".
    head, sep, rest = text.partition(": ")
    if sep and head.startswith("/"):
        path, _, line = head.partition(", line ")
        return Finding("warning", path, rest, int(line) if line.isdigit() else None)
    return Finding("warning", fallback, text)


def _check_main_cf(cfg: MainConfig) -> list[Finding]:
    findings = [_from_warning(w, cfg.path) for w in cfg.warnings]
    for name in cfg.parsed.definitions:
        try:
            cfg.get(name)
            if name in defaults.MATCH_LISTS:
                cfg.get_list(name)
        except ConfigError as exc:
            findings.append(_from_error(exc, cfg.path))
    for definition in cfg.unused(service_names(cfg.config_dir / "master.cf")):
        findings.append(Finding("warning", definition.path,
                                f"unused parameter: {definition.name}={definition.value}", definition.line))
    return findings


def _table_specs(cfg: MainConfig) -> tuple[list[str], list[str]]:
    """(alias tables, other hash: tables) named in main.cf, as type:name specs."""
    aliases = [s for s in cfg.get_list("alias_database") if split_spec(s)[0] == "hash"]
    others: list[str] = []
    for name in cfg.parsed.definitions:
        if name in defaults.RAW or name in ("alias_database", "alias_maps"):
            continue
        try:
            items = split_list(cfg.get(name))
        except ConfigError:
            continue
        for item in items:
            if item.startswith("hash:") and item not in aliases and item not in others:
                others.append(item)
    return aliases, others


def _check_table(spec: str, is_alias: bool) -> list[Finding]:
    source = Path(split_spec(spec)[1])
    findings: list[Finding] = []
    if not source.exists():
        return [Finding("error", str(source), f"source of {spec} does not exist")]
    with _mta_warnings() as warnings:
        try:
            if is_alias:
                alias_parse(source.read_bytes(), str(source))
            else:
                source_read(source)
        except ConfigError as exc:
            problems = getattr(exc, "problems", None) or [exc]
            findings.extend(_from_error(p, str(source)) for p in problems)
        except MtaError as exc:
            findings.append(_from_error(exc, str(source)))
    findings.extend(_from_warning(w, str(source)) for w in warnings)
    db = hash_db_path(source)
    if not db.exists():
        findings.append(Finding("warning", str(db), f"indexed table missing: run "
                                f"'mta {'postalias' if is_alias else 'postmap'} {spec}'"))
    elif os.stat(db).st_mtime < os.stat(source).st_mtime:
        findings.append(Finding("warning", str(db), f"older than source file {source}"))
    return findings


def validate_config_dir(config_dir: str | Path) -> list[Finding]:
    """Parse main.cf, master.cf, the aliases files and hash: tables of config_dir; return findings.

    + config_dir: a Postfix-style configuration directory.
    Errors are things the MTA would refuse (syntax, macro errors, missing files);
    warnings are things it would accept with a warning (duplicates, unused
    parameters, missing or stale indexed tables).
    """
    config_dir = Path(config_dir)
    main_cf = config_dir / "main.cf"
    if not main_cf.exists():
        return [Finding("error", str(main_cf), "No such file or directory")]
    try:
        cfg = load_config(config_dir)
    except ConfigError as exc:
        return [_from_error(exc, str(main_cf))]
    findings = _check_main_cf(cfg)
    master_cf = config_dir / "master.cf"
    if not master_cf.exists():
        findings.append(Finding("error", str(master_cf), "No such file or directory"))
    else:
        with _mta_warnings() as warnings:
            try:
                parse_master_cf(master_cf, compatibility_level=cfg.get("compatibility_level"))
            except ConfigError as exc:
                findings.append(_from_error(exc, str(master_cf)))
        findings.extend(_from_warning(w, str(master_cf)) for w in warnings)
    try:
        aliases, others = _table_specs(cfg)
    except ConfigError as exc:
        return findings + [_from_error(exc, str(main_cf))]
    for spec in aliases:
        findings.extend(_check_table(spec, is_alias=True))
    for spec in others:
        findings.extend(_check_table(spec, is_alias=False))
    return findings
