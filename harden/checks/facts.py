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
``harden rollout`` runs the MTA's tools (tools_command) as the validation of
what it wrote, and its verification's facts take their output on standard
input (tools_given) instead of running them again.
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
# Each run's standard output (and its standard error, for check) comes back between @@@NAME and
# @@@end NAME, as the separate runs' output would, then @@@rc NAME STATUS; a run that failed adds its
# standard error between @@@stderr NAME and @@@end stderr NAME. harden rollout runs the same command
# to validate what it wrote, and hands the output to the audit that follows (tools_given).
_MTA_TOOLS = r"""
import os, sys, tempfile
sys.path.insert(0, sys.argv[1])
from mta.cli import main
conf, params = sys.argv[2], sys.argv[3:]
def section(name, text):
    print(f"@@@{name}"); print(text, end="" if text.endswith("\n") or not text else "\n"); print(f"@@@end {name}")
def run(name, argv, errors=False):
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush(); sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1); os.dup2(out.fileno() if errors else err.fileno(), 2)
        try:
            rc = main(["-c", conf, *argv]) or 0
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr); rc = 1
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os.dup2(saved[0], 1); os.dup2(saved[1], 2); os.close(saved[0]); os.close(saved[1])
        out.seek(0); err.seek(0)
        text, problems = (f.read().decode("utf-8", "replace") for f in (out, err))
    section(name, text)
    if rc and problems:
        section(f"stderr {name}", problems)
    print(f"@@@rc {name} {rc}")
    return text
p = run("params", ["postconf", "-x", *params])
run("master", ["postconf", "-M"])
maps = [l.split(" = ", 1)[1] for l in p.splitlines() if l.startswith("alias_maps = ")]
for table in (maps[0].replace(",", " ").split() if maps else []):
    if ":" in table:
        run(f"alias {table}", ["postalias", "-s", table])
run("check", ["check"], errors=True)
"""

# The bundled MTA's library directory, from the command's link (/opt/mailgate-mta/VERSION/bin/mta).
_TOOLS_RUN = ('L=$(readlink -f /usr/local/sbin/mta); L=${{L%/*}}; '
              '(cd / && /usr/bin/python3 -I -c {tools} "${{L%/*}}/lib" {config} {params} 2>&1)')

# Fork-lean: each process started costs the host about a millisecond of CPU, and a rollout runs
# this on every host it verifies, so parsing is done with bash builtins; what is left is the MTA's
# tools (one Python), one stat, one find, one md5sum, getent, ss and a readlink per daemon.
_SCRIPT = r"""
C={config}
KIND=; L=$(readlink -f /usr/local/sbin/mta 2>/dev/null)
case $L in /opt/mailgate-mta/*) [ -x /usr/local/sbin/mta ] && KIND=mta;; esac
if [ -z "$KIND" ] && command -v postconf >/dev/null 2>&1; then
  KIND=postfix; PC="postconf -c $C"; PA="postalias -c $C"
fi
[ -n "$KIND" ] || {{ echo "@@kind none"; exit 0; }}
echo "@@kind $KIND"
if [ $KIND = mta ]; then
  if [ {given} = 1 ]; then IFS= read -r -d '' OUT || true; else OUT=$({tools_run}); fi
  P=; MASTER=; ALIASES=; CHECKOUT=; CHECKRC=1; sec=
  while IFS= read -r l; do
    case $l in
      "@@@end "*) sec= ;;
      "@@@rc check "*) CHECKRC=${{l##* }} ;;
      "@@@rc "*) ;;
      "@@@alias "*) sec=alias; ALIASES+="#table ${{l#@@@alias }}"$'\n' ;;
      "@@@"*) sec=${{l#@@@}} ;;
      *) case $sec in
           params) P+=$l$'\n' ;;
           master) MASTER+=$l$'\n' ;;
           alias) ALIASES+=$l$'\n' ;;
           check) CHECKOUT+=$l$'\n' ;;
         esac ;;
    esac
  done <<< "$OUT"
else
  # One postconf for every parameter (each run of a tool is a process start).
  P=$($PC -x {params} 2>/dev/null)
  MASTER=$($PC -M 2>/dev/null)
  CHECKOUT=$(postfix -c $C check 2>&1); CHECKRC=$?
fi
echo "@@params"; printf '%s\n' "$P"
declare -A V
while IFS= read -r l; do case $l in *" = "*) V[${{l%% = *}}]=${{l#* = }};; esac; done <<< "$P"
if [ $KIND = postfix ]; then
  ALIASES=$(set -f; for t in ${{V[alias_maps]//,/ }}; do
    case $t in *:*) echo "#table $t"; $PA -s "$t" 2>/dev/null;; esac; done)
fi
echo "@@master"; printf '%s\n' "$MASTER"
Q=${{V[queue_directory]}}
set -f
declare -A SEEN; TABLES=
for n in alias_maps alias_database smtpd_client_restrictions smtpd_helo_restrictions \
  smtpd_sender_restrictions smtpd_relay_restrictions smtpd_recipient_restrictions; do
  for w in ${{V[$n]//,/ }}; do
    case $w in {types}) [ -n "${{SEEN[$w]}}" ] || {{ SEEN[$w]=1; TABLES+=$w$'\n'; }};; esac
  done
done
echo "@@tables"; printf '%s' "$TABLES"
echo "@@stat"
FILES="$C $C/main.cf $C/master.cf $Q"
for t in $TABLES; do f=${{t#*:}}; FILES="$FILES $f"; for s in {suffixes}; do FILES="$FILES $f$s"; done; done
for d in active bounce corrupt defer deferred flush hold incoming maildrop pid private public saved trace; do FILES="$FILES $Q/$d"; done
stat -c '%n|%u|%g|%U|%G|%a|%F|%Y' $FILES 2>/dev/null
A=; for w in ${{V[inet_interfaces]//,/ }}; do case $w in [0-9]*) A=$w; break;; esac; done; A=${{A:-127.0.0.1}}
set +f
echo "@@jail"
if cd "$Q" 2>/dev/null; then
  T=; for top in {tops}; do [ -e "$top" ] && T="$T $top"; done
  [ -n "$T" ] && find $T -printf '%p|%U|%G|%u|%g|%m|%y\n'
fi
echo "@@jaildiff"
N=; S=; for f in {etc_files}; do [ -e "/etc/$f" ] && [ -e "$Q/etc/$f" ] && {{ N="$N $f"; S="$S /etc/$f $Q/etc/$f"; }}; done
if [ -n "$N" ]; then  # one md5sum for every pair (a cmp per file is a process each)
  declare -A H; SUMS=$(md5sum $S 2>/dev/null)
  while read -r h p; do H[$p]=$h; done <<< "$SUMS"
  for f in $N; do [ "${{H[/etc/$f]:-x}}" != "${{H[$Q/etc/$f]:-y}}" ] && echo "etc/$f"; done
fi
echo "@@hostfiles"
for f in {etc_files}; do [ -e "/etc/$f" ] && echo "etc/$f"; done
for d in /lib/*-linux-gnu; do [ -d "$d" ] || continue; a=${{d##*/}}; for p in {lib_patterns}; do for l in $d/$p; do [ -e "$l" ] && echo "lib/$a/${{l##*/}}"; done; done; done
echo "@@aliases"; printf '%s\n' "$ALIASES"
echo "@@passwd"; getent passwd
echo "@@logindefs"
while read -r k v _; do case $k in UID_MIN|SYS_UID_MAX) echo "$k $v";; esac; done < /etc/login.defs 2>/dev/null
# Hold one SMTP session open (past its greeting) while the processes are listed, so an smtpd runs.
if exec 3<>"/dev/tcp/$A/25"; then read -r -t 5 -u 3 _; fi 2>/dev/null
echo "@@procs"
# Builtins only, but for readlink on the few daemons: a fork per process would cost more than the rest.
for p in /proc/[0-9]*; do read -r c < $p/comm 2>/dev/null || continue
  case " {daemons} " in *" $c "*)
    u=; while read -r k v _; do [ "$k" = Uid: ] && {{ u=$v; break; }}; done < $p/status 2>/dev/null
    echo "${{p#/proc/}}|$c|$u|$(readlink $p/root 2>/dev/null)";; esac
done
exec 3<&- 2>/dev/null
echo "@@listen"; LISTEN=$(ss -Hltnp 2>/dev/null)
while read -r _ _ _ local _ rest; do case $rest in *users:*) echo "$local";; esac; done <<< "$LISTEN"
echo "@@check"; [ -n "$CHECKOUT" ] && printf '%s\n' "$CHECKOUT"; echo "@@checkrc $CHECKRC"
"""


def tools_command(config_directory: str = CONFIG_DIRECTORY) -> str:
    """Shell: the bundled MTA's postconf -x, postconf -M, postalias -s and check, in one Python process."""
    return _TOOLS_RUN.format(tools=shlex.quote(_MTA_TOOLS), config=shlex.quote(config_directory),
                             params=" ".join(PARAMETERS))


def facts_script(config_directory: str = CONFIG_DIRECTORY, tools_given: bool = False) -> str:
    """The one command that gathers a host's facts (bash; runs as root).

    + tools_given: the bundled MTA's tools output (tools_command, run
      earlier on the same files) comes on standard input instead of being
      run again.
    """
    return _SCRIPT.format(
        config=shlex.quote(config_directory), params=" ".join(PARAMETERS), tools_run=tools_command(config_directory),
        given=int(tools_given), tops=" ".join(JAIL_TOPS), types="|".join(f"{t}:*" for t in COMPILED),
        suffixes=" ".join(sorted(set(COMPILED.values()))),
        etc_files=" ".join(ETC_FILES), lib_patterns=" ".join(LIB_PATTERNS), daemons=" ".join(DAEMONS))


def facts_command(config_directory: str = CONFIG_DIRECTORY, tools_given: bool = False) -> str:
    """facts_script as one command line for the host's login shell."""
    return "bash -c " + shlex.quote(facts_script(config_directory, tools_given))


@dataclass(frozen=True)
class ToolRun:
    """One run of an MTA tool within tools_command: exit status, output, and standard error if it failed."""

    status: int
    output: str = ""
    errors: str = ""


def tools_parse(output: str) -> dict[str, ToolRun]:
    """tools_command's output, by run name (params, master, alias TYPE:NAME, check); a run without status is left out."""
    sections: dict[str, list[str]] = {}
    status: dict[str, int] = {}
    current: str | None = None
    for line in output.splitlines():
        if current is not None and line == f"@@@end {current}":
            current = None
        elif current is not None:
            sections[current].append(line)
        elif line.startswith("@@@rc "):
            name, _, rc = line[6:].rpartition(" ")
            status[name] = int(rc) if rc.lstrip("-").isdigit() else 1
        elif line.startswith("@@@") and not line.startswith("@@@end "):
            current = line[3:]
            sections[current] = []
    return {name: ToolRun(rc, "\n".join(sections.get(name, [])), "\n".join(sections.get(f"stderr {name}", [])))
            for name, rc in status.items()}


def tools_errors(output: str) -> list[str]:
    """What tools_command's output says is wrong with the configuration: one line per failed run."""
    runs = tools_parse(output)
    if "check" not in runs:
        tail = [line for line in output.strip().splitlines() if line.strip()][-3:]
        return ["the MTA's tools did not run to the end: " + (" | ".join(tail) or "no output")]
    out = []
    for name, run in runs.items():
        if run.status:
            label = {"params": "postconf", "master": "postconf -M", "check": "check"}.get(name)
            label = label or ("postalias -s " + name[6:] if name.startswith("alias ") else name)
            lines = [line.strip() for line in (run.errors or run.output).splitlines() if line.strip()]
            out.append(f"mta {label} (exit {run.status}): " + (" | ".join(lines[-5:]) or "no output"))
    return out


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
    f.tables = sorted({t.strip() for t in s.get("tables", []) if t.strip()})
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
    result = host.run(facts_command())
    facts = facts_parse(result.stdout)
    setattr(host, CACHE_ATTRIBUTE, facts)
    return facts
