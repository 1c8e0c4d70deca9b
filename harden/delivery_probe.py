"""Live delivery probe: send a test message through a gateway over SMTP and find in its log where it was delivered.

WHAT IS SENT. One message from the null sender (so it passes sender
restrictions and can never bounce), to ``postmaster@$myhostname`` unless
the host sets ``harden_probe_recipient``, with the subject ``harden rollout
probe TOKEN`` and ``Auto-Submitted: auto-generated``. It is sent from this
machine to the first address in the host's inet_interfaces (else its
inventory address), port 25, exactly as mail from the Internet arrives.

WHERE IT MUST GO (ProbePlan, from the inventory, never from the host). A
recipient in mydestination is delivered by ``local``; for the default
recipient the aliases the inventory renders (postmaster -> root ->
root_alias) say which account, and the log must name it. A recipient in a
domain of the inventory's transport table must be relayed to that
transport's next hop, else to relayhost when there is one, else to any
remote server.

HOW IT IS FOUND. The delivery agent's log line for the message's queue ID
(from the ``250 ... queued as ID`` reply) in the host's maillog_file, read
from the log's size before the message was sent: ``to=<...>``,
``relay=...``, ``status=...``. ``sent`` where the plan says passes;
``deferred``, ``bounced``, a wrong relay or account, or no line within the
timeout fails. The wait is one SSH command that polls the log on the host.
"""

from __future__ import annotations

import re
import shlex
import smtplib
import socket
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

from harden.errors import HardenError
from harden.settings import GatewaySettings
from harden.transport import Transport

PROBE_SECONDS = 30  # how long a probe message may take to be delivered
SMTP_TIMEOUT = 15.0
RECIPIENT_VAR = "harden_probe_recipient"
SUBJECT = "harden rollout probe"
ANYWHERE = "*"  # a plan's relay when only delivery matters (a restored host, which the inventory no longer describes)
# The standard aliases templates/aliases.j2 always renders (site aliases come after them).
BASE_ALIASES = {"postmaster": "root", "abuse": "root", "mailer-daemon": "postmaster"}
_QUEUED = re.compile(r"queued as ([0-9A-Za-z]+)")
_FIELD = re.compile(r"\b(to|relay|status)=(<[^>]*>|[^,\s]+)")


class ProbeError(HardenError):
    """The probe message was refused, not delivered, or delivered somewhere the inventory does not say."""


@dataclass(frozen=True)
class ProbePlan:
    """A probe's recipient and where the inventory says it must be delivered.

    + relay: ``local``, a next-hop host name or address, "" for any remote server, ANYWHERE.
    + account: for local delivery, the address the local agent must log as ``to=`` ("" for any).
    """

    recipient: str
    relay: str
    account: str = ""


def _local_account(s: GatewaySettings, local: str) -> str:
    """The account mail for local ends in after the inventory's aliases, qualified with myorigin; "" if not one."""
    aliases: dict[str, str | list[str]] = dict(BASE_ALIASES, root=s.root_alias)
    for name, target in s.aliases.items():
        aliases.setdefault(name.lower(), target)
    seen = set()
    name = local.lower()
    while name in aliases and name not in seen:
        seen.add(name)
        target = aliases[name]
        if not isinstance(target, str) or "," in target or not re.fullmatch(r"[A-Za-z0-9._-]+", target.strip()):
            return ""  # a list, a file, a command or a remote address: not one local account
        name = target.strip().lower()
    return f"{name}@{s.expanded(s.myorigin)}"


def probe_plan(s: GatewaySettings, recipient: str | None = None) -> ProbePlan:
    """Where a probe to recipient (default postmaster@myhostname) must be delivered, by the inventory."""
    rcpt = recipient or f"postmaster@{s.myhostname}"
    local, _, domain = rcpt.rpartition("@")
    if not local or not domain:
        raise ProbeError(f"{s.name}: {RECIPIENT_VAR} {rcpt!r} is not an address (user@domain)")
    domain = domain.lower()
    if domain in {s.expanded(d).lower() for d in s.mydestination}:
        return ProbePlan(rcpt, "local", _local_account(s, local))
    for key, value in s.transport.items():
        key = key.lower()
        if domain == key or (key.startswith(".") and domain.endswith(key)):
            return ProbePlan(rcpt, _nexthop(value.partition(":")[2]))
    return ProbePlan(rcpt, _nexthop(s.relayhost) if s.relayhost else "")


def _nexthop(text: str) -> str:
    """The host of a next hop: ``[10.0.0.5]:25`` -> 10.0.0.5, ``inside.example`` -> inside.example."""
    text = text.strip()
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else text[1:]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def probe_message(recipient: str, token: str, host: str) -> bytes:
    """The probe message: headers that say what it is, a body that says it can be deleted."""
    msg = EmailMessage()
    msg["From"] = f"harden rollout <MAILER-DAEMON@{host}>"
    msg["To"] = recipient
    msg["Subject"] = f"{SUBJECT} {token}"
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = f"<{token}@harden-rollout.invalid>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(f"harden rollout sent this message through {host} to check that it delivers mail after a\n"
                    "configuration change. It can be deleted.\n")
    return msg.as_bytes().replace(b"\n", b"\r\n")


def probe_send(address: str, plan: ProbePlan, token: str, host: str, *, port: int = 25) -> str:
    """Send the probe to address:port; its queue ID. ProbeError with the server's reply when it is refused."""
    try:
        with smtplib.SMTP(address, port, timeout=SMTP_TIMEOUT) as smtp:
            smtp.ehlo("harden-rollout.invalid")
            code, text = smtp.mail("<>")
            if code != 250:
                raise ProbeError(f"{host}: probe: MAIL FROM:<> refused: {code} {text.decode('utf-8', 'replace')}")
            code, text = smtp.rcpt(plan.recipient)
            if code not in (250, 251):
                raise ProbeError(f"{host}: probe: RCPT TO:<{plan.recipient}> refused: {code} "
                                 f"{text.decode('utf-8', 'replace')}")
            code, text = smtp.data(probe_message(plan.recipient, token, host))
            reply = text.decode("utf-8", "replace")
            if code != 250:
                raise ProbeError(f"{host}: probe: message refused after DATA: {code} {reply}")
    except (OSError, smtplib.SMTPException) as exc:
        raise ProbeError(f"{host}: probe: SMTP to {address}:{port} failed: {exc}") from None
    found = _QUEUED.search(reply)
    if not found:
        raise ProbeError(f"{host}: probe: the server accepted the message without a queue ID ({reply!r})")
    return found.group(1)


def log_size(t: Transport, maillog: str) -> int:
    """The log's size now: the probe's lines come after it."""
    out = t.run(f"stat -c %s {shlex.quote(maillog)} 2>/dev/null || echo 0", check=False).stdout.strip()
    return int(out) if out.isdigit() else 0


def probe_wait(t: Transport, maillog: str, offset: int, queue_id: str, plan: ProbePlan,
               timeout: float = PROBE_SECONDS) -> str:
    """Wait for the delivery agent's line for queue_id; a description of the delivery, or ProbeError."""
    q = shlex.quote
    script = (
        f"L={q(maillog)}; O={int(offset)}; end=$((SECONDS + {int(timeout)})); "
        "while :; do s=$(stat -c %s \"$L\" 2>/dev/null || echo 0); [ \"$s\" -lt \"$O\" ] && O=0; "
        f"l=$(tail -c +$((O + 1)) \"$L\" 2>/dev/null | grep -F {q(f' {queue_id}: to=<')} | grep -v '/qmgr\\[' "
        "| grep -E 'status=(sent|bounced|deferred|expired)' | head -n 1); "
        "if [ -n \"$l\" ]; then printf '%s\\n' \"$l\"; exit 0; fi; "
        "[ $SECONDS -ge $end ] && exit 1; sleep 0.05; done"
    )
    done = t.run(script, check=False, timeout=timeout + 30)
    line = done.stdout.strip()
    if not done.ok or not line:
        raise ProbeError(f"{t.host}: probe: message {queue_id} to {plan.recipient} was not delivered within "
                         f"{int(timeout)} s (no delivery line in {maillog})")
    return probe_judge(t.host, line, plan)


def probe_judge(host: str, line: str, plan: ProbePlan) -> str:
    """Check a delivery log line against the plan; what happened, or ProbeError saying what differs."""
    fields = {key: value for key, value in _FIELD.findall(line)}
    status = fields.get("status", "")
    to = fields.get("to", "").strip("<>")
    relay = fields.get("relay", "")
    detail = line[line.find("status="):] if "status=" in line else line
    if status != "sent":
        raise ProbeError(f"{host}: probe: message to {plan.recipient} was not delivered: {detail}")
    if plan.relay == ANYWHERE:
        pass
    elif plan.relay == "local" and relay != "local":
        raise ProbeError(f"{host}: probe: {plan.recipient} should be delivered here (local) but went to "
                         f"relay={relay}")
    elif plan.relay not in ("", "local") and plan.relay.lower() not in relay.lower():
        raise ProbeError(f"{host}: probe: {plan.recipient} should be relayed to {plan.relay} but went to "
                         f"relay={relay}")
    elif plan.relay == "" and relay == "local":
        raise ProbeError(f"{host}: probe: {plan.recipient} should be relayed but was delivered locally")
    if plan.account and to.lower() != plan.account.lower():
        raise ProbeError(f"{host}: probe: {plan.recipient} should reach {plan.account} but reached {to}")
    return f"{plan.recipient} -> {to} via {relay} ({detail})"


def probe_address(s: GatewaySettings, fallback: str) -> str:
    """Where the probe connects: the first address in inet_interfaces, else fallback (the inventory's)."""
    for word in s.inet_interfaces:
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in word else socket.AF_INET, word)
            return word
        except OSError:
            continue
    return fallback
