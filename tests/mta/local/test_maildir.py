"""Tests for mta.local.maildir.maildir_write: the file lands in new/, directories are made only when missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mta.local.maildir import maildir_write


@pytest.mark.parametrize("existing", [(), ("",), ("", "cur", "new"), ("", "tmp", "cur")])
def test_missing_directories_are_created(tmp_path: Path, existing: tuple[str, ...]) -> None:
    box = tmp_path / "Maildir"
    for sub in existing:
        (box / sub).mkdir(mode=0o700)
    reply = maildir_write(str(box), b"Subject: hi\n\nbody\n", 0)
    assert reply["dsn"] == "2.0.0"
    assert os.listdir(box / "new") == [reply["file"]] and os.listdir(box / "tmp") == []
    assert (box / "new" / reply["file"]).read_bytes() == b"Subject: hi\n\nbody\n"
    assert all((box / sub).stat().st_mode & 0o777 == 0o700 for sub in ("tmp", "new", "cur") if sub not in existing)


def test_path_under_a_file_fails_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("not a directory\n")
    reply = maildir_write(str(tmp_path / "plain" / "Maildir"), b"x\n", 0)
    assert reply["dsn"][0] in "45" and "plain/Maildir" in reply["reason"]
    assert "file" not in reply
