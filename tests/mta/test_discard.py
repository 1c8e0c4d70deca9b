"""Tests for mta.discard: every recipient sent, with the next hop's text as the reason."""

from __future__ import annotations

from mta.discard import discard_reply

RCPTS = [{"address": "a@trap.example", "offset": 10}, {"address": "b@trap.example", "offset": 90}]


def test_discard() -> None:
    reply = discard_reply({"op": "deliver", "nexthop": "spam trap", "recipients": RCPTS})
    assert [(r["status"], r["dsn"], r["reason"]) for r in reply["recipients"]] == [(0, "2.0.0", "spam trap")] * 2
    assert discard_reply({"nexthop": "", "recipients": RCPTS[:1]})["recipients"][0]["reason"] == "discarded"
