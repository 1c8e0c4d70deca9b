"""Tests for harden.lab.model: host plan, addresses, groups and the state file."""

from __future__ import annotations

from pathlib import Path

import pytest

from harden.errors import LabError
from harden.lab.model import LabHost, LabState, hosts_plan, state_load, state_save


def test_plan_names_addresses_groups() -> None:
    hosts = hosts_plan(4)
    assert [(h.name, h.address) for h in hosts] == [
        ("gw1.lab.example", "127.0.0.11"), ("gw2.lab.example", "127.0.0.12"),
        ("gw3.lab.example", "127.0.0.13"), ("gw4.lab.example", "127.0.0.14")]
    assert [h.groups for h in hosts] == [["gateways"], ["gateways", "dmz"], ["gateways"], ["gateways", "dmz"]]
    assert hosts[0].short == "gw1"
    assert hosts_plan(2, "127.0.1.250")[1].address == "127.0.1.251"


@pytest.mark.parametrize("count, first", [(0, "127.0.0.11"), (201, "127.0.0.11"), (1, "10.0.0.1"),
                                          (1, "127.0.0.1"), (3, "127.255.255.253"), (1, "nonsense")])
def test_plan_refuses_bad_requests(count: int, first: str) -> None:
    with pytest.raises(LabError):
        hosts_plan(count, first)


def test_state_round_trip_and_lookup(tmp_path: Path) -> None:
    assert state_load(tmp_path) is None
    state = LabState([LabHost("gw1.lab.example", "127.0.0.11", ["gateways"], 10, 11, "pid:[1]")], ["127.0.0.11"])
    state_save(tmp_path, state)
    again = state_load(tmp_path)
    assert again == state
    assert again.host("gw1") is again.host("127.0.0.11") is again.host("gw1.lab.example")
    with pytest.raises(LabError, match="no lab host 'gw9'"):
        again.host("gw9")


def test_state_file_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "lab.json").write_text("{not json")
    with pytest.raises(LabError, match="lab.json: cannot read"):
        state_load(tmp_path)
    (tmp_path / "lab.json").write_text('{"version": 99}')
    with pytest.raises(LabError, match="not a lab state file"):
        state_load(tmp_path)
