"""The SSH transport: one Fabric connection per host, reused for the whole run, with strict host keys.

HOST KEYS. Fabric's default is to accept and remember any host key
(paramiko's AutoAddPolicy). Here every connection, jump hosts included, uses
RejectPolicy and trusts only keys from the known_hosts files given (the
inventory's ``harden_known_hosts``, the ssh_config's UserKnownHostsFile,
~/.ssh/known_hosts): an unknown key is refused with a message saying how to
check and add it; a changed key is refused as a possible attack.

CONFIG. An ssh_config file (``-F``) is read by Fabric: HostName, User, Port,
IdentityFile and ProxyJump apply as with OpenSSH; an explicit address, port,
user, key or jump host given here takes precedence.

COMMANDS run through one exec channel each on the shared connection (no new
TCP or SSH handshake per command). A login user other than root gets
``sudo -n`` (or ``sudo -S`` with a password) around every command.
"""

from __future__ import annotations

import os
import shlex
import socket
from typing import Any

import fabric  # type: ignore[import-untyped]
import paramiko

from harden.errors import TransportError
from harden.transport.base import Result


def _strict(conn: fabric.Connection, known_hosts: list[str]) -> None:
    """Make conn (and its jump hosts) refuse unknown host keys and trust only known_hosts."""
    while isinstance(conn, fabric.Connection):
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        conn.client.get_host_keys().clear()
        for path in known_hosts:
            if os.path.exists(path):
                conn.client.load_host_keys(path)
        conn = conn.gateway


class SshTransport:
    """A connection to one host over SSH.

    + host: the inventory name (used in messages, and looked up in ssh_config).
    + address, port, user, key_file: override what ssh_config says.
    + known_hosts: files of trusted host keys (in addition to ssh_config's and ~/.ssh/known_hosts).
    + ssh_config: an OpenSSH client configuration file.
    + jump: a jump host, ``[user@]host[:port]`` (ProxyJump); it must be in known_hosts too.
    + become: wrap commands in sudo (default: when user is not root); sudo_password for ``sudo -S``.
    """

    def __init__(self, host: str, address: str | None = None, port: int | None = None, user: str | None = None,
                 key_file: str | None = None, known_hosts: list[str] | None = None, ssh_config: str | None = None,
                 jump: str | None = None, become: bool | None = None, sudo_password: str | None = None,
                 connect_timeout: float = 15.0) -> None:
        self.host = host
        config = fabric.Config(runtime_ssh_path=ssh_config) if ssh_config else fabric.Config()
        kwargs: dict[str, Any] = {"config": config, "connect_timeout": connect_timeout}
        if user:
            kwargs["user"] = user
        if port:
            kwargs["port"] = port
        connect_kwargs: dict[str, Any] = {"allow_agent": False}
        if key_file:
            connect_kwargs.update(key_filename=[key_file], look_for_keys=False)
        kwargs["connect_kwargs"] = connect_kwargs
        if jump:
            kwargs["gateway"] = fabric.Connection(jump, config=config, connect_timeout=connect_timeout,
                                                  connect_kwargs=dict(connect_kwargs))
        try:
            self.conn = fabric.Connection(address or host, **kwargs)
        except (ValueError, paramiko.SSHException) as exc:
            raise TransportError(f"{host}: bad connection settings: {exc}") from None
        if address and ssh_config:
            # The address overrides HostName only; the rest of the host's block applies.
            self.conn.ssh_config = config.base_ssh_config.lookup(host)
        files = list(known_hosts or [])
        configured = self.conn.ssh_config.get("userknownhostsfile")
        if configured:
            files += [os.path.expanduser(p) for p in str(configured).split()]
        files.append(os.path.expanduser("~/.ssh/known_hosts"))
        self.known_hosts = files
        _strict(self.conn, files)
        self.user = self.conn.user
        self.become = (self.user != "root") if become is None else become
        self.sudo_password = sudo_password
        self._open()

    def _open(self) -> None:
        target = f"{self.conn.host}:{self.conn.port}"
        try:
            self.conn.open()
        except paramiko.BadHostKeyException as exc:
            raise TransportError(
                f"{self.host}: the host key of {target} has CHANGED ({exc.key.get_name()} "
                f"{exc.key.fingerprint}); refusing to connect (someone may be intercepting). "
                f"If the host was reinstalled, replace its line in {self.known_hosts[0]}") from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                keyscan = f"ssh-keyscan -p {self.conn.port} {self.conn.host}"
                raise TransportError(
                    f"{self.host}: unknown host key for {target}: refusing to connect. To trust it, check its "
                    f"fingerprint out of band (`{keyscan} | ssh-keygen -lf -`), then add it: "
                    f"`{keyscan} >> {self.known_hosts[0]}`") from None
            raise TransportError(f"{self.host}: SSH to {target}: {exc}") from None
        except (OSError, socket.timeout) as exc:
            raise TransportError(f"{self.host}: cannot reach {target}: {exc}") from None
        sock = self.conn.transport.sock if self.conn.transport is not None else None
        if isinstance(sock, socket.socket):
            # Without TCP_NODELAY each channel open waits for the peer's delayed ACK
            # (about 40 ms); with it a command costs about 3 ms on the shared connection.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def run(self, command: str, *, check: bool = True, stdin: bytes | None = None,
            timeout: float | None = None) -> Result:
        full = command
        data = stdin or b""
        if self.become:
            full = f"sudo {'-S -p ' + shlex.quote('') if self.sudo_password else '-n'} -- /bin/sh -c {shlex.quote(command)}"
            if self.sudo_password:
                data = self.sudo_password.encode() + b"\n" + data
        try:
            transport = self.conn.transport
            if transport is None or not transport.is_active():
                self.conn.close()
                self._open()
                transport = self.conn.transport
            assert transport is not None
            channel = transport.open_session(timeout=timeout)
            channel.settimeout(timeout)
            channel.exec_command(full)
            if data:
                channel.sendall(data)
            channel.shutdown_write()
            stdout, stderr = _drain(channel)
            code = channel.recv_exit_status()
            channel.close()
        except (paramiko.SSHException, OSError, socket.timeout) as exc:
            raise TransportError(f"{self.host}: {command[:200]}: {exc or type(exc).__name__}") from None
        result = Result(command, code, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"))
        if check and not result.ok:
            raise TransportError(f"{self.host}: exit {code}: {command[:200]}: {result.tail()}")
        return result

    def close(self) -> None:
        self.conn.close()


def _drain(channel: paramiko.Channel) -> tuple[bytes, bytes]:
    """Read a channel's stdout to its end, then its stderr (buffered by paramiko meanwhile).

    The commands harden runs write little to stderr; one writing more than the
    channel window (2 MB) to stderr before closing stdout would stall here.
    """
    out: list[bytes] = []
    while chunk := channel.recv(65536):
        out.append(chunk)
    err: list[bytes] = []
    while chunk := channel.recv_stderr(65536):
        err.append(chunk)
    return b"".join(out), b"".join(err)
