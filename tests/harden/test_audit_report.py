"""Tests for harden.audit_report: JSON, JUnit XML and the terminal table from audit results."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from PIL import Image

from harden.audit import ERROR, FAIL, PASS, SKIP, WAIVED, CheckResult, HostAudit, exit_status
from harden.audit_report import report_html, report_json, report_junit, report_table
from harden.checks import checks_all
from harden.waivers import Waiver


def sample() -> list[HostAudit]:
    checks = checks_all()
    waiver = Waiver(checks[4].id, "gw1*", "accepted by the CISO", date(2030, 1, 1), "w.yml: waiver 1")
    gw1 = HostAudit("gw1", "127.0.0.11", [
        CheckResult(checks[0], PASS), CheckResult(checks[1], FAIL, "etc is postfix-owned"),
        CheckResult(checks[2], SKIP, "no jail"), CheckResult(checks[3], ERROR, "ConnectionError: refused"),
        CheckResult(checks[4], WAIVED, "", waiver=waiver)], seconds=0.5)
    gw2 = HostAudit("gw2", "127.0.0.12", unreachable="gw2: host key not known")
    return [gw1, gw2]


def test_json() -> None:
    data = json.loads(report_json(sample()))
    assert data["summary"] == {"pass": 1, "fail": 1, "waived": 1, "skip": 1, "error": 1, "unreachable": 1}
    gw1, gw2 = data["hosts"]
    assert [c["status"] for c in gw1["checks"]] == ["pass", "fail", "skip", "error", "waived"]
    assert gw1["checks"][1]["message"] == "etc is postfix-owned" and gw1["checks"][1]["remediation"]
    assert gw1["checks"][4]["waiver"] == {"justification": "accepted by the CISO", "expires": "2030-01-01"}
    assert gw2["unreachable"] == "gw2: host key not known" and gw2["checks"] == []


def test_junit() -> None:
    root = ET.fromstring(report_junit(sample()))
    gw1, gw2 = root.findall("testsuite")
    assert (gw1.get("failures"), gw1.get("errors"), gw1.get("skipped")) == ("1", "1", "2")
    cases = gw1.findall("testcase")
    assert cases[1].find("failure").get("message") == "etc is postfix-owned"  # type: ignore[union-attr]
    assert "accepted by the CISO" in cases[4].find("skipped").get("message", "")  # type: ignore[union-attr]
    assert gw2.find("testcase/error").get("message") == "gw2: host key not known"  # type: ignore[union-attr]


def test_table_and_exit_status() -> None:
    out = io.StringIO()
    report_table(sample(), out)
    text = out.getvalue()
    assert "etc is postfix-owned" in text and "unreachable" in text
    assert exit_status(sample()) == 2 and exit_status(sample()[:1]) == 2  # an error counts like unreachable
    only_fail = HostAudit("gw3", "x", [CheckResult(checks_all()[0], FAIL, "m")])
    assert exit_status([only_fail]) == 1


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh test installs it)")
def test_html_in_headless_chromium(tmp_path: Path) -> None:
    """The HTML report renders in a real browser: the matrix has a coloured cell per result, details below."""
    page = tmp_path / "audit.html"
    page.write_text(report_html(sample()))
    text = page.read_text()
    assert "<script" not in text and "http" not in text.split("</style>")[0]  # self-contained
    assert text.count('class="cell fail"') == 1 and text.count('class="cell unreachable"') == 5
    assert 'id="gw1-' + checks_all()[1].id + '"' in text and "etc is postfix-owned" in text
    shot = tmp_path / "audit.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,800"]
    done = subprocess.run([str(CHROMIUM), *flags, f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.exists(), done.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1100, 800)
    colours = Counter(image.get_flattened_data())
    # The status colours of the stylesheet are on screen: pass green, fail red, waived amber, error purple.
    for rgb in ((0x1A, 0x7F, 0x37), (0xCF, 0x22, 0x2E), (0xBF, 0x87, 0x00), (0x82, 0x50, 0xDF)):
        assert colours[rgb] > 50, rgb
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<tr>") == 1 + 5  # the header row and one per check
