"""`nas-dil search` bad input (one line, exit 2, nothing written), PostgreSQL storage against a
real server, and the study read by plain Optuna and optuna-dashboard."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from nas_dil.cli import main
from nas_dil.search import META_KEY, run_search
from tests.search.conftest import RayCluster, run_cli, sleep_study

pytestmark = pytest.mark.slow


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["search", *args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas-dil search: error: "), err
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(("body", "args", "fragment"), [
    ('space = "hdc"\n[sampler]\nname = "cmaes"\n', (), "unknown sampler 'cmaes'"),
    ('space = "hdc"\n[sampler]\nname = "tpe"\nn_startup_trials = "ten"\n', (),
     "sampler.n_startup_trials: expected int, got 'ten'"),
    ('space = "hdc"\nobjectives = ["latency"]\n', (), "unknown objective 'latency'"),
    ('space = "nowhere"\n', (), "space: 'nowhere': no such file"),
    ('space = "hdc"\nn_trials = 0\n', (), "n_trials: expected an integer >= 1"),
    ('space = "hdc"\n', ("--n-trials", "0"), "argument --n-trials: 0: expected an integer >= 1"),
    ('space = "hdc"\n', ("--storage", "postgresql://nobody@127.0.0.1:1/none"), "cannot connect"),
    ('space = "hdc"\n', ("--storage", "nosuchdialect://x"), "storage nosuchdialect://x"),
    ('space = "hdc"\n', ("--address", "127.0.0.1:1"), "Ray address 127.0.0.1:1: cannot connect"),
    ('space = "hdc"\n', ("--address", "nonsense"), "expected host:port"),
    ('space = "hdc"\n', ("--resume",), "--resume: no study 's'"),
    ('space = "hdc"\n[sampler]\nname = "nsga2"\n[[baselines]]\nname = "constant2"\n', (),
     "baselines constant2 are not in space hdc; sampler 'nsga2' needs every trial inside"),
])
def test_bad_input_is_one_line_and_writes_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, body: str, args: tuple[str, ...],
        fragment: str) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text(body)
    out = tmp_path / "out"
    if "--address" in args:  # a fresh process: this one may be connected to the test cluster
        p = run_cli(str(cfg), "--out", str(out), *args)
        code, err = p.returncode, p.stderr
    else:
        code, _, err = cli(capsys, str(cfg), "--out", str(out), *args)
    one_line_error(code, err, fragment)
    assert not (out / "study.db").exists()


def test_bad_input_in_a_real_process(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text('space = "hdc"\n[sampler]\nname = "cmaes"\n')
    r = run_cli(str(cfg), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "unknown sampler 'cmaes'" in r.stderr


def _snapshot(url: str, name: str) -> tuple[int, Any, list[str]]:
    study = optuna.load_study(study_name=name, storage=url)
    return (len(study.trials), study.user_attrs[META_KEY],
            [s.study_name for s in optuna.get_all_study_summaries(url)])


def test_existing_study_with_other_objectives_is_refused(
        capsys: pytest.CaptureFixture[str], ray_cluster: RayCluster, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = sleep_study(tmp_path / "s.toml", n_trials=2, sleep_s=0.05)
    run_search(cfg, out=out, address=ray_cluster.address, progress=False)
    url = f"sqlite:///{out / 'study.db'}"
    before = _snapshot(url, "s")
    other = sleep_study(tmp_path / "o.toml", n_trials=2, objectives='["miou", "params"]')
    code, _, err = cli(capsys, str(other), "--out", str(out))
    one_line_error(code, err, "exists with other objectives (miou maximize, rf maximize, "
                              "gflops minimize; this config: miou maximize, params minimize)")
    changed = sleep_study(tmp_path / "c.toml", n_trials=2, sleep_s=0.5)  # other trial budget
    code, _, err = cli(capsys, str(changed), "--out", str(out))
    one_line_error(code, err, "exists with a different 'trial' setting")
    assert _snapshot(url, "s") == before


def test_plain_optuna_and_optuna_dashboard_read_the_study(ray_cluster: RayCluster,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = sleep_study(tmp_path / "s.toml", n_trials=3, sleep_s=0.05)
    run_search(cfg, out=out, address=ray_cluster.address, progress=False)
    url = f"sqlite:///{out / 'study.db'}"
    study = optuna.load_study(study_name="s", storage=url)
    assert len(study.best_trials) >= 1 and study.metric_names == ["miou", "rf", "gflops"]
    df = study.trials_dataframe()
    assert "values_miou" in df.columns and "user_attrs_miou_curve" in df.columns

    from optuna_dashboard import wsgi

    app = wsgi(optuna.storages.RDBStorage(url))

    def get(path: str) -> Any:
        env: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET",
                               "wsgi.input": io.BytesIO()}
        setup_testing_defaults(env)
        status: list[str] = []
        body = b"".join(app(env, lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), (path, status, body[:200])
        return json.loads(body)

    studies = get("/api/studies")["study_summaries"]
    sid = next(s["study_id"] for s in studies if s["study_name"] == "s")
    detail = get(f"/api/studies/{sid}")
    assert len(detail["trials"]) == len(study.trials)
    assert detail["objective_names"] == ["miou", "rf", "gflops"]


def test_postgresql_storage(postgres_url: str, ray_cluster: RayCluster,
                            tmp_path: Path) -> None:
    cfg = sleep_study(tmp_path / "s.toml", name="pg", n_trials=3, sleep_s=0.05)
    s = run_search(cfg, storage=postgres_url, out=tmp_path / "out",
                   address=ray_cluster.address, progress=False)
    assert s.done == 3 and "postgresql" in s.storage
    assert not (tmp_path / "out" / "study.db").exists()
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    assert study.user_attrs[META_KEY]["objectives"][0]["name"] == "miou"
    assert sum(t.state.is_finished() for t in study.trials) >= 3
    s = run_search(cfg, storage=postgres_url, out=tmp_path / "out", n_trials=5, resume=True,
                   address=ray_cluster.address, progress=False)
    assert s.done == 5
    n_before = len(optuna.load_study(study_name="pg", storage=postgres_url).trials)
    keys = [t.user_attrs["key"] for t in optuna.load_study(study_name="pg",
                                                            storage=postgres_url).trials
            if t.user_attrs.get("reused_from") is None and "node" in t.user_attrs]
    assert len(keys) == len(set(keys))
    # the CLI with the same storage and other objectives: refused, nothing written
    other = sleep_study(tmp_path / "o.toml", name="pg", objectives='["miou"]')
    r = run_cli(str(other), "--storage", postgres_url, "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and "exists with other objectives" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(optuna.load_study(study_name="pg", storage=postgres_url).trials) == n_before
