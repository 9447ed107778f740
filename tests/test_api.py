"""The Python API (nas_dil.api): a study from a dict is the study file's, bad input is the
CLI's one-line error, the front and its DataFrame are the report's, and the example notebook
(examples/quickstart.ipynb: a tabular study, its front with seed statistics, an export) runs."""

from __future__ import annotations

import math
import shutil
import tomllib
from pathlib import Path

import pytest

import nas_dil
from nas_dil.api import _progress, run_study
from nas_dil.errors import UserError
from nas_dil.report import build_report
from nas_dil.search.config import StudyConfigError
from nas_dil.search.progress import Progress, Status

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "study_v0_1.db"
NOTEBOOK = REPO / "examples" / "quickstart.ipynb"


def test_a_dict_is_the_study_file() -> None:
    path = REPO / "studies" / "tabular.toml"
    from_file = nas_dil.Study.from_toml(path)
    from_dict = nas_dil.Study.from_dict(tomllib.loads(path.read_text()), base_dir=path.parent)
    assert {**from_dict.to_dict(), "path": None} == {**from_file.to_dict(), "path": None}
    assert from_dict.name == "tabular" and from_file.config.n_trials == 50
    shipped = nas_dil.Study.from_toml("tabular").to_dict()  # the shipped name: same content
    drop = {"path": None, "space_path": None}  # where the package is installed
    assert {**shipped, **drop} == {**from_file.to_dict(), **drop}


@pytest.mark.parametrize(("data", "says"), [
    ({"space": "hdc", "n_trials": 0}, "n_trials"),
    ({"n_trials": 3}, "space: missing"),
    ({"space": "hdc", "trial": {"kind": "nope"}}, "kind"),
    ({"space": "no_such_space"}, "not a shipped space"),
])
def test_bad_input_is_one_line(tmp_path: Path, data: dict[str, object], says: str) -> None:
    with pytest.raises(StudyConfigError) as e:
        nas_dil.Study.from_dict(data, base_dir=tmp_path)
    msg = str(e.value)
    assert says in msg and "\n" not in msg and str(tmp_path / "<dict>") in msg
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_bad_progress_is_refused_before_the_search(tmp_path: Path) -> None:
    study = nas_dil.Study.from_toml("tabular")
    with pytest.raises(UserError, match="progress=42"):
        run_study(study, out=tmp_path / "run", progress=42)  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()


def test_progress_kinds() -> None:
    seen: list[tuple[int, str | None]] = []
    p = _progress(lambda s, e: seen.append((s.done, e)))
    p.message("before any status")
    p.show(Status(n_trials=4, done=1), "trial 0: complete")
    p.message("warning: x")
    p.close(Status(n_trials=4, done=4))
    assert seen == [(0, "before any status"), (1, "trial 0: complete"), (1, "warning: x"),
                    (4, None)]
    assert type(_progress("line")) is Progress and _progress("line").enabled
    assert not _progress(False).enabled and not _progress(None).enabled


@pytest.fixture
def old_study(tmp_path: Path) -> Path:
    db = tmp_path / "study.db"
    shutil.copy(FIXTURE, db)
    return db


def test_the_front_is_the_reports(old_study: Path) -> None:
    """tests/fixtures/study_v0_1.db: 5 COMPLETE sleep trials, 4 of them candidates (trial 4
    reused trial 2's result: the same candidate), front 2, 3 (the report's)."""
    res = nas_dil.open_results(old_study)
    data = build_report(old_study)
    assert sorted(c.number for c in res.front) == sorted(r.number for r in data.pareto)
    assert res.knee is not None and res.knee.number == data.knee
    miou = [c.values["miou"] for c in res.front]
    assert miou == sorted(miou, reverse=True)  # best first by the first objective
    df = res.front_dataframe()
    assert list(df.number) == [c.number for c in res.front]
    assert {"miou_mean", "miou_std", "n_seeds", "schedule", "knee"} <= set(df.columns)
    assert (df.n_seeds == 1).all() and df.miou_std.isna().all()  # one look each
    every = res.front_dataframe(all_candidates=True)
    assert len(every) == 4 and every.pareto.sum() == len(res.front) == 2
    c = res.front[0]
    assert c.schedule == ",".join(map(str, c.rates)) and c.trials == (c.number,)
    assert math.isclose(c.values["miou"], float(df.miou_mean.iloc[0]))
    assert len(res.trials_dataframe()) == 5


def test_export_from_results(old_study: Path, tmp_path: Path) -> None:
    res = nas_dil.open_results(old_study)
    r = res.export(pick="knee", out=tmp_path / "knee")
    assert r.trial == res.knee.number if res.knee else False
    assert (tmp_path / "knee" / "schedule.json").is_file()
    with pytest.raises(UserError, match="trial 99"):
        res.export(pick="trial=99", out=tmp_path / "other")
    assert not (tmp_path / "other").exists()


@pytest.mark.slow
def test_the_example_notebook_runs(tmp_path: Path) -> None:
    """examples/quickstart.ipynb in a fresh kernel (nbclient), in a scratch folder."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(str(o.get("data", {}).get("text/plain", "")) + str(o.get("text", ""))
                     for cell in nb.cells if cell.cell_type == "code"
                     for o in cell.get("outputs", []))
    assert "Traceback" not in text
    assert "miou_mean" in text and "miou_std" in text and "n_seeds" in text
    assert (tmp_path / "exports" / "knee" / "schedule.json").is_file()
    res = nas_dil.open_results(tmp_path / "runs" / "notebook")
    every = res.front_dataframe(all_candidates=True)
    assert len(res.front) >= 1 and (every.n_seeds > 1).any()  # a candidate seen twice
    seen = every[every.n_seeds > 1].iloc[0]
    assert seen.miou_std >= 0 and len(seen.trials) == seen.n_seeds
