"""Frozen-backbone trials through the CLI (issue 22 items 4 and 5): a search keeps the head's
weights only and names the backbone; `nas-dil train --from-study OUT --trial N` trains the
stored trial again to the same mIoU and the same weights; export and eval rebuild the whole
net, and refuse in one line a backbone file that is not the one trained on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from nas_dil.cli import main
from nas_dil.export import load_exported
from tests.data._builders import make_folder
from tests.report.studies import hand_made_study

STUDY = """
name = "fz"
space = "head_os8"
n_trials = 2
seed = 3
feature_cache = "{cache}"
[sampler]
name = "random"
[parallel]
max_in_flight = 1
cpus = 1
[arch]
backbone = "resnet18"
weights = "{weights}"
[data]
source = "{data}"
image_size = 32
[train]
freeze = "backbone"
freeze_views = 1
steps = 4
batch_size = 4
lr = 0.01
threads = 1
[early_stop]
enabled = false
[noise]
baseline_seeds = 1
[confirm]
seeds = 0
"""


def nas_dil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nas_dil", *args], capture_output=True,
                          text=True, timeout=600)


def _r18(path: Path, seed: int) -> Path:
    from nas_dil.models.backbones import Backbone

    torch.manual_seed(seed)  # random weights in a file: no download
    torch.save(Backbone("resnet18").trunk.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A two-trial frozen ResNet-18 head search on a data folder, run through the CLI."""
    base = tmp_path_factory.mktemp("fz")
    data = make_folder(base / "data", n=12, sizes=[(32, 32)])
    weights = _r18(base / "r18.pt", 5)
    study = base / "fz.toml"
    study.write_text(STUDY.format(cache=base / "fc", weights=weights, data=data))
    out = base / "out"
    r = nas_dil("search", str(study), "--out", str(out), "--json", "--no-report")
    assert r.returncode == 0, r.stderr[-3000:]
    st = optuna.load_study(study_name="fz", storage=f"sqlite:///{out / 'study.db'}")
    kept = [t for t in st.trials if t.state.name == "COMPLETE" and t.user_attrs.get("weights")]
    assert kept, [t.user_attrs for t in st.trials]
    return {"base": base, "data": data, "weights": weights, "out": out, "trial": kept[0]}


@pytest.mark.slow
def test_a_kept_frozen_trial_is_its_head(searched: dict[str, Any]) -> None:
    t, out = searched["trial"], searched["out"]
    ref = t.user_attrs["weights_backbone"]
    assert ref["weights"] == str(searched["weights"]) and ref["seed"] == 3
    assert ref["digest"].startswith("state:") and len(ref["file_sha256"]) == 64
    path = out / t.user_attrs["weights"]
    blob = torch.load(path, weights_only=True)
    assert blob["backbone"] == ref
    assert blob["state_dict"] and not any(k.startswith("backbone.") for k in blob["state_dict"])
    # today's whole-net file held the trunk too: the head alone is well under 10 % of it
    assert path.stat().st_size < 0.1 * searched["weights"].stat().st_size


@pytest.mark.slow
def test_from_study_trains_the_stored_trial_again(searched: dict[str, Any]) -> None:
    t, base = searched["trial"], searched["base"]
    rerun, exported = base / "rerun", base / "exported"
    r = nas_dil("train", "--from-study", str(searched["out"]), "--trial", str(t.number),
                "--out", str(rerun), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(r.stdout)
    assert d["seed"] == 3 and d["from_study"]["trial"] == t.number
    assert d["config"]["train"]["freeze"] == "backbone"
    assert d["miou"] == t.user_attrs["miou"]  # same config, same seed: the same mIoU
    assert d["miou_curve"] == t.user_attrs["miou_curve"]

    e = nas_dil("export", str(searched["out"]), "--pick", f"trial={t.number}", "--out",
                str(exported), "--json")
    assert e.returncode == 0, e.stderr[-3000:]
    doc = json.loads(e.stdout)
    assert doc["backbone"] == t.user_attrs["weights_backbone"]
    assert json.loads((rerun / "schedule.json").read_text())["backbone"] == doc["backbone"]
    assert (exported / "weights.pt").stat().st_size < 0.1 * searched["weights"].stat().st_size
    # both rebuild the whole net, and the rerun trained the very same weights
    a, b = load_exported(exported), load_exported(rerun)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and any(k.startswith("backbone.") for k in sa)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)

    ev = nas_dil("eval", str(exported), "--data", str(searched["data"]), "--json")
    assert ev.returncode == 0, ev.stderr[-3000:]
    # the whole net on the val images (fp32 features) against the trial's (fp16 cache)
    assert json.loads(ev.stdout)["miou"] == pytest.approx(t.user_attrs["miou"], abs=0.02)

    # another file at the recorded path: the backbone is not the one trained on
    _r18(searched["weights"], 6)
    try:
        bad = nas_dil("eval", str(exported), "--data", str(searched["data"]))
        again = nas_dil("export", str(searched["out"]), "--pick", f"trial={t.number}",
                        "--out", str(base / "never"))
        elsewhere = nas_dil("eval", str(exported), "--data", str(searched["data"]), "--json",
                            "--backbone-weights", str(_r18(base / "moved.pt", 5)))
        moved = nas_dil("export", str(searched["out"]), "--pick", f"trial={t.number}",
                        "--out", str(base / "moved_export"), "--json",
                        "--backbone-weights", str(base / "moved.pt"))
    finally:
        _r18(searched["weights"], 5)
    assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]  # the right file, elsewhere
    assert json.loads(elsewhere.stdout)["miou"] == json.loads(ev.stdout)["miou"]
    assert moved.returncode == 0, moved.stderr[-3000:]  # export finds the moved file too
    m = load_exported(base / "moved_export", backbone_weights=base / "moved.pt")
    assert all(torch.equal(m.state_dict()[k], sa[k]) for k in sa)
    for p in (bad, again):
        assert p.returncode == 2 and p.stdout == "", p.stderr
        assert p.stderr.count("\n") == 1 and "trained on another backbone" in p.stderr
    assert not (base / "never").exists()


def one_line(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["train", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith("nas-dil train: error: "), err
    return err


@pytest.mark.slow
def test_from_study_refusals(searched: dict[str, Any], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    out, n = str(searched["out"]), str(searched["trial"].number)
    fixture = str(Path(__file__).resolve().parents[1] / "fixtures" / "study_v0_1.db")
    hand_made = tmp_path / "hm"
    hand_made_study(hand_made)
    for args, fragment in [
        ((), "give --schedule RATES (e.g. 1,2,5), or --from-study"),
        (("--schedule", "1,2", "--trial", "0"), "--trial 0: needs --from-study"),
        (("--from-study", out), f"--from-study {out}: needs --trial N"),
        (("--from-study", out, "--trial", "99"), "study 'fz' has no trial 99 (trials 0 to"),
        (("--from-study", out, "--trial", n, "--schedule", "1,2", "--seed", "0", "--freeze",
          "none"), "config: --schedule, --seed, --freeze would change it"),
        (("--from-study", out, "--trial", n, "--val-size", "64"), "--val-size would change"),
        (("--from-study", str(tmp_path / "nowhere"), "--trial", "0"), "nowhere"),
        (("--from-study", fixture, "--trial", "0"), "trial 0 is a 'sleep' trial"),
        (("--from-study", str(hand_made), "--trial", "0"), "trial 0 stores no trial_config"),
    ]:
        err = one_line(capsys, *args)
        assert fragment in err, (args, err)
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(("args", "fragment"), [
    (("--freeze", "backbone"), "error: freeze='backbone' needs a torchvision backbone"),
    (("--freeze", "head"), "argument --freeze: invalid choice: 'head'"),
    (("--val-size", "4"), "argument --val-size: 4: expected an integer in [8, 8192]"),
    (("--val-subset", "0"), "argument --val-subset: 0: expected an integer in [1, "),
    (("--scale-min", "0"), "argument --scale-min: 0: expected a finite number in [0.05, 8]"),
    (("--scale-min", "2", "--scale-max", "1.5"), "data: scale_min 2.0 > scale_max 1.5"),
    (("--freeze-views", "0"), "argument --freeze-views: 0: expected an integer in [1, 256]"),
])
def test_new_flags_are_checked_in_one_line(capsys: pytest.CaptureFixture[str],
                                           args: tuple[str, ...], fragment: str) -> None:
    err = one_line(capsys, "--schedule", "1,2", "--steps", "1", "--threads", "1", "--quiet",
                   *args)
    assert fragment in err, err


def test_new_flags_fill_the_trial_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--schedule", "1,2", "--arch", "output_stride=4,width=8,stem_width=8",
                 "--image-size", "16", "--steps", "2", "--batch-size", "4", "--threads", "1",
                 "--val-size", "24", "--val-subset", "3", "--scale-min", "0.75",
                 "--scale-max", "1.25", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["config"]["data"]
    assert (data["val_size"], data["val_subset"], data["scale_min"], data["scale_max"]) == (
        24, 3, 0.75, 1.25)
