"""What the checks know of a host, gathered by one shell command and parsed once per host.

ONE ROUND TRIP. The script below asks the host for everything every check
needs: the MTA in use (this project's bundled ``mta`` or Debian's Postfix,
read through its own ``postconf``), main.cf parameters, master.cf rows, one
``stat``/``find`` over every path of interest (configuration, tables and their
compiled copies, the queue directory, the whole jail), jail copies that
differ from their counterpart in /, the alias tables, the accounts, the
MTA's processes with their uid and root directory, the port-25 listeners
and ``mta check`` / ``postfix check``. While it lists the processes it
holds one SMTP connection open past the greeting, so an smtpd is running to
be looked at. In a lab host, which shares the machine's network namespace,
only listeners owned by the host's own processes count. Facts are cached on the testinfra
Host object, so every check of a run reuses them.

Both runners use it: under ``harden audit`` the command travels over the
audit's own SSH connection; under plain pytest it is one ``host.run``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

import pytest

from mta.jail import ETC_FILES, JAIL_TOPS, LIB_PATTERNS, ZONEINFO_LINK

CONFIG_DIRECTORY = "/etc/postfix"
PARAMETERS = (
    "queue_directory", "mail_owner", "setgid_group", "alias_maps", "alias_database", "smtpd_banner",
    "disable_vrfy_command", "smtpd_recipient_limit", "masquerade_domains", "mynetworks", "inet_interfaces",
    "smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_sender_restrictions",
    "smtpd_relay_restrictions", "smtpd_recipient_restrictions", "smtpd_tls_security_level",
    "smtpd_tls_cert_file", "myhostname", "mydestination", "relay_domains", "default_privs", "local_recipient_maps",
)
# Indexed table types and the file each one compiles to (postmap/postalias).
COMPILED = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb", "dbm": ".pag"}
DAEMONS = ("master", "smtpd", "local", "pipe", "virtual")  # /proc/PID/comm of the processes listed
CACHE_ATTRIBUTE = "_harden_facts"

# For the bundled MTA, its four tool runs (postconf -x, postconf -M, postalias -s, check) share one
# Python process: each separate run costs a Python start and the MTA's imports, most of the facts' time.
# Each run's output (by file descriptor: stdout, and stderr for check) comes back between @@@NAME and
# @@@end NAME, as the separate runs' output would.
_MTA_TOOLS = r"""
import os, sys, tempfile
sys.path.insert(0, sys.argv[1])
from mta.cli import main
conf, params = sys.argv[2], sys.argv[3:]
def run(name, argv, errors=False):
    with tempfile.TemporaryFile() as out, open(os.devnull, "wb") as null:
        sys.stdout.flush(); sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1); os.dup2(out.fileno() if errors else null.fileno(), 2)
        try:
            rc = main(["-c", conf, *argv])
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc}"); rc = 1
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os.dup2(saved[0], 1); os.dup2(saved[1], 2); os.close(saved[0]); os.close(saved[1])
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    print(f"@@@{name}"); print(text, end="" if text.endswith("\n") or not text else "\n"); print(f"@@@end {name}")
    return rc, text
rc, p = run("params", ["postconf", "-x", *params])
run("master", ["postconf", "-M"])
maps = [l.split(" = ", 1)[1] for l in p.splitlines() if l.startswith("alias_maps = ")]
for table in (maps[0].replace(",", " ").split() if maps else []):
    if ":" in table:
        run(f"alias {table}", ["postalias", "-s", table])
rc, _ = run("check", ["check"], errors=True)
print(f"@@@checkrc {rc}")
"""

_SCRIPT = r"""
C={config}
if [ -x /usr/local/sbin/mta ] && readlink -f /usr/local/sbin/mta | grep -q '^/opt/mailgate-mta/'; then
  KIND=mta
elif command -v postconf >/dev/null 2>&1; then
  KIND=postfix; PC="postconf -c $C"; PA="postalias -c $C"
else
  echo "@@kind none"; exit 0
fi
echo "@@kind $KIND"
words() {{ tr ', \t' '\n\n\n'; }}
if [ $KIND = mta ]; then
  LIB=$(dirname "$(dirname "$(readlink -f /usr/local/sbin/mta)")")/lib
  OUT=$(cd / && /usr/bin/python3 -I -c {mta_tools} "$LIB" "$C" {params} 2>&1)
  sect() {{ printf '%s\n' "$OUT" | awk -v s="@@@$1" -v e="@@@end $1" '$0 == e {{ f = 0 }} f {{ print }} $0 == s {{ f = 1 }}'; }}
  P=$(sect params)
  MASTER=$(sect master)
  ALIASES=$(printf '%s\n' "$OUT" | sed -n 's/^@@@alias //p' | while read -r t; do echo "#table $t"; sect "alias $t"; done)
  CHECKOUT=$(sect check)
  CHECKRC=$(printf '%s\n' "$OUT" | sed -n 's/^@@@checkrc //p'); CHECKRC=${{CHECKRC:-1}}
else
  # One postconf for every parameter (each run of a tool is a process start).
  P=$($PC -x {params} 2>/dev/null)
  MASTER=$($PC -M 2>/dev/null)
  ALIASES=$(for t in $(printf '%s\n' "$P" | sed -n "s/^alias_maps = //p" | words | grep ':'); do
    echo "#table $t"; $PA -s "$t" 2>/dev/null; done)
  CHECKOUT=$(postfix -c $C check 2>&1); CHECKRC=$?
fi
echo "@@params"; printf '%s\n' "$P"
val() {{ printf '%s\n' "$P" | sed -n "s/^$1 = //p"; }}
echo "@@master"; printf '%s\n' "$MASTER"
Q=$(val queue_directory)
TABLES=$(for n in alias_maps alias_database smtpd_client_restrictions smtpd_helo_restrictions \
  smtpd_sender_restrictions smtpd_relay_restrictions smtpd_recipient_restrictions; do val $n; done \
  | words | sed -n 's/^\({types}\):\(.*\)/\1:\2/p' | sort -u)
echo "@@tables"; echo "$TABLES"
echo "@@stat"
FILES="$C $C/main.cf $C/master.cf $Q"
for t in $TABLES; do f=${{t#*:}}; FILES="$FILES $f"; for s in {suffixes}; do FILES="$FILES $f$s"; done; done
for d in active bounce corrupt defer deferred flush hold incoming maildrop pid private public saved trace; do FILES="$FILES $Q/$d"; done
stat -c '%n|%u|%g|%U|%G|%a|%F|%Y' $FILES 2>/dev/null
echo "@@jail"
cd "$Q" 2>/dev/null && for top in {tops}; do [ -e "$top" ] && find "$top" -printf '%p|%U|%G|%u|%g|%m|%y\n'; done
echo "@@jaildiff"
for f in {etc_files}; do if [ -e "/etc/$f" ] && [ -e "$Q/etc/$f" ] && ! cmp -s "/etc/$f" "$Q/etc/$f"; then echo "etc/$f"; fi; done
echo "@@hostfiles"
for f in {etc_files}; do [ -e "/etc/$f" ] && echo "etc/$f"; done
for d in /lib/*-linux-gnu; do [ -d "$d" ] || continue; a=${{d##*/}}; for p in {lib_patterns}; do for l in $d/$p; do [ -e "$l" ] && echo "lib/$a/${{l##*/}}"; done; done; done
echo "@@aliases"; printf '%s\n' "$ALIASES"
echo "@@passwd"; getent passwd
echo "@@logindefs"; grep -E '^(UID_MIN|SYS_UID_MAX)[[:space:]]' /etc/login.defs 2>/dev/null
# Hold one SMTP session open (past its greeting) while the processes are listed, so an smtpd runs.
A=$(val inet_interfaces | words | grep -E '^[0-9]' | head -n 1); A=${{A:-127.0.0.1}}
if exec 3<>"/dev/tcp/$A/25"; then timeout 5 head -c 4 <&3 >/dev/null; fi 2>/dev/null
echo "@@procs"
# Builtins only, but for readlink on the few daemons: a fork per process would cost more than the rest.
for p in /proc/[0-9]*; do read -r c < $p/comm 2>/dev/null || continue
  case " {daemons} " in *" $c "*)
    u=; while read -r k v _; do [ "$k" = Uid: ] && {{ u=$v; break; }}; done < $p/status 2>/dev/null
    echo "${{p#/proc/}}|$c|$u|$(readlink $p/root 2>/dev/null)";; esac
done
exec 3<&- 2>/dev/null
echo "@@listen"; ss -Hltnp 2>/dev/null | grep 'users:' | awk '{{print $4}}'
echo "@@check"; [ -n "$CHECKOUT" ] && printf '%s\n' "$CHECKOUT"; echo "@@checkrc $CHECKRC"
"""


def facts_script(config_directory: str = CONFIG_DIRECTORY) -> str:
    """The one command that gathers a host's facts (bash; runs as root)."""
    return _SCRIPT.format(
        config=shlex.quote(config_directory), params=" ".join(PARAMETERS), mta_tools=shlex.quote(_MTA_TOOLS), tops=" ".join(JAIL_TOPS),
        types="\\|".join(COMPILED), suffixes=" ".join(sorted(set(COMPILED.values()))),
        etc_files=" ".join(ETC_FILES), lib_patterns=" ".join(LIB_PATTERNS), daemons=" ".join(DAEMONS))


@dataclass(frozen=True)
class Stat:
    """One path's owner, group, mode and kind."""

    path: str
    uid: int
    gid: int
    user: str
    group: str
    mode: int
    kind: str  # "directory", "regular file", "symbolic link", ... (stat) or d/f/l (find)
    mtime: int = 0

    @property
    def writable_by_others(self) -> bool:
        return bool(self.mode & 0o022)


@dataclass(frozen=True)
class Process:
    """One running MTA daemon: pid, name, real uid, root directory."""

    pid: int
    name: str
    uid: int
    root: str


@dataclass
class Facts:
    """A host's facts, parsed (see the module docstring for what is gathered)."""

    kind: str = "none"  # "mta", "postfix" or "none"
    params: dict[str, str] = field(default_factory=dict)
    master: list[list[str]] = field(default_factory=list)  # postconf -M rows, split into fields
    tables: list[str] = field(default_factory=list)  # alias and access tables, as TYPE:NAME
    stats: dict[str, Stat] = field(default_factory=dict)
    jail: dict[str, Stat] = field(default_factory=dict)  # relative to queue_directory
    jail_differs: list[str] = field(default_factory=list)
    host_files: list[str] = field(default_factory=list)  # jail-relative paths the host has a source for
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> name -> value
    passwd: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # name -> uid, gid, shell
    uid_min: int = 1000
    processes: list[Process] = field(default_factory=list)
    listening: list[str] = field(default_factory=list)  # address:port of every TCP listener
    check_output: list[str] = field(default_factory=list)
    check_status: int = 0

    @property
    def queue_directory(self) -> str:
        return self.params.get("queue_directory", "/var/spool/postfix")

    def table_files(self, spec: str) -> tuple[str, str]:
        """(source, compiled file) of an indexed table ``type:name``."""
        kind, _, path = spec.partition(":")
        return path, path + COMPILED.get(kind, ".db")

    def param_list(self, name: str) -> list[str]:
        """A parameter as a list (comma or space separated)."""
        return [w for w in self.params.get(name, "").replace(",", " ").split() if w]

    def jail_expected(self) -> list[str]:
        """Jail paths this host must have: etc files it has, passwd, its libraries, the zoneinfo link.

        For Debian's Postfix, what its configure-instance.sh copies (reference §11.2): no libdb,
        and etc/passwd only when local_recipient_maps reads unix:passwd.byname without proxy:.
        """
        etc = [p for p in self.host_files if p.startswith("etc/")]
        libs = [p for p in self.host_files if p.startswith("lib/")]
        passwd = ["etc/passwd"]
        if self.kind == "postfix":
            libs = [p for p in libs if not p.rsplit("/", 1)[-1].startswith("libdb")]
            maps = self.params.get("local_recipient_maps", "")
            if "unix:passwd.byname" not in maps or "proxy:unix:passwd.byname" in maps:
                passwd = []
        return [*etc, *passwd, *libs, ZONEINFO_LINK[0]]


def _split(output: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for line in output.splitlines():
        if line.startswith("@@"):
            word, _, rest = line[2:].partition(" ")
            current = word
            sections.setdefault(current, [])
            if rest:
                sections[current].append(rest)
            continue
        sections.setdefault(current, []).append(line)
    return sections


def _stat(line: str) -> Stat | None:
    parts = line.split("|")
    if len(parts) < 7:
        return None
    try:
        path = parts[0]
        mtime = int(parts[7]) if len(parts) > 7 and parts[7].isdigit() else 0
        return Stat(path, int(parts[1]), int(parts[2]), parts[3], parts[4], int(parts[5], 8), parts[6], mtime)
    except ValueError:
        return None


def facts_parse(output: str) -> Facts:
    """Facts from the script's output."""
    s = _split(output)
    f = Facts()
    f.kind = (s.get("kind") or ["none"])[0].strip()
    for line in s.get("params", []):
        name, sep, value = line.partition(" = ")
        if sep:
            f.params[name.strip()] = value.strip()
    f.master = [line.split() for line in s.get("master", []) if line.strip() and not line.startswith((" ", "\t", "#"))]
    f.tables = [t for t in s.get("tables", []) if t.strip()]
    for line in s.get("stat", []):
        st = _stat(line)
        if st is not None:
            f.stats[st.path] = st
    for line in s.get("jail", []):
        st = _stat(line)
        if st is not None:
            f.jail[st.path] = st
    f.jail_differs = [p for p in s.get("jaildiff", []) if p]
    f.host_files = [p for p in s.get("hostfiles", []) if p]
    table = ""
    for line in s.get("aliases", []):
        if line.startswith("#table "):
            table = line[7:].strip()
            f.aliases[table] = {}
        elif table and ":" in line:
            name, _, value = line.partition(":")
            f.aliases[table][name.strip().lower()] = value.strip()
    for line in s.get("passwd", []):
        parts = line.split(":")
        if len(parts) >= 7 and parts[2].isdigit() and parts[3].isdigit():
            f.passwd[parts[0]] = (int(parts[2]), int(parts[3]), parts[6])
    for line in s.get("logindefs", []):
        words = line.split()
        if len(words) >= 2 and words[0] == "UID_MIN" and words[1].isdigit():
            f.uid_min = int(words[1])
    for line in s.get("procs", []):
        parts = line.split("|")
        if len(parts) == 4 and parts[0].isdigit() and parts[2].isdigit():
            f.processes.append(Process(int(parts[0]), parts[1], int(parts[2]), parts[3]))
    f.listening = [w for w in s.get("listen", []) if w]
    f.check_output = [line for line in s.get("check", []) if line.strip()]
    rc = (s.get("checkrc") or ["0"])[0].strip()
    f.check_status = int(rc) if rc.lstrip("-").isdigit() else 1
    return f


def mta_facts(host: Any) -> Facts:
    """host_facts, and the check is skipped when the host runs no Postfix-compatible MTA."""
    facts = host_facts(host)
    if facts.kind == "none":
        pytest.skip("no Postfix-compatible MTA found on the host")
    return facts


def host_facts(host: Any) -> Facts:
    """The facts of a testinfra Host: gathered on first use, then kept on the Host object."""
    cached = getattr(host, CACHE_ATTRIBUTE, None)
    if isinstance(cached, Facts):
        return cached
    result = host.run("bash -c " + shlex.quote(facts_script()))
    facts = facts_parse(result.stdout)
    setattr(host, CACHE_ATTRIBUTE, facts)
    return facts
