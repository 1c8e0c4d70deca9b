"""Tests for harden.checks.facts: the one-command script's output parsed into Facts."""

from __future__ import annotations

import subprocess

import pytest

from harden.checks.facts import ToolRun, facts_parse, facts_script, tools_errors, tools_parse

SAMPLE = """@@kind mta
@@params
queue_directory = /var/spool/postfix
mail_owner = postfix
mynetworks = 127.0.0.1/32, [::1]/128
@@master
smtp       inet  n       -       y       -       -       smtpd
local      unix  -       n       n       -       -       local
@@tables
hash:/etc/postfix/aliases
@@stat
/etc/postfix/main.cf|0|0|root|root|644|regular file|1795490783
@@jail
etc|0|0|root|root|755|d
etc/hosts|999|0|postfix|root|664|f
@@jaildiff
etc/resolv.conf
@@hostfiles
etc/hosts
lib/x86_64-linux-gnu/libnss_files.so.2
@@aliases
#table hash:/etc/postfix/aliases
postmaster:	root
root:	mailadmin
@@passwd
root:x:0:0:root:/root:/bin/bash
mailadmin:x:1000:1000::/home/mailadmin:/bin/bash
@@logindefs
UID_MIN			 1000
@@procs
309|smtpd|999|/var/spool/postfix
12|master|0|/
@@listen
127.0.0.121:25
@@check
mta/check: warning: damaged message: corrupt/ABC
@@checkrc 1
"""


def test_parse() -> None:
    f = facts_parse(SAMPLE)
    assert f.kind == "mta" and f.queue_directory == "/var/spool/postfix"
    assert f.param_list("mynetworks") == ["127.0.0.1/32", "[::1]/128"]
    assert f.master[0][:5] == ["smtp", "inet", "n", "-", "y"] and f.master[1][7] == "local"
    assert f.stats["/etc/postfix/main.cf"].mode == 0o644 and f.stats["/etc/postfix/main.cf"].mtime == 1795490783
    assert f.jail["etc/hosts"].user == "postfix" and f.jail["etc/hosts"].writable_by_others
    assert f.jail_differs == ["etc/resolv.conf"]
    assert f.jail_expected() == ["etc/hosts", "etc/passwd", "lib/x86_64-linux-gnu/libnss_files.so.2",
                                 "usr/lib/zoneinfo/localtime"]
    assert f.aliases == {"hash:/etc/postfix/aliases": {"postmaster": "root", "root": "mailadmin"}}
    assert f.passwd["mailadmin"] == (1000, 1000, "/bin/bash") and f.uid_min == 1000
    assert [(p.name, p.uid, p.root) for p in f.processes] == [("smtpd", 999, "/var/spool/postfix"), ("master", 0, "/")]
    assert f.listening == ["127.0.0.121:25"]
    assert f.check_output == ["mta/check: warning: damaged message: corrupt/ABC"] and f.check_status == 1


def test_no_mta_and_garbage() -> None:
    assert facts_parse("@@kind none\n").kind == "none"
    f = facts_parse("@@stat\nnot|a|stat\n@@procs\nx|y\n@@checkrc oops\n")
    assert f.stats == {} and f.processes == [] and f.check_status == 1


@pytest.mark.parametrize("tools_given", [False, True])
def test_script_is_valid_bash(tools_given: bool) -> None:
    done = subprocess.run(["bash", "-n", "-c", facts_script(tools_given=tools_given)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr


TOOLS_OK = """@@@params
queue_directory = /var/spool/postfix
@@@end params
@@@rc params 0
@@@master
smtp       inet  n       -       y       -       -       smtpd
@@@end master
@@@rc master 0
@@@alias hash:/etc/postfix/aliases
root: mailadmin
@@@end alias hash:/etc/postfix/aliases
@@@rc alias hash:/etc/postfix/aliases 0
@@@check
@@@end check
@@@rc check 0
"""


def test_tools_output_parsed_by_run() -> None:
    runs = tools_parse(TOOLS_OK)
    assert list(runs) == ["params", "master", "alias hash:/etc/postfix/aliases", "check"]
    assert runs["params"] == ToolRun(0, "queue_directory = /var/spool/postfix", "")
    assert runs["alias hash:/etc/postfix/aliases"].output == "root: mailadmin"
    assert tools_errors(TOOLS_OK) == []


def test_tools_errors_name_the_run_and_its_message() -> None:
    failed = TOOLS_OK.replace("@@@rc params 0", "@@@stderr params\nmta/postconf: fatal: /etc/postfix/main.cf, line 3: "
                              "missing '=' after attribute name\n@@@end stderr params\n@@@rc params 1")
    failed = failed.replace("@@@check\n@@@end check\n@@@rc check 0",
                            "@@@check\nmta/check: warning: group or other writable: /etc/postfix\n@@@end check\n"
                            "@@@rc check 1")
    assert tools_parse(failed)["params"].errors.endswith("missing '=' after attribute name")
    assert tools_errors(failed) == [
        "mta postconf (exit 1): mta/postconf: fatal: /etc/postfix/main.cf, line 3: missing '=' after attribute name",
        "mta check (exit 1): mta/check: warning: group or other writable: /etc/postfix"]
    # A runner that died (a broken bundle) before check reported: its last words.
    crashed = "@@@params\n@@@end params\n@@@rc params 0\nTraceback (most recent call last):\nImportError: no mta\n"
    assert tools_errors(crashed) == ["the MTA's tools did not run to the end: @@@rc params 0 | Traceback (most recent "
                                     "call last): | ImportError: no mta"]
