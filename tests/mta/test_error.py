"""Tests for mta.error: the replies of the error and retry transports (the next hop's text, its DSN)."""

from __future__ import annotations

import pytest

from mta import proto
from mta.error import error_reply

RCPTS = [{"address": "a@closed.example", "offset": 10}, {"address": "b@closed.example", "offset": 90}]


@pytest.mark.parametrize("nexthop, retry, status, dsn, reason", [
    ("5.1.1 this domain is closed", False, 5, "5.1.1", "this domain is closed"),
    ("550 5.7.1 go away", False, 5, "5.7.1", "go away"),
    ("no detail code", False, 5, "5.0.0", "no detail code"),
    ("", False, 5, "5.0.0", "delivery failed"),
    ("4.4.1 come back later", True, 4, "4.4.1", "come back later"),
    ("5.1.1 wrong class for retry", True, 4, "4.0.0", "wrong class for retry"),
    ("", True, 4, "4.0.0", "delivery temporarily suspended"),
])
def test_error_and_retry(nexthop: str, retry: bool, status: int, dsn: str, reason: str) -> None:
    reply = error_reply({"op": "deliver", "nexthop": nexthop, "recipients": RCPTS}, retry)
    assert reply["status"] == proto.OK and reply["relay"] == "none"
    assert reply["recipients"] == [{"address": r["address"], "offset": r["offset"], "status": status, "dsn": dsn,
                                    "reason": reason} for r in RCPTS]
