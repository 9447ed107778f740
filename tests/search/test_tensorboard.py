"""TensorBoard curves (`nas_dil.search.tensorboard`): the driver writes each told trial's
mIoU and loss per evaluation and the study's hypervolume under OUT/tb/, read back here with
tensorboard's own EventAccumulator; without the package, one note and no crash."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from nas_dil.search.records import TrialRecord
from nas_dil.search.tensorboard import Board

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}


def test_board_writes_curves_and_hypervolume(tmp_path: Path) -> None:
    board = Board(tmp_path / "tb")
    hv = iter([0.25, 0.5])
    rec = TrialRecord(result={"miou": 0.5, "miou_curve": [0.25, 0.5], "loss_curve": [2.0, 1.5]})
    board.told(0, rec, "complete", lambda: ([0], next(hv)))
    pruned = TrialRecord(result={"miou_curve": [0.125], "loss_curve": [3.0]})
    board.told(1, pruned, "pruned", lambda: ([0], next(hv)))
    board.close()
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == [
        "study", "trial_0000", "trial_0001"]
    assert scalars(tmp_path / "tb" / "trial_0000") == {
        "trial/miou": [(1, 0.25), (2, 0.5)], "trial/loss": [(1, 2.0), (2, 1.5)],
        "trial/final_miou": [(0, 0.5)]}
    assert scalars(tmp_path / "tb" / "trial_0001") == {
        "trial/miou": [(1, 0.125)], "trial/loss": [(1, 3.0)]}
    assert scalars(tmp_path / "tb" / "study") == {"study/hypervolume": [(0, 0.25), (1, 0.5)]}


def test_off_writes_nothing_and_a_missing_package_is_one_note(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = TrialRecord(result={"miou": 0.5, "miou_curve": [0.5], "loss_curve": [1.0]})
    Board(None).told(0, rec, "complete", lambda: ([0], 0.1))
    assert not any(tmp_path.iterdir())
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import -> ImportError
    notes: list[str] = []
    board = Board(tmp_path / "tb", notes.append)
    for n in range(2):
        board.told(n, rec, "complete", lambda: ([0], 0.1))
    assert len(notes) == 1 and "nas-dil[tensorboard]" in notes[0] and "\n" not in notes[0]
    assert not (tmp_path / "tb").exists()


@pytest.mark.slow
def test_sleep_search_writes_event_files(ray_cluster: Any, tmp_path: Path) -> None:
    """A tiny sleep-kind search with tensorboard=True: every trial's curves as stored, and
    the hypervolume after each trial ending at the summary's."""
    import optuna

    from nas_dil.search import run_search
    from tests.search.conftest import sleep_study

    study = sleep_study(tmp_path / "s.toml", n_trials=3, sleep_s=0.05, evals=2)
    out = tmp_path / "out"
    summary = run_search(study, out=out, address=ray_cluster.address, progress=False,
                         tensorboard=True)
    trials = optuna.load_study(study_name="s",
                               storage=f"sqlite:///{out / 'study.db'}").trials
    assert len(trials) == 3
    for t in trials:
        got = scalars(out / "tb" / f"trial_{t.number:04d}")
        a = t.user_attrs
        assert [v for _, v in got["trial/miou"]] == pytest.approx(a["miou_curve"])
        assert [v for _, v in got["trial/loss"]] == pytest.approx(a["loss_curve"])
        assert [s for s, _ in got["trial/miou"]] == [1, 2]
    hv = scalars(out / "tb" / "study")["study/hypervolume"]
    assert sorted(s for s, _ in hv) == [0, 1, 2]
    assert max(hv)[1] == pytest.approx(summary.hypervolume)
