"""The shipped spaces: load by name and by path, hand-checked counts, describe()."""

from __future__ import annotations

import json

import pytest

from nas_dil.resources import resolve, shipped_names
from nas_dil.spaces import Candidate, load_space

from ._util import SHIPPED

# candidate counts, by hand from the files' options (× output strides × widths)
EXPECTED_COUNTS = {
    "free": 2 * 2 * (6**3 + 6**4 + 6**5 + 6**6),  # 6 choices, depth 3..6
    # groups [1,2] [1,3]; [1,2,3] [1,2,5] [1,2,7] [1,3,5] [1,3,7] [1,3,9]; size 2 repeats
    # 2..4 and size 3 repeats 1..3 fit depth 3..9: 2·3 + 6·3 = 24 schedules
    "hdc": 24 * 2 * 2,
    "exponential": 4 * 2 * 2 * 2,  # levels 3..6 × leading 0/1 × trailing 0/1 × 2 widths
    "multigrid": 4 * 3 * 2 * 2 * 2,  # 4 grids × 3 base rates × 1..2 repeats, all distinct
    "resnet50_multigrid": 4**3,  # layer4's 3 blocks, rates 1-4; one OS, kernel, width
}


@pytest.mark.parametrize(("name", "depths"), [
    ("free", (3, 4, 5, 6)), ("resnet50_multigrid", (3,)), ("hdc", (3, 4, 6, 8, 9)),
    ("multigrid", (3, 6))])
def test_depths(name: str, depths: tuple[int, ...]) -> None:
    s = load_space(name)
    assert s.depths() == depths
    if s.count() < 2_000:
        assert {c.depth for c in s.enumerate()} == set(depths)


def test_every_rule_is_shipped() -> None:
    assert set(SHIPPED) <= set(shipped_names("search_spaces"))


@pytest.mark.parametrize("name", SHIPPED)
def test_load_by_name_and_by_path(name: str) -> None:
    by_name = load_space(name)
    path = resolve("search_spaces", name)
    assert path is not None
    by_path = load_space(path)
    by_str = load_space(str(path))
    assert load_space(f"{name}.toml").config == by_name.config
    assert by_name.config == by_path.config == by_str.config
    assert by_name.name == name and by_name.config.rule == name
    assert by_name.path.name == f"{name}.toml"
    assert by_name.description


@pytest.mark.parametrize("name", SHIPPED)
def test_describe_is_json(name: str) -> None:
    d = load_space(name).describe()
    assert json.loads(json.dumps(d)) == d
    assert d["name"] == name and d["rule"] == name and d["count"] > 0
    assert {"kernel", "output_stride", "width"} <= set(d["params"])


@pytest.mark.parametrize(("name", "count"), EXPECTED_COUNTS.items())
def test_counts(name: str, count: int) -> None:
    assert load_space(name).count() == count


@pytest.mark.parametrize("name", ["hdc", "exponential", "multigrid"])
def test_small_shipped_enumerate(name: str) -> None:
    s = load_space(name)
    all_ = list(s.enumerate())
    assert len(all_) == len(set(all_)) == s.count()


def test_gapfree_count_is_fast_and_larger_than_hdc() -> None:
    assert load_space("gapfree").count() > load_space("hdc").count()


@pytest.mark.parametrize(("name", "rates", "inside"), [
    ("exponential", (1, 1, 2, 4, 8, 16, 1), True),  # Yu & Koltun's context module
    ("exponential", (1, 2, 4, 8, 16, 32, 64), False),  # levels 7 > 6
    ("multigrid", (2, 4, 8), True),
    ("multigrid", (2, 4, 8, 2, 4, 8), True),
    ("multigrid", (2, 4, 8, 2, 4, 8, 2, 4, 8), False),  # repeats 3 > 2
    ("hdc", (1, 2, 5, 1, 2, 5), True),
    ("hdc", (1, 2, 9, 1, 2, 9), False),  # rule 1: M_2 = 5 > 3
    ("hdc", (1, 2, 5, 1, 3, 5), False),  # groups not identical
    ("gapfree", (1, 2, 3, 1, 2, 3), True),
    ("gapfree", (1, 3, 1), True),  # hole-free although rule 1 rejects it (M_2 = 5)
    ("gapfree", (2, 2, 2), False),  # checkerboard
    ("free", (2, 2, 2), True),
    ("free", (2, 2), False),  # depth 2 < 3
])
def test_contains(name: str, rates: tuple[int, ...], inside: bool) -> None:
    s = load_space(name)
    cfg = s.config
    c = Candidate(rates, cfg.kernel[0], cfg.output_stride[0], cfg.width[0])
    assert s.contains(c) is inside
