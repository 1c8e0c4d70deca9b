"""Per-service process management: maxproc, max_use, crashes, throttling, wakeups (real masters, then units)."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest

from mta.config import load_config
from mta.master.listen import Listener
from mta.master.service import Service, exit_text, service_cfg
from mta.service_table import row_parse
from mta.skeleton_loop import STATUS, STATUS_BUSY, STATUS_IDLE
from tests.conftest import free_port, wait_for
from tests.mta.master.conftest import DAEMONS, Instance, connect, readline


def test_maxproc_honoured(instance: Instance) -> None:
    port = free_port()
    instance.configure(f"127.0.0.1:{port} inet n - n - 2 {DAEMONS}:echo\n")
    instance.start()
    first, greeting1 = connect(port)
    second, greeting2 = connect(port)
    third = socket.create_connection(("127.0.0.1", port), timeout=10)
    # Two busy processes and a client waiting: no third process is forked.
    time.sleep(0.5)
    assert len(instance.children()) == 2
    third.settimeout(0.3)
    with pytest.raises(socket.timeout):
        third.recv(100)
    instance.wait_log('has reached its process limit "2": new clients may experience noticeable delays')
    first.close()
    third.settimeout(10)
    greeting3 = readline(third)
    # The freed process serves the waiting client.
    assert greeting3.split()[0] == greeting1.split()[0]
    assert len(instance.children()) == 2
    second.close()
    third.close()


def test_max_use_and_max_idle_recycle_processes(instance: Instance) -> None:
    port = free_port()
    instance.configure(f"127.0.0.1:{port} inet n - n - 1 {DAEMONS}:echo -o max_use=2 -o max_idle=1s\n")
    instance.start()
    pids = []
    for _ in range(3):
        sock, greeting = connect(port)
        pids.append(greeting.split()[0])
        sock.close()
    assert pids[0] == pids[1] != pids[2]
    # The third process exits after a second without a client.
    wait_for(lambda: not instance.children(), timeout=5, what="the idle process to exit")
    assert "exit status" not in instance.log()


def test_crashed_child_restarted_then_throttled(instance: Instance) -> None:
    port = free_port()
    instance.configure(f"127.0.0.1:{port} inet n - n - - {DAEMONS}:echo\n", "service_throttle_time = 2s\n")
    instance.start()
    pids = []
    for how, outcome in (("exit 3", "exit status 3"), ("kill", "killed by signal 9"),
                         ("raise", "exit status 1")):
        sock, greeting = connect(port)
        pid = greeting.split()[0]
        pids.append(pid)
        sock.sendall(how.encode() + b"\n")
        assert sock.recv(100) == b""
        sock.close()
        instance.wait_log(f"mta/master[{instance.pid()}]: warning: process mta/echo pid {pid} {outcome}")
    assert len(set(pids)) == 3  # restarted each time
    log = instance.wait_log("warning: mta/echo: service throttled")
    assert "fatal: uncaught exception: RuntimeError: raised on request" in log
    assert "traceback: " in log and "daemons.py" in log
    # While throttled, a client waits; afterwards it is served.
    throttled_at = time.monotonic()
    sock, greeting = connect(port)
    assert time.monotonic() - throttled_at > 1.0
    assert greeting.endswith(" hello")
    sock.close()


def test_wakeup_and_flush_triggers(instance: Instance, tmp_path: Path) -> None:
    record = tmp_path / "record"
    pickup_record = tmp_path / "pickup-record"
    instance.configure(
        f"qmgr unix n n n 1 1 {DAEMONS}:recorder -o test_record_file={record}\n"
        f"pickup unix n n n 1? 1 {DAEMONS}:recorder -o test_record_file={pickup_record}\n")
    instance.start()
    wait_for(lambda: record.exists() and record.read_bytes().count(b"W\n") >= 2, timeout=5,
             what="two wakeups")
    # "1?": no wakeup before the first use.
    assert not pickup_record.exists()
    result = instance.mta("flush")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: b"FADI\n" in record.read_bytes(), timeout=5, what="the flush trigger")
    wait_for(lambda: pickup_record.exists() and pickup_record.read_bytes().count(b"W\n") >= 2, timeout=5,
             what="pickup's wakeups after its first use")
    # One long-lived process per trigger service.
    assert len(instance.children()) == 2


def test_unix_socket_places_and_modes(instance: Instance) -> None:
    instance.configure(f"qmgr unix n - n - 1 {DAEMONS}:echo\n"
                       f"local unix - n n - - {DAEMONS}:echo\n"
                       f"postdrop unix n - n - - postdrop\n")
    mta_postdrop_exists = (Path(__file__).parents[3] / "mta" / "postdrop.py").exists() or \
        (Path(__file__).parents[3] / "mta" / "postdrop").is_dir()
    instance.start()
    owner = os.stat(instance.queue_dir / "private").st_uid
    for path in ("public/qmgr", "private/local") + (("submit/postdrop",) if mta_postdrop_exists else ()):
        st = os.stat(instance.queue_dir / path)
        assert stat.S_ISSOCK(st.st_mode), path
        assert stat.S_IMODE(st.st_mode) == 0o666, path
        assert st.st_uid == owner, path
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(instance.queue_dir / "private" / "local"))
    assert readline(sock).endswith(" hello")
    sock.close()
    assert instance.mta("stop").returncode == 0
    assert not (instance.queue_dir / "public" / "qmgr").exists()


# -- accounting, without processes ----------------------------------------------------------


def unit_service(tmp_path: Path, master_cf: str, main_cf: str = "") -> Service:
    (tmp_path / "main.cf").write_text(main_cf)
    row = row_parse(master_cf, "master.cf", 1, "3.6")
    cfg = service_cfg(load_config(tmp_path), row)
    return Service(row, cfg, Listener(("unix", "x"), "public/x", []), now=100.0)


def test_status_reports_and_process_limit(tmp_path: Path) -> None:
    svc = unit_service(tmp_path, "echo unix n - n - 2 tests.mta.master.daemons:echo")
    svc.child_add(11)
    svc.child_add(12)
    assert (svc.idle(), svc.wants_listen(100.0)) == (2, False)
    os.write(svc.status_w, STATUS.pack(11, STATUS_BUSY) + STATUS.pack(99, STATUS_BUSY) + STATUS.pack(12, 1)[:3])
    svc.status_read(100.0)
    assert (svc.idle(), svc.children[11].busy) == (1, True)  # pid 99 is not ours; 12's record is partial
    os.write(svc.status_w, STATUS.pack(12, STATUS_BUSY)[3:])
    svc.status_read(100.0)
    assert (svc.idle(), svc.below_limit(), svc.wants_listen(100.0)) == (0, False, False)
    os.write(svc.status_w, STATUS.pack(11, STATUS_IDLE))
    svc.status_read(100.0)
    assert svc.idle() == 1
    svc.close()


def test_throttle_after_three_failures(tmp_path: Path) -> None:
    svc = unit_service(tmp_path, "echo unix n - n - - tests.mta.master.daemons:echo",
                       "service_throttle_time = 5s\n")
    exit_1, killed = 1 << 8, 9
    assert (exit_text(0), exit_text(exit_1), exit_text(killed)) == \
        (None, "exit status 1", "killed by signal 9")
    for pid in (1, 2, 3, 4, 5):
        svc.child_add(pid)
    svc.child_exit(1, 0, 100.0)
    svc.child_exit(2, exit_1, 100.0)
    svc.child_exit(3, killed, 105.0)
    svc.child_exit(4, exit_1, 111.0)  # the first failure is older than 10 s: still 2 in the window
    assert not svc.throttled(111.0)
    svc.child_exit(5, exit_1, 112.0)
    assert svc.throttled(112.0) and svc.throttled(116.9) and not svc.throttled(117.0)
    assert not svc.wants_listen(113.0) and svc.deadline(113.0) == 117.0
    assert svc.children == {} and svc.idle() == 0
    svc.close()


def test_wakeup_timer(tmp_path: Path) -> None:
    always = unit_service(tmp_path, "qmgr unix n - n 300 1 qmgr")
    assert always.wakeup_next == 100.0 and always.wants_process(100.0)  # woken at once, as Postfix does
    sent: list[bool] = []
    always.listener.wakeup = lambda: sent.append(True) or True  # type: ignore[method-assign]
    always.wakeup_due(100.0)
    assert sent == [True] and always.wakeup_next == 400.0
    conditional = unit_service(tmp_path, "flush unix n - n 1000? 0 qmgr")
    assert conditional.wakeup_next is None
    conditional.child_add(7)
    os.write(conditional.status_w, STATUS.pack(7, STATUS_BUSY))
    conditional.status_read(150.0)
    assert conditional.wakeup_next == 1150.0
    always.close()
    conditional.close()
