"""Searches refused before anything is written (issue 11): constraints no candidate meets,
paths that cannot be written, names that are paths. One line, exit 2, no study.db."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from nas_dil.cli import main
from tests.search.conftest import REPO, RayCluster, sleep_study

pytestmark = pytest.mark.slow


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(["search", *args])
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas-dil search: error: "), err
    assert out == ""
    return lines[0]


@pytest.mark.parametrize(("space", "constraints", "fragment"), [
    ("hdc", "max_gflops = 1e-5", "constraints.max_gflops = 1e-05: no candidate of space hdc "
                                 "meets it; the best gflops of the 96 candidates is "),
    ("hdc", "min_rf = 1e9", "constraints.min_rf = 1e+09: no candidate of space hdc meets it; "
                            "the best rf of the 96 candidates is "),
    ("free", "max_params = 1", "the best params of 400 sampled candidates is "),
])
def test_constraints_no_candidate_meets(capsys: pytest.CaptureFixture[str],
                                        ray_cluster: RayCluster, tmp_path: Path, space: str,
                                        constraints: str, fragment: str) -> None:
    cfg = sleep_study(tmp_path / "s.toml", space=space,
                      extra=f"[constraints]\n{constraints}\n")
    out = tmp_path / "out"
    for _ in range(2):  # a rerun adds nothing either
        line = refused(capsys, str(cfg), "--out", str(out), "--address", ray_cluster.address)
        assert fragment in line, line
        assert not (out / "study.db").exists()


def test_constraints_met_one_by_one_but_not_together(
        capsys: pytest.CaptureFixture[str], ray_cluster: RayCluster, tmp_path: Path) -> None:
    from nas_dil.models.analytic import analytic_batch
    from nas_dil.spaces import load_space

    cols = analytic_batch(list(load_space("hdc").enumerate()), {"num_classes": 5}, 64)
    # the largest stack RF, and fewer FLOPs than any candidate of that RF has (but some other has)
    rf = float(cols["rf_stack"].max())
    at_rf = float(cols["gflops"][cols["rf_stack"] >= rf].min())
    if at_rf <= float(cols["gflops"].min()):
        pytest.skip("a candidate of the largest stack RF also has the fewest FLOPs")
    gf = (at_rf + float(cols["gflops"].min())) / 2
    cfg = sleep_study(tmp_path / "s.toml", extra=f"[data]\nimage_size = 64\n[constraints]\n"
                                                 f"min_rf_stack = {rf!r}\nmax_gflops = {gf!r}\n")
    line = refused(capsys, str(cfg), "--out", str(tmp_path / "out"), "--address",
                   ray_cluster.address)
    assert "each is met by some candidate of space hdc but none of the 96 candidates meets " \
           "them all" in line
    assert not (tmp_path / "out" / "study.db").exists()


def test_out_is_an_existing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = sleep_study(tmp_path / "s.toml")
    f = tmp_path / "afile"
    f.write_text("keep me")
    line = refused(capsys, str(cfg), "--out", str(f))
    assert f"--out {f}: exists and is not a folder" in line
    line = refused(capsys, str(cfg), "--out", str(f / "sub"))
    assert f"{f} is a file, not a folder" in line
    assert f.read_text() == "keep me"


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite:///:memory:"])
def test_in_memory_storage_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      url: str) -> None:
    cfg = sleep_study(tmp_path / "s.toml")
    line = refused(capsys, str(cfg), "--out", str(tmp_path / "out"), "--storage", url)
    assert "an in-memory SQLite database keeps nothing" in line


@pytest.mark.parametrize("where", ["proc", "file"])
def test_storage_that_cannot_be_created(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        where: str) -> None:
    cfg = sleep_study(tmp_path / "s.toml")
    f = tmp_path / "afile"
    f.write_text("keep me")
    db = Path("/proc/nas-dil-test/study.db") if where == "proc" else f / "study.db"
    line = refused(capsys, str(cfg), "--out", str(tmp_path / "out"), "--storage",
                   f"sqlite:///{db}")
    assert f"storage sqlite:///{db}: folder " in line
    assert not (tmp_path / "out").exists() and f.read_text() == "keep me"


def test_resuming_a_read_only_study_is_one_line(tmp_path: Path) -> None:
    """As an unprivileged user (root writes read-only files), in a real process."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the CLI as another user")
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    home = Path("/tmp") / f"nas-dil-ro-{os.getpid()}"
    home.mkdir(mode=0o755, exist_ok=True)
    try:
        cfg = sleep_study(home / "s.toml")
        out = home / "out"
        out.mkdir()
        db = out / "study.db"
        sqlite3.connect(db).close()
        os.chmod(db, 0o444)
        os.chmod(out, 0o755)
        for p in (home / "s.toml",):
            os.chmod(p, 0o644)
        before = db.read_bytes()
        try:
            r = subprocess.run([sys.executable, "-m", "nas_dil", "search", str(cfg), "--out",
                                str(out), "--resume"], capture_output=True, text=True,
                               timeout=120, cwd=REPO, user=nobody.pw_uid, group=nobody.pw_gid,
                               env={**os.environ, "HOME": str(home)})
        except PermissionError as e:
            pytest.skip(f"user nobody cannot run this checkout's python: {e}")
        if "Permission denied" in r.stderr and "nas_dil" not in r.stderr:
            pytest.skip(f"user nobody cannot run the checkout: {r.stderr[-200:]}")
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr, r.stderr
        assert "cannot write in" in r.stderr or "cannot write the study file" in r.stderr
        assert db.read_bytes() == before
    finally:
        import shutil

        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", " padded"])
def test_name_must_be_a_name(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                             name: str) -> None:
    cfg = sleep_study(tmp_path / "s.toml", name=name)
    line = refused(capsys, str(cfg))
    assert f"name: {name!r}: expected a name" in line


@pytest.mark.parametrize(("parallel", "fragment"), [
    ("gpus = 1", "[parallel] asks cpus 1, gpus 1 per trial, which no node of the Ray cluster "
                 "(3 node(s)) can fit; the most a node has: cpus 2, gpus 0"),
    ("cpus = 64", "[parallel] asks cpus 64 per trial, which no node"),
    ("resources = { tpu = 1 }", "the most a node has: cpus 2, tpu 0"),
])
def test_resources_no_node_can_fit(capsys: pytest.CaptureFixture[str],
                                   ray_cluster: RayCluster, tmp_path: Path, parallel: str,
                                   fragment: str) -> None:
    text = sleep_study(tmp_path / "s.toml").read_text()
    text = text.replace("[parallel]\n", f"[parallel]\n{parallel}\n").replace(
        "cpus = 1\n", "" if parallel.startswith("cpus") else "cpus = 1\n")
    cfg = tmp_path / "s.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    line = refused(capsys, str(cfg), "--out", str(out), "--address", ray_cluster.address)
    assert fragment in line, line
    assert not (out / "study.db").exists()


def test_bad_baseline_kernel_names_the_file_and_key(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    cfg = sleep_study(tmp_path / "s.toml", extra='[[baselines]]\nname = "constant2"\n'
                                                 '[[baselines]]\nname = "hdc"\nkernel = 4\n')
    line = refused(capsys, str(cfg), "--out", str(tmp_path / "out"))
    assert f"{cfg}: baselines[1] (hdc): kernel: expected an odd integer >= 1, got 4" in line
    assert not (tmp_path / "out").exists()


def test_relative_data_source_resolves_against_the_study_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nas_dil.search.config import load_study_config

    (tmp_path / "studies").mkdir()
    cfg = sleep_study(tmp_path / "studies" / "s.toml", extra='[data]\nsource = "../mydata"\n')
    monkeypatch.chdir(REPO)  # anywhere but the study's folder
    assert load_study_config(cfg).data.source == str((tmp_path / "mydata").resolve())
    absolute = sleep_study(tmp_path / "a.toml", extra=f'[data]\nsource = "{tmp_path}/d"\n')
    assert load_study_config(absolute).data.source == f"{tmp_path}/d"
    synthetic = sleep_study(tmp_path / "y.toml", extra='[data]\nsource = "synthetic"\n')
    assert load_study_config(synthetic).data.source == "synthetic"


def test_trials_no_node_can_fit_any_more_fail_after_the_pending_timeout(tmp_path: Path) -> None:
    """The only node that fits a trial leaves: its trials FAIL as unschedulable after
    [parallel] pending_timeout_s, and the search ends instead of waiting forever."""
    import optuna
    from optuna.trial import TrialState

    from tests.search.conftest import start_cli, trial_workers, wait_for

    cluster = RayCluster(nodes=1, cpus=1)
    try:
        cfg = sleep_study(tmp_path / "s.toml", n_trials=4, sleep_s=60.0, evals=2, in_flight=1,
                          extra="")
        cfg.write_text(cfg.read_text().replace("[parallel]\n",
                                               "[parallel]\npending_timeout_s = 3\n"))
        out = tmp_path / "out"
        proc = start_cli(str(cfg), "--out", str(out), "--address", cluster.address,
                         "--no-report")
        try:
            wait_for(trial_workers, 120)
            cluster.cluster.remove_node(cluster.nodes[0])
            _, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert "unschedulable" in err and "Traceback" not in err
        study = optuna.load_study(study_name="s", storage=f"sqlite:///{out / 'study.db'}")
        failed = [t for t in study.trials if t.state == TrialState.FAIL]
        assert failed and all(t.user_attrs["fail_reason"].startswith(
            "unschedulable: [parallel] asks cpus 1 per trial, which no node") for t in failed)
        assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    finally:
        cluster.shutdown()



def test_every_candidate_dead_at_the_crop_is_refused(capsys: pytest.CaptureFixture[str],
                                                     ray_cluster: RayCluster,
                                                     tmp_path: Path) -> None:
    """An 8-px crop: every hdc candidate's stack has taps that read only padding. Refused in
    one line before anything is written (a rerun adds nothing), unless the study allows them."""
    cfg = sleep_study(tmp_path / "s.toml", extra="[data]\nimage_size = 8\n")
    out = tmp_path / "out"
    for _ in range(2):
        line = refused(capsys, str(cfg), "--out", str(out), "--address", ray_cluster.address)
        assert ("every candidate of the 96 candidates of space hdc has dead taps at the 8×8 "
                "crop" in line and 'set dead_taps = "allow"' in line), line
        assert not (out / "study.db").exists()
