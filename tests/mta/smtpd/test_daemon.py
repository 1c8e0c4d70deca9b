"""Tests for the smtpd daemon entry (mta.smtpd): the skeleton CONTRACT."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import mta.smtpd as smtpd
from mta.errors import ConfigError
from mta.skeleton import DAEMONS
from mta.smtpd.policy import RecipientPolicy
from mta.smtpd.settings import SmtpdSettings
from tests.mta.smtpd.conftest import make_context


def test_contract() -> None:
    assert DAEMONS["smtpd"] == "mta.smtpd"
    assert smtpd.SERVER == "single"
    assert "SECURITY." in (smtpd.__doc__ or "")


def test_pre_init_keeps_settings_and_policy(tmp_path: Path, queue_dir: Path) -> None:
    ctx = make_context(tmp_path, queue_dir)
    assert isinstance(ctx.state["settings"], SmtpdSettings)
    assert isinstance(ctx.state["policy"], RecipientPolicy)


def test_pre_init_refuses_bad_configuration(tmp_path: Path, queue_dir: Path) -> None:
    with pytest.raises(ConfigError, match="mynetworks"):
        make_context(tmp_path, queue_dir, "mynetworks = 127.0.0.1/8\n")


def test_service_closes_the_connection(tmp_path: Path, queue_dir: Path) -> None:
    ctx = make_context(tmp_path, queue_dir)
    server, peer = socket.socketpair()
    peer.sendall(b"QUIT\r\n")
    smtpd.service(server, ctx)
    assert peer.recv(1000) == b"220 mx.example.test ESMTP Postfix\r\n221 2.0.0 Bye\r\n"
    assert peer.recv(1000) == b""
    assert server.fileno() == -1
    peer.close()
