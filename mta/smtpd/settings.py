"""The main.cf parameters smtpd reads, checked and typed once per process (in pre_init)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mta import log
from mta.errors import ConfigError
from mta.match_list import NetworkList, StringList, network_list, string_list
from mta.smtpd.tls import TlsSettings, tls_settings

if TYPE_CHECKING:
    from mta.config import MainConfig


@dataclass(frozen=True)
class SmtpdSettings:
    """The main.cf parameters the SMTP server reads, typed (see postconf(5) for each)."""

    myhostname: str
    banner: str
    message_size_limit: int
    recipient_limit: int
    recipient_overshoot_limit: int
    timeout: int
    soft_error_limit: int
    hard_error_limit: int
    error_sleep_time: int
    junk_command_limit: int
    line_length_limit: int
    disable_vrfy: bool
    helo_required: bool
    peername_lookup: bool
    client_port_logging: bool
    strict_rfc821: bool
    soft_bounce: bool
    queue_minfree: int
    forbid_unauth_pipelining: bool
    smtputf8_enable: bool
    forbidden_commands: StringList
    reject_unlisted_recipient: bool = True
    bare_newline: str = "normalize"
    bare_newline_exclusions: NetworkList | None = None
    bare_newline_reject_code: int = 550
    tls: TlsSettings = TlsSettings("none", None, False)
    connection_count_limit: int = 0  # concurrent connections per client (0: no limit)
    connection_rate_limit: int = 0  # connections per client per anvil_rate_time_unit (0: no limit)
    event_limit_exceptions: NetworkList | None = None  # clients the limits spare ($mynetworks)
    service_name: str = "smtp"  # the master.cf service, in anvil's ident and the limit warnings

    @classmethod
    def from_config(cls, cfg: "MainConfig") -> "SmtpdSettings":
        """Read and check every parameter (a bad value is a ConfigError, before any client)."""
        return cls(
            myhostname=cfg.get("myhostname"),
            banner=cfg.get("smtpd_banner"),
            message_size_limit=cfg.get_int("message_size_limit", 0),
            recipient_limit=cfg.get_int("smtpd_recipient_limit", 1),
            recipient_overshoot_limit=cfg.get_int("smtpd_recipient_overshoot_limit", 0),
            timeout=cfg.get_time("smtpd_timeout", 1),
            soft_error_limit=cfg.get_int("smtpd_soft_error_limit", 1),
            hard_error_limit=cfg.get_int("smtpd_hard_error_limit", 1),
            error_sleep_time=cfg.get_time("smtpd_error_sleep_time", 0),
            junk_command_limit=cfg.get_int("smtpd_junk_command_limit", 1),
            line_length_limit=cfg.get_int("line_length_limit", 80),
            disable_vrfy=cfg.get_bool("disable_vrfy_command"),
            helo_required=cfg.get_bool("smtpd_helo_required"),
            peername_lookup=cfg.get_bool("smtpd_peername_lookup"),
            client_port_logging=cfg.get_bool("smtpd_client_port_logging"),
            strict_rfc821=cfg.get_bool("strict_rfc821_envelopes"),
            soft_bounce=cfg.get_bool("soft_bounce"),
            queue_minfree=cfg.get_int("queue_minfree", 0),
            forbid_unauth_pipelining=cfg.get_bool("smtpd_forbid_unauth_pipelining"),
            smtputf8_enable=cfg.get_bool("smtputf8_enable"),
            forbidden_commands=string_list(cfg, "smtpd_forbidden_commands"),
            reject_unlisted_recipient=cfg.get_bool("smtpd_reject_unlisted_recipient"),
            bare_newline=_bare_newline(cfg),
            bare_newline_exclusions=network_list(cfg, "smtpd_forbid_bare_newline_exclusions"),
            bare_newline_reject_code=cfg.get_int("smtpd_forbid_bare_newline_reject_code", 400, 599),
            tls=tls_settings(cfg),
            connection_count_limit=cfg.get_int("smtpd_client_connection_count_limit", 0),
            connection_rate_limit=cfg.get_int("smtpd_client_connection_rate_limit", 0),
            event_limit_exceptions=network_list(cfg, "smtpd_client_event_limit_exceptions"),
        )


def _bare_newline(cfg: "MainConfig") -> str:
    """smtpd_forbid_bare_newline: normalize or reject; ``no`` is refused for SMTP smuggling's sake.

    Postfix 3.7 accepts ``no`` (any LF.LF ends the data, CVE-2023-51764). This
    MTA never does that for untrusted clients: ``no`` and the boolean spellings
    of it mean normalize, with a warning; yes means reject, as in Postfix.
    """
    value = cfg.get("smtpd_forbid_bare_newline").strip().lower()
    if value in ("normalize", "reject"):
        return value
    if value in ("yes", "true", "1"):
        return "reject"
    if value in ("no", "false", "0", ""):
        log.msg_warn("smtpd_forbid_bare_newline = no would let SMTP smuggling (CVE-2023-51764) split one message "
                     "in two; using normalize (trusted clients: smtpd_forbid_bare_newline_exclusions)")
        return "normalize"
    raise ConfigError(f'invalid smtpd_forbid_bare_newline value: "{value}" (normalize or reject)', cfg.path)


