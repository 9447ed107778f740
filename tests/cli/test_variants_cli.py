"""`analyze` / `model` with the degridding variants and residual counts (in-process main)."""

from __future__ import annotations

import json

import pytest

from nas_dil.cli import main


def _json(capsys: pytest.CaptureFixture[str], args: list[str]) -> dict:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_analyze_variants(capsys: pytest.CaptureFixture[str]) -> None:
    a = _json(capsys, ["analyze", "2,2,2", "--rates-w", "1,2,3"])
    assert (a["rf"], a["rf_w"], a["holes_1d"], a["holes_w"]) == (13, 13, 6, 0)
    assert a["holes"] == 13 * 13 - 7 * 13
    a = _json(capsys, ["analyze", "2,2,2", "--smooth"])
    assert a["rf"] == 19 and a["gridding_free"] and a["smooth"] == [True] * 3
    a = _json(capsys, ["analyze", "1,2", "--residual"])
    assert a["counts_1d"] == [1, 2, 3, 4, 3, 2, 1] and a["holes"] == 0
    a = _json(capsys, ["analyze", "1,2,9,2,1", "--tail", "2", "--residual"])
    assert a["tail"] == 2 and a["gridding_free"] and a["rf"] == 31
    assert main(["analyze", "1,2", "--tail", "2"]) == 2
    assert main(["analyze", "1,2", "--rates-w", "1"]) == 2


def test_model_variants(capsys: pytest.CaptureFixture[str]) -> None:
    d = _json(capsys, ["model", "--schedule", "1,3", "--smooth", "--rates-w", "2,3",
                       "--arch", "width=8", "--size", "64,48"])
    plain = _json(capsys, ["model", "--schedule", "1,3", "--arch", "width=8", "--size",
                           "64,48"])
    assert d["params"] - plain["params"] == 1 * 3 + 5 * 5
    assert d["schedule"]["smooth"] == [True, True] and d["schedule"]["rates_w"] == [2, 3]
    assert [r["name"] for r in d["layers"]][3:7] == ["stack.0.smooth", "stack.0",
                                                     "stack.1.smooth", "stack.1"]
