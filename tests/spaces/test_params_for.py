"""`Space.params_for` is the inverse of `Space.sample`: the parameters it returns make
`sample` produce the same candidate, for every rule; outside the space it is None."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from nas_dil.spaces import Candidate, load_space

from ._util import SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_sample_of_params_for_is_the_candidate(name: str) -> None:
    space = load_space(name)
    for cand in space.draw(60, np.random.default_rng(0)):
        params = space.params_for(cand)
        assert params is not None
        trial = optuna.trial.FixedTrial(params)
        assert space.sample(trial) == cand
        assert trial.user_attrs["repaired"] is False  # an inside candidate needs no repair


@pytest.mark.parametrize("name", SHIPPED)
def test_outside_the_space_is_none(name: str) -> None:
    space = load_space(name)
    cfg = space.config
    bad_width = Candidate((1, 2, 5), cfg.kernel[0], cfg.output_stride[0], max(cfg.width) + 1)
    assert space.params_for(bad_width) is None
