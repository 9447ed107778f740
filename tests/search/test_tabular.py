"""The "tabular" trial kind: mIoU read from a tabular benchmark instead of training."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from nas_dil.errors import UserError
from nas_dil.resources import resolve, shipped_names
from nas_dil.search import run_search
from nas_dil.search.config import StudyConfigError, load_study_config
from nas_dil.search.records import TrialPayload
from nas_dil.search.tabular import TableError, load_table, schedule_key
from nas_dil.search.worker import execute

REPO = Path(__file__).resolve().parents[2]
FIELDS = ["schedule", "depth", "kernel", "output_stride", "width", "rf", "gflops", "seed",
          "miou", "pixel_acc", "miou_curve", "train_time_s"]
SPACE = """
name = "tiny"
depth = 3
kernel = [3]
output_stride = [4]
width = [16]
[rates]
rule = "free"
choices = [1, 2]
"""
STUDY = """
name = "tab"
space = "tiny.toml"
n_trials = {n}
seed = 0
keep_weights = false
[trial]
kind = "tabular"
{table}
[train]
epochs = 3
[parallel]
max_in_flight = 2
[early_stop]
enabled = false
[noise]
baseline_seeds = 1  # one seed per baseline, no confirmation: the counts below
[confirm]
seeds = 0
"""


def _miou(rates: tuple[int, ...], seed: int) -> float:
    return round(0.3 + 0.01 * sum(rates) + 0.001 * seed, 4)


def write_table(path: Path, skip: str | None = None, seeds: tuple[int, ...] = (0, 1)) -> Path:
    with path.open("w", newline="") as f:
        f.write("# test table\n")
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for seed in seeds:
            for a in (1, 2):
                for b in (1, 2):
                    for c in (1, 2):
                        r = (a, b, c)
                        if schedule_key(r) == skip:
                            continue
                        m = _miou(r, seed)
                        w.writerow({"schedule": schedule_key(r), "depth": 3, "kernel": 3,
                                    "output_stride": 4, "width": 16, "rf": 1, "gflops": 0.1,
                                    "seed": seed, "miou": m, "pixel_acc": 0.9,
                                    "miou_curve": f"{m / 2:.4f} {m * 0.8:.4f} {m:.4f}",
                                    "train_time_s": 1.5})
    return path


def write_study(tmp: Path, table: str = 'table = "t.csv"', n: int = 4) -> Path:
    (tmp / "tiny.toml").write_text(SPACE)
    study = tmp / "study.toml"
    study.write_text(STUDY.format(n=n, table=table))
    return study


def test_config_resolves_table_relative_to_study(tmp_path: Path) -> None:
    write_table(tmp_path / "t.csv")
    cfg = load_study_config(write_study(tmp_path))
    assert cfg.trial.kind == "tabular"
    assert Path(str(cfg.trial.table)) == (tmp_path / "t.csv").resolve()


def test_shipped_table_resolves_from_any_folder(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A shipped table name works from a study anywhere (package data, not the cwd)."""
    study = tmp_path / "elsewhere" / "study.toml"
    study.parent.mkdir()
    study.write_text('space = "tabular"\n[trial]\nkind = "tabular"\n'
                     'table = "tabular_dilation.csv"\ntable_seed = 0\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_study_config(study)
    assert Path(str(cfg.trial.table)) == resolve("benchmarks", "tabular_dilation.csv")
    assert Path(str(cfg.trial.table)).parent.name == "benchmarks"
    assert "tabular_dilation" in shipped_names("benchmarks")


def test_missing_candidate_is_one_line_error(tmp_path: Path) -> None:
    write_table(tmp_path / "t.csv", skip="1-2-1")
    with pytest.raises(StudyConfigError) as e:
        load_study_config(write_study(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "trial.table" in msg and "1-2-1" in msg


def test_missing_seed_and_table_errors(tmp_path: Path) -> None:
    write_table(tmp_path / "t.csv", seeds=(1,))
    with pytest.raises(StudyConfigError, match="seed 0"):
        load_study_config(write_study(tmp_path))
    cfg = load_study_config(write_study(tmp_path, 'table = "t.csv"\ntable_seed = 1'))
    assert cfg.trial.table_seed == 1
    with pytest.raises(StudyConfigError, match="needs table"):
        load_study_config(write_study(tmp_path, ""))
    with pytest.raises(StudyConfigError, match="no such file"):
        load_study_config(write_study(tmp_path, 'table = "nope.csv"'))
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(StudyConfigError, match="missing columns"):
        load_study_config(write_study(tmp_path, 'table = "bad.csv"'))


def test_lookup_error_is_user_error(tmp_path: Path) -> None:
    t = load_table(write_table(tmp_path / "t.csv"))
    assert t.seeds == [0, 1] and t.comments == ("test table",)
    assert t.lookup((1, 2, 2), 3, 4, 16, 1)["miou"] == _miou((1, 2, 2), 1)
    with pytest.raises(UserError, match="no row for schedule 4-4-4"):
        t.lookup((4, 4, 4), 3, 4, 16, 0)
    assert issubclass(TableError, UserError)


def _payload(table: Path, rates: list[int], seed: int = 0) -> TrialPayload:
    return TrialPayload(
        kind="tabular", trial_config={"arch": {"output_stride": 4, "width": 16}},
        schedule={"rates": rates, "kernels": [3], "strides": [1] * len(rates)}, seed=seed,
        key="k", number=0, analytic={}, losses=(), keep_weights=False,
        options={"kind": "tabular", "table": str(table), "table_seed": None})


def test_worker_reads_curve(tmp_path: Path) -> None:
    table = write_table(tmp_path / "t.csv")
    out = execute(_payload(table, [2, 1, 2], seed=1))
    assert out["status"] == "complete"
    r = out["result"]
    assert r["miou"] == _miou((2, 1, 2), 1) and len(r["miou_curve"]) == 3
    assert r["miou_curve"][-1] == pytest.approx(r["miou"], abs=1e-4)
    bad = execute(_payload(table, [8, 8, 8]))
    assert bad["status"] == "fail" and "no row" in bad["reason"]


def test_shipped_study_covers_the_committed_table() -> None:
    cfg = load_study_config(REPO / "studies" / "tabular.toml")
    assert cfg.trial.kind == "tabular" and Path(str(cfg.trial.table)).is_file()
    t = load_table(str(cfg.trial.table))
    n = sum(1 for k in t.rows if k[4] == 0)
    assert n >= 320


def test_search_end_to_end(tmp_path: Path, ray_cluster: Any) -> None:
    write_table(tmp_path / "t.csv")
    s = run_search(write_study(tmp_path, n=6), out=tmp_path / "out",
                   address=ray_cluster.address, progress=False)
    assert s.done == 6 and s.failed == 0
    import optuna

    study = optuna.load_study(study_name="tab", storage=f"sqlite:///{tmp_path / 'out/study.db'}")
    for t in study.trials:
        if t.state.name == "COMPLETE":
            rates = tuple(t.user_attrs["candidate"]["rates"])
            assert t.values[0] == pytest.approx(_miou(rates, 0))


def test_shipped_v2_study_reads_every_seed_of_the_wide_table() -> None:
    """studies/tabular_v2.toml parses (its table covers the space for its seed) and each
    seed of benchmarks/tabular_v2.csv reads as its own entry: that seed's mIoU and curve,
    the steps budget's 4 evaluations, the mean of the three beside it."""
    cfg = load_study_config(REPO / "studies" / "tabular_v2.toml")
    t = load_table(cfg.trial.table)
    assert t.seeds == [0, 1, 2] and len(t.rows) == 480
    looks = [t.lookup((1, 3), 3, 4, 16, s) for s in (0, 1, 2)]
    assert all(len(r["miou_curve"]) == 4 and r["miou_curve"][-1] == pytest.approx(r["miou"],
                                                                                  abs=1e-4)
               for r in looks)
    assert looks[0]["miou_mean"] == pytest.approx(sum(r["miou"] for r in looks) / 3, abs=1e-6)


@pytest.mark.parametrize(("table_seed", "seed", "look", "reads"), [
    (None, 0, 0, 0), (None, 1, 1, 0),  # study seed 0, look 1: seed 1 - 1 = 0, next is 1
    (None, 0, 1, 1), (0, 5, 1, 1), (1, 0, 1, 0),  # the table's seeds cycle: 1 -> 0
    (0, 0, 2, 0)])
def test_a_repeat_reads_the_tables_next_seed(tmp_path: Path, table_seed: int | None,
                                             seed: int, look: int, reads: int) -> None:
    from dataclasses import replace

    table = write_table(tmp_path / "t.csv")
    p = _payload(table, [2, 1, 2], seed=seed + look)
    p = replace(p, look=look, options={**p.options, "table_seed": table_seed})
    assert execute(p)["result"]["miou"] == _miou((2, 1, 2), reads)


def test_repeats_train_another_seed_and_the_front_takes_the_mean(
        tmp_path: Path, ray_cluster: Any) -> None:
    """``[sampler] repeats = 1``: 12 trials of 8 candidates, so at least 4 second looks
    (seed 1, another key, the table's seed-1 mIoU), not duplicates answered from storage; the
    report's front
    and the export's knee see each candidate once, at the mean of its looks."""
    import optuna

    from nas_dil.export.pick import select_trial
    from nas_dil.report.data import build_report
    from nas_dil.report.source import open_study

    write_table(tmp_path / "t.csv")
    path = write_study(tmp_path, n=12)
    path.write_text(path.read_text() + "[sampler]\nname = \"hvi\"\nrepeats = 1\nn_startup = 4\n")
    s = run_search(path, out=tmp_path / "out", address=ray_cluster.address, progress=False)
    assert s.done == 12 and s.failed == 0 and s.reused == 0 and s.repeats >= 4
    study = optuna.load_study(study_name="tab", storage=f"sqlite:///{tmp_path / 'out/study.db'}")
    firsts: dict[tuple[int, ...], optuna.trial.FrozenTrial] = {}
    repeats = []
    for t in study.trials:
        rates = tuple(t.user_attrs["candidate"]["rates"])
        look = t.user_attrs.get("look", 0)
        assert t.user_attrs["seed"] == look and t.values[0] == pytest.approx(_miou(rates, look))
        if look:
            repeats.append(t)
        else:
            firsts[rates] = t
    assert len(firsts) + len(repeats) == 12 and len(repeats) == s.repeats >= 4  # 8 candidates
    again = [tuple(t.user_attrs["candidate"]["rates"]) for t in repeats]
    assert len(set(again)) == len(again)  # one repeat each at most (repeats = 1)
    for t in repeats:
        first = firsts[tuple(t.user_attrs["candidate"]["rates"])]
        assert t.user_attrs["look_of"] == first.user_attrs["key"] != t.user_attrs["key"]
    data = build_report(tmp_path / "out")
    # 2-2-2 has the best mIoU in every look, so it is on the front, at the mean of its looks
    [row] = [r for r in data.pareto if r.schedule == "2,2,2"]
    looks = 1 + sum(tuple(t.user_attrs["candidate"]["rates"]) == (2, 2, 2) for t in repeats)
    assert row.looks == (looks if looks > 1 else None)
    assert row.miou == pytest.approx(sum(_miou((2, 2, 2), k) for k in range(looks)) / looks)
    assert "seeds" in [c.label for c in data.table.columns] or looks == 1
    sc = data.scatters[0]  # one point per candidate, at its mean
    assert len(sc.numbers) == len(firsts) == len(set(sc.numbers))
    assert sc.y[sc.numbers.index(row.number)] == pytest.approx(row.miou)
    trial, _ = select_trial(open_study(tmp_path / "out"), "best-miou")
    assert tuple(trial.record.candidate["rates"]) == (2, 2, 2)
    assert trial.values[0] == pytest.approx(row.miou)  # the mean, not its best look
    assert trial.n_looks == looks


@pytest.mark.parametrize("epochs", [3, 7])
def test_evaluations_come_from_the_table_not_the_train_budget(tmp_path: Path,
                                                             epochs: int) -> None:
    """A tabular trial reports one evaluation per curve point (3 here, 8 in the shipped
    table): [train] epochs need not restate it."""
    write_table(tmp_path / "t.csv")
    study = write_study(tmp_path)
    study.write_text(study.read_text().replace("epochs = 3", f"epochs = {epochs}"))
    cfg = load_study_config(study)
    assert cfg.kind.n_evals(cfg.trial, cfg.train) == 3
    shipped = load_study_config(REPO / "studies" / "tabular.toml")
    assert shipped.kind.n_evals(shipped.trial, shipped.train) == 8


def test_baseline_seeds_and_confirmation_cycle_the_tables_seeds(tmp_path: Path,
                                                               ray_cluster: Any) -> None:
    """``[noise] baseline_seeds = 3`` over a table of seeds 0 and 1: the baseline's looks read
    seeds 0, 1, 0 (cycling, as repeats do); the confirmation looks after n_trials too."""
    import optuna

    write_table(tmp_path / "t.csv")
    path = write_study(tmp_path, n=5)
    text = path.read_text().replace("baseline_seeds = 1", "baseline_seeds = 3").replace(
        "seeds = 0\n", "seeds = 3\n")
    path.write_text(text + '[[baselines]]\nname = "b"\nrates = [1, 1, 1]\n')  # dominated
    s = run_search(path, out=tmp_path / "out", address=ray_cluster.address, progress=False)
    assert s.done == 5 and s.failed == 0 and s.unconfirmed == [] and s.noise is not None
    study = optuna.load_study(study_name="tab", storage=f"sqlite:///{tmp_path / 'out/study.db'}")
    base = [t for t in study.trials if t.user_attrs.get("baseline") == "b"]
    assert [t.user_attrs.get("look", 0) for t in base] == [0, 1, 2]
    assert [t.values[0] for t in base] == [pytest.approx(_miou((1, 1, 1), k))
                                           for k in (0, 1, 0)]
    for t in study.trials:
        if t.state.name == "COMPLETE":
            look = t.user_attrs.get("look", 0)
            rates = tuple(t.user_attrs["candidate"]["rates"])
            assert t.values[0] == pytest.approx(_miou(rates, (0, 1)[look % 2]))
    assert sum(bool(t.user_attrs.get("confirm")) for t in study.trials) == s.confirmed > 0
