"""Tests for harden.delivery_probe: where the inventory says a probe goes, judging log lines, sending over SMTP."""

from __future__ import annotations

import pytest

from harden.delivery_probe import ANYWHERE, ProbeError, ProbePlan, probe_judge, probe_plan, probe_send
from harden.settings import GatewaySettings
from tests.smtp_server import Script, ScriptedSmtp


def settings(**overrides: object) -> GatewaySettings:
    base: dict[str, object] = {"name": "gw1.example.com", "role": "gateway", "myhostname": "gw1.example.com",
                               "mydomain": "example.com", "root_alias": "mick"}
    base.update(overrides)
    return GatewaySettings(**base)  # type: ignore[arg-type]


def test_default_probe_goes_to_root_alias_through_the_aliases() -> None:
    assert probe_plan(settings()) == ProbePlan("postmaster@gw1.example.com", "local", "mick@example.com")
    # A site alias for root's alias is followed; a list ends the chain (any local account).
    assert probe_plan(settings(aliases={"mick": "ops"})).account == "ops@example.com"
    assert probe_plan(settings(aliases={"mick": ["ops", "dev"]})).account == ""


def test_relayed_recipients_go_to_the_transport_next_hop_or_relayhost() -> None:
    s = settings(relay_domains=["inside.example"], transport={"inside.example": "smtp:[10.1.2.3]:25"},
                 relayhost="[smarthost.example]")
    assert probe_plan(s, "user@inside.example") == ProbePlan("user@inside.example", "10.1.2.3")
    assert probe_plan(s, "user@else.example") == ProbePlan("user@else.example", "smarthost.example")
    assert probe_plan(settings(), "user@else.example").relay == ""
    with pytest.raises(ProbeError, match="not an address"):
        probe_plan(s, "nobody")


LOCAL = ("Nov 24 08:03:23 gw1 mta/local[1050]: 24F4F2C702BD: to=<mick@example.com>, orig_to=<postmaster@gw1."
         "example.com>, relay=local, delay=0.01, dsn=2.0.0, status=sent (delivered to maildir)")


def test_judging_a_delivery_line() -> None:
    plan = ProbePlan("postmaster@gw1.example.com", "local", "mick@example.com")
    assert "-> mick@example.com via local" in probe_judge("gw1", LOCAL, plan)
    with pytest.raises(ProbeError, match="should reach ops@example.com but reached mick@example.com"):
        probe_judge("gw1", LOCAL, ProbePlan(plan.recipient, "local", "ops@example.com"))
    with pytest.raises(ProbeError, match="should be relayed to 10.1.2.3"):
        probe_judge("gw1", LOCAL, ProbePlan(plan.recipient, "10.1.2.3"))
    deferred = LOCAL.replace("status=sent (delivered to maildir)", "status=deferred (mailbox full)")
    with pytest.raises(ProbeError, match=r"not delivered: status=deferred \(mailbox full\)"):
        probe_judge("gw1", deferred, plan)
    relayed = LOCAL.replace("mta/local", "mta/smtp").replace("relay=local", "relay=inside[10.1.2.3]:25")
    assert "via inside[10.1.2.3]:25" in probe_judge("gw1", relayed, ProbePlan("u@inside", "10.1.2.3"))
    with pytest.raises(ProbeError, match="should be delivered here"):
        probe_judge("gw1", relayed, plan)
    assert probe_judge("gw1", relayed, ProbePlan("u@inside", ANYWHERE))


def test_probe_send_returns_the_queue_id_and_reports_a_refusal() -> None:
    script = Script(data="250 2.0.0 Ok: queued as 3F2A1B9C")
    with ScriptedSmtp("127.0.0.1", script=script) as server:
        plan = ProbePlan("postmaster@gw1.example.com", "local")
        assert probe_send("127.0.0.1", plan, "tok1", "gw1", port=server.port) == "3F2A1B9C"
        [(sender, rcpts, data)] = script.messages
        assert sender in ("", "<>") and rcpts == ["postmaster@gw1.example.com"]  # the null sender
        assert b"Subject: harden rollout probe tok1" in data and b"Auto-Submitted: auto-generated" in data
        script.rcpt = lambda address: "554 5.7.1 Relay access denied"
        with pytest.raises(ProbeError, match="RCPT TO:<postmaster@gw1.example.com> refused: 554"):
            probe_send("127.0.0.1", plan, "tok2", "gw1", port=server.port)
