"""Seed noise and confirmation through the CLI (sleep trials on a local Ray cluster): each
baseline trained with ``[noise] baseline_seeds`` looks, the pooled seed std in ``--json``, the
summary and the status line, the front confirmed over ``[confirm] seeds`` after ``n_trials``
(counted apart, resumable), and export refusing an unconfirmed pick."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from nas_dil.search.looks import merge_looks, pooled_noise
from nas_dil.search.records import Objective, StoredTrial
from tests.search.conftest import REPO, RayCluster, run_cli, sleep_study, start_cli, wait_for

pytestmark = pytest.mark.slow

BASELINES = '[[baselines]]\nname = "hdc"\n[[baselines]]\nname = "constant2"\n'
OBJS = [Objective("miou", "maximize"), Objective("rf", "maximize"),
        Objective("gflops", "minimize")]


def load(out: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="s", storage=f"sqlite:///{out / 'study.db'}").trials


def stored(out: Path) -> list[StoredTrial]:
    return [StoredTrial.from_frozen(t) for t in load(out)]


def search_json(cfg: Path, out: Path, cluster: RayCluster, *extra: str) -> dict[str, Any]:
    r = run_cli(str(cfg), "--out", str(out), "--address", cluster.address, "--no-report",
                "--json", *extra)
    assert r.returncode == 0, r.stderr[-2000:]
    return {**json.loads(r.stdout), "stderr": r.stderr}


def export(src: Path, pick: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nas_dil", "export", str(src), "--pick", pick,
                           "--out", str(out), *extra], capture_output=True, text=True,
                          timeout=240, cwd=REPO)


def test_baselines_get_seeds_noise_is_pooled_and_the_front_is_confirmed(
        ray_cluster: RayCluster, tmp_path: Path) -> None:
    """The defaults (baseline_seeds 3, confirm seeds 3): 2 baselines x 3 looks within the 8
    trials, the noise pooled over them, then every front candidate trained up to 3 seeds."""
    cfg = sleep_study(tmp_path / "s.toml", n_trials=8, sleep_s=0.05, evals=2, seeds="",
                      extra=BASELINES)
    out = tmp_path / "out"
    s = search_json(cfg, out, ray_cluster)
    trials = stored(out)
    base = [t for t in trials if t.record.baseline is not None]
    assert sorted((t.record.baseline, t.record.look or 0, t.record.seed) for t in base) == [
        ("constant2", 0, 0), ("constant2", 1, 1), ("constant2", 2, 2),
        ("hdc", 0, 0), ("hdc", 1, 1), ("hdc", 2, 2)]
    for t in base:  # each look groups under its look-0 key
        first = next(u for u in base if u.record.baseline == t.record.baseline
                     and not u.record.look)
        assert t.record.look_of == (first.record.key if t.record.look else None)
    confirm = [t for t in trials if t.record.confirm]
    main = [t for t in trials if not t.record.confirm]
    assert s["done"] == 8 == len(main) and s["confirmed"] == len(confirm) > 0
    assert s["repeats"] == 0  # a baseline's seeds and confirmation looks are not repeats
    assert min(t.number for t in confirm) > max(t.number for t in main)  # after n_trials
    assert s["confirm_seeds"] == 3 and s["unconfirmed"] == []
    assert s["confirm_cap"] is not None and len(confirm) <= s["confirm_cap"]
    results = merge_looks([t for t in trials if t.state == "complete"], OBJS)
    front = [r for r in results if r.number in s["front"]]
    assert front and all(r.n_looks >= 3 for r in front)
    # the noise: the pooled std of every candidate with >= 2 looks, by hand
    groups = [[t.values[0] for t in r.looks if t.values] for r in results if r.n_looks > 1]
    ss = sum(sum((y - sum(g) / len(g)) ** 2 for y in g) for g in groups)
    dof = sum(len(g) - 1 for g in groups)
    assert s["noise"]["dof"] == dof >= 4 and s["noise"]["n_candidates"] == len(groups)
    assert s["noise"]["std"] == pytest.approx((ss / dof) ** 0.5) and s["noise"]["std"] > 0
    assert pooled_noise(results) is not None
    assert "confirm 1/" in s["stderr"] and "noise ±" in s["stderr"]
    # the same command again: nothing left to do; the summary names the noise
    again = run_cli(str(cfg), "--out", str(out), "--address", ray_cluster.address,
                    "--no-report")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"seed noise: mIoU std {s['noise']['std']:.4f}" in again.stdout
    assert "confirmation: " in again.stdout and "unconfirmed" not in again.stdout
    assert len(load(out)) == len(trials)


def test_one_seed_says_noise_unknown_and_confirm_0_is_off(ray_cluster: RayCluster,
                                                           tmp_path: Path) -> None:
    cfg = sleep_study(tmp_path / "s.toml", n_trials=4, sleep_s=0.02, evals=2,
                      seeds="[noise]\nbaseline_seeds = 1\n", extra=BASELINES)
    out = tmp_path / "out"
    s = search_json(cfg, out, ray_cluster, "--confirm", "0")
    assert s["noise"] is None and s["confirmed"] == 0 and s["confirm_seeds"] == 0
    assert len(load(out)) == 4 and "noise ±" not in s["stderr"]
    r = run_cli(str(cfg), "--out", str(out), "--address", ray_cluster.address, "--no-report",
                "--confirm", "0")
    assert "seed noise: unknown (no candidate trained with 2 seeds or more)" in r.stdout
    bad = run_cli(str(cfg), "--out", str(out), "--confirm", "-1")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "nas-dil search: error: argument --confirm: -1: expected an integer in [0, 100]"]


THREE = """
name = "three"
depth = 3
kernel = [3]
output_stride = [8]
width = [8, 16, 32]
[rates]
rule = "exponential"
base = [2]
levels = 3
leading = [0]
trailing = [0]
"""


def test_duplicates_are_no_looks_confirmation_trains_seeds_1_and_2(ray_cluster: RayCluster,
                                                                    tmp_path: Path) -> None:
    """A 3-candidate space and the random sampler (seed 0) ask two candidates twice before
    the third: two duplicates answered from storage. They are no looks of their own: the
    confirmation trains looks 1 and 2 (seeds 1 and 2; with the duplicates counted it trained
    looks 2 and 3), and the front is each candidate once, at the mean of its three looks."""
    (tmp_path / "three.toml").write_text(THREE)
    cfg = sleep_study(tmp_path / "s.toml", space="three.toml", n_trials=4, sleep_s=0.01,
                      evals=2, in_flight=1,
                      seeds="[noise]\nbaseline_seeds = 1\n[confirm]\nseeds = 3\n",
                      extra='[sampler]\nname = "random"\n')
    out = tmp_path / "out"
    s = search_json(cfg, out, ray_cluster)
    trials = stored(out)
    dups = [t for t in trials if t.record.reused_from is not None]
    assert s["reused"] == len(dups) >= 1
    results = merge_looks([t for t in trials if t.state == "complete"], OBJS)
    assert not [r for r in results if r.record.reused_from is not None]
    front = [r for r in results if r.number in s["front"]]
    assert front and {r.number for r in front} == set(s["front"])
    for r in front:
        assert sorted(t.record.look or 0 for t in r.looks) == [0, 1, 2]
        assert sorted(t.record.seed for t in r.looks) == [0, 1, 2]


def test_a_killed_driver_resumes_confirmation(ray_cluster: RayCluster, tmp_path: Path) -> None:
    cfg = sleep_study(tmp_path / "s.toml", n_trials=4, sleep_s=1.0, evals=2,
                      seeds="[noise]\nbaseline_seeds = 1\n[confirm]\nseeds = 3\n")
    out = tmp_path / "out"
    args = (str(cfg), "--out", str(out), "--address", ray_cluster.address, "--no-report")

    def confirming() -> bool:
        try:
            return any(t.state == TrialState.RUNNING and t.user_attrs.get("confirm")
                       for t in load(out))
        except Exception:  # the study is not created yet
            return False

    proc = start_cli(*args)
    try:
        wait_for(confirming, 120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    orphans = [t.number for t in load(out) if t.state == TrialState.RUNNING]
    assert orphans
    s = search_json(cfg, out, ray_cluster)  # the same command finishes the confirmation
    trials = stored(out)
    assert s["done"] == 4 and s["unconfirmed"] == [] and s["confirmed"] >= 2
    for n in orphans:  # marked FAIL and run again as the same confirmation look
        t = trials[n]
        assert t.state == "fail" and t.record.requeue and t.record.confirm
        rerun = next(u for u in trials if u.record.rerun_of == n)
        assert rerun.record.confirm and rerun.record.look == t.record.look
    counted = [t for t in trials if t.record.confirm and not t.record.requeue]
    assert s["confirmed"] == len(counted)


def test_export_refuses_an_unconfirmed_pick_unless_allowed(ray_cluster: RayCluster,
                                                            tmp_path: Path) -> None:
    """confirm seeds 3 with a cap of 0: the front stays unconfirmed; a baseline has 3 seeds."""
    cfg = sleep_study(tmp_path / "s.toml", n_trials=8, sleep_s=0.02, evals=2,
                      seeds="[confirm]\nseeds = 3\nmax_trials = 0\n", extra=BASELINES)
    out = tmp_path / "out"
    s = search_json(cfg, out, ray_cluster)
    assert s["confirmed"] == 0 and s["unconfirmed"]
    trials = stored(out)
    single = next(t for t in trials if t.number in s["unconfirmed"])
    r = export(out, f"trial={single.number}", tmp_path / "x")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert (f"trial {single.number} " in r.stderr and "trained with 1 seed(s)" in r.stderr
            and "--allow-unconfirmed" in r.stderr)
    assert not (tmp_path / "x").exists()
    r = export(out, f"trial={single.number}", tmp_path / "x", "--allow-unconfirmed")
    assert r.returncode == 0, r.stderr
    assert "seeds 0: mIoU " in r.stdout and "(NOT confirmed over 3)" in r.stdout
    doc = json.loads((tmp_path / "x" / "schedule.json").read_text())["seeds"]
    assert (doc["seeds"], doc["n"], doc["confirm_seeds"], doc["confirmed"]) == ([0], 1, 3, False)
    assert doc["miou"] == [single.values[0]] and doc["std"] is None  # type: ignore[index]
    assert doc["noise"]["std"] == pytest.approx(s["noise"]["std"])
    # a baseline's look 0: its candidate has 3 seeds, so it is confirmed
    hdc = next(t for t in trials if t.record.baseline == "hdc" and not t.record.look)
    r = export(out, f"trial={hdc.number}", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    assert "seeds 0, 1, 2: mIoU " in r.stdout
    assert "(confirmed over 3); study seed noise ±" in r.stdout
    doc = json.loads((tmp_path / "b" / "schedule.json").read_text())["seeds"]
    looks = sorted((t for t in trials if t.record.baseline == "hdc"), key=lambda t: t.number)
    assert doc["seeds"] == [0, 1, 2] and doc["confirmed"] and doc["n"] == 3
    assert doc["miou"] == [t.values[0] for t in looks]  # type: ignore[index]
    mean = sum(doc["miou"]) / 3
    assert doc["mean"] == pytest.approx(mean) and doc["std"] == pytest.approx(
        (sum((y - mean) ** 2 for y in doc["miou"]) / 2) ** 0.5)


def test_a_study_written_before_resumes_with_baseline_seeds(ray_cluster: RayCluster,
                                                             tmp_path: Path) -> None:
    """A study made with one seed per baseline and no confirmation (as before this change)
    resumed under the defaults: its baselines get their further seeds (waiting trials are
    asked before confirmation), then its front is confirmed; n_trials' count is kept."""
    cfg = sleep_study(tmp_path / "s.toml", n_trials=4, sleep_s=0.02, evals=2,
                      extra=BASELINES)
    out = tmp_path / "out"
    first = search_json(cfg, out, ray_cluster)
    assert first["noise"] is None and len(load(out)) == 4
    cfg.write_text(cfg.read_text().replace("[noise]\nbaseline_seeds = 1\n[confirm]\nseeds = 0\n",
                                           ""))
    s = search_json(cfg, out, ray_cluster, "--resume")
    trials = stored(out)
    base = sorted((t.record.baseline, t.record.look or 0) for t in trials[4:]
                  if t.record.baseline is not None)
    assert base == [("constant2", 1), ("constant2", 2), ("hdc", 1), ("hdc", 2)]
    assert s["noise"] is not None and s["noise"]["n_candidates"] >= 2
    assert s["unconfirmed"] == [] and s["done"] == 8  # the 4 further seeds were trials


def test_an_old_study_confirms_every_pick() -> None:
    """tests/fixtures/study_v0_1.db (nas-dil 0.1) records no [confirm]: one seed is enough."""
    from nas_dil.report.source import open_study

    src = open_study(REPO / "tests" / "fixtures" / "study_v0_1.db")
    assert src.meta.confirm_seeds == 1
