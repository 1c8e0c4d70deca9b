"""Listener addresses, socket places and modes, and what closing a listener does."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from mta.config import MainConfig, load_config
from mta.master.listen import ListenError, inet_addresses, listener_key, listener_open, unix_path
from mta.service_table import ServiceRow, row_parse

V4, V6 = socket.AF_INET, socket.AF_INET6


def cfg(tmp_path: Path, text: str) -> MainConfig:
    (tmp_path / "main.cf").write_text(text)
    return load_config(tmp_path)


def row(text: str) -> ServiceRow:
    return row_parse(text, "master.cf", 1, "3.6")


@pytest.mark.parametrize("main_cf, service, expected", [
    ("inet_interfaces = all\ninet_protocols = all\n", "25", [(V4, "0.0.0.0", 25), (V6, "::", 25)]),
    ("inet_interfaces = all\ninet_protocols = ipv4\n", "smtp", [(V4, "0.0.0.0", 25)]),
    ("inet_interfaces = loopback-only\ninet_protocols = all\n", "2525",
     [(V4, "127.0.0.1", 2525), (V6, "::1", 2525)]),
    ("inet_interfaces = 127.0.0.1, [::1]\ninet_protocols = ipv6\n", "2525", [(V6, "::1", 2525)]),
    ("inet_interfaces = all\n", "127.0.0.2:2525", [(V4, "127.0.0.2", 2525)]),
    ("inet_interfaces = all\n", "[::1]:2525", [(V6, "::1", 2525)]),
    ("inet_interfaces = localhost\ninet_protocols = ipv4\n", "2525", [(V4, "127.0.0.1", 2525)]),
])
def test_inet_addresses(tmp_path: Path, main_cf: str, service: str, expected: list[tuple[int, str, int]]) -> None:
    assert inet_addresses(row(f"{service} inet n - n - - smtpd"), cfg(tmp_path, main_cf)) == expected


@pytest.mark.parametrize("main_cf, service, message", [
    ("", "nosuchservice inet n - n - - smtpd", "unknown service: nosuchservice/tcp"),
    ("inet_protocols = ipv6\n", "127.0.0.1:25 inet n - n - - smtpd", "no address to listen on"),
    ("inet_protocols = ipx\n", "25 inet n - n - - smtpd", "bad inet_protocols value: ipx"),
])
def test_inet_address_errors(tmp_path: Path, main_cf: str, service: str, message: str) -> None:
    with pytest.raises(ListenError, match=message):
        inet_addresses(row(service), cfg(tmp_path, main_cf))


def test_unix_paths(tmp_path: Path) -> None:
    assert unix_path(row("qmgr unix n - n 300 1 qmgr"), tmp_path) == tmp_path / "public/qmgr"
    assert unix_path(row("local unix - n n - - local"), tmp_path) == tmp_path / "private/local"
    assert unix_path(row("postdrop unix n - n - - postdrop"), tmp_path) == tmp_path / "submit/postdrop"
    assert listener_key(row("local unix - n n - - local"), cfg(tmp_path, ""), tmp_path) == \
        ("unix", str(tmp_path / "private/local"))


def test_unix_listener_replaces_stale_socket(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "public/qmgr"))
    stale.close()
    listener = listener_open(row("qmgr unix n - n 300 1 qmgr"), cfg(tmp_path, ""), tmp_path, 1234, 5678)
    try:
        st = os.stat(tmp_path / "public/qmgr")
        assert (stat.S_ISSOCK(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == \
            (True, 0o666, 1234, 5678)
        assert listener.label == "public/qmgr"
        assert listener.wakeup(b"W")
        conn, _ = listener.socks[0].accept()
        assert conn.recv(10) == b"W"
        conn.close()
    finally:
        listener.close()
    assert not (tmp_path / "public/qmgr").exists()


def test_unix_listener_refuses_to_replace_a_file(tmp_path: Path) -> None:
    (tmp_path / "private").mkdir()
    (tmp_path / "private/local").write_text("not a socket")
    with pytest.raises(ListenError, match="private/local: exists and is not a socket"):
        listener_open(row("local unix - n n - - local"), cfg(tmp_path, ""), tmp_path, 0, 0)


def test_close_refuses_clients_while_children_hold_copies(tmp_path: Path) -> None:
    main = cfg(tmp_path, "inet_protocols = ipv4\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listener = listener_open(row(f"127.0.0.1:{port} inet n - n - - smtpd"), main, tmp_path, 0, 0)
    assert listener.label == f"127.0.0.1:{port}"
    child_copy = os.dup(listener.fds()[0])  # what a forked child holds
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        listener.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
    finally:
        os.close(child_copy)
