"""The search loop on a local 2-node Ray cluster (127.0.0.1) with sleep trials: storage
contract, baselines, constraints, dedupe, samplers, early stopping, failures, resume."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from nas_dil.search import META_KEY, run_search
from tests.search.conftest import REPO, RayCluster, sleep_study

pytestmark = pytest.mark.slow

TRIAL_ATTRS = ("candidate", "arch", "trial_config", "seed", "key", "rf", "rf_nominal",
               "rf_usable_h", "rf_usable_w", "dead_taps", "dead_layers", "rf_stack", "holes",
               "coverage", "gridding_free", "hdc_rule1", "hdc_rule1_groups", "hdc_rule2",
               "hdc_rule3", "hdc", "m", "macs", "flops", "gflops", "params")
TRAINED_ATTRS = ("miou", "per_class_iou", "pixel_acc", "miou_curve", "loss_curve",
                 "wall_time_s", "images_per_s", "peak_mem_bytes", "node", "retries")


def search(cluster: RayCluster, study: Path, out: Path, **kw: Any) -> Any:
    return run_search(study, out=out, address=cluster.address, progress=False, **kw)


def load(out: Path, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


def trained(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that actually ran a worker (not reused, not infeasible, not requeued)."""
    return [t for t in study.trials if t.state.is_finished() and "node" in t.user_attrs
            and t.user_attrs.get("reused_from") is None]


def test_storage_contract_and_baselines(ray_cluster: RayCluster, tmp_path: Path) -> None:
    extra = """
[constraints]
max_gflops = 0.02
[[baselines]]
name = "hdc"
[[baselines]]
name = "constant2"
"""
    cfg = sleep_study(tmp_path / "s.toml", n_trials=6, extra=extra)
    s = search(ray_cluster, cfg, tmp_path / "out")
    assert s.done == 6 and s.complete + s.pruned + s.failed == 6 and s.front
    study = load(tmp_path / "out")  # a plain optuna.load_study reads it
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["miou", "rf", "gflops"]
    meta = study.user_attrs[META_KEY]
    assert set(meta) >= {"version", "study_config", "objectives", "space", "out_dir", "data"}
    assert meta["objectives"] == [{"name": "miou", "direction": "maximize"},
                                  {"name": "rf", "direction": "maximize"},
                                  {"name": "gflops", "direction": "minimize"}]
    assert meta["space"]["name"] == "hdc" and meta["out_dir"] == str(tmp_path / "out")
    assert meta["study_config"]["constraints"] == {"max_gflops": 0.02}
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()
    assert meta["git_commit"] == (head or None)  # the checkout the search ran from
    json.dumps(meta)
    from nas_dil.export import export_trial

    exported = export_trial(tmp_path / "out", "knee", tmp_path / "export").document
    assert exported["provenance"]["search_git_commit"] == meta["git_commit"]
    base = {t.user_attrs["baseline"]: t for t in study.trials if "baseline" in t.user_attrs}
    assert set(base) == {"hdc", "constant2"}
    assert base["hdc"].user_attrs["candidate"]["rates"] == [1, 2, 5, 1, 2, 5]
    assert base["hdc"].params  # inside the hdc space: the sampler sees its parameters
    assert base["constant2"].params == {}  # outside: no parameter describes it
    assert base["constant2"].user_attrs["gridding_free"] is False
    for t in study.trials:
        assert t.state != TrialState.RUNNING
        for k in TRIAL_ATTRS:
            assert k in t.user_attrs, (t.number, k)
        assert t.constraints.keys() == {"max_gflops", "dead_taps"}  # dead taps: by default
        if t.state == TrialState.COMPLETE:
            for k in TRAINED_ATTRS:
                assert k in t.user_attrs, (t.number, k)
            assert t.values[0] == t.user_attrs["miou"] == t.user_attrs["miou_curve"][-1]
            assert t.values[1] == t.user_attrs["rf"] and t.values[2] == t.user_attrs["gflops"]
            assert t.user_attrs["retries"] == 0 and t.user_attrs["node_ip"] == "127.0.0.1"
    # infeasible candidates: PRUNED, never trained, the sampler sees their constraint values
    for t in study.trials:
        if t.user_attrs.get("infeasible"):
            assert t.state == TrialState.PRUNED and "miou" not in t.user_attrs
            reason = t.user_attrs["pruned_reason"]
            assert ((t.constraints["max_gflops"] > 0 and reason.startswith("infeasible: gflops"))
                    or (t.constraints["dead_taps"] > 0 and "dead taps at 64×64" in reason))


@pytest.mark.parametrize("sampler", ["random", "hvi"])
def test_constraints_keep_infeasible_candidates_untrained(ray_cluster: RayCluster,
                                                          tmp_path: Path, sampler: str) -> None:
    """A sampler blind to the constraints (random) gets its infeasible asks pruned untrained;
    hvi checks the constraints before it proposes, so it asks for none."""
    extra = f"[constraints]\nmin_rf_nominal = 200\n[sampler]\nname = \"{sampler}\"\n"
    cfg = sleep_study(tmp_path / "s.toml", n_trials=4, sleep_s=0.05, extra=extra)
    s = search(ray_cluster, cfg, tmp_path / "out")
    study = load(tmp_path / "out")
    n_infeasible = sum(bool(t.user_attrs.get("infeasible")) for t in study.trials)
    assert s.done == 4 and s.infeasible == n_infeasible
    assert n_infeasible > 0 if sampler == "random" else n_infeasible == 0
    for t in trained(study):
        assert t.user_attrs["rf_nominal"] >= 200


DEAD_SPACE = ('kernel = [3]\noutput_stride = [8]\nwidth = [16]\ndepth = 2\n'
              '[rates]\nrule = "free"\nchoices = [1, 2, 9]\n')  # 64 px at OS 8: 8×8 maps


@pytest.mark.parametrize("sampler", ["random", "hvi"])
def test_dead_taps_are_refused_untrained(ray_cluster: RayCluster, tmp_path: Path,
                                         sampler: str) -> None:
    """At a 64-px crop and output stride 8 a rate-9 layer's off-centre taps read only padding:
    such candidates are infeasible with that reason and never trained (hvi never asks for
    one); the search warns that most of this space is dead; the rf objective is the usable RF,
    never more than the crop."""
    (tmp_path / "dead.toml").write_text(DEAD_SPACE)
    cfg = sleep_study(tmp_path / "s.toml", space="dead.toml", n_trials=3, sleep_s=0.01,
                      extra=f'[sampler]\nname = "{sampler}"\n')
    s = search(ray_cluster, cfg, tmp_path / "out")
    study = load(tmp_path / "out")
    refused = [t for t in study.trials if t.user_attrs.get("infeasible")]
    assert all("dead taps at 64×64" in t.user_attrs["pruned_reason"] and
               "dilation 9 on a 8×8 map" in t.user_attrs["pruned_reason"] for t in refused)
    assert refused if sampler == "random" else not refused
    assert s.infeasible == len(refused)
    for t in trained(study):
        assert 9 not in t.user_attrs["candidate"]["rates"] and t.user_attrs["dead_taps"] == 0
        assert t.user_attrs["rf"] <= 64 and t.user_attrs["rf"] <= t.user_attrs["rf_nominal"]
    assert any("have dead taps at the 64×64 crop" in w for w in s.warnings)  # 5 of 9 dead


def with_top(path: Path, line: str) -> Path:
    """The study file with a top-level ``line`` (sleep_study's ``extra`` lands in a table)."""
    path.write_text(line + "\n" + path.read_text())
    return path


@pytest.mark.parametrize("spelling", ["dead_taps", "old allow_dead_taps"])
def test_allow_dead_taps_trains_them(ray_cluster: RayCluster, tmp_path: Path,
                                     spelling: str) -> None:
    """``dead_taps = "allow"`` (an older file: ``[constraints] allow_dead_taps = true``)."""
    (tmp_path / "dead.toml").write_text(DEAD_SPACE)
    old = spelling.startswith("old")
    cfg = sleep_study(tmp_path / "s.toml", space="dead.toml", n_trials=9, sleep_s=0.01,
                      extra=('[constraints]\nallow_dead_taps = true\n' if old else '')
                      + '[sampler]\nname = "brute"\n')
    if not old:
        with_top(cfg, 'dead_taps = "allow"')
    search(ray_cluster, cfg, tmp_path / "out")
    study = load(tmp_path / "out")
    assert not [t for t in study.trials if t.user_attrs.get("infeasible")]
    dead = [t for t in trained(study) if t.user_attrs["dead_taps"] > 0]
    assert len(dead) == 5 and all(9 in t.user_attrs["candidate"]["rates"] for t in dead)


def test_duplicates_are_reused_not_retrained(ray_cluster: RayCluster, tmp_path: Path) -> None:
    space = tmp_path / "tiny.toml"  # 8 candidates: the random sampler asks some twice
    space.write_text('kernel = [3]\noutput_stride = [8]\nwidth = [8, 16, 24, 32, 40, 48, 56, 64]\n'
                     'depth = 2\n[rates]\nrule = "hdc"\nchoices = [1, 2]\ngroup_size = 2\n'
                     'repeats = { min = 1, max = 2 }\n')
    cfg = sleep_study(tmp_path / "s.toml", space="tiny.toml", n_trials=10, sleep_s=0.05,
                      extra='[sampler]\nname = "random"\n')
    s = search(ray_cluster, cfg, tmp_path / "out")
    study = load(tmp_path / "out")
    assert s.reused >= 2 and (s.done == 10 or s.exhausted)
    keys = Counter(t.user_attrs["key"] for t in trained(study))
    assert max(keys.values()) == 1  # no candidate trained twice
    for t in study.trials:
        src = t.user_attrs.get("reused_from")
        if src is not None:
            orig = study.trials[src]
            assert orig.user_attrs["key"] == t.user_attrs["key"] and orig.values == t.values


@pytest.mark.parametrize("sampler", ["nsga2", "nsga3", "gp", "random", "brute"])
def test_samplers(ray_cluster: RayCluster, tmp_path: Path, sampler: str) -> None:
    cfg = sleep_study(tmp_path / "s.toml", n_trials=5, sleep_s=0.02, in_flight=3,
                      space="exponential", extra=f'[sampler]\nname = "{sampler}"\n')
    s = search(ray_cluster, cfg, tmp_path / "out")
    assert s.done == 5 and s.failed == 0


def test_brute_force_stops_when_the_space_is_exhausted(ray_cluster: RayCluster,
                                                       tmp_path: Path) -> None:
    space = tmp_path / "tiny.toml"  # 2 candidates
    space.write_text('kernel = [3]\noutput_stride = [8]\nwidth = [16, 32]\ndepth = 2\n'
                     '[rates]\nrule = "hdc"\nchoices = [1, 2]\ngroup_size = 2\nrepeats = 1\n')
    cfg = sleep_study(tmp_path / "s.toml", space="tiny.toml", n_trials=8, sleep_s=0.02,
                      in_flight=1, extra='[sampler]\nname = "brute"\n')
    s = search(ray_cluster, cfg, tmp_path / "out")
    assert s.exhausted and s.done == 2


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2"])
def test_any_sampler_stops_when_every_candidate_was_asked(ray_cluster: RayCluster,
                                                          tmp_path: Path, sampler: str) -> None:
    """Optuna's samplers never stop on a finite space (issue 23, item 13): once every one of
    its candidates has been asked, the driver asks no more (before: reused duplicates without
    end), and a resumed study stops at once."""
    space = tmp_path / "tiny.toml"  # 2 candidates
    space.write_text('kernel = [3]\noutput_stride = [8]\nwidth = [16, 32]\ndepth = 2\n'
                     '[rates]\nrule = "hdc"\nchoices = [1, 2]\ngroup_size = 2\nrepeats = 1\n')
    cfg = sleep_study(tmp_path / "s.toml", space="tiny.toml", n_trials=400, sleep_s=0.01,
                      in_flight=1, extra=f'[sampler]\nname = "{sampler}"\n')
    s = search(ray_cluster, cfg, tmp_path / "out")
    assert s.exhausted and s.done < 400
    widths = {t.user_attrs["candidate"]["width"] for t in load(tmp_path / "out").trials}
    assert widths == {16, 32}
    again = search(ray_cluster, cfg, tmp_path / "out", resume=True)
    assert again.exhausted and again.done == s.done


def test_early_stopping_prunes_with_curve(ray_cluster: RayCluster, tmp_path: Path) -> None:
    cfg = sleep_study(tmp_path / "s.toml", n_trials=14, sleep_s=0.3, evals=5, in_flight=2,
                      early=True, objectives='["miou"]', extra='[sampler]\nname = "random"\n')
    s = search(ray_cluster, cfg, tmp_path / "out")
    study = load(tmp_path / "out")
    assert s.pruned > 0
    for t in study.trials:
        if t.state == TrialState.PRUNED:
            curve = t.user_attrs["miou_curve"]
            assert 1 <= len(curve) < 5 and t.values is None
            assert t.user_attrs["pruned_reason"].startswith("cannot reach the Pareto front")
        if t.state == TrialState.COMPLETE and t.user_attrs.get("reused_from") is None:
            assert len(t.user_attrs["miou_curve"]) == 5


def test_failing_trials_fail_with_reason_and_study_goes_on(ray_cluster: RayCluster,
                                                           tmp_path: Path) -> None:
    cfg = sleep_study(tmp_path / "s.toml", n_trials=8, sleep_s=0.02,
                      extra='[trial]\n' if False else "")
    text = cfg.read_text().replace('kind = "sleep"',
                                   'kind = "sleep"\nfail_width = 16\noom_width = 32')
    text = text.replace('space = "hdc"', 'space = "exponential"')
    cfg.write_text(text)
    s = search(ray_cluster, cfg, tmp_path / "out")
    study = load(tmp_path / "out")
    assert s.done == 8 and s.failed == 8 - s.reused
    reasons = {t.user_attrs["arch"]["width"]: t.user_attrs["fail_reason"]
               for t in study.trials if "fail_reason" in t.user_attrs}
    assert reasons[16].startswith("diverged: loss nan at step 1")
    assert reasons[32].startswith("out of memory on cpu")


def test_rerun_continues_and_extends(ray_cluster: RayCluster, tmp_path: Path) -> None:
    cfg = sleep_study(tmp_path / "s.toml", n_trials=3, sleep_s=0.05)
    search(ray_cluster, cfg, tmp_path / "out")
    before = {t.number: t.user_attrs["key"] for t in trained(load(tmp_path / "out"))}
    s = search(ray_cluster, cfg, tmp_path / "out", n_trials=6, resume=True)
    assert s.done == 6
    study = load(tmp_path / "out")
    after = trained(study)
    assert {t.number: t.user_attrs["key"] for t in after if t.number in before} == before
    assert max(Counter(t.user_attrs["key"] for t in after).values()) == 1
    again = search(ray_cluster, cfg, tmp_path / "out", n_trials=6)  # nothing left to do
    assert again.done == 6 and len(load(tmp_path / "out").trials) == len(study.trials)


def test_weights_of_the_front_are_kept(ray_cluster: RayCluster, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    cfg = tmp_path / "t.toml"
    cfg.write_text("""
name = "t"
space = "exponential"
n_trials = 3
[constraints]
allow_dead_taps = true  # 16-px crops: rates >= 2 are dead; not what this tests
[parallel]
max_in_flight = 2
[arch]
stem_width = 4
[data]
image_size = 16
n_train = 8
n_val = 4
[train]
steps = 2
eval_every_steps = 1
batch_size = 4
threads = 1
[noise]
baseline_seeds = 1  # one seed per baseline, no confirmation: the counts below
[confirm]
seeds = 0
[[baselines]]
name = "constant2"
""")
    s = run_search(cfg, out=tmp_path / "out", address=ray_cluster.address, progress=False)
    study = load(tmp_path / "out", "t")
    assert s.done == 3 and s.complete == 3
    from nas_dil.models import model_from_config

    kept = {t.number: t.user_attrs["weights"] for t in study.trials if "weights" in
            t.user_attrs}
    assert set(s.front) <= set(kept) and any(
        t.user_attrs.get("baseline") == "constant2" for t in study.trials
        if t.number in kept)
    for number, rel in kept.items():
        assert rel == f"weights/trial_{number}.pt"
        blob = torch.load(tmp_path / "out" / rel, weights_only=True)
        model = model_from_config(blob["model_config"])
        model.load_state_dict(blob["state_dict"])
        t = study.trials[number]
        assert blob["model_config"]["arch"] == t.user_attrs["arch"]
        assert t.user_attrs["miou_curve"] and len(t.user_attrs["miou_curve"]) == 2
    on_disk = {p.name for p in (tmp_path / "out" / "weights").iterdir()}
    assert on_disk == {Path(r).name for r in kept.values()}


def test_warns_when_an_objective_cannot_vary(ray_cluster: RayCluster, tmp_path: Path) -> None:
    space = tmp_path / "fixed.toml"  # depth, width and stride fixed: FLOPs cannot vary
    space.write_text('kernel = [3]\noutput_stride = [8]\nwidth = [16]\ndepth = 3\n'
                     '[rates]\nrule = "free"\nchoices = [1, 2, 3]\n')
    cfg = sleep_study(tmp_path / "s.toml", space="fixed.toml", n_trials=1, sleep_s=0.01)
    s = search(ray_cluster, cfg, tmp_path / "out")
    assert any(w.startswith("objective gflops cannot vary in space fixed") for w in s.warnings)
    assert not any("objective rf " in w for w in s.warnings)
    assert load(tmp_path / "out").user_attrs[META_KEY]["warnings"] == s.warnings


def test_a_non_square_crop_is_searched_per_axis(ray_cluster: RayCluster, tmp_path: Path) -> None:
    """`[data] image_size = [h, w]`: the analytic objectives are computed on the h×w crop,
    each axis on its own (a 64×32 crop at output stride 8: maps 8×4, so rate 4 is dead along
    the width only), and every trial gets the CPUs Ray gives it."""
    (tmp_path / "sp.toml").write_text('kernel = [3]\noutput_stride = [8]\nwidth = [16]\n'
                                      'depth = 2\n[rates]\nrule = "free"\nchoices = [1, 4]\n')
    from tests.data._builders import make_folder

    data = make_folder(tmp_path / "data", n=4, sizes=[(80, 96)] * 4)  # (synthetic: square)
    cfg = sleep_study(tmp_path / "s.toml", space="sp.toml", n_trials=1, sleep_s=0.01,
                      extra=f'[data]\nsource = "{data}"\nimage_size = [64, 32]\n'
                            '[sampler]\nname = "brute"\n')
    s = search(ray_cluster, cfg, tmp_path / "out")
    study = load(tmp_path / "out")
    refused = [t for t in study.trials if t.user_attrs.get("infeasible")]
    assert s.infeasible == len(refused)
    assert all(4 in t.user_attrs["candidate"]["rates"] and "dead taps at 64×32" in
               t.user_attrs["pruned_reason"] and "on a 8×4 map" in t.user_attrs["pruned_reason"]
               for t in refused)
    (ok,) = trained(study)  # the only candidate without a 4
    a = ok.user_attrs
    assert a["candidate"]["rates"] == [1, 1] and a["dead_taps"] == 0
    assert a["rf_usable_h"] <= 64 and a["rf_usable_w"] <= 32 and a["rf"] == a["rf_usable_w"]
    assert a["trial_config"]["train"]["cpus"] == 1


@pytest.mark.parametrize(("sampler", "where"), [("random", "space"), ("tpe", "space"),
                                               ("brute", "space"), ("brute", "study")])
def test_avoid_dead_taps_space_proposes_only_live_candidates(
        ray_cluster: RayCluster, tmp_path: Path, sampler: str, where: str) -> None:
    """``dead_taps = "avoid"`` (an older space file: ``avoid_dead_taps = true``): bound to the
    study's 64-px crop, the space proposes no rate 9 at output stride 8 (8×8 maps), so no ask
    is refused and no warning is needed; brute force walks exactly the 4 live candidates."""
    (tmp_path / "dead.toml").write_text(("avoid_dead_taps = true\n" if where == "space" else "")
                                        + DEAD_SPACE)
    cfg = sleep_study(tmp_path / "s.toml", space="dead.toml", n_trials=4, sleep_s=0.01,
                      extra=f'[sampler]\nname = "{sampler}"\n')
    if where == "study":
        with_top(cfg, 'dead_taps = "avoid"')
    s = search(ray_cluster, cfg, tmp_path / "out")
    study = load(tmp_path / "out")
    assert s.infeasible == 0 and not [t for t in study.trials if t.user_attrs.get("infeasible")]
    runs = trained(study)
    assert runs and all(9 not in t.user_attrs["candidate"]["rates"] for t in runs)
    assert all(t.user_attrs["dead_taps"] == 0 for t in runs)
    assert {k for t in runs for k in t.params} <= {"kernel", "output_stride", "width", "depth",
                                                   "r1_le2", "r2_le2"}
    assert not any("dead taps" in w for w in s.warnings)
    if sampler == "brute":
        assert sorted(tuple(t.user_attrs["candidate"]["rates"]) for t in runs) == [
            (1, 1), (1, 2), (2, 1), (2, 2)]


@pytest.mark.parametrize("spelling", ["dead_taps", "old allow_dead_taps"])
def test_avoid_dead_taps_contradicting_allow_is_refused(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path, spelling: str) -> None:
    """An older space file's ``avoid_dead_taps = true`` with a study that allows dead taps:
    one line, nothing written."""
    from nas_dil.cli import main

    (tmp_path / "dead.toml").write_text("avoid_dead_taps = true\n" + DEAD_SPACE)
    old = spelling.startswith("old")
    cfg = sleep_study(tmp_path / "s.toml", space="dead.toml",
                      extra="[constraints]\nallow_dead_taps = true\n" if old else "")
    if not old:
        with_top(cfg, 'dead_taps = "allow"')
    assert main(["search", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "avoid_dead_taps = true: choose one" in err[0]
    assert not (tmp_path / "out" / "study.db").exists()
