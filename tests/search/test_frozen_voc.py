"""Issue 22's acceptance: a frozen ResNet-50 head search on a VOC-layout folder whose val
images have several sizes runs end to end (the cache built, trials, report, export), and
`nas-dil eval` of the export reproduces the search's mIoU at full resolution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest

from nas_dil.cli import main
from tests.data._builders import coded_pair, write_image, write_mask
from tests.search.conftest import RayCluster

pytestmark = pytest.mark.slow

VAL_SIZES = [(40, 52), (52, 40), (36, 48)]  # landscape, portrait, another: as VOC's are

STUDY = """
name = "voc"
space = "head_os8"
n_trials = 3
seed = 0
feature_cache = "{cache}"
[sampler]
name = "random"
[parallel]
max_in_flight = 1
cpus = 1
[arch]
backbone = "resnet50"
weights = "none"
[data]
source = "{voc}"
image_size = 32
[train]
freeze = "backbone"
freeze_views = 1
epochs = 2
batch_size = 4
threads = 1
[early_stop]
enabled = false
[noise]
baseline_seeds = 1
[confirm]
seeds = 0
"""


def voc_folder(root: Path, train: int = 12, val: int = 6) -> Path:
    """JPEGImages, SegmentationClass (palette PNGs, 21 classes) and the two split lists;
    the val images cycle through `VAL_SIZES`."""
    rng = np.random.default_rng(4)
    stems = [f"2007_{i:06d}" for i in range(train + val)]
    for i, stem in enumerate(stems):
        h, w = (44, 56) if i < train else VAL_SIZES[(i - train) % len(VAL_SIZES)]
        img, mask = coded_pair(rng, h, w, 21)
        mask[:, 0] = 255  # VOC's object borders: ignored
        write_image(root / "JPEGImages" / f"{stem}.jpg", img, "JPEG")
        write_mask(root / "SegmentationClass" / f"{stem}.png", mask, palette=True)
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("\n".join(stems[:train]) + "\n")
    (sets / "val.txt").write_text("\n".join(stems[train:]) + "\n")
    return root


def test_a_frozen_resnet50_search_on_mixed_size_voc_runs_end_to_end(
        ray_cluster: RayCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    voc = voc_folder(tmp_path / "VOC2012")
    cfg = tmp_path / "voc.toml"
    cfg.write_text(STUDY.format(cache=tmp_path / "fc", voc=voc))
    out = tmp_path / "out"
    assert main(["search", str(cfg), "--out", str(out), "--address", ray_cluster.address,
                 "--json"]) == 0, capsys.readouterr().err
    s = json.loads(capsys.readouterr().out)
    assert s["done"] == 3 and s["failed"] == 0 and s["complete"] == 3
    [c] = s["feature_cache"]["caches"]
    assert c["built"] and c["shards"] == 2 + 3  # 12 crops in shards of 8; one per val size
    manifest = json.loads((Path(c["folder"]) / "manifest.json").read_text())
    assert [r["hw"] for r in manifest["shards"] if r["split"] == "val"] == [
        list(hw) for hw in VAL_SIZES]  # each val image cached at its own size
    assert (out / "report" / "report.html").is_file()

    study = optuna.load_study(study_name="voc", storage=f"sqlite:///{out / 'study.db'}")
    assert main(["export", str(out), "--pick", "best-miou", "--out", str(tmp_path / "e"),
                 "--json"]) == 0
    picked = json.loads(capsys.readouterr().out)
    trial = next(t for t in study.trials if t.number == picked["provenance"]["trial"])
    assert main(["eval", str(tmp_path / "e"), "--data", str(voc), "--json", "--quiet"]) == 0
    ev = json.loads(capsys.readouterr().out)
    # every val image at full resolution, the backbone recomputed at float32 where the
    # trial read its float16 cache: the same mIoU up to that rounding
    assert ev["images"] == 6
    assert ev["miou"] == pytest.approx(trial.values[0], abs=5e-4)  # here: 3e-7 apart
