"""STARTTLS for smtpd: the server's TLS context, built before chroot from smtpd_tls_* parameters.

LEVELS (smtpd_tls_security_level): empty or ``none`` offers no TLS; ``may``
announces STARTTLS and accepts plain text too; ``encrypt`` announces it and
refuses every mail command before it (``530 5.7.0 Must issue a STARTTLS command
first``), as Postfix does. TLS 1.2 is the least this server speaks, whatever
smtpd_tls_protocols says (older versions are broken).

INJECTION (CVE-2011-0411 and its STARTTLS kin). Anything the client pipelined
after STARTTLS arrived in plain text and is thrown away before the handshake,
so a man in the middle cannot have commands executed inside the encrypted
session; after the handshake the session starts over (RFC 3207 section 4.2):
no HELO name, no transaction.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mta.errors import ConfigError

if TYPE_CHECKING:
    from mta.config import MainConfig

LEVELS = ("", "none", "may", "encrypt")


@dataclass(frozen=True)
class TlsSettings:
    """The TLS side of smtpd: the level and the context (None when TLS is off)."""

    level: str
    context: ssl.SSLContext | None
    received_header: bool

    @property
    def offered(self) -> bool:
        return self.context is not None


def tls_settings(cfg: "MainConfig") -> TlsSettings:
    """Read smtpd_tls_security_level, _cert_file, _key_file; load the certificate now (before chroot).

    Raises ConfigError for an unknown level, a level that needs a certificate
    without one, or a certificate or key that cannot be loaded.
    """
    level = cfg.get("smtpd_tls_security_level").strip().lower()
    if level not in LEVELS:
        raise ConfigError(f'invalid smtpd_tls_security_level value: "{level}" (none, may or encrypt)', cfg.path)
    received = cfg.get_bool("smtpd_tls_received_header")
    if level in ("", "none"):
        return TlsSettings("none", None, received)
    cert, key = cfg.get("smtpd_tls_cert_file").strip(), cfg.get("smtpd_tls_key_file").strip()
    if not cert:
        raise ConfigError(f"smtpd_tls_security_level = {level} needs smtpd_tls_cert_file", cfg.path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(cert, key or cert)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate {cert} / key {key or cert}: {exc}", cfg.path) from None
    return TlsSettings(level, context, received)
