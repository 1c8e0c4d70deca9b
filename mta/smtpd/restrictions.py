"""smtpd's restriction language: the smtpd_*_restrictions lists, evaluated with Postfix's semantics and replies.

LISTS AND STAGES. smtpd_client_restrictions, smtpd_helo_restrictions,
smtpd_sender_restrictions, smtpd_relay_restrictions,
smtpd_recipient_restrictions and smtpd_data_restrictions are each a list of
restrictions, read left to right: the first one that permits ends that list
(the next list still runs), the first one that rejects ends the command with
its reply, and a list that runs out neither permits nor rejects. With
smtpd_delay_reject = yes (the default) the client, HELO and sender lists run
at each RCPT, before the relay and recipient lists, so every reject names
the recipient's context; with no, each runs at its own command (a client
reject then replaces the greeting and every later command is refused).

ACCESS TABLES (reference §6). check_client_access, check_helo_access,
check_sender_access and check_recipient_access search their table in
mta.access order. The value is an action: OK or RELAY (or all digits)
permits, REJECT [text] and DEFER [text] refuse with reject_code or
access_map_defer_code, ``4NN``/``5NN`` [x.y.z] text refuse with that code,
DUNNO goes on to the next restriction, and restriction names are evaluated
in place. WARN and INFO log and go on. An OK for a recipient with
sender-specified routing counts as DUNNO, so a table cannot open a relay.

WHOLE-MESSAGE AND CONDITIONAL ACTIONS (checked against real Postfix, golden
restrict_actions and restrict_defer_if). DISCARD [text] permits and marks the
transaction: every later recipient is accepted unchecked and cleanup drops
the message after its queue ID is given. HOLD [text] marks the transaction
for hold/ and goes on. DEFER_IF_PERMIT [text] (and the restriction
defer_if_permit) turns the command's eventual acceptance into a 450, across
the remaining lists; DEFER_IF_REJECT [text] (and defer_if_reject) turns a
later 5xx of the same list, or of the unknown-recipient check after the
last list, into its own 450. What an action wants logged (warn, info,
reject_warning, discard, hold) is left in CheckState.events for the session,
which writes it in Postfix's ``NOQUEUE: kind: RCPT from ...; from=<...>``
form.

REPLIES name the context as Postfix does: ``554 5.7.1 <unknown[192.0.2.1]>:
Client host rejected: Access denied``, ``<helo>: Helo command rejected``,
``<sender>: Sender address rejected``, ``<rcpt>: Recipient address rejected``.
A restriction this server does not know tempfails every command it would
judge (``451 4.3.5 Server configuration error``) and logs why, as Postfix does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from mta import log
from mta.access import (
    AccessMatch,
    access_find_address,
    access_find_client,
    access_find_host,
    address_has_routing,
)
from mta.config import split_list
from mta.dns_lookup import DnsClient, reverse_name
from mta.errors import ConfigError, MapError
from mta.maps import Map, open_map
from mta.smtpd.token import valid_address_literal, valid_hostname

if TYPE_CHECKING:
    from mta.config import MainConfig
    from mta.smtpd.policy import RecipientPolicy

CLIENT, HELO, SENDER, RELAY, RECIPIENT, DATA = "client", "helo", "sender", "relay", "recipient", "data"
LISTS = {CLIENT: "smtpd_client_restrictions", HELO: "smtpd_helo_restrictions",
         SENDER: "smtpd_sender_restrictions", RELAY: "smtpd_relay_restrictions",
         RECIPIENT: "smtpd_recipient_restrictions", DATA: "smtpd_data_restrictions"}
CLASS = {CLIENT: "Client host", HELO: "Helo command", SENDER: "Sender address", RECIPIENT: "Recipient address"}
ACCESS = {"check_client_access": CLIENT, "check_helo_access": HELO, "check_sender_access": SENDER,
          "check_recipient_access": RECIPIENT}
SIMPLE = frozenset({
    "permit", "reject", "defer", "permit_mynetworks", "reject_unauth_destination", "defer_unauth_destination",
    "permit_auth_destination", "reject_non_fqdn_sender", "reject_non_fqdn_recipient",
    "reject_non_fqdn_helo_hostname", "reject_invalid_helo_hostname", "reject_unlisted_recipient",
    "reject_unlisted_sender", "reject_unauth_pipelining", "permit_sasl_authenticated",
    "reject_unknown_client_hostname", "reject_unknown_reverse_client_hostname",
    "reject_unknown_sender_domain", "reject_unknown_recipient_domain", "reject_maps_rbl",
    "defer_if_permit", "defer_if_reject",
})
# Restrictions that take a DNS zone: reject_rbl_client zone[=d.d.d.d], the right-hand-side lists.
DNS_LISTS = frozenset({"reject_rbl_client", "reject_rhsbl_client", "reject_rhsbl_sender",
                       "reject_rhsbl_recipient", "reject_rhsbl_helo"})
_CODE_TEXT = re.compile(r"([45]\d\d)(?:\s+([45]\.\d{1,3}\.\d{1,3}))?\s*(.*)", re.S)
_DSN = re.compile(r"([245]\.\d{1,3}\.\d{1,3})\s+(.*)", re.S)

PERMIT = "permit"
DUNNO = "dunno"


class RestrictionError(Exception):
    """A restriction list that cannot be evaluated (unknown name, missing table argument)."""


@dataclass(frozen=True)
class Restriction:
    """One restriction of a list: its name, its table or zone argument, a warn_if_reject prefix."""

    name: str
    table: Map | None = None
    warn: bool = False
    zone: str = ""


@dataclass
class CheckState:
    """What the restrictions judge: the client, the HELO name, the sender, the recipient (None: not yet).

    + pipelined: the client sent commands ahead where it must wait (reject_unauth_pipelining).
    """

    client_name: str
    client_addr: str
    helo: str | None = None
    sender: str | None = None
    recipient: str | None = None
    trusted: bool | None = False
    pipelined: bool = False
    reverse_name: str = "unknown"
    unlisted_checked: bool = False  # reject_unlisted_recipient already ran for this recipient
    discard: bool = False  # the transaction is to be discarded (DISCARD): nothing more is judged
    hold: bool = False  # the transaction's message goes to hold/ (HOLD)
    defer_if_permit: str | None = None  # the 450 that replaces an acceptance
    defer_if_reject: str | None = None  # the 450 that replaces a 5xx of the current list
    events: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) for the session's log

    @property
    def namaddr(self) -> str:
        return f"{self.client_name}[{self.client_addr}]"


@dataclass
class Settings:
    """The parameters restriction replies and lookups depend on."""

    reject_code: int = 554
    defer_code: int = 450
    access_map_reject_code: int = 554
    access_map_defer_code: int = 450
    relay_reject_code: int = 554
    non_fqdn_reject_code: int = 504
    unknown_client_code: int = 450
    maps_rbl_code: int = 554
    unknown_address_code: int = 450
    maps_rbl_domains: tuple[str, ...] = ()
    invalid_hostname_reject_code: int = 501
    unauth_pipelining_code: int = 503
    recipient_delimiter: str = ""
    parent_domains: tuple[str, ...] = ()
    null_access_key: str = "<>"
    allow_untrusted_routing: bool = False
    delay_reject: bool = True
    myorigin: str = ""

    @classmethod
    def from_config(cls, cfg: "MainConfig") -> "Settings":
        return cls(
            reject_code=cfg.get_int("reject_code", 400, 599),
            defer_code=cfg.get_int("defer_code", 400, 599),
            access_map_reject_code=cfg.get_int("access_map_reject_code", 400, 599),
            access_map_defer_code=cfg.get_int("access_map_defer_code", 400, 599),
            relay_reject_code=cfg.get_int("relay_domains_reject_code", 400, 599),
            non_fqdn_reject_code=cfg.get_int("non_fqdn_reject_code", 400, 599),
            unknown_client_code=cfg.get_int("unknown_client_reject_code", 400, 599),
            maps_rbl_code=cfg.get_int("maps_rbl_reject_code", 400, 599),
            unknown_address_code=cfg.get_int("unknown_address_reject_code", 400, 599),
            maps_rbl_domains=tuple(cfg.get_list("maps_rbl_domains")),
            invalid_hostname_reject_code=cfg.get_int("invalid_hostname_reject_code", 400, 599),
            unauth_pipelining_code=cfg.get_int("unauth_pipelining_code", 400, 599) if cfg.get(
                "unauth_pipelining_code") else 503,
            recipient_delimiter=cfg.get("recipient_delimiter"),
            parent_domains=tuple(cfg.get_list("parent_domain_matches_subdomains")),
            null_access_key=cfg.get("smtpd_null_access_lookup_key"),
            allow_untrusted_routing=cfg.get_bool("allow_untrusted_routing"),
            delay_reject=cfg.get_bool("smtpd_delay_reject"),
            myorigin=cfg.get("myorigin"),
        )


def restrictions_parse(value: str, cfg: "MainConfig | None", where: str) -> list[Restriction]:
    """Parse a restriction list (main.cf value or an access table's action); tables are opened now.

    Raises RestrictionError for an unknown name or a missing table, MapError for a table that cannot open.
    """
    words = split_list(value)
    out: list[Restriction] = []
    warn = False
    i = 0
    while i < len(words):
        word = words[i]
        name = word.lower()
        i += 1
        if name == "warn_if_reject":
            warn = True
            continue
        if name in ACCESS:
            if i >= len(words) or ":" not in words[i]:
                raise RestrictionError(f"{where}: restriction {name} needs a type:table argument")
            out.append(Restriction(name, _map_shared(words[i], cfg), warn))
            i += 1
        elif name in DNS_LISTS:
            if i >= len(words):
                raise RestrictionError(f"{where}: restriction {name} needs a DNS zone argument")
            out.append(Restriction(name, None, warn, words[i].lower()))
            i += 1
        elif name in SIMPLE or name == "reject_unknown_client":
            out.append(Restriction(name, None, warn))
        else:
            raise RestrictionError(f"{where}: unknown smtpd restriction: \"{word}\"")
        warn = False
    return out


class Restrictions:
    """Every restriction list of one smtpd, parsed and with its tables open (before chroot).

    + policy: the RecipientPolicy (mynetworks, destinations, local recipients).
    An unusable list is kept as its error: commands it judges are tempfailed.
    Raises ConfigError, as Postfix's smtpd refuses to start, when neither the
    relay nor the recipient list can refuse unauthorized relaying (an empty
    main.cf at compatibility_level 0 is such a configuration).
    """

    def __init__(self, cfg: "MainConfig", policy: "RecipientPolicy", dns: DnsClient | None = None) -> None:
        self.settings = Settings.from_config(cfg)
        self.policy = policy
        self.dns = dns or DnsClient()
        self.cfg = cfg
        self.lists: dict[str, list[Restriction]] = {}
        self.errors: dict[str, str] = {}
        for stage, parameter in LISTS.items():
            try:
                self.lists[stage] = restrictions_parse(cfg.get(parameter), cfg, parameter)
            except (RestrictionError, MapError) as exc:
                self.errors[stage] = str(exc)
                log.msg_warn(str(exc))
                self.lists[stage] = []
        self._inline: dict[str, list[Restriction]] = {}
        # Access-table answers by (table, stage, what was looked up): the same client, sender
        # or recipient domain comes back often, and an open table's answers do not change.
        self._memo: dict[tuple[object, ...], object] = {}
        working = {"reject_unauth_destination", "defer_unauth_destination", "reject", "defer", "defer_if_permit",
                   "check_relay_domains"}
        words = {w.lower() for stage in (RELAY, RECIPIENT) for w in split_list(cfg.get(LISTS[stage]))}
        if not words & working:
            raise ConfigError("in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at "
                              "least one working instance of: reject_unauth_destination, defer_unauth_destination, "
                              "reject, defer, defer_if_permit or check_relay_domains", cfg.path)

    # -- entry points -------------------------------------------------------

    def check(self, stages: Sequence[str], state: CheckState) -> str | None:
        """Run the lists of stages in order; the reject reply, or None when none rejects."""
        state.defer_if_permit = None
        for stage in stages:
            if state.discard:
                return None
            if stage in self.errors:
                return "451 4.3.5 Server configuration error"
            state.defer_if_reject = None  # scoped to one list (and the unknown-user check after the last)
            result = self._run(self.lists[stage], stage, state)
            if result not in (PERMIT, DUNNO):
                return result
        if state.discard:
            return None
        return state.defer_if_permit

    def rcpt_stages(self) -> list[str]:
        """The lists RCPT runs: with delay_reject also the client, HELO and sender lists."""
        early = [CLIENT, HELO, SENDER] if self.settings.delay_reject else []
        return [*early, RELAY, RECIPIENT]

    # -- evaluation ---------------------------------------------------------

    def _run(self, restrictions: Sequence[Restriction], stage: str, state: CheckState) -> str:
        for restriction in restrictions:
            result = self._one(restriction, stage, state)
            if result == DUNNO:
                continue
            if restriction.warn and result != PERMIT:
                state.events.append(("reject_warning", result))
                continue
            if result[:1] == "5" and state.defer_if_reject:
                return state.defer_if_reject
            return result
        return DUNNO

    def _reply(self, code: int, dsn: str, stage: str, state: CheckState, text: str) -> str:
        key = self._key(stage, state)
        cls = CLASS.get(stage, "Recipient address" if state.recipient is not None else "Client host")
        return f"{code} {dsn} <{key}>: {cls} rejected: {text}"

    def _key(self, stage: str, state: CheckState) -> str:
        if stage == HELO:
            return state.helo or ""
        if stage == SENDER:
            return state.sender or ""
        if stage == RECIPIENT:
            return state.recipient or ""
        return state.namaddr

    def _one(self, r: Restriction, stage: str, state: CheckState) -> str:
        s = self.settings
        name = r.name
        if name == "permit":
            return PERMIT
        if name == "reject":
            return self._reply(s.reject_code, _dsn_for(s.reject_code), self._context(stage, state), state,
                               "Access denied")
        if name == "defer":
            return self._reply(s.defer_code, _dsn_for(s.defer_code), self._context(stage, state), state,
                               "Access denied")
        if name in ("defer_if_permit", "defer_if_reject"):
            context = self._context(stage, state)
            reply = self._reply(s.defer_code, "4.7.0", context, state, f"{name} requested")
            setattr(state, name, reply)
            return DUNNO
        if name == "permit_mynetworks":
            return PERMIT if state.trusted else DUNNO
        if name == "permit_sasl_authenticated":
            return DUNNO  # no AUTH in this server
        if name in ("reject_unauth_destination", "defer_unauth_destination", "permit_auth_destination"):
            return self._destination(name, state)
        if name in ACCESS:
            return self._access(r, ACCESS[name], stage, state)
        if name == "reject_non_fqdn_sender":
            return self._non_fqdn(state.sender, SENDER, state, "need fully-qualified address")
        if name == "reject_non_fqdn_recipient":
            return self._non_fqdn(state.recipient, RECIPIENT, state, "need fully-qualified address")
        if name == "reject_non_fqdn_helo_hostname":
            helo = state.helo
            if helo is None or _is_literal(helo) or "." in helo.rstrip("."):
                return DUNNO
            return self._reply(s.non_fqdn_reject_code, "5.5.2", HELO, state, "need fully-qualified hostname")
        if name == "reject_invalid_helo_hostname":
            helo = state.helo
            if helo is None or (valid_address_literal(helo) if helo.startswith("[") else _helo_ok(helo)):
                return DUNNO
            return self._reply(s.invalid_hostname_reject_code, "5.5.2", HELO, state, "Invalid name")
        if name in ("reject_unknown_client_hostname", "reject_unknown_client"):
            if state.client_name != "unknown":
                return DUNNO
            code = s.unknown_client_code
            return f"{code} {str(code)[0]}.7.25 Client host rejected: cannot find your hostname, [{state.client_addr}]"
        if name == "reject_unknown_reverse_client_hostname":
            if state.reverse_name != "unknown":
                return DUNNO
            code = s.unknown_client_code
            return (f"{code} {str(code)[0]}.7.1 Client host rejected: cannot find your reverse hostname, "
                    f"[{state.client_addr}]")
        if name in DNS_LISTS or name == "reject_maps_rbl":
            return self._dnsbl(r, state)
        if name in ("reject_unknown_sender_domain", "reject_unknown_recipient_domain"):
            return self._unknown_domain(name, state)
        if name == "reject_unlisted_recipient":
            if state.recipient is None:
                return DUNNO
            state.unlisted_checked = True
            return self.policy.check_unlisted(state.recipient) or DUNNO
        if name == "reject_unauth_pipelining":
            if not state.pipelined:
                return DUNNO
            return (f"{s.unauth_pipelining_code} 5.5.0 <{self._key(stage, state)}>: "
                    f"{CLASS.get(stage, 'Data command')} rejected: Improper use of SMTP command pipelining")
        return DUNNO

    def _dnsbl(self, r: Restriction, state: CheckState) -> str:
        """reject_rbl_client and the RHSBL restrictions: the default_rbl_reply text for a listing."""
        zones = list(self.settings.maps_rbl_domains) if r.name == "reject_maps_rbl" else [r.zone]
        for spec in zones:
            zone, _, want = spec.partition("=")
            if r.name in ("reject_rbl_client", "reject_maps_rbl"):
                query, cls, what = reverse_name(state.client_addr, zone), "Client host", state.client_addr
            else:
                cls, what, domain = {
                    "reject_rhsbl_client": ("Client host", state.client_name, state.client_name),
                    "reject_rhsbl_helo": ("Helo command", state.helo or "", state.helo or ""),
                    "reject_rhsbl_sender": ("Sender address", state.sender or "", _domain(state.sender)),
                    "reject_rhsbl_recipient": ("Recipient address", state.recipient or "",
                                               _domain(state.recipient)),
                }[r.name]
                query = f"{domain}.{zone}" if domain and domain != "unknown" and not _is_literal(domain) else None
            if query is None:
                continue
            answer = self.dns.lookup(query, "A")
            if answer.status == "tempfail":
                log.msg_warn(f"{query}: RBL lookup error: try again later")
                continue  # Postfix: a DNSBL that does not answer does not block
            if answer.status != "found" or (want and not any(_rbl_match(want, a) for a in answer.values)):
                continue
            txt = self.dns.lookup(query, "TXT")
            reason = f"; {txt.values[0]}" if txt.status == "found" and txt.values else ""
            code = self.settings.maps_rbl_code
            return f"{code} {str(code)[0]}.7.1 Service unavailable; {cls} [{what}] blocked using {zone}{reason}"
        return DUNNO

    def _unknown_domain(self, name: str, state: CheckState) -> str:
        sender = name == "reject_unknown_sender_domain"
        address = state.sender if sender else state.recipient
        domain = _domain(address)
        if not domain or _is_literal(domain):
            return DUNNO
        if not sender:
            resolved = self.policy.resolve(address or "")
            if resolved is not None and resolved.final:
                return DUNNO  # a domain this host delivers exists by definition
        status = self.dns.domain_exists(domain)
        if status == "found":
            return DUNNO
        code = self.settings.unknown_address_code if status == "none" else 450
        dsn = f"{str(code)[0]}.1.{8 if sender else 2}"
        what = "Sender address" if sender else "Recipient address"
        return f"{code} {dsn} <{address}>: {what} rejected: Domain not found"

    def _context(self, stage: str, state: CheckState) -> str:
        return stage if stage in CLASS else (RECIPIENT if state.recipient is not None else CLIENT)

    def _destination(self, name: str, state: CheckState) -> str:
        if state.recipient is None:
            return DUNNO
        authorized = self.policy.auth_destination(state.recipient)
        if authorized is None:
            return f"451 4.3.0 <{state.recipient}>: Temporary lookup failure"
        if name == "permit_auth_destination":
            return PERMIT if authorized else DUNNO
        if authorized:
            return DUNNO
        code = self.settings.relay_reject_code if name == "reject_unauth_destination" else 454
        dsn = "5.7.1" if code >= 500 else "4.7.1"
        return f"{code} {dsn} <{state.recipient}>: Relay access denied"

    def _non_fqdn(self, address: str | None, stage: str, state: CheckState, text: str) -> str:
        if not address:
            return DUNNO
        domain = address.rpartition("@")[2] if "@" in address else ""
        if domain and (_is_literal(domain) or "." in domain.rstrip(".")):
            return DUNNO
        return self._reply(self.settings.non_fqdn_reject_code, "5.5.2", stage, state, text)

    def _access(self, r: Restriction, what: str, stage: str, state: CheckState) -> str:
        assert r.table is not None
        if what == CLIENT:
            subject: tuple[object, ...] = (state.client_name, state.client_addr)
        elif what == HELO:
            subject = (state.helo,)
        else:
            subject = (state.sender if what == SENDER else state.recipient,)
        memo_key = (id(r.table), what, *subject)
        match = self._memo.get(memo_key, _UNSEEN)
        if match is _UNSEEN:
            match = self._find(r, what, state)
            if isinstance(match, str):
                return match
            if r.table.stable and not getattr(r.table, "error", None):
                if len(self._memo) >= MEMO_MAX:
                    self._memo.clear()
                self._memo[memo_key] = match
        if match is None:
            return DUNNO
        assert isinstance(match, AccessMatch)
        return self._action(match.value, what, state,
                            routed=what == RECIPIENT and address_has_routing(state.recipient or ""))

    def _find(self, r: Restriction, what: str, state: CheckState) -> AccessMatch | str | None:
        """The table's match for what is judged (None: no entry), or a reply: DUNNO, a lookup failure."""
        assert r.table is not None
        s = self.settings
        maps = [r.table]
        match: AccessMatch | None
        if what == CLIENT:
            match = access_find_client(maps, state.client_name, state.client_addr,
                                       parent_domain_matches_subdomains=s.parent_domains)
        elif what == HELO:
            if not state.helo:
                return DUNNO
            match = access_find_host(maps, state.helo.strip("[]") if _is_literal(state.helo) else state.helo,
                                     parent_domain_matches_subdomains=s.parent_domains)
        else:
            address = state.sender if what == SENDER else state.recipient
            if address is None:
                return DUNNO
            if address and "@" not in address:
                return DUNNO
            match = access_find_address(maps, address, recipient_delimiter=s.recipient_delimiter,
                                        parent_domain_matches_subdomains=s.parent_domains,
                                        null_access_lookup_key=s.null_access_key)
        if getattr(r.table, "error", None):
            return f"451 4.3.0 <{self._key(what, state)}>: Temporary lookup failure"
        return match

    def _action(self, value: str, what: str, state: CheckState, routed: bool) -> str:
        s = self.settings
        word, _, rest = value.strip().partition(" ")
        rest = rest.strip()
        upper = word.upper()
        if upper in ("OK", "RELAY") or word.isdigit() and not _CODE_TEXT.fullmatch(value.strip()):
            return DUNNO if routed and not s.allow_untrusted_routing else PERMIT
        if upper == "DUNNO":
            return DUNNO
        if upper == "REJECT":
            code = s.access_map_reject_code
            return self._reply(code, _dsn_for(code, what), what, state, rest or "Access denied")
        if upper == "DEFER":
            code = s.access_map_defer_code
            return self._reply(code, _dsn_for(code, what), what, state, rest or "Access denied")
        match = _CODE_TEXT.fullmatch(value.strip())
        if match and word[:3].isdigit():
            code = int(match.group(1))
            dsn = match.group(2) or _dsn_for(code, what)
            return self._reply(code, dsn, what, state, match.group(3) or "Access denied")
        if upper in ("WARN", "INFO"):
            state.events.append((upper.lower(), rest))
            return DUNNO
        if upper in ("DISCARD", "HOLD"):
            cls = CLASS.get(what, "Recipient address")
            if upper == "DISCARD":
                state.discard = True
            elif state.hold:
                return DUNNO  # logged once per transaction
            else:
                state.hold = True
            state.events.append((upper.lower(),
                                 f"<{self._key(what, state)}>: {cls} {rest or f'triggers {upper} action'}"))
            return PERMIT if upper == "DISCARD" else DUNNO
        if upper in ("DEFER_IF_PERMIT", "DEFER_IF_REJECT"):
            reply = self._reply(s.defer_code, "4.7.1", what, state, rest or "Service unavailable")
            setattr(state, upper.lower(), reply)
            return DUNNO
        # Restriction names, evaluated in place.
        nested = self._inline.get(value)
        if nested is None:
            try:
                nested = restrictions_parse(value, self.cfg, f"access table action {value!r}")
            except (RestrictionError, MapError) as exc:
                log.msg_warn(str(exc))
                return "451 4.3.5 Server configuration error"
            self._inline[value] = nested
        return self._run(nested, what, state)


_OPEN_MAPS: dict[str, Map] = {}
_UNSEEN = object()
MEMO_MAX = 10000  # remembered access-table answers per process (then it starts afresh)


def _map_shared(spec: str, cfg: "MainConfig | None") -> Map:
    """Open a table once per process, however many restrictions name it (one SQLite handle each)."""
    table = _OPEN_MAPS.get(spec)
    if table is None:
        table = _OPEN_MAPS[spec] = open_map(spec, cfg)
    return table


def _dsn_for(code: int, what: str = "") -> str:
    """The default enhanced status for an access or generic reject: 4.7.1 or 5.7.1."""
    return f"{str(code)[0]}.7.1"


def _is_literal(text: str) -> bool:
    return text.startswith("[") and text.endswith("]")


def _helo_ok(helo: str) -> bool:
    """A HELO that is a valid host name, or a bare IP address (Postfix accepts both here)."""
    name = helo[:-1] if helo.endswith(".") else helo
    if valid_hostname(name):
        return True
    return bool(re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name))


CheckFn = Callable[[CheckState], "str | None"]


def _domain(address: str | None) -> str:
    """The domain of an address (lower case, no trailing dot), or "" without one."""
    if not address or "@" not in address:
        return ""
    return address.rpartition("@")[2].lower().rstrip(".")


def _rbl_match(want: str, answer: str) -> bool:
    """reject_rbl_client zone=pattern: 127.0.0.2, or per-octet ranges like 127.0.0.[2..11] or [2;3]."""
    wanted, got = re.findall(r"\[[^\]]*\]|[^.]+", want), answer.split(".")
    if len(wanted) != 4 or len(got) != 4:
        return False
    for pattern, octet in zip(wanted, got):
        if pattern.startswith("[") and pattern.endswith("]"):
            allowed: set[str] = set()
            for part in pattern[1:-1].split(";"):
                low, dots, high = part.partition("..")
                if dots and low.isdigit() and high.isdigit():
                    allowed |= {str(n) for n in range(int(low), int(high) + 1)}
                else:
                    allowed.add(part)
            if octet not in allowed:
                return False
        elif pattern != octet:
            return False
    return True

