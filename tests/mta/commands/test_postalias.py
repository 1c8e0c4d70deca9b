"""Tests for ``mta postalias`` and ``mta newaliases``, plus a differential test against real postalias 3.7.

The CLI tests run mta.cli.main() in-process (one end-to-end test runs the
installed ``mta`` script). The differential tests, marked ``postfix``, build
the same files with the real binary and with ours and compare ``-s`` dumps and
``-q`` answers.
"""

from __future__ import annotations

import grp
import io
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mta import cli, log
from mta.aliases import alias_build
from tests.conftest import REPO, find_postfix_root, run_postfix

HOST = "mail.example.test"

EXAMPLE_7_21 = """\
postmaster:       root

mailer-daemon:    root

hostmaster:       root

root:             bdewinter

mailguys:         bdewinter,mick.bauer


clients:          :include:/etc/postfix/clientlist.txt

spam-reports:     /home/bdewinter/spambucket.txt
"""


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration directory with a main.cf that fixes myhostname; MAIL_CONFIG unset."""
    monkeypatch.delenv("MAIL_CONFIG", raising=False)
    path = tmp_path / "etc"
    path.mkdir()
    (path / "main.cf").write_text(f"myhostname = {HOST}\n")
    return path


def mta(config_dir: Path, *args: str) -> int:
    return cli.main(["-c", str(config_dir), *args])


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------
# mta postalias

def test_build_and_query(config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "aliases", EXAMPLE_7_21)
    assert mta(config_dir, "postalias", str(src)) == 0
    assert capsys.readouterr() == ("", "")
    assert mta(config_dir, "postalias", "-q", "mailguys", str(src)) == 0
    assert capsys.readouterr().out == "bdewinter, mick.bauer\n"
    assert mta(config_dir, "postalias", "-q", "POSTMASTER", f"hash:{src}") == 0
    assert capsys.readouterr().out == "root\n"
    assert mta(config_dir, "postalias", "-q", "clients", str(src)) == 0
    assert capsys.readouterr().out == ":include:/etc/postfix/clientlist.txt\n"
    assert mta(config_dir, "postalias", "-q", "nobody-here", str(src)) == 1
    assert capsys.readouterr() == ("", "")


def test_query_compatibility_records(config_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "aliases", "root: bob\n")
    mta(config_dir, "postalias", str(src))
    assert mta(config_dir, "postalias", "-q", "@", str(src)) == 0
    assert capsys.readouterr().out == "@\n"
    # The query key is folded, the YP_ keys are not: found only with -f, as in Postfix.
    assert mta(config_dir, "postalias", "-q", "YP_MASTER_NAME", str(src)) == 1
    assert mta(config_dir, "postalias", "-f", "-q", "YP_MASTER_NAME", str(src)) == 0
    assert capsys.readouterr().out == f"{HOST}\n"


def test_query_stdin(config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    src = write(tmp_path / "aliases", EXAMPLE_7_21)
    mta(config_dir, "postalias", str(src))
    monkeypatch.setattr(sys, "stdin", io.StringIO("root\nNOPE\nPostMaster\n"))
    assert mta(config_dir, "postalias", "-q", "-", str(src)) == 0
    assert capsys.readouterr().out == "root:\tbdewinter\nPostMaster:\troot\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO("nope\n"))
    assert mta(config_dir, "postalias", "-q", "-", str(src)) == 1
    assert capsys.readouterr().out == ""


def test_query_searches_files_in_order(config_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    first = write(tmp_path / "a1", "root: alice\n")
    second = write(tmp_path / "a2", "root: bob\nadmin: carol\n")
    assert mta(config_dir, "postalias", str(first), str(second)) == 0
    for key, value in [("root", "alice"), ("admin", "carol")]:
        assert mta(config_dir, "postalias", "-q", key, str(first), f"hash:{second}") == 0
        assert capsys.readouterr().out == f"{value}\n"


def test_show(config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "aliases", 'Root: bob\n"odd name": "|/bin/cat -n"\n')
    other = write(tmp_path / "other", "x: y\n")
    alias_build(str(src), hostname=HOST, now=1_700_000_000)
    alias_build(str(other), hostname=HOST)
    # Only the first table is dumped, as by Postfix 3.7.
    assert mta(config_dir, "postalias", "-s", str(src), str(other)) == 0
    assert capsys.readouterr().out == (
        "@:\t@\nYP_LAST_MODIFIED:\t1700000000\nYP_MASTER_NAME:\tmail.example.test\n"
        'odd name:\t"|/bin/cat -n"\nroot:\tbob\n')


def test_no_fold(config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "aliases", "Mixed: v\n")
    assert mta(config_dir, "postalias", "-f", str(src)) == 0
    assert mta(config_dir, "postalias", "-q", "Mixed", str(src)) == 1
    assert mta(config_dir, "postalias", "-f", "-q", "Mixed", str(src)) == 0
    assert capsys.readouterr().out == "v\n"


@pytest.mark.parametrize("option, value, warning", [
    ([], "first", True), (["-w"], "first", False), (["-r"], "second", False),
])
def test_duplicates(option: list[str], value: str, warning: bool, config_dir: Path, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "aliases", "dup: first\nDup: second\n")
    assert mta(config_dir, "postalias", *option, str(src)) == 0
    expected = f'mta/postalias: warning: {src}, line 2: duplicate entry: "dup"\n' if warning else ""
    assert capsys.readouterr().err == expected
    mta(config_dir, "postalias", "-q", "dup", str(src))
    assert capsys.readouterr().out == f"{value}\n"


def test_bad_line_fails_and_keeps_old_table(config_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "aliases", "root: bob\n")
    assert mta(config_dir, "postalias", str(src)) == 0
    db = tmp_path / "aliases.db"
    before = (db.read_bytes(), db.stat().st_ino)
    write(src, "root: carol\nuser@example.com: x\n\nlist: a,\n  b\nno colon here\n")
    assert mta(config_dir, "postalias", str(src)) == 1
    assert capsys.readouterr().err == (
        f"mta/postalias: error: {src}, line 2: name must be local\n"
        f"mta/postalias: error: {src}, line 6: need name:value pair\n"
        f"mta/postalias: error: {src}: 2 bad lines; {db} not updated\n")
    assert (db.read_bytes(), db.stat().st_ino) == before
    assert mta(config_dir, "postalias", "-q", "root", str(src)) == 0
    assert capsys.readouterr().out == "bob\n"


def test_missing_source(config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mta(config_dir, "postalias", str(tmp_path / "nope")) == 1
    assert capsys.readouterr().err == f"mta/postalias: error: open {tmp_path}/nope: No such file or directory\n"


def test_query_missing_table(config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mta(config_dir, "postalias", "-q", "x", str(tmp_path / "nope")) == 1
    assert capsys.readouterr().err == (
        f"mta/postalias: fatal: open database {tmp_path}/nope.db: No such file or directory\n")


def test_one_bad_table_does_not_stop_the_others(config_dir: Path, tmp_path: Path) -> None:
    bad = write(tmp_path / "bad", "x\n")
    good = write(tmp_path / "good", "a: b\n")
    assert mta(config_dir, "postalias", str(bad), str(good)) == 1
    assert (tmp_path / "good.db").exists() and not (tmp_path / "bad.db").exists()


@pytest.mark.parametrize("main_cf, spec_prefix, type_name", [
    ("", "regexp:", "regexp"),
    ("default_database_type = btree\n", "", "btree"),
])
def test_only_hash_tables_are_built(main_cf: str, spec_prefix: str, type_name: str, config_dir: Path,
                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (config_dir / "main.cf").write_text(main_cf)
    src = write(tmp_path / "aliases", "a: b\n")
    assert mta(config_dir, "postalias", f"{spec_prefix}{src}") == 1
    assert capsys.readouterr().err.startswith(
        f"mta/postalias: error: unsupported map type for this operation: {type_name}")


@pytest.mark.parametrize("option, source_mode, db_mode", [
    ([], 0o640, 0o640), ([], 0o600, 0o600), ([], 0o755, 0o644), (["-p"], 0o600, 0o644),
])
def test_table_mode(option: list[str], source_mode: int, db_mode: int, config_dir: Path,
                    tmp_path: Path) -> None:
    src = write(tmp_path / "aliases", "a: b\n")
    src.chmod(source_mode)
    assert mta(config_dir, "postalias", *option, str(src)) == 0
    assert stat.S_IMODE((tmp_path / "aliases.db").stat().st_mode) == db_mode


def test_end_to_end_script(config_dir: Path, tmp_path: Path) -> None:
    src = write(tmp_path / "aliases", EXAMPLE_7_21)
    script = str(REPO / ".venv/bin/mta")
    if not os.path.exists(script):
        pytest.skip("no .venv/bin/mta")
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    built = subprocess.run([script, "-c", str(config_dir), "postalias", str(src)],
                           capture_output=True, text=True, env=env, timeout=60)
    assert (built.returncode, built.stdout, built.stderr) == (0, "", "")
    found = subprocess.run([script, "-c", str(config_dir), "postalias", "-q", "Root", str(src)],
                           capture_output=True, text=True, env=env, timeout=60)
    assert (found.returncode, found.stdout) == (0, "bdewinter\n")


# ---------------------------------------------------------------------------
# mta newaliases

def test_newaliases_with_config_option(config_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    one = write(tmp_path / "aliases", EXAMPLE_7_21)
    two = write(tmp_path / "more", "Extra: x\n")
    (config_dir / "main.cf").write_text(f"alias_database = hash:{one}, {two}\n")
    assert mta(config_dir, "newaliases") == 0
    assert capsys.readouterr() == ("", "")
    assert mta(config_dir, "postalias", "-q", "mailguys", str(one)) == 0
    assert mta(config_dir, "postalias", "-q", "extra", str(two)) == 0
    assert capsys.readouterr().out == "bdewinter, mick.bauer\nx\n"


def test_newaliases_with_mail_config(config_dir: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    src = write(tmp_path / "aliases", "root: bob\n")
    (config_dir / "main.cf").write_text(f"alias_database = hash:{src}\n")
    monkeypatch.setenv("MAIL_CONFIG", str(config_dir))
    assert cli.main(["newaliases"]) == 0
    assert (tmp_path / "aliases.db").exists()


def test_newaliases_default_alias_database(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_build_all(specs: list[str], **options: object) -> list[str]:
        seen.append(list(specs))
        return []

    # Do not touch the real /etc/aliases: only check what would be built.
    monkeypatch.setattr("mta.commands.newaliases.alias_build_all", fake_build_all)
    (config_dir / "main.cf").write_text("")
    assert mta(config_dir, "newaliases") == 0
    assert seen == [["hash:/etc/aliases"]]


def test_newaliases_reports_bad_tables(config_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good", "a: b\n")
    bad = write(tmp_path / "bad", "a: b\nbroken\n")
    (config_dir / "main.cf").write_text(f"alias_database = hash:{bad}, regexp:{good}, hash:{good}\n")
    assert mta(config_dir, "newaliases") == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [f"mta/newaliases: error: {bad}, line 2: need name:value pair",
                       f"mta/newaliases: error: {bad}: 1 bad line; {bad}.db not updated"]
    assert err[2].startswith("mta/newaliases: error: unsupported map type for this operation: regexp")
    assert len(err) == 3
    assert (tmp_path / "good.db").exists() and not (tmp_path / "bad.db").exists()


# ---------------------------------------------------------------------------
# DIFFERENTIAL: real postalias 3.7 against ours.

# Files both accept: the stored tables and query answers must be identical.
CORPUS = {
    "example_7_21": EXAMPLE_7_21,
    "basics": "# comment\n   # indented comment\nroot: bob\n\nPostMaster: root\nMixed: Value WITH Case\n",
    "continuation": "list: bob, carol,\n   dave\n  , erin\nk1: a\n\n# c\n  b\n\t  # c2\n\tc\n",
    "quoted_names": '"odd name": frank\n"quoted@dom": y\n"K4\\"q": e\nk9\\@x: k\nk2 b: c\n(cmt) k5: f\n',
    "values": ('pipe: "|/usr/bin/procmail -a foo"\nbare: |/usr/bin/procmail -a foo\n'
               "file: /var/mail/x/\ninc: :include:/etc/list\ninc2: :INCLUDE: /etc/y\n"
               "trail: a, b # comment here\ntabbed:\ta\t,\tb  \nexit: \"|exit 67\"\n"),
    "tokens": ("a1: x | y . z % w ! v @ u ; t ] s ) r\na2: x # $ & ' * + - / = ? ^ _ ` { } ~ y\na7: x < y > z\na8: bob (Bob Smith) , carol\n"
               "a9: x [1.2.3.4] y\na11: x \\, y\na15: x,,y\na16: x , , y,\na17: ,x\na18: a:b:c\n"
               "a20: <bob@example.com>, Carol <carol@example.com>\na21: x& y$ z* w? q# r'\n"
               "a25: x\\ y\na26: \"x\\\"y\"\nq2: a\\\\b\nq3: \"a\\b\"\nq4: [a\\\\b]\nq11: a\\xb\n"
               "q12: \"a\nq15: \"a\"b\"c\"\nu1: x ( y\nu5: x (a \\) b) y\nu6: x [a \\] b] y\n"
               "s1: a.<b>\ns2: <a><b>\ns7: <<b\nv11: a . . b\nv12: (c1)(c2)\nctl: x\x01y\x7fz\n"),
    "whitespace": 'q: "foo   \n   bar"\nc: (foo  \n  bar)\ncr: v\r\ncr2\r: w\r\nw3: "a\tb"\na: b\n\fc\nz: 1\n',
    "duplicates": "dup: first\nDUP: second\ndup: third\n",
    "quoted_at_record": '"@": x\n',
    "utf8": "ÉCOLE: café\nk: straße\n",
    "empty": "",
}

# Files with bad lines: Postfix warns and skips them, as our lenient mode does;
# the mta postalias command (strict) refuses them instead.
LENIENT_CORPUS = {
    "bad_lines": ("ok: a\nnocolon\nempty:\nUser@Domain: x\na%b: y\na, b: c\n: x\n"
                  "bad\n  more\nk: v\n"),
    "leading_whitespace": "  lead: x\n  more\nk: v\n",
}


def _postfix_main_cf() -> str:
    """main.cf for the real binaries: mail_owner must be an existing non-root user, setgid_group
    a group of its own, both distinct from default_privs (nobody)."""
    lines = [f"myhostname = {HOST}"]
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
        return "\n".join(lines) + "\n"
    except KeyError:
        pass
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no postfix and no nobody user to run real postalias with")
    owner = next((u for u in pwd.getpwall()
                  if u.pw_uid not in (0, nobody.pw_uid) and u.pw_gid != nobody.pw_gid), None)
    if owner is None:
        pytest.skip("no user to act as mail_owner")
    group = next((g for g in grp.getgrall() if g.gr_gid not in (0, owner.pw_gid, nobody.pw_gid)), None)
    if group is None:
        pytest.skip("no group to act as setgid_group")
    lines += [f"mail_owner = {owner.pw_name}", f"setgid_group = {group.gr_name}", "default_privs = nobody"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def postfix_tree() -> Path:
    """The unpacked Postfix: $MTA_POSTFIX_ROOT, .cache/postfix-3.7/root, else /tmp/pfx/root."""
    root = find_postfix_root()
    for candidate in [root, Path("/tmp/pfx/root")]:
        if candidate is not None and (candidate / "usr/sbin/postalias").exists():
            return candidate
    message = "real Postfix not unpacked: run scripts/fetch-postfix.sh"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def diff_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MAIL_CONFIG", raising=False)
    path = tmp_path / "etc"
    path.mkdir()
    main_cf = path / "main.cf"
    main_cf.write_text(_postfix_main_cf())
    # Real Postfix pauses about two seconds when main.cf was changed within the last moments.
    past = main_cf.stat().st_mtime - 60
    os.utime(main_cf, (past, past))
    return path


def _dump_lines(text: str) -> list[str]:
    """-s output as sorted lines, without the build-time record."""
    return sorted(line for line in text.splitlines() if not line.startswith("YP_LAST_MODIFIED:"))


def _query_keys(dump: list[str]) -> str:
    keys = [line.split(":\t", 1)[0] for line in dump]
    extra = [k.upper() for k in keys] + [k.title() for k in keys] + ["nosuch", "ÉCOLE", "école", "@"]
    return "".join(f"{k}\n" for k in keys + extra if k)


def _real(postfix_tree: Path, config: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_postfix(postfix_tree, "postalias", "-c", str(config), *args, input=input)


def _ours(config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
          *args: str, input: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(input))
    status = cli.main(["-c", str(config), "postalias", *args])
    out, err = capsys.readouterr()
    return status, out, err


def _compare_tables(postfix_tree: Path, config: Path, real_src: Path, our_src: Path,
                    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = _real(postfix_tree, config, "-s", str(real_src))
    assert theirs.returncode == 0, theirs.stderr
    status, out, _ = _ours(config, capsys, monkeypatch, "-s", str(our_src))
    assert status == 0
    assert _dump_lines(out) == _dump_lines(theirs.stdout)
    keys = _query_keys(_dump_lines(theirs.stdout))
    theirs = _real(postfix_tree, config, "-q", "-", str(real_src), input=keys)
    status, out, _ = _ours(config, capsys, monkeypatch, "-q", "-", str(our_src), input=keys)
    assert (status, out) == (theirs.returncode, theirs.stdout)
    for key in ["root", "ROOT", "nosuch", "@", "YP_MASTER_NAME"]:
        theirs = _real(postfix_tree, config, "-q", key, str(real_src))
        status, out, _ = _ours(config, capsys, monkeypatch, "-q", key, str(our_src))
        assert (status, out) == (theirs.returncode, theirs.stdout), key


def _sources(tmp_path: Path, name: str, text: str) -> tuple[Path, Path]:
    paths = []
    for side in ("real", "ours"):
        (tmp_path / side).mkdir()
        path = tmp_path / side / name
        path.write_bytes(text.encode())
        path.chmod(0o640)
        paths.append(path)
    return paths[0], paths[1]


@pytest.mark.postfix
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_differential_build_and_query(name: str, postfix_tree: Path, diff_config: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real_src, our_src = _sources(tmp_path, name, CORPUS[name])
    built = _real(postfix_tree, diff_config, str(real_src))
    assert built.returncode == 0, built.stderr
    status, _, _ = _ours(diff_config, capsys, monkeypatch, str(our_src))
    assert status == 0
    real_mode = stat.S_IMODE(Path(f"{real_src}.db").stat().st_mode)
    assert stat.S_IMODE(Path(f"{our_src}.db").stat().st_mode) == real_mode
    _compare_tables(postfix_tree, diff_config, real_src, our_src, capsys, monkeypatch)


@pytest.mark.postfix
@pytest.mark.parametrize("name", sorted(LENIENT_CORPUS))
def test_differential_lenient(name: str, postfix_tree: Path, diff_config: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    real_src, our_src = _sources(tmp_path, name, LENIENT_CORPUS[name])
    built = _real(postfix_tree, diff_config, str(real_src))
    assert built.returncode == 0, built.stderr
    status, _, err = _ours(diff_config, capsys, monkeypatch, str(our_src))
    assert status == 1 and " not updated" in err
    ours = _lenient_build(our_src, capsys)
    _compare_tables(postfix_tree, diff_config, real_src, our_src, capsys, monkeypatch)
    # Warnings that name a line have the same text, file name aside.
    theirs = {line.split(f"{real_src}, ")[1] for line in built.stderr.splitlines() if f"{real_src}, line" in line}
    assert theirs <= ours
    assert theirs or name == "leading_whitespace"


def _lenient_build(src: Path, capsys: pytest.CaptureFixture[str]) -> set[str]:
    """Build src the Postfix way (bad lines skipped); return the line-numbered warnings."""
    log.setup_stderr("test")
    alias_build(str(src), hostname=HOST, strict=False)
    err = capsys.readouterr().err
    return {line.split(f"{src}, ")[1] for line in err.splitlines() if f"{src}, line" in line}
