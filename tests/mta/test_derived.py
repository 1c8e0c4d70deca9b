"""Tests for mta.derived: myhostname, mydomain and mynetworks computed as Postfix does."""

from __future__ import annotations

import ipaddress

import pytest

from mta.derived import default_mydomain, default_myhostname, default_mynetworks

INTERFACES = [
    ipaddress.ip_interface("127.0.0.1/8"),
    ipaddress.ip_interface("192.0.2.2/24"),
    ipaddress.ip_interface("172.20.1.5/16"),
    ipaddress.ip_interface("::1/128"),
    ipaddress.ip_interface("fd00::2/64"),
]


@pytest.mark.parametrize(
    ("hostname", "mydomain_setting", "expected"),
    [
        ("gw.example.com", None, "gw.example.com"),
        ("vm", None, "vm.localdomain"),
        ("vm", "example.net", "vm.example.net"),
    ],
)
def test_default_myhostname(hostname: str, mydomain_setting: str | None, expected: str) -> None:
    assert default_myhostname(hostname, mydomain_setting) == expected


@pytest.mark.parametrize(
    ("myhostname", "expected"),
    [("gw.example.com", "example.com"), ("example.com", "com"), ("gateway", "localdomain")],
)
def test_default_mydomain(myhostname: str, expected: str) -> None:
    assert default_mydomain(myhostname) == expected


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("host", "127.0.0.1/32 192.0.2.2/32 172.20.1.5/32 [::1]/128 [fd00::2]/128"),
        ("subnet", "127.0.0.0/8 192.0.2.0/24 172.20.0.0/16 [::1]/128 [fd00::]/64"),
        ("class", "127.0.0.0/8 192.0.2.0/24 172.20.0.0/16 [::1]/128 [fd00::]/64"),
    ],
)
def test_default_mynetworks(style: str, expected: str) -> None:
    assert default_mynetworks(style, INTERFACES) == expected


def test_mynetworks_class_a_from_subnet() -> None:
    assert default_mynetworks("class", [ipaddress.ip_interface("10.1.2.3/24")]) == "10.0.0.0/8"
