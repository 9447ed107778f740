"""Issue 11 item 3 (and item 11's `1,,2`): the analytic core answers for any rate a user can
type, in bounded memory and time, or refuses in one line with exit 2.

Each command runs in a child process under hard resource limits (address space and CPU
seconds), so the defect, had it come back, ends in a killed child and a failed assertion
instead of a machine out of memory or a hung suite. No timed assertion: the limits are far
above what the fixed code needs (well under a second and a few hundred MB)."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest

from nas_dil.cli import main

_LIMITED = """
import resource, sys
if {mem}:
    resource.setrlimit(resource.RLIMIT_AS, ({mem}, {mem}))
resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
from nas_dil.cli import main
sys.exit(main(sys.argv[1:]))
"""


def limited(*args: str, mem_gb: float | None = 2.0,
            cpu_s: int = 120) -> subprocess.CompletedProcess:
    """`nas-dil ARGS` in a child limited to ``mem_gb`` of address space (None: no limit)
    and ``cpu_s`` CPU seconds."""
    code = _LIMITED.format(mem=int((mem_gb or 0) * 2**30), cpu=cpu_s)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)


def test_analyze_one_huge_rate() -> None:
    # before: a dense count vector of 2·10⁹ + 1 int64 (16 GB) — killed for memory
    out = limited("analyze", "1000000000", "--json")
    assert out.returncode == 0, out.stderr[-500:]
    a = json.loads(out.stdout)
    assert a["rf"] == 2_000_000_001 and a["holes_1d"] == 2_000_000_001 - 3
    assert a["largest_gap"] == 999_999_999 and a["counts_1d"] is None
    assert a["counts_1d_sparse"] == {"offsets": [-1_000_000_000, 0, 1_000_000_000],
                                     "counts": [1, 1, 1]}


def test_analyze_three_coprime_huge_rates() -> None:
    # before: np.convolve of two 2·10⁶-long vectors per layer, O(10¹³): hung
    out = limited("analyze", "1000000,1000001,1000003", "--json")
    assert out.returncode == 0, out.stderr[-500:]
    a = json.loads(out.stdout)
    assert a["rf"] == 1 + 2 * 3_000_004 and a["holes_1d"] == a["rf"] - 27  # 3³ distinct
    assert len(a["counts_1d_sparse"]["offsets"]) == 27
    text = limited("analyze", "1000000,1000001,1000003")
    assert text.returncode == 0 and "not printed" in text.stdout


def test_model_with_a_huge_rate() -> None:
    # before: a traceback (image coverage allocated RF-long vectors). torch reserves much
    # address space at import, so the child's limit is on CPU time only
    out = limited("model", "--schedule", "1000000000", "--json", mem_gb=None, cpu_s=300)
    assert out.returncode == 0, out.stderr[-500:]
    d = json.loads(out.stdout)
    assert d["rf_stack"] == 2_000_000_001 and d["stack_holes_1d"] == 2_000_000_001 - 3
    assert d["crop"]["dead_taps"] == 8 and d["crop"]["rf_usable"] == [15, 15]


@pytest.mark.parametrize(("args", "fragment"), [
    (["analyze", "1,,2"], "empty entry"),  # was read as 1,2
    (["analyze", "1,2,"], "empty entry"),
    (["analyze", ",1"], "empty entry"),
    (["analyze", "10000000000000"], "exceeds 1099511627776 px"),  # past MAX_RF: refused
    # 2·3^i: 3^14 distinct offsets over an RF of 3^14·2: neither dense nor sparse is small
    (["analyze", ",".join(str(2 * 3**i) for i in range(14))], "too wide and too dense"),
    (["analyze", "3000", "--plot", "x.png"], "heat map"),
    (["space", "free", "--sample", "1000000000"], "--sample: 1000000000"),
    (["model", "--schedule", "1,2", "--size", "0"], "--size"),
    (["model", "--schedule", "1,2", "--size", "64,x"], "--size"),
    (["analyze", "1,2", "--size", "100000"], "--size"),
    # issue 23 item 2: the repeat count meets the layer limit before any expansion (was > 60 s)
    (["analyze", "1,2*100000000"], "200000000 layers: at most 256"),
    (["analyze", "1*1000000000"], "1000000000 layers: at most 256"),
])
def test_refused_in_one_line(args: list[str], fragment: str) -> None:
    # `model` imports torch, which reserves much address space at import (a CUDA build more
    # than 2 GB): its limit is on CPU time only, as in test_model_with_a_huge_rate
    out = limited(*args, mem_gb=None if args[0] == "model" else 2.0)
    assert out.returncode == 2, out.stderr[-500:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], out.stderr


def test_in_process_main_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "1,,2"]) == 2
    assert "empty entry between commas" in capsys.readouterr().err
    assert main(["space", "hdc", "--sample", "100001"]) == 2


def test_analyze_size_reports_dead_taps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "1,3,9", "--size", "6,12", "--json"]) == 0
    a = json.load(StringIO(capsys.readouterr().out))
    c = a["crop"]
    assert c["size"] == [6, 12] and c["dead_taps"] == 6  # rate 9: dead along the height only
    assert c["dead_layers"][0]["dead_h"] == [-9, 9] and c["dead_layers"][0]["dead_w"] == []
    assert c["rf_usable"] == [6, 12] and c["rf_nominal"] == [27, 27]
    assert main(["analyze", "1,3,9", "--size", "6"]) == 0
    text = capsys.readouterr().out
    assert "dead taps: 8" in text and "stack.2" in text


def test_model_size_reports_dead_taps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "--schedule", "1,3,9,1,3,9", "--size", "48", "--json"]) == 0
    d = json.load(StringIO(capsys.readouterr().out))
    assert d["input"] == [48, 48] and d["dead_taps_stack"] == 16
    assert d["crop"]["rf_nominal"] == [431, 431] and d["crop"]["rf_usable"] == [48, 48]
    assert main(["model", "--schedule", "1,2,5", "--size", "64,48"]) == 0
    assert "dead taps: none" in capsys.readouterr().out


def test_plot_where_nothing_can_be_written_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 23 item 10: `--plot` into a folder that cannot be written was an OSError traceback.
    Tests run as root, which writes through permission bits: the folder is a file here, and
    /proc (which takes no new files, even from root)."""
    f = tmp_path / "afile"
    f.write_text("keep me")
    for plot in (f / "x.png", "/proc/x.png"):
        assert main(["analyze", "1,2,5", "--plot", str(plot)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1, err
        assert f"--plot {plot}: cannot write" in err, err
    assert f.read_text() == "keep me"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1"])
def test_train_budget_nan_inf_refused(value: str, tmp_path: Path) -> None:
    """Issue 23 item 1: `--seconds nan` (or inf) trained forever: `<= 0` lets NaN through."""
    out = limited("train", "--schedule", "1,2", "--image-size", "16", f"--seconds={value}",
                  "--out", str(tmp_path / "x"), mem_gb=None, cpu_s=60)
    assert out.returncode == 2, out.stderr[-500:]
    assert out.stderr == (f"nas-dil train: error: argument --seconds: {value}: expected a "
                          "finite number in (0, 10000000]\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("table", "line"), [
    ("[train]\nseconds = nan", "train.seconds: expected a finite number, got nan"),
    ("[parallel]\ncpus = nan", "parallel.cpus: expected a finite number, got nan"),
    ("[data]\nn_train = 1000000000000",
     "data.n_train: expected an integer in [1, 100000000], got 1000000000000"),
])
def test_search_refuses_nan_and_huge_and_writes_nothing(table: str, line: str,
                                                        tmp_path: Path) -> None:
    """Issue 23 items 1 and 13, through the real command: one line naming the file and the
    key, exit 2, no output folder and no study.db."""
    study = tmp_path / "s.toml"
    study.write_text(f'space = "hdc"\nn_trials = 2\n{table}\n')
    out = limited("search", str(study), "--out", str(tmp_path / "out"), mem_gb=None, cpu_s=60)
    assert out.returncode == 2, out.stderr[-500:]
    assert out.stderr == f"nas-dil search: error: {study}: {line}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]


@pytest.mark.parametrize(("args", "fragment"), [
    # issue 23 item 9: a seed numpy cannot take was a ValueError traceback
    (["space", "hdc", "--sample", "2", "--seed", "-1"],
     "argument --seed: -1: expected an integer in [0, 4294967295]"),
    (["space", "hdc", "--sample", "2", "--seed", "99999999999"],
     "argument --seed: 99999999999: expected an integer in [0, 4294967295]"),
    (["dashboard", "x", "--refresh", "nan"], "argument --refresh: nan: expected a finite"),
    (["train", "--schedule", "1,2", "--lr", "inf"], "argument --lr: inf: expected a finite"),
    (["train", "--schedule", "1,2", "--cpus", "0"], "argument --cpus: 0: expected an integer"),
])
def test_numeric_flag_out_of_range_in_process(args: list[str], fragment: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err
