"""A frozen-backbone search through `nas-dil search` (issue 13 §2): the feature cache is built
once on the driver before the first trial, every trial reads it, a resumed study reuses it;
a cache that cannot fit the disk and a freeze the arch cannot take are refused in one line."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import optuna
import pytest
import torch

from nas_dil.cli import main
from nas_dil.search import run_search
from nas_dil.train.kept import BackboneRef, rebuild
from tests.search.conftest import RayCluster

pytestmark = pytest.mark.slow

STUDY = """
name = "fz"
space = "head_os8"
n_trials = {n_trials}
seed = 0
feature_cache = "{cache}"
[sampler]
name = "random"
[parallel]
max_in_flight = 2
cpus = 1
[arch]
backbone = "{backbone}"
weights = "{weights}"
[data]
image_size = 48
n_train = 16
n_val = 8
[train]
freeze = "backbone"
freeze_views = 2
epochs = 2
batch_size = 8
threads = 1
[early_stop]
enabled = false
[noise]
baseline_seeds = 1  # one seed per baseline, no confirmation: the counts below
[confirm]
seeds = 0
"""


def study(tmp_path: Path, *, n_trials: int = 8, backbone: str = "resnet18") -> Path:
    from nas_dil.models.backbones import Backbone

    weights = tmp_path / "r18.pt"
    if not weights.exists():  # random weights in a file: no download
        torch.manual_seed(5)
        torch.save(Backbone("resnet18").trunk.state_dict(), weights)
    path = tmp_path / "fz.toml"
    path.write_text(STUDY.format(n_trials=n_trials, cache=tmp_path / "fc", backbone=backbone,
                                 weights=weights if backbone != "stem" else "none"))
    return path


def caches(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "fc").iterdir() if not p.name.startswith("."))


def test_frozen_search_builds_the_cache_once(ray_cluster: RayCluster, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = study(tmp_path)
    out = tmp_path / "out"
    code = main(["search", str(cfg), "--out", str(out), "--address", ray_cluster.address,
                 "--json", "--no-report"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    s = json.loads(stdout)
    assert s["done"] == 8 and s["complete"] >= 8 - s["infeasible"] - s["failed"]
    assert s["failed"] == 0 and s["complete"] >= 6
    [c] = s["feature_cache"]["caches"]
    assert c["built"] and c["output_stride"] == 8 and c["bytes"] > 0
    assert "feature cache: resnet18 at output stride 8" in err and "building at" in err
    [folder] = caches(tmp_path)
    assert c["folder"] == str(folder)
    stamp = (folder / "manifest.json").stat().st_mtime_ns

    st = optuna.load_study(study_name="fz", storage=f"sqlite:///{out / 'study.db'}")
    done = [t for t in st.trials if t.state.name == "COMPLETE"]
    assert all(t.user_attrs["trial_config"]["train"]["freeze"] == "backbone" for t in done)
    kept = [t for t in done if t.user_attrs.get("weights")]
    assert kept  # a front trial's weights rebuild the whole net, backbone from the file
    blob = torch.load(out / kept[0].user_attrs["weights"], weights_only=True)
    assert not any(k.startswith("backbone.") for k in blob["state_dict"])  # the head only
    assert blob["backbone"] == kept[0].user_attrs["weights_backbone"]
    net = rebuild(blob["model_config"], blob["state_dict"],
                  BackboneRef.from_dict(blob["backbone"]), "kept")
    trunk = torch.load(tmp_path / "r18.pt", weights_only=True)
    assert all(torch.equal(net.backbone.trunk.state_dict()[k], v) for k, v in trunk.items())

    # resumed with more trials: the cache is found valid, nothing rebuilt or added
    r = run_search(cfg, out=out, n_trials=10, resume=True, address=ray_cluster.address,
                   progress=False)
    assert r.done == 10 and not r.feature_cache["caches"][0]["built"]
    assert caches(tmp_path) == [folder]
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp


def test_resume_after_the_driver_died_building_the_cache(
        ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The study exists before the (long) build starts: a driver killed while it builds is
    resumed with ``--resume`` (issue 23 item 4), which builds the cache and runs the trials."""
    from nas_dil.train import features

    class Killed(BaseException):
        pass

    def killed(*a: object, **k: object) -> None:
        raise Killed

    cfg = study(tmp_path, n_trials=2)
    out = tmp_path / "out"
    monkeypatch.setattr(features, "_build", killed)
    with pytest.raises(Killed):
        run_search(cfg, out=out, address=ray_cluster.address, progress=False)
    assert not caches(tmp_path)
    monkeypatch.undo()
    r = run_search(cfg, out=out, resume=True, address=ray_cluster.address, progress=False)
    assert r.done == 2 and r.failed == 0 and r.feature_cache["caches"][0]["built"]
    assert len(caches(tmp_path)) == 1


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(["search", *args])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas-dil search: error: "), err
    return lines[0]


def test_a_cache_that_does_not_fit_is_refused(ray_cluster: RayCluster, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from nas_dil.train import features

    class Usage:
        free = 1000

    monkeypatch.setattr(features.shutil, "disk_usage", lambda _p: Usage)
    out = tmp_path / "out"
    line = refused(capsys, str(study(tmp_path)), "--out", str(out),
                   "--address", ray_cluster.address)
    assert "feature cache for resnet18 (output stride 8) needs" in line
    assert "GiB free" in line
    monkeypatch.setattr(features.shutil, "disk_usage", shutil.disk_usage)
    assert not (tmp_path / "fc").exists()  # nothing written: no cache, no study
    db = out / "study.db"
    if db.exists():
        with sqlite3.connect(db) as con:
            tables = {r[0] for r in con.execute("select name from sqlite_master")}
            assert "studies" not in tables or not con.execute(
                "select count(*) from studies").fetchone()[0]


def test_freeze_needs_a_torchvision_backbone(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, str(study(tmp_path, backbone="stem")), "--out",
                   str(tmp_path / "out"))
    assert "train.freeze" in line and "backbone='stem'" in line
    assert not (tmp_path / "out").exists()


def test_repeats_with_a_frozen_backbone_are_refused(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = study(tmp_path)
    path.write_text(path.read_text().replace('name = "random"', 'name = "hvi"\nrepeats = 1'))
    line = refused(capsys, str(path), "--out", str(tmp_path / "out"))
    assert "repeats = 1" in line and "freeze = 'backbone'" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "fc").exists()


@pytest.mark.parametrize(("edit", "fragment"), [
    # the cache folder under a file
    (('feature_cache = "{fc}"', 'feature_cache = "{fc}/blocked/fc"'), "is a file, not a folder"),
])
def test_what_the_frozen_path_cannot_serve_is_refused_before_any_build(
        ray_cluster: RayCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        edit: tuple[str, str], fragment: str) -> None:
    path = study(tmp_path)
    fc = tmp_path / "fc"
    fc.mkdir()
    (fc / "blocked").write_text("")
    old, new = (e.format(fc=fc) for e in edit)
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    out = tmp_path / "out"
    line = refused(capsys, str(path), "--out", str(out), "--address", ray_cluster.address)
    assert fragment in line
    assert not (out / "study.db").exists() and [p.name for p in fc.iterdir()] == ["blocked"]


def test_another_hosts_copy_is_built_by_a_ray_task_on_that_node(
        ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Ray side of a build elsewhere: the task lands on the chosen node, plans and builds
    the same caches there (this machine's nodes share a host, so `feature_hosts` is told
    that a worker node is another host)."""
    from nas_dil.data import DataConfig
    from nas_dil.models import ArchConfig
    from nas_dil.search import cluster
    from nas_dil.search.config import ParallelConfig
    from nas_dil.train import TrainConfig, TrialConfig
    from nas_dil.train.features import find, plan_features

    node = ray_cluster.nodes[0]
    monkeypatch.setattr(cluster, "feature_hosts",
                        lambda nodes, mine: [(node.node_id, "elsewhere", False)])
    cfg = TrialConfig(ArchConfig(backbone="resnet18", target="head", output_stride=8, width=8),
                      DataConfig(image_size=32, n_train=6, n_val=4, seed=3),
                      TrainConfig(epochs=1, batch_size=4, freeze="backbone", freeze_views=1))
    plan = plan_features(cfg, 0, tmp_path / "fc")
    # as the driver does: this process joins the cluster (an earlier test may have left it)
    here = cluster.connect(ray_cluster.address)
    try:
        [(host, ticket)] = cluster.TrialTasks(ParallelConfig()).build_features(plan.elsewhere())
        info = cluster.TrialTasks(ParallelConfig()).get(ticket)
    finally:
        cluster.disconnect(here)
    assert host == "elsewhere" and info["where"]["node_id"] == node.node_id
    assert [c["built"] for c in info["caches"]] == [True]
    assert find(tmp_path / "fc", plan.caches[0].key) is not None  # the driver's key
