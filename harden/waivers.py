"""Audit waivers: accepted exceptions, each with a check ID, a host pattern, a justification and an expiry date.

FILE (YAML), a list of entries:

    - id: SMTP-BANNER-01
      hosts: "gw[1-3]*"           # fnmatch pattern on inventory host names
      justification: "The upstream relay requires the product name (ticket 1234)."
      expires: 2027-03-31         # the last day the waiver applies

Every field is required; an unknown field, a bad date or an empty
justification is an error naming the file and the entry. A waiver turns a
failed check into ``waived`` up to and including its expiry date; after that
it stops applying and the audit reports it as expired.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import yaml

from harden.errors import HardenError

FIELDS = ("id", "hosts", "justification", "expires")


class _Loader(yaml.SafeLoader):
    """YAML without implicit dates: expires is parsed here, so a bad one gets this module's message."""


_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class WaiverError(HardenError):
    """A waivers file that cannot be used."""


@dataclass(frozen=True)
class Waiver:
    """One accepted exception."""

    id: str
    hosts: str
    justification: str
    expires: date
    where: str  # file:entry, for messages


def waivers_load(path: Path) -> list[Waiver]:
    """Read and check a waivers file."""
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader
    except OSError as exc:
        raise WaiverError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise WaiverError(f"{path}: not YAML: {exc}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise WaiverError(f"{path}: expected a list of waivers")
    out = []
    for n, entry in enumerate(data, 1):
        where = f"{path}: waiver {n}"
        if not isinstance(entry, dict):
            raise WaiverError(f"{where}: expected a mapping with {', '.join(FIELDS)}")
        unknown = sorted(set(entry) - set(FIELDS))
        missing = [f for f in FIELDS if f not in entry]
        if unknown or missing:
            raise WaiverError(f"{where}: " + "; ".join(
                ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
                + ([f"missing {', '.join(missing)}"] if missing else [])))
        expires = entry["expires"]
        if isinstance(expires, str):
            try:
                expires = date.fromisoformat(expires)
            except ValueError:
                raise WaiverError(f"{where}: expires {expires!r} is not a date (YYYY-MM-DD)") from None
        if not isinstance(expires, date):
            raise WaiverError(f"{where}: expires must be a date (YYYY-MM-DD)")
        justification = str(entry["justification"] or "").strip()
        if not justification:
            raise WaiverError(f"{where}: the justification is empty")
        out.append(Waiver(str(entry["id"]), str(entry["hosts"]), justification, expires, where))
    return out


def waiver_for(waivers: list[Waiver], check_id: str, host: str, today: date) -> tuple[Waiver | None, Waiver | None]:
    """(the current waiver for this failure, or None; an expired one that matched, or None)."""
    expired = None
    for w in waivers:
        if w.id == check_id and fnmatch.fnmatchcase(host, w.hosts):
            if today <= w.expires:
                return w, None
            expired = w
    return None, expired
