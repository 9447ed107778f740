"""Trial kinds: what a study's ``[trial] kind`` means, in one table (`KINDS`).

Every place that behaves differently by kind asks its `TrialKind` here; nothing else compares
kind names. A kind says:

- ``builds_nets``: trials build and train torch nets ("train"): preflight checks torchvision
  and the backbone weights, and only these trials may freeze a backbone (feature caches);
- ``reads_data``: the data set is loaded where trials run, to describe it and learn its
  number of classes (else the study's ``data.num_classes``, default 5, and no data);
- ``needs_table``: trials read a tabular benchmark (``[trial] table``, checked when parsed);
- ``keyed_options``: the ``[trial]`` options enter the trial key (the sleep kind's curve
  depends on them; the other kinds' results do not);
- `n_evals`: evaluations per trial (the early-stopping rule's last one);
- how it runs in a worker: ``nas_dil.search.worker.RUNNERS[name]`` (one runner per kind, a
  test holds them equal).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nas_dil.search.config import TrialKindConfig
    from nas_dil.train.config import TrainConfig

__all__ = ["KINDS", "TrialKind", "kind_of", "train_evals"]


def train_evals(train: TrainConfig) -> int | None:
    """Evaluations a trained trial makes under ``train`` (None: a seconds budget)."""
    if train.epochs:
        return int(train.epochs)
    if train.steps:
        return math.ceil(int(train.steps) / int(train.eval_every_steps))
    return None


def _table_evals(trial: TrialKindConfig, train: TrainConfig) -> int | None:
    """The table's curve length: a tabular trial reports one evaluation per curve point."""
    from nas_dil.search.tabular import load_table

    assert trial.table is not None  # set when the study was parsed (needs_table)
    return max(len(r["miou_curve"]) for r in load_table(trial.table).rows.values())


@dataclass(frozen=True)
class TrialKind:
    name: str  # the study file's [trial] kind
    builds_nets: bool  # trials build torch nets (torchvision, weights, freeze checked)
    reads_data: bool  # the data set is loaded where trials run (its classes, its description)
    needs_table: bool  # trials read [trial] table (a tabular benchmark)
    keyed_options: bool  # the [trial] options enter the trial key
    evals: Callable[[TrialKindConfig, TrainConfig], int | None]  # evaluations per trial
    about: str  # one line for docs and errors

    def n_evals(self, trial: TrialKindConfig, train: TrainConfig) -> int | None:
        """Evaluations per trial (None: a seconds budget, unknown in advance)."""
        return self.evals(trial, train)


KINDS: dict[str, TrialKind] = {k.name: k for k in (
    TrialKind("train", builds_nets=True, reads_data=True, needs_table=False,
              keyed_options=False, evals=lambda trial, train: train_evals(train),
              about="run_trial: trains the net on the study's data"),
    TrialKind("sleep", builds_nets=False, reads_data=False, needs_table=False,
              keyed_options=True, evals=lambda trial, train: trial.evals,
              about="a synthetic, seeded curve over sleep_s (orchestration tests only)"),
    TrialKind("tabular", builds_nets=False, reads_data=True, needs_table=True,
              keyed_options=False, evals=_table_evals,
              about="the mIoU curve read from a tabular benchmark (no training)"),
)}


def kind_of(name: str) -> TrialKind:
    """The kind called ``name`` (a KeyError for a name the study file would have refused)."""
    return KINDS[name]
