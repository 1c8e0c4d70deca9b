"""SMTP transcripts recorded from real Postfix 3.7.11, replayed against this server (golden/*.in, *.ref).

Each ``CASE.in`` is what the client sends in one write after the greeting (a
first line ``# source 127.0.0.2`` makes it connect from outside mynetworks),
after optional ``# main.cf: name = value`` lines the case adds to the
configuration; golden_record.py records the ``.ref`` from real Postfix.
``CASE.ref`` is everything Postfix's smtpd answered until it closed the
connection, with queue IDs replaced by ``QUEUEID``. The recordings came from a
Postfix 3.7.11 instance (Debian 12 build, run from the unpacked .deb as in
reference/postfix.md section 0) configured like conftest.BASE_MAIN_CF, plus
``compatibility_level = 3.6``, ``smtputf8_enable = no``,
``smtpd_relay_restrictions = permit_mynetworks, defer_unauth_destination`` and
``alias_maps =``. The cases avoid what this server leaves out on purpose:
EHLO (its keyword list differs: no ETRN, DSN, CHUNKING), DSN parameters, BDAT,
and recipients that Postfix's error transport would refuse.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Callable

import pytest

from tests.mta.smtpd.conftest import FakeCleanup, SmtpdServer

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.in"))
# What every recording adds to conftest.BASE_MAIN_CF (golden_record.py and the replay alike).
GOLDEN_MAIN_CF = ("compatibility_level = 3.6\nsmtputf8_enable = no\n"
                  "smtpd_relay_restrictions = permit_mynetworks, defer_unauth_destination\nalias_maps =\n")


def case_split(raw: bytes) -> tuple[str, bytes]:
    """A case's own main.cf lines (``# main.cf: name = value`` at its top) and the bytes to send."""
    config = []
    while raw.startswith(b"# main.cf: "):
        line, _, raw = raw.partition(b"\n")
        config.append(line[len(b"# main.cf: "):].decode() + "\n")
    return "".join(config), raw
# Postfix's default /^[^A-Z]/ trips over a bug in mta.maps.pattern (see test_match_list.py).
FORBIDDEN = "smtpd_forbidden_commands = CONNECT GET POST regexp:{{/^[^A-Za-z]/ Bogus}}\n"


def transcript(port: int, data: bytes) -> bytes:
    """Send data after the greeting; return every byte received until the server closes."""
    source = None
    if data.startswith(b"# source "):
        first, data = data.split(b"\n", 1)
        source = (first.split()[2].decode(), 0)
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=source) as sock:
        received = b""
        while b"\r\n" not in received:
            received += sock.recv(65536)
        sock.sendall(data)
        while chunk := sock.recv(65536):
            received += chunk
    return re.sub(rb"queued as [0-9A-F]+", b"queued as QUEUEID", received)


def test_there_are_cases() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES)
def test_transcript_matches_postfix(start_server: Callable[..., SmtpdServer], cleanup: FakeCleanup,
                                   case: str) -> None:
    config, data = case_split((GOLDEN / f"{case}.in").read_bytes())
    server = start_server(FORBIDDEN + GOLDEN_MAIN_CF + config)
    expected = (GOLDEN / f"{case}.ref").read_bytes()
    assert transcript(server.port, data).decode(errors="replace") == expected.decode(errors="replace")
