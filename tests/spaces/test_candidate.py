"""Candidate: validation, JSON round trip, stable key."""

from __future__ import annotations

import json

import pytest

from nas_dil.schedule import Schedule
from nas_dil.spaces import Candidate, SpaceError


def test_key_and_schedule() -> None:
    c = Candidate((1, 2, 5), 3, 8, 32)
    assert c.key() == "r=1-2-5|k=3|os=8|w=32"
    assert str(c) == c.key()
    assert c.schedule == Schedule((1, 2, 5), (3,))
    assert c.depth == 3


def test_lists_become_tuples_and_hash() -> None:
    a = Candidate([1, 2, 5], 3, 8, 32)  # type: ignore[arg-type]
    b = Candidate((1, 2, 5), 3, 8, 32)
    assert a == b and hash(a) == hash(b) and isinstance(a.rates, tuple)
    assert Candidate((1, 2, 5), 3, 8, 16) != b


@pytest.mark.parametrize("c", [Candidate((1,), 1, 4, 1), Candidate((1, 2, 5, 1, 2, 5), 5, 16, 64)])
def test_round_trips(c: Candidate) -> None:
    assert Candidate.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert Candidate.from_key(c.key()) == c
    assert c.to_dict() == {"rates": list(c.rates), "kernel": c.kernel,
                           "output_stride": c.output_stride, "width": c.width}


@pytest.mark.parametrize(("args", "key"), [
    (((), 3, 8, 16), "rates"),
    (((1, 0), 3, 8, 16), "rates"),
    (((1, True), 3, 8, 16), "rates"),
    (("125", 3, 8, 16), "rates"),
    (((1,), 4, 8, 16), "kernel"),
    (((1,), 3.0, 8, 16), "kernel"),
    (((1,), 3, 64, 16), "output_stride"),  # 32: backbones' (the study's [arch] decides)
    (((1,), 3, 8, 0), "width"),
    (((1,), 3, 8, False), "width"),
])
def test_invalid(args: tuple, key: str) -> None:
    with pytest.raises(SpaceError, match=rf"^candidate: {key}: "):
        Candidate(*args)


@pytest.mark.parametrize(("d", "key"), [
    ({"rates": [1], "kernel": 3, "output_stride": 8, "width": 16, "x": 1}, "x"),
    ({"rates": [1], "kernel": 3, "output_stride": 8}, "width"),
    ({"rates": "1,2", "kernel": 3, "output_stride": 8, "width": 16}, "rates"),
])
def test_from_dict_invalid(d: dict, key: str) -> None:
    with pytest.raises(SpaceError, match=rf"^candidate: {key}: "):
        Candidate.from_dict(d)


@pytest.mark.parametrize("key", ["r=1-2|k=3|os=8", "r=1-a|k=3|os=8|w=1", "nonsense",
                                 "r=1|k=3|os=8|w=1|w=2"])
def test_from_key_invalid(key: str) -> None:
    with pytest.raises(SpaceError):
        Candidate.from_key(key)
