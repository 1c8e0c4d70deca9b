"""Tests for harden.lab.loopback: /32 addresses on lo, added where missing and removed by exactly that list."""

from __future__ import annotations

import os

import pytest

from harden.errors import LabError
from harden.lab.loopback import lo_add, lo_addresses, lo_remove

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing lo needs root")


def test_add_and_remove_exactly() -> None:
    addresses = ["127.0.0.247", "127.0.0.248"]
    assert not set(addresses) & lo_addresses()
    added = lo_add(addresses)
    try:
        assert added == addresses and set(addresses) <= lo_addresses()
        assert lo_add(addresses) == []  # already there: nothing added, so nothing to remove later
    finally:
        lo_remove(added)
    assert not set(addresses) & lo_addresses()
    lo_remove(addresses)  # gone already: no error


def test_refuses_other_addresses() -> None:
    with pytest.raises(LabError, match="not a loopback address"):
        lo_add(["192.0.2.1"])
    assert "192.0.2.1" not in lo_addresses()
