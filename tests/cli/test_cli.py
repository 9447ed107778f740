"""The CLI as a user runs it: a real process, exit codes, one-line errors, JSON contracts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nas_dil.cli import COMMANDS, main


def nas_dil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nas_dil", *args], capture_output=True,
                          text=True, timeout=300)


def test_analyze_json_contract() -> None:
    out = nas_dil("analyze", "1,2,9", "--json")
    assert out.returncode == 0, out.stderr
    a = json.loads(out.stdout)
    assert a["schedule"] == [1, 2, 9] and a["kernel"] == 3 and a["rf"] == 25
    assert a["m"] == [3, 5, 9] and a["hdc_rule1"] is False and a["hdc_rule2"] is True
    assert a["holes"] == 25 * 25 - 21 * 21 and a["gridding_free"] is False
    assert 0 < a["coverage"] < 1 and len(a["counts_1d"]) == 25


def test_analyze_text_and_plot(tmp_path: Path) -> None:
    png = tmp_path / "map.png"
    out = nas_dil("analyze", "2,2,2", "--plot", str(png))
    assert out.returncode == 0, out.stderr
    assert "HDC rule 2" in out.stdout and "FAIL" in out.stdout and "holes 120" in out.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["analyze", "0,2"], "rates=[0, 2]"),
        (["analyze", "1,x"], "'x' is not an integer"),
        (["analyze", ""], "empty schedule"),
        (["analyze", "1,2", "--kernel", "4"], "kernels=[4, 4]"),
        (["analyze", "1,2", "--plot", "/nonexistent-dir/a.png"], "does not exist"),
        (["space", "no-such-space"], "no-such-space"),
        (["space", "hdc", "--sample", "0"], "--sample: 0"),
        (["space", "hdc", "--crop", "4x"], "--crop '4x'"),
        (["space", "hdc", "--crop", "8"], "no candidate of space hdc has every tap on the image"),
        (["model", "--schedule", "1,2", "--arch", "output_stride=5"], "output_stride=5"),
        (["train", "--schedule", "1,2", "--arch", "foo=1", "--steps", "1"], "unknown keys"),
        (["train", "--schedule", "1,2", "--data", "/nonexistent-data", "--steps", "1"],
         "/nonexistent-data"),
        (["analyze"], "required"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    out = nas_dil(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert fragment in lines[0] and "Traceback" not in out.stderr


def test_bad_space_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nkernel = [4]\n')
    out = nas_dil("space", str(bad))
    assert out.returncode == 2 and str(bad) in out.stderr and "Traceback" not in out.stderr
    bad.write_text("this is = = not toml")
    out = nas_dil("space", str(bad))
    assert out.returncode == 2 and str(bad) in out.stderr


def test_space_at_a_crop_counts_the_live_candidates() -> None:
    # 48 px: stack maps 12 (os 4) and 6 (os 8) px, largest live rates 11 and 5 (K=3); the hdc
    # lists with a 7 or 9 are left out at os 8 (9 lists × 2 widths)
    out = json.loads(nas_dil("space", "hdc", "--count", "--crop", "48", "--json").stdout)
    assert out["count"] == 78
    d = json.loads(nas_dil("space", "hdc", "--crop", "48", "--json").stdout)
    assert d["live"] == {"feature_maps": {"4": [12, 12], "8": [6, 6]},
                         "max_rate": {"k3_os4": 11, "k3_os8": 5}}


def test_space_count_and_seeded_samples() -> None:
    a = json.loads(nas_dil("space", "hdc", "--sample", "4", "--seed", "3", "--json").stdout)
    b = json.loads(nas_dil("space", "search_spaces/hdc.toml", "--sample", "4", "--seed", "3",
                           "--json").stdout)
    assert a["samples"] == b["samples"] and len(a["samples"]) == 4
    assert all(s["holes"] == 0 for s in a["samples"])
    c = json.loads(nas_dil("space", "exponential", "--count", "--json").stdout)
    assert c["count"] == 32


def test_model_json() -> None:
    out = nas_dil("model", "--schedule", "1,2,5", "--arch", "output_stride=4,width=16", "--json")
    d = json.loads(out.stdout)
    assert d["rf_stack"] == 17 and d["params"] > 0 and d["flops"] == 2 * d["macs"]


@pytest.mark.slow
def test_train_json() -> None:
    out = nas_dil("train", "--schedule", "1,2,5", "--steps", "2", "--image-size", "24",
                  "--threads", "1", "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["status"] == "complete" and d["steps"] == 2
    assert {"miou", "flops", "params", "rf"} <= set(d)


def test_main_returns_int_and_table_is_complete() -> None:
    assert main(["analyze", "1,2,5", "--json"]) == 0
    assert {"analyze", "space", "model", "train"} <= set(COMMANDS)
