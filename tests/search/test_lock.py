"""One driver per study (`nas_dil.search.lock`): the lock row on SQLite and PostgreSQL, and two
real `nas-dil search` processes on one output folder."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from nas_dil.search.lock import TABLE, DriverLock, StudyLocked
from tests.search.conftest import RayCluster, run_cli, sleep_study, start_cli, wait_for
from tests.search.test_faults import check_consistent, load, states


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A live process of this host that is not us: a driver that still runs."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield p.pid
    finally:
        p.kill()
        p.wait()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return str(request.getfixturevalue("postgres_url"))


def other(url: str, name: str = "s", *, host: str | None = None, pid: int | None = None,
          **kw: float) -> DriverLock:
    """A lock as another driver (another pid, maybe another host) would hold it."""
    lock = DriverLock(url, name, **kw)
    lock.host = host or lock.host
    lock.pid = pid or lock.pid
    return lock


def test_a_live_driver_keeps_its_study(url: str, sleeper: int) -> None:
    first = other(url, pid=sleeper)
    assert first.acquire() is None
    try:
        second = DriverLock(url, "s")
        with pytest.raises(StudyLocked, match=rf"being run by another driver \(host "
                                              rf"{first.host}, pid {sleeper}, since "):
            second.acquire()
        remote = other(url, host="elsewhere.example")
        with pytest.raises(StudyLocked):  # a fresh heartbeat from any host holds it
            remote.acquire()
        other_study = DriverLock(url, "t")  # one lock per study, not per database
        assert other_study.acquire() is None
        other_study.release()
        h = DriverLock(url, "s").holder()
        assert h is not None and h.pid == sleeper
    finally:
        first.release()
    assert DriverLock(url, "s").holder() is None  # released: the row is gone
    again = DriverLock(url, "s")
    assert again.acquire() is None
    again.release()


def test_a_crashed_driver_on_this_host_is_taken_over_at_once(url: str) -> None:
    crashed = other(url, pid=_dead_pid())
    crashed.acquire()
    crashed._stop.set()  # as if killed: no release, no more heartbeats
    lock = DriverLock(url, "s")
    taken = lock.acquire()
    try:
        assert taken is not None and "its process is gone" in taken
        assert not crashed.beat() and crashed.lost  # the crashed one would know it lost it
    finally:
        lock.release()
        crashed._dispose()


def test_another_hosts_driver_is_taken_over_after_the_timeout(url: str) -> None:
    remote = other(url, host="elsewhere.example", heartbeat_s=3600)
    remote.acquire()
    try:
        fast = DriverLock(url, "s", stale_s=0.5)
        with pytest.raises(StudyLocked, match=r"host elsewhere\.example"):
            DriverLock(url, "s").acquire()
        time.sleep(1.0)  # no heartbeat for longer than fast.stale_s
        taken = fast.acquire()
        assert taken is not None and "no heartbeat for" in taken
        assert DriverLock(url, "s").holder().token == fast.token  # type: ignore[union-attr]
        fast.release()
    finally:
        remote._stop.set()
        remote._dispose()


def test_heartbeat_refreshes_the_row(url: str) -> None:
    lock = DriverLock(url, "s", heartbeat_s=0.05)
    lock.acquire()
    try:
        first = lock.holder().heartbeat  # type: ignore[union-attr]
        wait_for(lambda: lock.holder().heartbeat > first, 30)  # type: ignore[union-attr]
    finally:
        lock.release()


def test_a_read_only_database_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    sqlite3.connect(db).close()
    db.chmod(0o444)
    try:
        if db.open("ab").writable():  # root writes read-only files: nothing to test
            pytest.skip("running as root: a read-only file is writable")
    except PermissionError:
        pass
    with pytest.raises(Exception, match="cannot take the driver lock") as e:
        DriverLock(f"sqlite:///{db}", "s").acquire()
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_second_driver_on_a_running_study_is_refused(ray_cluster: RayCluster,
                                                     tmp_path: Path) -> None:
    cfg = sleep_study(tmp_path / "s.toml", n_trials=6, sleep_s=1.5, in_flight=2)
    out = tmp_path / "out"
    args = (str(cfg), "--out", str(out), "--address", ray_cluster.address, "--no-report")
    first = start_cli(*args)
    try:
        wait_for(lambda: states(out / "study.db")["RUNNING"] >= 1, 120)
        second = run_cli(*args)
        running = states(out / "study.db")
        assert first.poll() is None  # the first still runs
        _, err = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2 and second.stdout == ""
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert f"pid {first.pid}, since " in lines[0] and "being run by another driver" in lines[0]
    assert running["RUNNING"] >= 1
    assert first.returncode == 0, err
    study = load(out)
    check_consistent(study, 6)
    assert not [t for t in study.trials if t.state == TrialState.FAIL]  # no orphans, no retrain
    assert sorted(p.name for p in (out).iterdir() if p.name.startswith("study.db")) == [
        "study.db"]
    con = sqlite3.connect(out / "study.db")
    try:
        assert con.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0] == 0  # released
    finally:
        con.close()


def test_drivers_starting_together_one_wins(url: str, sleeper: int) -> None:
    """Several drivers on a fresh database at once (the table is created concurrently too)."""
    import threading

    locks = [other(url, pid=sleeper) for _ in range(4)]
    results: list[str] = []
    barrier = threading.Barrier(len(locks))

    def go(lock: DriverLock) -> None:
        barrier.wait()
        try:
            lock.acquire()
            results.append("won")
        except StudyLocked:
            results.append("refused")
        except Exception as e:  # anything else is the bug this test looks for
            results.append(f"error: {e}")

    threads = [threading.Thread(target=go, args=(lk,)) for lk in locks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert sorted(results) == ["refused"] * 3 + ["won"], results
    finally:
        for lk in locks:
            lk.release()
