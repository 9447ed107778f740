"""`nas_dil._check`: ranged numbers, NaN-aware, as every config and numeric flag checks them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from nas_dil._check import Bound, bounded, check_fields, flag_type
from nas_dil.errors import UserError

NAN, INF = float("nan"), float("inf")
POS = Bound(False, gt=0)  # lr
SIZE = Bound(True, ge=1, le=64)
SHARE = Bound(False, gt=0, lt=1)


@pytest.mark.parametrize(("bound", "value", "ok"), [
    (POS, 3e-3, True), (POS, 2, True), (POS, 0, False), (POS, -1e-9, False),
    (POS, NAN, False), (POS, INF, False), (POS, -INF, False), (POS, True, False),
    (POS, "1", False), (POS, 10**400, False),  # past the largest float: not a finite number
    (SIZE, 1, True), (SIZE, 64, True), (SIZE, 65, False), (SIZE, 0, False),
    (SIZE, 2.0, False), (SIZE, True, False), (SIZE, NAN, False), (SIZE, 10**400, False),
    (SHARE, 0.5, True), (SHARE, 1, False), (SHARE, 0, False), (SHARE, NAN, False),
])
def test_ok(bound: Bound, value: object, ok: bool) -> None:
    assert bound.ok(value) is ok
    assert (bound.problem(value) is None) is ok


@pytest.mark.parametrize(("bound", "spoken"), [
    (POS, "a finite number > 0"), (SIZE, "an integer in [1, 64]"),
    (SHARE, "a finite number in (0, 1)"), (Bound(True, ge=0), "an integer >= 0"),
    (Bound(False, gt=0, le=1e7), "a finite number in (0, 10000000]"),
])
def test_spoken(bound: Bound, spoken: str) -> None:
    assert bound.spoken() == spoken


class BadValue(UserError):
    pass


@dataclass(frozen=True)
class Cfg:
    n: int = bounded(4, ge=1)
    rate: float | None = bounded(None, gt=0, integer=False)

    def __post_init__(self) -> None:
        check_fields(self, BadValue, "cfg")


def test_check_fields_names_the_field_once() -> None:
    assert Cfg(rate=None) == Cfg()
    with pytest.raises(BadValue) as e:
        Cfg(rate=NAN)
    assert str(e.value) == "cfg: rate=nan: expected a finite number > 0"
    assert e.value.field == ("rate", "expected a finite number > 0, got nan")
    with pytest.raises(BadValue, match=r"^cfg: n=0: expected an integer >= 1$"):
        Cfg(n=0)


@pytest.mark.parametrize(("text", "value"), [("3", 3), ("64", 64)])
def test_flag_type_parses(text: str, value: int) -> None:
    assert flag_type(SIZE, "--n")(text) == value


@pytest.mark.parametrize(("text", "message"), [
    ("0", "0: expected an integer in [1, 64]"),
    ("nan", "'nan': expected an integer in [1, 64]"),
    ("2.5", "'2.5': expected an integer in [1, 64]"),
])
def test_flag_type_refuses(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as e:
        flag_type(SIZE, "--n")(text)
    assert str(e.value) == message
    with pytest.raises(argparse.ArgumentTypeError, match="nan: expected a finite number > 0"):
        flag_type(POS, "--lr")("nan")
