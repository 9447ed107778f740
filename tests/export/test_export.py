"""Export: the pick rules, schedule.json, weights round trip, ONNX, and refusing bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

import nas_dil
from nas_dil.export import ExportError, PickError, export_trial, load_exported, parse_pick
from nas_dil.export.pick import Pick, select_trial
from nas_dil.report.data import NoCompleteTrialError
from nas_dil.report.source import StudySourceError, open_study
from tests.report.studies import (
    Spec,
    Trained,
    add_trial,
    crop_study,
    fixed_input,
    new_study,
    with_dead_taps,
)


# -- picks ------------------------------------------------------------------------------------
def test_parse_pick() -> None:
    assert parse_pick("knee") == Pick("knee")
    assert parse_pick(" Best-mIoU ") == Pick("best-miou")
    assert parse_pick("trial=12") == Pick("trial", trial=12)
    assert parse_pick("max-gflops=2.5,min-rf=100") == Pick(
        "limits", limits=(("gflops", "max", 2.5), ("rf", "min", 100.0)))
    assert str(parse_pick("max-gflops=2.5,min-rf=100")) == "max-gflops=2.5,min-rf=100"
    for bad, msg in (("fastest", "use knee"), ("trial=x", "integer"), ("trial=-1", "integer"),
                     ("max-speed=3", "'speed' is not one of"), ("max-gflops=abc", "not a number"),
                     ("max-gflops=inf", "finite"), ("max-gflops", "use knee")):
        with pytest.raises(PickError, match=msg):
            parse_pick(bad)


@pytest.mark.parametrize(
    ("pick", "number", "reason"),
    [
        ("knee", 0, "knee of the 3-trial Pareto front"),
        ("best-miou", 6, "highest mIoU of 4 feasible"),  # 3 has 0.70 but is infeasible
        ("trial=3", 3, "as asked (infeasible)"),
        ("max-gflops=2,min-rf=90", 0, "gflops ≤ 2 and rf ≥ 90"),
        ("max-gflops=2.5", 0, "3 feasible COMPLETE trials"),
        ("min-rf=85", 6, "with rf ≥ 85"),
    ],
)
def test_select_trial(hand_made_ro: Path, pick: str, number: int, reason: str) -> None:
    t, why = select_trial(open_study(hand_made_ro), pick)
    assert t.number == number and reason in why


@pytest.mark.parametrize(
    ("pick", "msg"),
    [
        ("trial=99", "has no trial 99 (trials 0–7)"),
        ("trial=4", "trial 4 is PRUNED; only COMPLETE"),
        ("trial=7", "trial 7 is RUNNING"),
        ("max-gflops=0.1", "no feasible COMPLETE trial has gflops ≤ 0.1 (the 4 feasible ones "
                           "span gflops 1–3)"),
        ("max-gflops=1,min-rf=95", "span gflops 1–3; rf 70–100"),
    ],
)
def test_select_trial_refuses(hand_made_ro: Path, pick: str, msg: str) -> None:
    with pytest.raises(PickError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        select_trial(open_study(hand_made_ro), pick)


@pytest.mark.parametrize(
    ("pick", "number", "reason"),
    [
        # #0 is the knee and trained with dead taps; normalised over #1 and #6, #6 is closest
        ("knee", 6, "normalised over its 2 trials without dead taps, closest to the utopia "
                    "point); not the knee, dead taps at the training crop (they never "
                    "trained): #0 (8)"),
        # #6 has the best mIoU of the feasible ones, with dead taps: #0 is next
        ("best-miou", 0, "highest mIoU of 3 feasible COMPLETE trials; left out for dead taps "
                         "at the training crop: #6 (4)"),
        ("min-rf=85", 0, "the 1 feasible COMPLETE trials with rf ≥ 85; left out for dead taps"),
        ("trial=6", 6, "trial 6, as asked (4 dead taps at its training crop, never trained)"),
    ],
)
def test_picks_never_choose_dead_taps(tmp_path: Path, pick: str, number: int,
                                      reason: str) -> None:
    with_dead_taps(tmp_path / "d", {0: 8} if pick == "knee" else {6: 4})
    t, why = select_trial(open_study(tmp_path / "d"), pick)
    assert t.number == number and reason in why, why


@pytest.mark.parametrize(
    ("dead", "pick", "msg"),
    [
        ({0: 8, 1: 8, 6: 4}, "knee", "no knee: every Pareto trial had dead taps at its "
                                     "training crop (taps that read only padding never "
                                     "trained): #0 (8), #1 (8), #6 (4); export one with "
                                     "trial=N if you must"),
        ({0: 8, 1: 8, 2: 1, 6: 4}, "best-miou", "every feasible COMPLETE trial had dead taps "
                                                "at its training crop"),
        ({0: 8, 6: 4}, "min-rf=85", "every feasible COMPLETE trial with rf ≥ 85 had dead taps "
                                    "at its training crop (taps that read only padding never "
                                    "trained): #0 (8), #6 (4)"),
    ],
)
def test_picks_refuse_when_only_dead_taps_remain(tmp_path: Path, dead: dict[int, int],
                                                 pick: str, msg: str) -> None:
    with_dead_taps(tmp_path / "d", dead)
    with pytest.raises(PickError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        select_trial(open_study(tmp_path / "d"), pick)


def test_knee_of_a_real_crop_study_is_live(tmp_path: Path) -> None:
    # 1,3,9,1,3,9 (best mIoU, dead rate-9 taps on a 48-px crop) vs 1,2,3: export takes 1,2,3
    crop_study(tmp_path / "c")
    for pick in ("knee", "best-miou"):
        t, why = select_trial(open_study(tmp_path / "c"), pick)
        assert t.number == 0 and t.record.analytic["dead_taps"] == 0, why
    r = export_trial(tmp_path / "c", "best-miou", tmp_path / "x")
    assert r.trial == 0 and "#1 (16)" in r.document["pick"]["reason"]


def test_empty_and_incomplete_studies_refuse(tmp_path: Path) -> None:
    new_study(tmp_path / "e")
    with pytest.raises(NoCompleteTrialError, match=r"no trials yet"):
        export_trial(tmp_path / "e", "knee", tmp_path / "x")
    study = new_study(tmp_path / "f")
    add_trial(study, Spec((1, 2, 3), miou=0.5, constraint=1.0))
    with pytest.raises(PickError, match=r"none of its 1 COMPLETE trials is feasible"):
        export_trial(tmp_path / "f", "knee", tmp_path / "x")
    new_study(tmp_path / "p", with_meta=False)
    with pytest.raises(StudySourceError, match=r"not a nas-dil study"):
        export_trial(tmp_path / "p", "knee", tmp_path / "x")
    assert not (tmp_path / "x").exists()


# -- the exported folder ----------------------------------------------------------------------
def test_export_with_weights_rebuilds_the_exact_net(trained: Trained, tmp_path: Path) -> None:
    r = export_trial(trained.out_dir, "knee", tmp_path / "best")
    assert r.weights == tmp_path / "best" / "weights.pt"
    assert r.weights_source == trained.out_dir / "weights" / f"trial_{r.trial}.pt"
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == ["schedule.json",
                                                                     "weights.pt"]
    state = torch.load(r.weights, weights_only=True)  # a plain state_dict
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    model = load_exported(tmp_path / "best")
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == trained.params[r.trial]
    with torch.no_grad():
        out = model(fixed_input())
    assert torch.equal(out, trained.outputs[r.trial])  # the trained trial's output, exactly
    assert type(nas_dil.load_exported(tmp_path / "best")) is type(model)


def test_schedule_json_contents(trained: Trained, tmp_path: Path) -> None:
    r = export_trial(trained.out_dir, "trial=0", tmp_path / "b")
    d = json.loads((tmp_path / "b" / "schedule.json").read_text())
    assert d == json.loads(json.dumps(r.document, default=str))
    t = trained.study.trials[0]
    assert d["format"] == "nas-dil-export" and d["schedule"]["rates"] == [1, 2, 3]
    assert d["model_config"]["arch"] == t.user_attrs["arch"] == d["arch"]
    assert d["values"] == dict(zip(["miou", "rf", "gflops"], t.values, strict=True))
    assert d["metrics"]["miou"] == t.user_attrs["miou"]
    assert d["metrics"]["miou_curve"] == t.user_attrs["miou_curve"]
    for k in ("rf", "rf_stack", "holes", "coverage", "gridding_free", "macs", "flops", "gflops"):
        assert d[k] == t.user_attrs[k], k
    assert d["params"] == trained.params[0]
    cert = d["hdc_certificate"]
    assert cert["m"] == [1, 2, 3] and cert["groups"] == [[1, 2, 3]]
    assert cert["group_gcd"] == [1] and cert["hdc"] is True and cert["holes"] == 0
    assert "M_2" in cert["hdc_rule1_reason"]
    prov = d["provenance"]
    assert prov["study"] == "demo" and prov["trial"] == 0 and prov["seed"] == 0
    assert prov["baseline"] == "baseline-123"
    assert prov["data"] == {"source": "synthetic", "image_size": 16}
    assert prov["trial_config"]["data"]["image_size"] == 16
    assert prov["versions"]["torch"] and prov["versions"]["optuna"]
    assert prov["versions"]["nas-dil"] == nas_dil.__version__
    assert prov["git_commit"] is None or len(prov["git_commit"]) == 40
    assert d["pick"] == {"rule": "trial=0", "reason": "trial 0, as asked"}
    assert d["files"] == {"weights": "weights.pt", "onnx": None}


def test_export_without_kept_weights(hand_made_ro: Path, tmp_path: Path) -> None:
    r = export_trial(hand_made_ro, "trial=1", tmp_path / "nw")
    assert r.weights is None and "kept no weights" in r.document["weights_note"]
    assert "OUT/weights/trial_<N>.pt" in r.document["weights_note"]
    assert [p.name for p in (tmp_path / "nw").iterdir()] == ["schedule.json"]
    with pytest.warns(UserWarning, match=r"without weights"):
        model = load_exported(tmp_path / "nw")
    assert sum(p.numel() for p in model.parameters()) == r.document["params"]
    with pytest.raises(ExportError, match=r"exported without weights"):
        load_exported(tmp_path / "nw", require_weights=True)


def test_out_folder_is_never_overwritten_without_force(trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"not empty .*--force"):
        export_trial(trained.out_dir, "knee", out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    export_trial(trained.out_dir, "knee", out)  # an empty folder is fine
    first = (out / "schedule.json").read_text()
    with pytest.raises(ExportError, match=r"not empty"):
        export_trial(trained.out_dir, "trial=0", out)
    assert (out / "schedule.json").read_text() == first
    r = export_trial(trained.out_dir, "trial=0", out, force=True)
    assert json.loads((out / "schedule.json").read_text())["provenance"]["trial"] == 0
    assert r.trial == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.tmp")]  # no leftovers
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match=r"not a folder"):
        export_trial(trained.out_dir, "knee", tmp_path / "file")


def test_bad_weights_file_is_refused(trained: Trained, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(trained.out_dir, out)
    (out / "weights" / "trial_0.pt").write_bytes(b"not a torch file")
    with pytest.raises(ExportError, match=r"not a loadable state_dict"):
        export_trial(out, "trial=0", tmp_path / "x")
    torch.save({"foo": torch.zeros(3)}, out / "weights" / "trial_0.pt")
    with pytest.raises(ExportError, match=r"do not fit the recorded architecture"):
        export_trial(out, "trial=0", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_onnx_export(trained: Trained, tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = export_trial(trained.out_dir, "knee", tmp_path / "ox", onnx=True)
    assert r.onnx == tmp_path / "ox" / "model.onnx"
    m = onnx.load(str(r.onnx))
    onnx.checker.check_model(m)
    assert [i.name for i in m.graph.input] == ["image"]
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 16, 16]  # the trial's training image size
    assert json.loads((tmp_path / "ox" / "schedule.json").read_text())["files"]["onnx"] == \
        "model.onnx"


def test_load_exported_refuses_other_folders(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"no schedule.json"):
        load_exported(tmp_path)
    (tmp_path / "schedule.json").write_text('{"format": "other"}')
    with pytest.raises(ExportError, match=r"not a nas-dil export"):
        load_exported(tmp_path)
