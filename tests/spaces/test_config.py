"""Space files: every bad file is a one-line SpaceError naming the file and the dotted key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nas_dil.spaces import SpaceError, load_space

from ._util import space_dict, write


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


FREE = space_dict("free", choices=[1, 2, 3])

BAD: list[tuple[str, dict[str, Any], str, str]] = [
    # (case id, space table, dotted key in the message, text in the message)
    ("unknown top key", {**FREE, "colour": "red"}, "colour", "unknown key"),
    ("unknown rates key", space_dict("free", choices=[1], group_size=2), "rates.group_size",
     "unknown key for rule 'free'"),
    ("choices not ints", space_dict("free", choices=["a"]), "rates.choices",
     "expected a list of positive integers <= 1024, got 'a'"),
    ("choices a string", space_dict("free", choices="1,2"), "rates.choices", "got '1,2'"),
    ("choices empty", space_dict("free", choices=[]), "rates.choices", "non-empty"),
    ("choices zero", space_dict("free", choices=[0, 1]), "rates.choices", "got 0"),
    ("choices float", space_dict("free", choices=[1, 2.5]), "rates.choices", "got 2.5"),
    ("choices bool", space_dict("free", choices=[True]), "rates.choices", "got True"),
    ("choices duplicate", space_dict("free", choices=[1, 2, 1]), "rates.choices", "duplicate"),
    ("choices too large", space_dict("free", choices=[1, 5000]), "rates.choices", "5000"),
    ("choices missing", space_dict("free"), "rates.choices", "missing"),
    ("even kernel", {**FREE, "kernel": [3, 4]}, "kernel", "odd"),
    ("kernel string", {**FREE, "kernel": "3"}, "kernel", "got '3'"),
    ("kernel missing", _without(FREE, "kernel"), "kernel", "missing"),
    ("output stride 64", {**FREE, "output_stride": [8, 64]}, "output_stride", "got 64"),
    ("output stride empty", {**FREE, "output_stride": []}, "output_stride", "non-empty"),
    ("width zero", {**FREE, "width": [0]}, "width", "got 0"),
    ("width missing", _without(FREE, "width"), "width", "missing"),
    ("depth min > max", {**FREE, "depth": {"min": 5, "max": 3}}, "depth", "min 5 > max 3"),
    ("depth zero", {**FREE, "depth": 0}, "depth", "got 0"),
    ("depth too deep", {**FREE, "depth": 65}, "depth", "got 65"),
    ("depth unknown sub-key", {**FREE, "depth": {"min": 1, "max": 3, "step": 1}},
     "depth.step", "unknown key"),
    ("depth min missing", {**FREE, "depth": {"max": 3}}, "depth.min", "missing"),
    ("depth min bool", {**FREE, "depth": {"min": True, "max": 3}}, "depth.min", "got True"),
    ("depth list", {**FREE, "depth": [1, 2]}, "depth", "got [1, 2]"),
    ("free needs depth", _without(FREE, "depth"), "depth", "missing"),
    ("gapfree needs depth", _without(space_dict("gapfree", choices=[1, 2]), "depth"), "depth",
     "missing"),
    ("name empty", {**FREE, "name": ""}, "name", "non-empty string"),
    ("description not str", {**FREE, "description": 3}, "description", "string"),
    ("rgf not bool", {**FREE, "require_gridding_free": "yes"}, "require_gridding_free",
     "true or false"),
    ("unknown rule", space_dict("random", choices=[1]), "rates.rule", "unknown rule 'random'"),
    ("missing rule", {**FREE, "rates": {"choices": [1]}}, "rates.rule", "missing"),
    ("rates not a table", {**FREE, "rates": 3}, "rates", "table"),
    ("rates missing", _without(FREE, "rates"), "rates", "missing"),
    # spaces with no valid candidate are load-time errors
    ("gapfree without 1", space_dict("gapfree", choices=[2, 3]), "rates.choices", "1"),
    ("free rgf without 1", {**space_dict("free", choices=[2, 3]), "require_gridding_free": True},
     "rates.choices", "1"),
    ("gapfree rgf false", {**space_dict("gapfree", choices=[1, 2]),
                           "require_gridding_free": False}, "require_gridding_free",
     "by construction"),
    ("hdc rgf false", {**space_dict("hdc", choices=[1, 2]), "require_gridding_free": False},
     "require_gridding_free", "by construction"),
    ("hdc without 1", space_dict("hdc", choices=[2, 3]), "rates.choices", "start at rate 1"),
    ("hdc group_size 1", space_dict("hdc", choices=[1, 2], group_size=1), "rates.group_size",
     "got 1"),
    ("hdc repeats 0", space_dict("hdc", choices=[1, 2], repeats={"min": 0, "max": 2}),
     "rates.repeats.min", "got 0"),
    ("hdc no depth or repeats", _without(space_dict("hdc", choices=[1, 2]), "depth"), "depth",
     "repeats"),
    ("hdc no group obeys rule 1", space_dict("hdc", choices=[1, 7, 9]), "rates", "rule 1"),
    ("hdc depth out of reach", space_dict("hdc", {"depth": {"min": 5, "max": 9}},
                                          choices=[1, 2, 3], group_size={"min": 2, "max": 3},
                                          repeats=1), "depth", "depths [2, 3]"),
    ("hdc kernel 1 admits nothing", space_dict("hdc", {"kernel": [1, 3]}, choices=[1, 2]),
     "kernel", "kernel 1 admits no candidate"),
    ("hdc unknown option", space_dict("hdc", choices=[1, 2], base=2), "rates.base",
     "unknown key for rule 'hdc'"),
    ("exponential levels missing", space_dict("exponential"), "rates.levels", "missing"),
    ("exponential base 1", space_dict("exponential", base=1, levels=3), "rates.base", "got 1"),
    ("exponential rate too large", space_dict("exponential", base=2, levels=12), "rates.levels",
     "2048"),
    ("exponential leading negative", space_dict("exponential", levels=3, leading=[-1]),
     "rates.leading", "got -1"),
    ("exponential depth filter", space_dict("exponential", {"depth": 9}, levels=3), "depth",
     "depths [3]"),
    ("exponential choices", space_dict("exponential", levels=3, choices=[1]), "rates.choices",
     "unknown key for rule 'exponential'"),
    ("exponential all gridded", space_dict("exponential", {"require_gridding_free": True},
                                           base=4, levels=3), "require_gridding_free", "holes"),
    ("multigrid grid empty list", space_dict("multigrid", grid=[[]]), "rates.grid[0]",
     "non-empty"),
    ("multigrid grid flat", space_dict("multigrid", grid=[1, 2, 4]), "rates.grid[0]",
     "got 1"),
    ("multigrid grid string", space_dict("multigrid", grid="124"), "rates.grid", "got '124'"),
    ("multigrid grid zero", space_dict("multigrid", grid=[[1, 0]]), "rates.grid[0]", "got 0"),
    ("multigrid grid duplicate", space_dict("multigrid", grid=[[1, 2], [1, 2]]),
     "rates.grid[1]", "duplicate"),
    ("multigrid all gridded", space_dict("multigrid", {"require_gridding_free": True},
                                         grid=[[1, 2, 4]], base_rate=[2, 4]),
     "require_gridding_free", "holes"),
    ("multigrid repeats range", space_dict("multigrid", repeats={"min": 2, "max": 1}),
     "rates.repeats", "min 2 > max 1"),
]


@pytest.mark.parametrize(("table", "key", "text"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_space_file(tmp_path: Path, table: dict[str, Any], key: str, text: str) -> None:
    path = write(tmp_path, table, "bad.toml")
    with pytest.raises(SpaceError) as info:
        load_space(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {key}: "), msg
    assert text in msg
    assert "\n" not in msg


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\ndepth = [1,\nkernel = 3\n', "broken.toml")
    with pytest.raises(SpaceError, match=r"broken\.toml: invalid TOML: .*line \d+"):
        load_space(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match=r"nope\.toml: no such file"):
        load_space(tmp_path / "nope.toml")
    with pytest.raises(SpaceError, match=r"^no_such_space: .*shipped: .*hdc"):
        load_space("no_such_space")


def test_directory_is_not_a_space(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match=rf"^{tmp_path}: cannot read"):
        load_space(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(SpaceError, match=r"latin\.toml: not UTF-8"):
        load_space(path)


def test_defaults(tmp_path: Path) -> None:
    d = space_dict("hdc", choices=[1, 2], repeats=2)
    del d["name"], d["depth"]
    space = load_space(write(tmp_path, d, "mine.toml"))
    assert space.name == "mine" and space.description == ""
    assert space.config.require_gridding_free  # inherent for hdc
    assert space.config.rates.group_size.min == 2  # type: ignore[union-attr]
    assert [c.rates for c in space.enumerate()] == [(1, 2, 1, 2)]


def test_scalar_choices_are_one_item_lists() -> None:
    from ._util import make_space
    s = make_space("free", {"kernel": 5, "output_stride": 16, "width": 8, "depth": 2}, choices=1)
    assert [c.key() for c in s.enumerate()] == ["r=1-1|k=5|os=16|w=8"]
