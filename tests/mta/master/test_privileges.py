"""chroot and privilege drop as the master.cf columns say, and what a child inherits."""

from __future__ import annotations

import json
import os
import pwd

from tests.conftest import free_port
from tests.mta.master.conftest import DAEMONS, Instance, readline


def whoami(port: int) -> dict[str, object]:
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return dict(json.loads(readline(sock)))


def test_chroot_and_unpriv_columns(instance: Instance) -> None:
    jailed, plain = free_port(), free_port()
    instance.configure(f"127.0.0.1:{jailed} inet n - y - - {DAEMONS}:whoami\n"
                       f"127.0.0.1:{plain} inet n n n - - {DAEMONS}:whoami\n")
    instance.start()
    postfix = pwd.getpwnam("postfix")

    report = whoami(jailed)
    assert (report["uid"], report["euid"]) == (postfix.pw_uid, postfix.pw_uid)
    assert (report["gid"], report["egid"]) == (postfix.pw_gid, postfix.pw_gid)
    assert report["groups"] == []
    assert (report["queue_dir"], report["cwd"], report["sees_pid_dir"]) == ("/", "/", True)
    assert (report["pre_init_uid"], report["post_init_uid"]) == (0, postfix.pw_uid)
    assert os.readlink(f"/proc/{report['pid']}/root") == str(instance.queue_dir)

    report = whoami(plain)
    assert (report["uid"], report["queue_dir"]) == (0, str(instance.queue_dir))
    assert os.readlink(f"/proc/{report['pid']}/root") == "/"
    assert report["cwd"] == str(instance.queue_dir)


def test_child_inherits_only_its_descriptors(instance: Instance) -> None:
    port = free_port()
    instance.configure(f"127.0.0.1:{port} inet n n n - - {DAEMONS}:whoami\n")
    master = instance.start()
    report = whoami(port)
    pid = report["pid"]
    targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert targets[:3] == ["/dev/null"] * 3
    assert str(instance.maillog) in targets
    assert not any("master.pid" in target for target in targets)
    # The master holds more (pid file, self-pipe, status pipes); the child only its own.
    master_targets = [os.readlink(f"/proc/{master}/fd/{fd}") for fd in os.listdir(f"/proc/{master}/fd")]
    assert any(target.endswith("master.pid") for target in master_targets)
    assert len(targets) < len(master_targets) + 4
    # The environment is import_environment's (LANG=C is set by it) plus MAIL_CONFIG.
    imported = ("MAIL_DEBUG", "MAIL_LOGTAG", "TZ", "XAUTHORITY", "DISPLAY", "POSTLOG_SERVICE",
                "POSTLOG_HOSTNAME")
    expected = {name: os.environ[name] for name in imported if name in os.environ}
    assert report["environ"] == {**expected, "LANG": "C", "MAIL_CONFIG": str(instance.config_dir)}
