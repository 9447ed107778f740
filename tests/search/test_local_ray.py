"""A local Ray's processes end with it, orphans included (`cluster._subreaper`, `_end_left`):
the mechanism on plain processes; tests/search/test_faults.py runs it on a real Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from nas_dil.search import cluster
from tests.processes import ppid
from tests.search.conftest import wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="PR_SET_CHILD_SUBREAPER is Linux's")


def _orphans(*names: str) -> list[int]:
    """Start one `sleep 60` per name, run as that name (``exec -a``), by a shell that exits at
    once: each is orphaned as soon as it runs. Their pids."""
    script = "".join(f"(exec -a '{n}' sleep 60 >/dev/null 2>&1) & echo $!; " for n in names)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    pids = [int(x) for x in out.stdout.split()]
    wait_for(lambda: all(ppid(p) == os.getpid() and _cmd(p).startswith(n.encode())
                         for p, n in zip(pids, names, strict=True)), 10)
    return pids


def _cmd(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_the_flag_is_set_and_restored() -> None:
    was = cluster._subreaper(True)
    try:
        assert cluster._subreaper(True) is True
    finally:
        cluster._subreaper(was)
    assert cluster._subreaper(was) is was


def test_an_orphan_stays_below_and_only_rays_are_ended() -> None:
    local = cluster._Local()  # as a local start: subreaper on, what is below now remembered
    try:
        # the shell has exited: its children are this process's now, not init's
        ray_pid, other = _orphans("ray::IDLE", "not-ray")
        assert ray_pid in cluster._descendants() and other in cluster._descendants()
        assert cluster._is_ray(ray_pid) and not cluster._is_ray(other)
        cluster._end_left(local, ray_only=True)
        assert ppid(ray_pid) is None  # ended and reaped: no zombie left
        assert ppid(other) == os.getpid()  # not Ray's: left alone
    finally:
        cluster._subreaper(local.was_subreaper)
        os.kill(other, signal.SIGKILL)
        os.waitpid(other, 0)


def test_a_failed_start_ends_everything_it_left() -> None:
    local = cluster._Local()
    pids = _orphans("a", "b")
    t = time.monotonic()
    cluster._end_left(local, ray_only=False)
    assert time.monotonic() - t < 2.0
    assert [ppid(p) for p in pids] == [None, None]
    assert cluster._subreaper(False) is local.was_subreaper  # restored by _end_left
