"""Trial kinds: one table (`nas_dil.search.kinds.KINDS`) says what each kind needs; the
worker has one runner per kind."""

from __future__ import annotations

import dataclasses

import pytest

from nas_dil.search.config import TrialKindConfig
from nas_dil.search.kinds import KINDS, train_evals
from nas_dil.search.worker import RUNNERS
from nas_dil.train.config import TrainConfig


def test_every_kind_has_one_runner() -> None:
    assert list(RUNNERS) == list(KINDS)


@pytest.mark.parametrize(("name", "nets", "data", "table", "keyed"), [
    ("train", True, True, False, False),
    ("sleep", False, False, False, True),
    ("tabular", False, True, True, False),
])
def test_what_each_kind_needs(name: str, nets: bool, data: bool, table: bool,
                              keyed: bool) -> None:
    k = KINDS[name]
    assert (k.builds_nets, k.reads_data, k.needs_table, k.keyed_options) == (
        nets, data, table, keyed)


@pytest.mark.parametrize(("budget", "evals"), [
    ({"epochs": 12}, 12),
    ({"epochs": None, "steps": 100, "eval_every_steps": 30}, 4),  # ceil(100 / 30)
    ({"epochs": None, "steps": 90, "eval_every_steps": 30}, 3),
    ({"epochs": None, "seconds": 5.0}, None),  # a time budget: unknown in advance
])
def test_train_evaluations_follow_the_budget(budget: dict[str, object],
                                             evals: int | None) -> None:
    train = dataclasses.replace(TrainConfig(), **budget)
    assert train_evals(train) == evals
    assert KINDS["train"].n_evals(TrialKindConfig(), train) == evals


def test_sleep_evaluations_are_its_option() -> None:
    assert KINDS["sleep"].n_evals(TrialKindConfig(kind="sleep", evals=5), TrainConfig()) == 5
