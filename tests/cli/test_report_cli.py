"""`nas-dil report`, `nas-dil export`, `nas-dil dashboard` as a user runs them."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from optuna.trial import TrialState

from nas_dil.cli import COMMANDS, main
from tests.report.studies import (
    Spec,
    Trained,
    add_trial,
    new_study,
    with_dead_taps,
)


def nas_dil(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nas_dil", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_commands_are_registered() -> None:
    assert {"report", "dashboard", "export"} <= set(COMMANDS)


def test_report_writes_files_and_prints_the_front(hand_made: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(hand_made)]) == 0
    out = capsys.readouterr().out
    assert "study demo: 8 trials" in out and "Pareto front (3; * knee)" in out
    assert re.search(r"#0\*\s+1,2,5", out) and "reference point (miou 0.485, rf 67, gflops 3.2)" \
        in out
    assert (hand_made / "report" / "report.html").is_file()
    assert main(["report", str(hand_made / "study.db"), "--out", str(hand_made / "r2"),
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["knee"] == 0 and sorted(r["number"] for r in d["pareto"]) == [0, 1, 6]
    assert d["hypervolume"]["value"] == pytest.approx(5.629)
    assert Path(d["files"]["trials_csv"]).is_file()


def test_export_cli(trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(trained.out_dir), "--pick", "knee", "--out",
                 str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "knee of the" in out and "weights from" in out and "load with: nas_dil." in out
    assert (tmp_path / "e" / "weights.pt").is_file()
    assert main(["export", str(trained.out_dir), "--pick", "best-miou", "--out",
                 str(tmp_path / "j"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["format"] == "nas-dil-export" and d["pick"]["rule"] == "best-miou"


def _one_error_line(err: str, fragment: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("case", "args", "fragment"),
    [
        ("empty", ["report", "{empty}"], "has no trials yet"),
        ("empty", ["export", "{empty}", "--pick", "knee", "--out", "{out}"], "has no trials yet"),
        ("failed", ["report", "{failed}"], "no COMPLETE trial yet (1 FAIL)"),
        ("failed", ["export", "{failed}", "--pick", "best-miou", "--out", "{out}"],
         "no COMPLETE trial yet"),
        ("hand", ["export", "{hand}", "--pick", "trial=42", "--out", "{out}"], "no trial 42"),
        ("hand", ["export", "{hand}", "--pick", "max-gflops=0.01", "--out", "{out}"],
         "no feasible COMPLETE trial has gflops ≤ 0.01"),
        ("hand", ["export", "{hand}", "--pick", "cheapest", "--out", "{out}"], "use knee"),
        ("plain", ["report", "{plain}"], "is not a nas-dil study"),
        ("plain", ["export", "{plain}", "--pick", "knee", "--out", "{out}"], "not a nas-dil"),
        ("plain", ["dashboard", "{plain}", "--port", "0"], "not a nas-dil study"),
        ("missing", ["report", "{missing}"], "no such file or folder"),
        ("missing", ["dashboard", "{missing}"], "no such file or folder"),
        ("text", ["report", "{text}"], "not an SQLite database"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_overwritten(
    case: str, args: list[str], fragment: str, hand_made: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = {"hand": hand_made, "empty": tmp_path / "empty", "failed": tmp_path / "failed",
             "plain": tmp_path / "plain", "missing": tmp_path / "missing",
             "text": tmp_path / "t.db", "out": tmp_path / "export-out"}
    if case == "empty":
        new_study(paths["empty"])
    elif case == "failed":
        add_trial(new_study(paths["failed"]), Spec((1, 2, 3), TrialState.FAIL))
    elif case == "plain":
        new_study(paths["plain"], with_meta=False)
    elif case == "text":
        paths["text"].write_text("not a database")
    # an earlier report in the study's folder must survive the failed run
    folder = paths[case] if paths[case].is_dir() else None
    if folder is not None:
        (folder / "report").mkdir()
        (folder / "report" / "report.html").write_text("earlier report")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in args]
    assert main(argv) == 2
    _one_error_line(capsys.readouterr().err, fragment)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing created, nothing changed
    assert not paths["out"].exists()


def test_dead_taps_in_report_and_export(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with_dead_taps(tmp_path / "d", {0: 8})
    assert main(["report", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    head = next(line for line in out.splitlines() if line.startswith("trial"))
    # each objective once, marked; RF usable / nominal and over the crop; dead taps
    assert head.count("mIoU") == 1 and "RF px usable / nominal ↑" in head and "GFLOPs ↓" in head
    assert "dead taps" in head and re.search(r"#6\*\s+1,3,5", out)
    assert "note: dead taps at the training crop" in out and "#0 (stack.2 r9: 8 dead)" in out
    with_dead_taps(tmp_path / "all", {0: 8, 1: 8, 6: 4})
    assert main(["export", str(tmp_path / "all"), "--pick", "knee", "--out",
                 str(tmp_path / "x")]) == 2
    _one_error_line(capsys.readouterr().err, "no knee: every Pareto trial had dead taps at its "
                    "training crop (taps that read only padding never trained): #0 (8), #1 (8), "
                    "#6 (4)")
    assert not (tmp_path / "x").exists()


def test_real_process_exit_code(tmp_path: Path) -> None:
    new_study(tmp_path / "e")
    r = nas_dil("report", str(tmp_path / "e"))
    assert r.returncode == 2 and r.stdout == ""
    _one_error_line(r.stderr, "nas-dil report: error:")


def test_dashboard_cli_serves_and_stops(hand_made: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "nas_dil", "dashboard", str(hand_made),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/dashboard/studies/1", line)
        assert m, line
        port = int(m.group(1))
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/1",
                                            timeout=10) as r:
                    d = json.loads(r.read())
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        assert d["objective_names"] == ["miou", "rf", "gflops"]
        assert any(g["id"] == "nasdil-miou_vs_gflops" for g in d["plotly_graph_objects"])
        # the port is taken: a second dashboard refuses in one line
        r2 = nas_dil("dashboard", str(hand_made), "--port", str(port))
        assert r2.returncode == 2
        _one_error_line(r2.stderr, f"cannot listen on 127.0.0.1:{port}")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    assert rc == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
