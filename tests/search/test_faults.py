"""Faults with real processes on a local multi-node Ray cluster (127.0.0.1): a worker killed
mid-trial, the driver SIGKILLed and rerun, a node removed, Ctrl-C, a diverging trial."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from nas_dil.search import run_search
from tests.processes import MARK, alive, descendants, marked_processes, ppid
from tests.search.conftest import (
    REPO,
    RayCluster,
    run_cli,
    sleep_study,
    start_cli,
    trial_workers,
    wait_for,
)

pytestmark = pytest.mark.slow


def states(db: Path) -> Counter[str]:
    """Trial states straight from the SQLite file (read-only, while a driver writes)."""
    if not db.exists():
        return Counter()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT state FROM trials").fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return Counter()
    finally:
        con.close()
    return Counter(r[0] for r in rows)


def load(out: Path, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


def check_consistent(study: optuna.Study, n_trials: int) -> None:
    """No trial left RUNNING, n_trials counted, no candidate key trained to COMPLETE twice."""
    trials = study.trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    counted = [t for t in trials if t.state.is_finished() and not t.user_attrs.get("requeue")
               and not t.user_attrs.get("infeasible")]
    assert len(counted) == n_trials
    fresh = [t.user_attrs["key"] for t in trials if t.state == TrialState.COMPLETE
             and t.user_attrs.get("reused_from") is None]
    assert max(Counter(fresh).values()) == 1
    for t in trials:
        if t.user_attrs.get("requeue"):  # each requeued trial was enqueued again
            assert t.state == TrialState.FAIL
            assert any(u.user_attrs.get("rerun_of") == t.number for u in trials)


def test_killed_worker_is_retried_then_fails(ray_cluster: RayCluster, tmp_path: Path) -> None:
    cfg = sleep_study(tmp_path / "s.toml", space="exponential", n_trials=3, sleep_s=2.5,
                      evals=2, in_flight=1, retries=1)
    out = tmp_path / "out"
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.update(s=run_search(
        cfg, out=out, address=ray_cluster.address, progress=False)))
    t.start()
    killed: list[int] = []
    try:
        for _ in range(3):  # trial 0: twice (retry, then FAIL); trial 1: once (retry, COMPLETE)
            pid = wait_for(lambda: [p for p in trial_workers() if p not in killed], 60)[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    finally:
        t.join(120)
    assert not t.is_alive()
    s = result["s"]
    assert s.done == 3
    study = load(out)
    first, second, third = study.trials[:3]
    assert first.state == TrialState.FAIL and first.user_attrs["retries"] == 1
    assert first.user_attrs["fail_reason"].startswith("worker lost 2 time(s), no retry left")
    assert second.state == TrialState.COMPLETE and second.user_attrs["retries"] == 1
    assert second.user_attrs["retry_reasons"] and third.user_attrs["retries"] == 0


def test_driver_sigkill_then_rerun(ray_cluster: RayCluster, tmp_path: Path) -> None:
    cfg = sleep_study(tmp_path / "s.toml", n_trials=8, sleep_s=1.0, in_flight=2)
    out = tmp_path / "out"
    args = (str(cfg), "--out", str(out), "--address", ray_cluster.address, "--no-report")
    proc = start_cli(*args)
    try:
        wait_for(lambda: states(out / "study.db")["COMPLETE"] >= 2
                 and states(out / "study.db")["RUNNING"] >= 1, 120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {t.number: (t.state, t.values) for t in load(out).trials
              if t.state == TrialState.COMPLETE}
    orphans = [t.number for t in load(out).trials if t.state == TrialState.RUNNING]
    assert orphans
    again = run_cli(*args)  # the same command continues
    assert again.returncode == 0, again.stderr
    study = load(out)
    check_consistent(study, 8)
    for number, (state, values) in before.items():  # completed trials kept as they were
        assert study.trials[number].state == state and study.trials[number].values == values
    for n in orphans:
        t = study.trials[n]
        assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"].startswith("orphaned")
    assert "marked FAIL and enqueued again" in again.stderr


def test_ctrl_c_stops_cleanly_and_resume_finishes(ray_cluster: RayCluster,
                                                  tmp_path: Path) -> None:
    cfg = sleep_study(tmp_path / "s.toml", n_trials=6, sleep_s=3.0, in_flight=2)
    out = tmp_path / "out"
    args = (str(cfg), "--out", str(out), "--address", ray_cluster.address, "--no-report")
    proc = start_cli(*args)
    try:
        wait_for(lambda: states(out / "study.db")["RUNNING"] >= 2, 120)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    study = load(out)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    stopped = [t for t in study.trials if t.user_attrs.get("requeue")]
    assert len(stopped) >= 2 and all(
        t.user_attrs["fail_reason"].startswith("interrupted") for t in stopped)
    for t in stopped:  # the ask-time attrs a RUNNING trial had not stored yet are kept
        assert {"candidate", "key", "trial_config", "rf"} <= set(t.user_attrs)
    assert len([t for t in study.trials if t.state == TrialState.WAITING]) >= len(stopped)
    again = run_cli(*args, "--resume")
    assert again.returncode == 0, again.stderr
    check_consistent(load(out), 6)


def test_removed_node_trials_rerun_elsewhere(tmp_path: Path) -> None:
    cluster = RayCluster(nodes=2, cpus=1)
    try:
        cfg = sleep_study(tmp_path / "s.toml", n_trials=3, sleep_s=4.0, evals=2, in_flight=2)
        out = tmp_path / "out"
        proc = start_cli(str(cfg), "--out", str(out), "--address", cluster.address,
                         "--no-report", "--json")
        try:
            victim = cluster.nodes[1]
            raylet = victim.all_processes["raylet"][0].process.pid

            def on_victim() -> bool:
                return any(ppid(p) == raylet for p in trial_workers())

            wait_for(on_victim, 120)
            cluster.cluster.remove_node(victim)
            stdout, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        summary = json.loads(stdout)  # --json: the summary contract
        assert summary["done"] == 3 and summary["report_skipped"] == "--no-report"
        assert summary["front"] and summary["hypervolume"] > 0 and not summary["interrupted"]
        study = load(out)
        check_consistent(study, 3)
        moved = [t for t in study.trials if t.user_attrs.get("retries", 0) >= 1]
        assert moved, [t.user_attrs.get("retries") for t in study.trials]
        for t in moved:
            assert t.state == TrialState.COMPLETE
            assert t.user_attrs["node_id"] == cluster.nodes[0].node_id != victim.node_id
    finally:
        cluster.shutdown()


def test_diverging_training_fails_with_reason(ray_cluster: RayCluster, tmp_path: Path) -> None:
    cfg = tmp_path / "d.toml"
    cfg.write_text("""
name = "d"
space = "exponential"
n_trials = 2
[constraints]
allow_dead_taps = true  # 16-px crops: rates >= 2 are dead; not what this tests
[parallel]
max_in_flight = 2
[data]
image_size = 16
n_train = 8
n_val = 4
[train]
steps = 4
eval_every_steps = 2
batch_size = 4
lr = 1e12
threads = 1
""")
    s = run_search(cfg, out=tmp_path / "out", address=ray_cluster.address, progress=False)
    assert s.done == 2 and s.failed == 2 - s.reused
    study = load(tmp_path / "out", "d")
    reasons = [t.user_attrs["fail_reason"] for t in study.trials
               if t.state == TrialState.FAIL]
    assert reasons and all(r.startswith("diverged: loss") for r in reasons)


# -- issue 23 items 7 and 12: Ray's start failing; SIGTERM at any point -------------------------

def _search(*args: str, mark: str, code: str | None = None) -> subprocess.Popen[str]:
    """`nas-dil search ARGS` as a real process on a local Ray of its own (the default), every
    process below it carrying ``mark`` (tests.processes); ``code`` runs first in it."""
    pre = code or ""
    return subprocess.Popen(
        [sys.executable, "-c", f"{pre}\nimport sys\nfrom nas_dil.cli import main\n"
                               "sys.exit(main(['search', *sys.argv[1:]]))", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, MARK: mark})


def _none_left(mark: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while (left := marked_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert not left, left
    finally:
        for pid in left:
            os.kill(pid, signal.SIGKILL)


# Ray (2.x) waits 30 s for its raylet to register, then raises a bare Exception with this text;
# the raylet lookup is where it gives up, so it fails there at once, with the real GCS and
# raylet processes already started
_START_TIMES_OUT = """
import ray._private.services as services
def get_node(*a, **k):
    raise Exception("The current node timed out during startup. This could happen because "
                    "some of the raylet failed to startup or the GCS has become overloaded.")
services.get_node = get_node
"""


def test_ray_start_timing_out_is_one_line(tmp_path: Path) -> None:
    """Issue 23 item 7: a 40-line traceback on a loaded machine; now one line naming the
    cause and what to try, exit 2, nothing written, no process left."""
    cfg = sleep_study(tmp_path / "s.toml")
    out = tmp_path / "out"
    mark = secrets.token_hex(8)
    proc = _search(str(cfg), "--out", str(out), mark=mark, code=_START_TIMES_OUT)
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [ln for ln in err.strip().splitlines() if "authentication" not in ln]
    assert proc.returncode == 2 and len(lines) == 1, err
    assert lines[0].startswith("nas-dil search: error: Ray could not start"), err
    assert "timed out during startup" in lines[0] and "--address" in lines[0], err
    assert not (out / "study.db").exists()
    _none_left(mark)


FROZEN_STUDY = """
name = "f"
space = "head_os8"
n_trials = 4
seed = 0
[parallel]
max_in_flight = 1
cpus = 1
[trial]
kind = "train"
[arch]
backbone = "resnet18"
target = "head"
[data]
source = "synthetic"
image_size = 64
n_train = 256
n_val = 32
[train]
steps = 2
freeze = "backbone"
freeze_views = 2
[early_stop]
enabled = false
"""


@pytest.mark.parametrize("moment", ["ray starting", "raylet started", "cache build",
                                    "mid-trial"])
def test_sigterm_at_any_point_stops_within_3_s_and_leaves_no_process(tmp_path: Path,
                                                                   moment: str) -> None:
    """Issue 23 item 12: SIGTERM before the first trial printed Ray's fatal-signal stack
    dump; once trials ran it took 6.9 s, past a common 5 s kill grace. Now, at every moment:
    a "stopping" line, exit 130 within 3 s, no process of the search left."""
    out = tmp_path / "out"
    cache = Path(os.environ["NAS_DIL_CACHE"]) / "features"
    if moment == "cache build":
        cfg = tmp_path / "f.toml"
        cfg.write_text(FROZEN_STUDY)
    else:
        cfg = sleep_study(tmp_path / "s.toml", n_trials=6, sleep_s=30.0, in_flight=2)
    mark = secrets.token_hex(8)
    ready = {
        "ray starting": lambda: any(b"gcs_server" in c for c in marked_processes(mark).values()),
        "raylet started": lambda: any(b"raylet" in c for c in marked_processes(mark).values()),
        "cache build": lambda: any(cache.glob(".build-*/*.json")),
        "mid-trial": lambda: states(out / "study.db")["RUNNING"] >= 2,
    }[moment]
    proc = _search(str(cfg), "--out", str(out), "--no-report", mark=mark)
    try:
        wait_for(lambda: ready() or proc.poll() is not None, 240, every=0.02)
        assert proc.poll() is None, proc.communicate()[1]
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "stopping" in err and "interrupted" in err, err
    assert "SIGTERM received" not in err and "Traceback" not in err, err
    assert took <= 3.0, (took, err)
    _none_left(mark)
    assert not any(cache.glob("**/*.tmp-*"))  # the shard being written went with the build


# The CI failure this reproduces (a fresh clone, load ~2): SIGTERM as the raylet started left
# its dashboard agent, still under its start-up command line, alive after 10 s. The agent
# shares the raylet's fate only once its start is done; a raylet killed before that (its 1 s
# grace at ray.shutdown run out) orphans it. This agent never shares that fate, so the test
# does not depend on the timing.
_AGENT_OUTLIVES_RAYLET = """
import ctypes, os, sys, threading, time
if any(a.endswith("dashboard/agent.py") for a in sys.argv):
    ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG 0: no death signal
    def _outlive():
        raylet = int(os.environ["RAY_RAYLET_PID"])
        while os.getppid() == raylet:
            time.sleep(0.05)
        time.sleep(120)
    threading.Thread(target=_outlive).start()
"""

_KILL_RAYLET_FIRST = """
import time
import ray
from nas_dil.search import cluster
from tests.processes import alive, descendants
connected = cluster.connect("local", num_cpus=1)
raylet = ray._private.worker._global_node.all_processes["raylet"][0].process
def agent():
    return next((pid for pid, cmd in descendants(raylet.pid).items()
                 if b"dashboard/agent.py" in cmd or b"DashboardAgent" in cmd), None)
deadline = time.monotonic() + 60
while (pid := agent()) is None and time.monotonic() < deadline:
    time.sleep(0.05)
raylet.kill()
raylet.wait()
time.sleep(1.0)
print("agent", pid, "outlived its raylet" if alive([pid]) else "ended with it", flush=True)
cluster.disconnect(connected)
"""


def test_a_ray_agent_orphaned_by_its_raylet_ends_with_the_local_ray(tmp_path: Path) -> None:
    """The raylet dies first (as when ray.shutdown's 1 s grace runs out on a loaded machine)
    and its agent lives on: the local Ray's stop still leaves no process of it behind."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_AGENT_OUTLIVES_RAYLET)
    mark = secrets.token_hex(8)
    path = os.pathsep.join(x for x in (str(site), os.environ.get("PYTHONPATH")) if x)
    proc = subprocess.run([sys.executable, "-c", _KILL_RAYLET_FIRST], capture_output=True,
                          text=True, cwd=REPO, timeout=120,
                          env={**os.environ, MARK: mark, "PYTHONPATH": path})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "outlived its raylet" in proc.stdout, (proc.stdout, proc.stderr[-2000:])
    agent = next(int(x.split()[1]) for x in proc.stdout.splitlines() if x.startswith("agent "))
    try:  # by pid too: a process renamed by setproctitle (`ray::DashboardAgent`) can have its
        # environment overwritten, the mark with it (seen: such an agent passed unseen)
        wait_for(lambda: not alive([agent]), 2.0)
    finally:
        if alive([agent]):
            os.kill(agent, signal.SIGKILL)
    _none_left(mark, within=2.0)
    assert "Token authentication is enabled" not in proc.stderr  # Ray's notice, not news


def _shard_records(fc: Path) -> int:
    """Finished shards of the build under ``fc``: their records (the codec's is not one)."""
    return sum(p.name != "codec.json" for p in fc.glob(".build-*/*.json"))


def test_a_search_killed_during_its_cache_build_resumes_the_build(
        ray_cluster: RayCluster, tmp_path: Path) -> None:
    """Issue 22 item 3: ``kill -9`` of a search building its feature cache, then the same
    command with ``--resume``: the study is there (created before the build), the build
    keeps the killed one's finished shards and builds only the rest, no temporary file is
    left, the trials run."""
    fc = tmp_path / "fc"
    cfg = tmp_path / "f.toml"
    cfg.write_text(f'feature_cache = "{fc}"\n' + FROZEN_STUDY)
    out = tmp_path / "out"
    args = (str(cfg), "--out", str(out), "--address", ray_cluster.address, "--no-report")
    proc = start_cli(*args)
    try:  # 2 views of 256 images in shards of 16, and 32 val images in shards of 8: 36
        wait_for(lambda: _shard_records(fc) >= 3 or proc.poll() is not None, 300, every=0.02)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = _shard_records(fc)
    assert 3 <= done < 36
    assert (out / "study.db").exists()  # the study was created before the build
    rerun = start_cli(*args, "--resume", "--json")
    stdout, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    s = json.loads(stdout)
    [c] = s["feature_cache"]["caches"]
    assert c["built"] and c["shards"] == 36 and c["shards_kept"] >= done
    assert c["shards_built"] + c["shards_kept"] == 36
    assert c["shards_built"] < 36 - 2  # fewer rebuilt than were done
    assert "resuming a stopped build" in err
    assert s["done"] == 4 and s["failed"] == 0
    assert not any(fc.rglob("*.tmp-*")) and not any(fc.glob(".build-*"))


def test_a_killed_ray_workers_loader_processes_end_with_it(ray_cluster: RayCluster,
                                                           tmp_path: Path) -> None:
    """Issue 23 item 16, under Ray: a trial on folder data with cpus = 2 decodes in a
    DataLoader worker of a forkserver below the Ray worker; SIGKILL of the Ray worker left
    both alive (re-parented to init). Now they end with it."""
    from tests.data._builders import make_folder

    data = make_folder(tmp_path / "data", n=12, sizes=[(48, 64)])
    cfg = tmp_path / "k.toml"
    cfg.write_text(f"""
name = "k"
space = "exponential"
n_trials = 1
[parallel]
max_in_flight = 1
cpus = 2
max_retries = 0
[trial]
kind = "train"
[data]
source = "{data}"
image_size = 32
[train]
seconds = 300
batch_size = 2
[constraints]
allow_dead_taps = true
[early_stop]
enabled = false
""")
    proc = start_cli(str(cfg), "--out", str(tmp_path / "out"), "--address",
                     ray_cluster.address, "--no-report")
    try:
        def loading() -> tuple[int, dict[int, bytes]] | None:
            for pid in trial_workers():
                below = descendants(pid)
                if sum(b"forkserver" in c for c in below.values()) >= 2:  # + its worker
                    return pid, below
            return None

        worker, below = wait_for(loading, 180)
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: not alive(below), 5)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
