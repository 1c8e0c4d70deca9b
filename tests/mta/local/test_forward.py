"""Tests for mta.local.forward: ~/.forward files, read and obeyed with the recipient's rights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mta.local.expand import local_expand
from tests.mta.local.conftest import HOST, LocalEnv


def forward_file(env: LocalEnv, user: str, text: str, name: str = ".forward", mode: int = 0o644) -> Path:
    pw = env.users[user]
    path = Path(pw.pw_dir) / name
    path.write_text(text)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    path.chmod(mode)
    return path


def test_forward_to_another_user_and_self(env: LocalEnv) -> None:
    forward_file(env, "mtatest1", "mtatest2\nmtatest1\n")
    [reply] = env.deliver(f"mtatest1@{HOST}")
    assert reply["status"] == 0
    assert (len(env.maildir("mtatest1")), len(env.maildir("mtatest2"))) == (1, 1)


def test_forward_command_and_file_run_as_the_user(env: LocalEnv) -> None:
    pw = env.users["mtatest1"]
    forward_file(env, "mtatest1", f'"|id -u > {env.pub}/fwd.txt", ~/saved.mbox\n')
    [reply] = env.deliver(f"mtatest1@{HOST}")
    assert reply["status"] == 0, reply
    assert (env.pub / "fwd.txt").read_text().strip() == str(pw.pw_uid)
    saved = Path(pw.pw_dir) / "saved.mbox"
    assert saved.stat().st_uid == pw.pw_uid
    assert env.maildir("mtatest1") == []
    saved.unlink()


def test_empty_forward_means_mailbox(env: LocalEnv) -> None:
    forward_file(env, "mtatest1", "# nothing here\n\n")
    [reply] = env.deliver(f"mtatest1@{HOST}")
    assert (reply["status"], reply["reason"]) == (0, "delivered to maildir")
    assert len(env.maildir("mtatest1")) == 1


@pytest.mark.parametrize("mode", [0o664, 0o646])
def test_writable_forward_is_ignored(env: LocalEnv, mode: int, caplog: pytest.LogCaptureFixture) -> None:
    path = forward_file(env, "mtatest1", "mtatest2\n", mode=mode)
    [reply] = env.deliver(f"mtatest1@{HOST}")
    assert reply["status"] == 0
    assert (len(env.maildir("mtatest1")), len(env.maildir("mtatest2"))) == (1, 0)
    assert f"file {path} is" in caplog.text


def test_forward_owned_by_someone_else_is_ignored(env: LocalEnv, caplog: pytest.LogCaptureFixture) -> None:
    path = forward_file(env, "mtatest1", "mtatest2\n")
    other = env.users["mtatest2"]
    os.chown(path, other.pw_uid, other.pw_gid)
    env.deliver(f"mtatest1@{HOST}")
    assert (len(env.maildir("mtatest1")), len(env.maildir("mtatest2"))) == (1, 0)
    assert "bad owner uid" in caplog.text


def test_forward_symlink_is_ignored(env: LocalEnv) -> None:
    target = forward_file(env, "mtatest1", "mtatest2\n", name="real-forward")
    (Path(env.users["mtatest1"].pw_dir) / ".forward").symlink_to(target)
    env.deliver(f"mtatest1@{HOST}")
    assert (len(env.maildir("mtatest1")), len(env.maildir("mtatest2"))) == (1, 0)
    target.unlink()


def test_extension_forward_file_wins(env: LocalEnv) -> None:
    forward_file(env, "mtatest1", "mtatest2\n", name=".forward+lists")
    env.start(recipient_delimiter="+")
    env.deliver(f"mtatest1+lists@{HOST}", f"mtatest1+other@{HOST}")
    assert (len(env.maildir("mtatest1")), len(env.maildir("mtatest2"))) == (1, 1)
    (Path(env.users["mtatest1"].pw_dir) / ".forward+lists").unlink()


def test_mutual_forward_loop_ends_in_mailboxes(env: LocalEnv) -> None:
    forward_file(env, "mtatest1", "mtatest2\n")
    forward_file(env, "mtatest2", "mtatest1\n")
    [reply] = env.deliver(f"mtatest1@{HOST}")
    assert reply["status"] == 0
    # mtatest2's .forward leads back to mtatest1, whose .forward is being expanded: mailbox.
    assert (len(env.maildir("mtatest1")), len(env.maildir("mtatest2"))) == (1, 0)


def test_local_expand_forms() -> None:
    macros: dict[str, str | None] = {"home": "/home/u", "user": "u", "extension": None,
                                     "recipient_delimiter": "+"}
    assert local_expand("$home/.forward", macros, None).text == "/home/u/.forward"
    assert local_expand("${home}/x$$y", macros, None).text == "/home/u/x$y"
    assert local_expand("$(user)", macros, None).text == "u"
    assert local_expand("a${extension:{-none}}b", macros, None).text == "a-noneb"
    assert local_expand("${extension?{+$extension}:{plain}}", macros, None).text == "plain"
    expanded = local_expand("$home/.forward${recipient_delimiter}${extension}", macros, None)
    assert expanded.undefined
    with pytest.raises(ValueError):
        local_expand("${home", macros, None)
