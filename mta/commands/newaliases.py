"""mta newaliases: rebuild every alias table listed in $alias_database.

Reads main.cf from the configuration directory (-c DIR, else $MAIL_CONFIG,
else /etc/postfix; the Postfix default is alias_database = hash:/etc/aliases)
and builds each listed table as "mta postalias" does. A bare file name has
the type $default_database_type; only hash: tables can be built, and any
other type is reported as an error. Bad lines in an aliases file are errors
naming file and line, and that table is left as it was; the other tables are
still rebuilt. Exits 1 when any table failed.
"""

from __future__ import annotations

import argparse

from mta.aliases import alias_build_all, alias_spec
from mta.config import load_config

SUMMARY = "rebuild the alias tables listed in alias_database"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options besides the common -c and -v."""


def run(args: argparse.Namespace) -> int:
    """Build each alias_database table; exit 1 when any of them failed."""
    cfg = load_config(args.config_dir)
    default_type = cfg.get("default_database_type") or "hash"
    specs = [alias_spec(spec, default_type) for spec in cfg.get_list("alias_database")]
    failed = alias_build_all(specs, hostname=cfg.get("myhostname"))
    return 1 if failed else 0
