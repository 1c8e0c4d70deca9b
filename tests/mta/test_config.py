"""Unit tests for mta.config: main.cf syntax, derived defaults and typed access."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta import defaults
from mta.config import load_config, parse_main_cf_text, split_list
from mta.errors import ConfigError
from tests.mta.test_derived import INTERFACES


def config(tmp_path: Path, text: str, hostname: str = "gw.example.com"):  # type: ignore[no-untyped-def]
    (tmp_path / "main.cf").write_text(text)
    return load_config(tmp_path, hostname=hostname, interfaces=INTERFACES)


# -- syntax ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "name", "value"),
    [
        ("a = 1\n", "a", "1"),
        ("a=1\n", "a", "1"),
        ("a \t=\t 1  \n", "a", "1"),
        ("a = x,\n  y\n\tz\n", "a", "x, y z"),
        ("a = x\n# comment\n\n  y\n", "a", "x y"),
        ("a = x\n    # indented comment\n  y\n", "a", "x y"),
        ("a = bar # not a comment\n", "a", "bar # not a comment"),
        ("a = 1\na = 2\n", "a", "2"),
        ("a = b=c\n", "a", "b=c"),
        ("a =\n", "a", ""),
        ("a = 1\r\nb = 2\r\n", "a", "1"),
    ],
)
def test_logical_lines(text: str, name: str, value: str) -> None:
    parsed = parse_main_cf_text(text, "main.cf")
    assert parsed.definitions[name].value == value


def test_duplicate_warns_with_file_and_line() -> None:
    parsed = parse_main_cf_text("myorigin = x\n\nmyorigin = y\n", "/etc/postfix/main.cf")
    assert parsed.definitions["myorigin"].value == "y"
    assert parsed.definitions["myorigin"].line == 3
    assert parsed.warnings == [
        "/etc/postfix/main.cf, line 3: overriding earlier entry: myorigin=x"
    ]


def test_stray_continuation_at_top_is_a_warning() -> None:
    parsed = parse_main_cf_text("  stray = 1\nmyorigin = x\n", "main.cf")
    assert "stray" not in parsed.definitions
    assert parsed.warnings == ['main.cf: logical line must not start with whitespace: "  stray = 1"']


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("myorigin example.com\n", "main.cf, line 1: missing '=' after attribute name"),
        ("# c\n= value\n", "main.cf, line 2: missing attribute name"),
        ("a = 1\nmy origin = x\n", "main.cf, line 2: missing '='"),
    ],
)
def test_syntax_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_main_cf_text(text, "main.cf")
    assert str(info.value).startswith(message)


def test_missing_main_cf_gives_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "nowhere", hostname="mx.example.org", interfaces=INTERFACES)
    assert cfg.get("myorigin") == "mx.example.org"
    assert cfg.get("queue_directory") == "/var/spool/postfix"


# -- derived defaults ----------------------------------------------------------

def test_identity_defaults_follow_myhostname(tmp_path: Path) -> None:
    cfg = config(tmp_path, "myhostname = mx1.dmz.example.org\n")
    assert cfg.get("mydomain") == "dmz.example.org"
    assert cfg.get("myorigin") == "mx1.dmz.example.org"
    assert cfg.get("mydestination") == "mx1.dmz.example.org, localhost.dmz.example.org, localhost"


def test_hostname_without_dot_uses_mydomain_setting(tmp_path: Path) -> None:
    cfg = config(tmp_path, "mydomain = example.net\n", hostname="vm")
    assert cfg.get("myhostname") == "vm.example.net"


def test_mynetworks_follows_compatibility_level(tmp_path: Path) -> None:
    assert config(tmp_path, "").get("mynetworks").startswith("127.0.0.0/8 ")
    assert config(tmp_path, "compatibility_level = 3.6\n").get("mynetworks").startswith("127.0.0.1/32 ")


def test_bad_mynetworks_style(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown mynetworks_style value: bogus"):
        config(tmp_path, "mynetworks_style = bogus\n").get("mynetworks")


def test_defaults_view_ignores_main_cf(tmp_path: Path) -> None:
    cfg = config(tmp_path, "myhostname = gw.example.com\nrelayhost = [x]\n", hostname="vm")
    view = cfg.defaults_view()
    assert view.get("myhostname") == "vm.localdomain"
    assert view.get("relayhost") == ""
    assert cfg.get("relayhost") == "[x]"


def test_defaults_cover_reference_section_3() -> None:
    """Every parameter named in reference/postfix.md §3 has a default (the derived ones computed)."""
    names = """relay_domains smtpd_relay_restrictions mynetworks_style append_dot_mydomain smtputf8_enable
    respectful_logging myhostname mydomain myorigin mydestination inet_interfaces inet_protocols
    mynetworks smtpd_banner masquerade_domains masquerade_exceptions masquerade_classes
    compatibility_level smtpd_client_restrictions smtpd_helo_restrictions smtpd_sender_restrictions
    smtpd_recipient_restrictions smtpd_data_restrictions smtpd_end_of_data_restrictions smtpd_delay_reject
    smtpd_helo_required disable_vrfy_command smtpd_recipient_limit smtpd_reject_unlisted_recipient
    smtpd_reject_unlisted_sender local_recipient_maps message_size_limit mailbox_size_limit
    smtpd_client_connection_count_limit smtpd_client_connection_rate_limit smtpd_client_message_rate_limit
    smtpd_client_recipient_rate_limit anvil_rate_time_unit smtpd_soft_error_limit smtpd_hard_error_limit
    smtpd_error_sleep_time smtpd_junk_command_limit smtpd_timeout smtpd_forbid_bare_newline
    smtpd_forbid_bare_newline_exclusions smtpd_forbid_bare_newline_reject_code smtpd_forbid_unauth_pipelining
    cleanup_replace_stray_cr_lf smtpd_forbidden_commands strict_rfc821_envelopes allow_percent_hack
    swap_bangpath allow_untrusted_routing resolve_dequoted_address maps_rbl_domains rbl_reply_maps
    reject_code defer_code access_map_reject_code access_map_defer_code relay_domains_reject_code
    maps_rbl_reject_code unknown_client_reject_code unknown_local_recipient_reject_code
    unknown_address_reject_code non_fqdn_reject_code invalid_hostname_reject_code default_rbl_reply
    smtpd_null_access_lookup_key parent_domain_matches_subdomains line_length_limit header_size_limit
    hopcount_limit queue_run_delay minimal_backoff_time maximal_backoff_time maximal_queue_lifetime
    bounce_queue_lifetime delay_warning_time qmgr_message_active_limit qmgr_message_recipient_limit
    default_process_limit default_destination_concurrency_limit initial_destination_concurrency
    local_destination_concurrency_limit default_destination_recipient_limit
    local_destination_recipient_limit max_idle max_use ipc_timeout daemon_timeout command_time_limit
    enable_long_queue_ids alias_maps alias_database home_mailbox mail_spool_directory mailbox_command
    allow_mail_to_commands allow_mail_to_files forward_path recipient_delimiter default_privs mail_owner
    setgid_group queue_directory data_directory config_directory daemon_directory command_directory
    default_database_type biff expand_owner_alias owner_request_special frozen_delivered_to
    strict_mailbox_ownership mailbox_delivery_lock notify_classes hash_queue_names hash_queue_depth""".split()
    missing = [n for n in names if n not in defaults.DEFAULTS and n not in defaults.DERIVED]
    assert missing == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("myorigin", "$myhostname"),
        ("mydestination", "$myhostname, localhost.$mydomain, localhost"),
        ("smtpd_recipient_limit", "1000"),
        ("maximal_queue_lifetime", "5d"),
        ("minimal_backoff_time", "300s"),
        ("maximal_backoff_time", "4000s"),
        ("queue_run_delay", "300s"),
        ("message_size_limit", "10240000"),
        ("mail_owner", "postfix"),
        ("setgid_group", "postdrop"),
        ("default_privs", "nobody"),
        ("smtpd_banner", "$myhostname ESMTP $mail_name"),
        ("hash_queue_names", "deferred, defer"),
        ("allow_mail_to_commands", "alias, forward"),
    ],
)
def test_reference_default_values(name: str, value: str) -> None:
    assert defaults.DEFAULTS[name] == value


# -- typed access --------------------------------------------------------------

def test_split_list() -> None:
    assert split_list("a, b  c,,d\te\n") == ["a", "b", "c", "d", "e"]
    assert split_list("CONNECT GET regexp:{{/^[^A-Z]/ Bogus}}") == [
        "CONNECT", "GET", "regexp:{{/^[^A-Z]/ Bogus}}"]
    assert split_list("inline:{ a=b, c=d }, hash:/x") == ["inline:{ a=b, c=d }", "hash:/x"]
    assert split_list("") == []


def test_list_with_file_entries(tmp_path: Path) -> None:
    dests = tmp_path / "mydests.txt"
    dests.write_text("# names of this gateway\nftp.example.com\n\nwww.example.com, mail.example.com\n"
                     "  cont.example.com\n")
    cfg = config(tmp_path, f"mydestination = $myhostname, {dests}, !bad.example, hash:/etc/postfix/dom\n")
    assert cfg.get_list("mydestination") == [
        "gw.example.com", "ftp.example.com", "www.example.com", "mail.example.com",
        "cont.example.com", "!bad.example", "hash:/etc/postfix/dom",
    ]


def test_seed_mydestination_file(tmp_path: Path) -> None:
    """The seed chapter's ``mydestination = /path/to/mydests.txt``."""
    dests = tmp_path / "mydests.txt"
    dests.write_text("gw.example.com\nlocalhost.example.com\nexample.com\n")
    cfg = config(tmp_path, f"mydestination = {dests}\n")
    assert cfg.get_list("mydestination") == ["gw.example.com", "localhost.example.com", "example.com"]


def test_nested_and_negated_file_entries(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.write_text("10.0.0.0/8\n!10.9.0.0/16\n")
    outer = tmp_path / "outer"
    outer.write_text(f"127.0.0.0/8 {inner}\n")
    cfg = config(tmp_path, f"mynetworks = {outer}, !{inner}\n")
    assert cfg.get_list("mynetworks") == [
        "127.0.0.0/8", "10.0.0.0/8", "!10.9.0.0/16", "!10.0.0.0/8", "10.9.0.0/16"]


def test_missing_list_file_names_parameter_and_line(tmp_path: Path) -> None:
    cfg = config(tmp_path, "# x\nrelay_domains = /no/such/file\n")
    with pytest.raises(ConfigError) as info:
        cfg.get_list("relay_domains")
    assert str(info.value) == (
        f"{tmp_path}/main.cf, line 2: relay_domains: open file /no/such/file: No such file or directory")


def test_self_including_file(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.write_text(f"a.example {loop}\n")
    with pytest.raises(ConfigError, match="includes itself"):
        config(tmp_path, f"relay_domains = {loop}\n").get_list("relay_domains")


def test_plain_lists_keep_paths(tmp_path: Path) -> None:
    cfg = config(tmp_path, "alias_maps = hash:/etc/aliases\nforward_path = /x/.forward, $home/.forward\n")
    assert cfg.get_list("alias_maps") == ["hash:/etc/aliases"]
    assert cfg.get_list("forward_path") == ["/x/.forward", "$home/.forward"]


@pytest.mark.parametrize(("text", "expected"), [("yes", True), ("no", False), ("YES", True), ("No", False)])
def test_bool(tmp_path: Path, text: str, expected: bool) -> None:
    assert config(tmp_path, f"biff = {text}\n").get_bool("biff") is expected


def test_bad_bool_names_value_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config(tmp_path, "biff = maybe\n").get_bool("biff")
    assert str(info.value) == f"{tmp_path}/main.cf, line 1: bad boolean configuration: biff = maybe"


@pytest.mark.parametrize(
    ("name", "text", "seconds"),
    [
        ("queue_run_delay", "300s", 300),
        ("queue_run_delay", "5m", 300),
        ("queue_run_delay", "2h", 7200),
        ("queue_run_delay", "1w", 604800),
        ("queue_run_delay", "120", 120),
        ("maximal_queue_lifetime", "5", 5 * 86400),
        ("maximal_queue_lifetime", "12h", 12 * 3600),
        ("delay_warning_time", "4", 4 * 3600),
        ("smtpd_timeout", "60", 60),
    ],
)
def test_time_units(tmp_path: Path, name: str, text: str, seconds: int) -> None:
    assert config(tmp_path, f"{name} = {text}\n").get_time(name) == seconds


def test_time_defaults(tmp_path: Path) -> None:
    cfg = config(tmp_path, "")
    assert cfg.get_time("maximal_queue_lifetime") == 5 * 86400
    assert cfg.get_time("smtpd_timeout") == 300
    assert config(tmp_path, "stress = yes\n").get_time("smtpd_timeout") == 10


@pytest.mark.parametrize("text", ["5x", "-1s", "s", "1.5h", "5 d"])
def test_bad_time(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="bad time configuration"):
        config(tmp_path, f"queue_run_delay = {text}\n").get_time("queue_run_delay")


def test_int_and_size(tmp_path: Path) -> None:
    cfg = config(tmp_path, "smtpd_recipient_limit = 250\nmessage_size_limit = 20480000\n")
    assert cfg.get_int("smtpd_recipient_limit") == 250
    assert cfg.get_size("message_size_limit") == 20480000
    with pytest.raises(ConfigError, match="bad numerical configuration: smtpd_recipient_limit = 2k"):
        config(tmp_path, "smtpd_recipient_limit = 2k\n").get_int("smtpd_recipient_limit")


def test_int_bounds(tmp_path: Path) -> None:
    cfg = config(tmp_path, "smtpd_recipient_limit = 0\n")
    with pytest.raises(ConfigError, match="invalid smtpd_recipient_limit parameter value 0 < 1"):
        cfg.get_int("smtpd_recipient_limit", minimum=1)


def test_raw_parameters_are_not_expanded(tmp_path: Path) -> None:
    cfg = config(tmp_path, "mailbox_command = /usr/bin/procmail -a \"$EXTENSION\"\n")
    assert cfg.get("mailbox_command") == '/usr/bin/procmail -a "$EXTENSION"'
    assert cfg.get("forward_path").startswith("$home/.forward")


def test_expansion_error_names_parameter_and_line(tmp_path: Path) -> None:
    cfg = config(tmp_path, "a = 1\nmydestination = ${myhostname\n")
    with pytest.raises(ConfigError) as info:
        cfg.get("mydestination")
    assert str(info.value).startswith(f"{tmp_path}/main.cf, line 2: mydestination: truncated macro reference")


def test_service_overrides_win(tmp_path: Path) -> None:
    cfg = config(tmp_path, "smtpd_recipient_limit = 250\nsyslog_name = postfix\n")
    smtpd = cfg.with_overrides({"smtpd_recipient_limit": "100", "syslog_name": "$syslog_name/submission"})
    assert smtpd.get_int("smtpd_recipient_limit") == 100
    assert cfg.get_int("smtpd_recipient_limit") == 250


def test_unused_parameters(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "foo = $bar\nbar = 1\nmydestination = $dests\ndests = a\nrelay_destination_concurrency_limit = 2\n"
        "smtpd_restriction_classes = strict\nstrict = reject\n",
    )
    assert [d.name for d in cfg.unused()] == ["foo", "relay_destination_concurrency_limit"]
    assert [d.name for d in cfg.unused(service_names=["relay"])] == ["foo"]
