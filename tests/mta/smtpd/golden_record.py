"""Record golden SMTP transcripts from real Postfix 3.7.11 (tests/mta/smtpd/golden/CASE.in -> CASE.ref).

Not a test: run it as root when a case is added or changed, then review the
.ref diff. ``.venv/bin/python -m tests.mta.smtpd.golden_record [CASE ...]``.

GOLDEN_SHOW=1 also prints what Postfix logged and the files left in hold/.

Each case runs against a fresh Postfix started from the unpacked Debian .deb
(scripts/fetch-postfix.sh), configured like conftest.BASE_MAIN_CF plus GOLDEN_MAIN_CF
and the case's own ``# main.cf: name = value`` header lines, listening on
127.0.0.1 at a free port. test_golden.py replays the same bytes against this
server and compares.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import find_postfix_root, free_port
from tests.mta.smtpd.conftest import BASE_MAIN_CF
from tests.mta.smtpd.test_golden import GOLDEN, GOLDEN_MAIN_CF, case_split, transcript


def postfix_record(root: Path, config: str, data: bytes) -> bytes:
    """Start a Postfix with config (main.cf lines), send data, return the transcript, stop it."""
    env = dict(os.environ, LD_LIBRARY_PATH=str(root / "usr/lib/postfix"))
    base = Path(tempfile.mkdtemp(prefix="golden-postfix-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    port = free_port()
    try:
        for sub in ("etc", "spool", "data"):
            (base / sub).mkdir()
        shutil.chown(base / "data", "postfix")
        (base / "etc/main.cf").write_text(
            BASE_MAIN_CF + GOLDEN_MAIN_CF + config
            + f"queue_directory = {base}/spool\ndata_directory = {base}/data\n"
            + f"daemon_directory = {root}/usr/lib/postfix/sbin\ncommand_directory = {root}/usr/sbin\n"
            + f"shlib_directory = {root}/usr/lib/postfix\nmeta_directory = {root}/etc/postfix\n"
            + f"import_environment = MAIL_CONFIG TZ LANG=C LD_LIBRARY_PATH={root}/usr/lib/postfix\n"
            + f"maillog_file = {base}/maillog\nmaillog_file_prefixes = {base}\n")
        lines = []
        for line in (root / "usr/share/postfix/master.cf.dist").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 8 and not line[0].isspace() and not line.startswith("#"):
                if fields[0] == "smtp" and fields[1] == "inet":
                    fields[0] = f"127.0.0.1:{port}"
                fields[4] = "n" if fields[4] in ("y", "-") else fields[4]
                line = " ".join(fields)
            lines.append(line)
        (base / "etc/master.cf").write_text("\n".join(lines) + "\n")
        past = time.time() - 10  # Postfix waits when main.cf is younger than a second
        for name in ("main.cf", "master.cf"):
            os.utime(base / "etc" / name, (past, past))
        postfix = [str(root / "usr/sbin/postfix"), "-c", str(base / "etc")]
        subprocess.run([*postfix, "start"], env=env, check=True, capture_output=True, timeout=60)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    return transcript(port, data)
                except ConnectionRefusedError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            if os.environ.get("GOLDEN_SHOW"):  # for the recorder's reviewer: what Postfix logged and queued
                time.sleep(1)
                print((base / "maillog").read_text() if (base / "maillog").exists() else "(no log)")
                print(subprocess.run(["find", str(base / "spool"), "-type", "f", "-path", "*/hold/*"],
                                     capture_output=True, text=True).stdout)
            subprocess.run([*postfix, "stop"], env=env, capture_output=True, timeout=60)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(names: list[str]) -> int:
    root = find_postfix_root()
    if root is None or os.geteuid() != 0:
        print("golden_record: needs root and real Postfix (bash scripts/fetch-postfix.sh)", file=sys.stderr)
        return 1
    cases = names or sorted(p.stem for p in GOLDEN.glob("*.in"))
    for case in cases:
        config, data = case_split((GOLDEN / f"{case}.in").read_bytes())
        (GOLDEN / f"{case}.ref").write_bytes(postfix_record(root, config, data))
        print(f"recorded {case}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
