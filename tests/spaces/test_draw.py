"""`Space.draw`: Optuna-free random candidates, drawn as RandomSampler would draw them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from nas_dil.spaces import load_space


@pytest.mark.parametrize("name", ["free", "hdc", "gapfree", "exponential", "multigrid",
                                  "tabular"])
def test_draws_are_in_the_space_and_repeat_with_the_seed(name: str) -> None:
    space = load_space(name)
    a = space.draw(200, np.random.default_rng(1))
    assert all(space.contains(c) for c in a)
    assert a == space.draw(200, np.random.default_rng(1))
    assert a != space.draw(200, np.random.default_rng(2))


def test_each_parameter_is_uniform_in_define_by_run_order() -> None:
    """tabular: depth 3 or 4 with equal odds (not 64 : 256 as a uniform draw over the 320
    candidates would give), then each rate uniform over {1, 2, 4, 8}."""
    space = load_space("tabular")
    cands = space.draw(8000, np.random.default_rng(0))
    depth = Counter(c.depth for c in cands)
    assert abs(depth[3] / 8000 - 0.5) < 0.03
    first = Counter(c.rates[0] for c in cands)
    assert all(abs(first[r] / 8000 - 0.25) < 0.03 for r in (1, 2, 4, 8))
