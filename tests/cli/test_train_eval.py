"""`nas-dil train` budgets and errors, `train --out` then `nas-dil eval` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nas_dil.cli import main
from tests.data._builders import make_folder

TINY = ["--schedule", "1,2", "--arch", "output_stride=4,width=8,stem_width=8", "--threads", "1",
        "--quiet"]


def nas_dil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nas_dil", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("flag", ["--epochs", "--steps", "--seconds"])
def test_zero_budget_is_refused(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11 item 5: a zero budget used to train 6 epochs silently."""
    assert main(["train", *TINY, flag, "0"]) == 2
    err = capsys.readouterr().err.strip()
    want = "a finite number in (0, 10000000]" if flag == "--seconds" else "an integer in [1, "
    assert err.startswith(f"nas-dil train: error: argument {flag}: 0: expected {want}"), err


def test_config_error_names_the_command_once(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11 item 11: `nas-dil train: error: train: …` said train twice."""
    assert main(["train", *TINY, "--steps", "1", "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nas-dil train: error: argument --batch-size: 0: expected an integer")
    assert "train: train:" not in err
    assert err.count("\n") == 1


def test_train_out_then_eval(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", n=10, sizes=[(24, 32), (20, 28)])
    out = tmp_path / "net"
    r = nas_dil("train", *TINY, "--data", str(data), "--steps", "4", "--image-size", "16,24",
                "--batch-size", "4", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    trained = json.loads(r.stdout)
    assert trained["out"] == str(out) and (out / "weights.pt").is_file()
    doc = json.loads((out / "schedule.json").read_text())
    assert doc["format"] == "nas-dil-export" and doc["schedule"]["rates"] == [1, 2]
    assert doc["provenance"]["trial_config"]["data"]["image_size"] == [16, 24]

    e = nas_dil("eval", str(out), "--data", str(data), "--json")
    assert e.returncode == 0, e.stderr
    ev = json.loads(e.stdout)
    # the same held-out split, the same weights: the trial's own final scores
    assert ev["images"] == 2 and ev["miou"] == pytest.approx(trained["miou"], abs=1e-9)
    assert ev["per_class_iou"] == pytest.approx(trained["per_class_iou"], abs=1e-9)
    assert ev["pixel_acc"] == pytest.approx(trained["pixel_acc"], abs=1e-9)

    (data / "val.txt").write_text("\n".join(f"{i:04d}" for i in range(10)))  # names every image
    tta = nas_dil("eval", str(out), "--data", str(data), "--scales", "0.75,1,1.25", "--flip")
    assert tta.returncode == 0, tta.stderr
    assert "on 10 images (val of" in tta.stdout and "scales 0.75,1.0,1.25 + flip" in tta.stdout
    assert "eval val" in tta.stderr  # the progress bar
    (data / "val.txt").unlink()
    every = json.loads(nas_dil("eval", str(out), "--data", str(data), "--split", "all",
                               "--json").stdout)
    assert every["images"] == 10 and len(every["per_class_iou"]) == 3

    again = nas_dil("train", *TINY, "--data", str(data), "--steps", "1", "--out", str(out))
    assert again.returncode == 2 and "not empty" in again.stderr  # before any training
    assert "train " not in again.stderr  # no progress bar: nothing was trained


@pytest.mark.parametrize("args, fragment", [
    (["--scales", "1,x"], "'x' is not a number"),
    (["--scales", "9"], "outside [0.1, 4]"),
])
def test_eval_bad_options(tmp_path: Path, args: list[str], fragment: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    data = make_folder(tmp_path / "data", n=4)
    assert main(["eval", str(tmp_path), "--data", str(data), *args]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_eval_refuses_what_is_not_a_trained_export(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = make_folder(tmp_path / "data", n=4)
    assert main(["eval", str(tmp_path / "nope"), "--data", str(data)]) == 2
    assert "no schedule.json" in capsys.readouterr().err


def test_train_recipe_flags_then_eval_slide(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The recipe flags reach the trial's config; `eval --slide` with a window covering every
    image gives the whole-image scores, overlapping windows a valid evaluation."""
    data = make_folder(tmp_path / "data", n=10, sizes=[(24, 32), (20, 28)])
    out = tmp_path / "net"
    assert main(["train", *TINY, "--data", str(data), "--steps", "2", "--image-size", "16,24",
                 "--batch-size", "4", "--optimizer", "sgd", "--lr-schedule", "poly",
                 "--momentum", "0.8", "--class-weights", "inverse_frequency",
                 "--label-smoothing", "0.1", "--slide", "16,16", "--out", str(out),
                 "--json"]) == 0
    train = json.loads(capsys.readouterr().out)["config"]["train"]
    assert {k: train[k] for k in ("optimizer", "lr_schedule", "momentum", "class_weights",
                                  "label_smoothing", "slide")} == {
        "optimizer": "sgd", "lr_schedule": "poly", "momentum": 0.8,
        "class_weights": "inverse_frequency", "label_smoothing": 0.1, "slide": [16, 16]}
    scores = []
    for slide in ([], ["--slide", "24,32"], ["--slide", "12,16", "--stride", "6,8"]):
        assert main(["eval", str(out), "--data", str(data), "--json", *slide]) == 0
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[1]["miou"] == scores[0]["miou"]
    assert scores[1]["per_class_iou"] == scores[0]["per_class_iou"]
    assert scores[2]["slide"] == {"window": [12, 16], "stride": [6, 8]}
    assert main(["eval", str(out), "--data", str(data), "--stride", "8,8"]) == 2
    assert "--stride 8,8: needs --slide H,W" in capsys.readouterr().err


def _one_line_2(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_unreadable_exports_are_one_line(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 23 items 5 and 8: an empty weights.pt (IndexError) and a schedule.json with
    bytes that are not UTF-8 (UnicodeDecodeError) were tracebacks in `eval`/`load_exported`."""
    from nas_dil.errors import UserError
    from nas_dil.export import load_exported

    data = make_folder(tmp_path / "data", n=4)
    out = tmp_path / "net"
    assert main(["train", *TINY, "--data", str(data), "--steps", "1", "--image-size", "16",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    weights = out / "weights.pt"
    kept = weights.read_bytes()
    for broken in (b"", kept[:100]):  # empty, truncated
        weights.write_bytes(broken)
        err = _one_line_2(capsys, "eval", str(out), "--data", str(data))
        assert "weights.pt: not a loadable state_dict" in err
        with pytest.raises(UserError, match=r"weights\.pt: not a loadable"):
            load_exported(out)
    weights.write_bytes(kept)
    doc = out / "schedule.json"
    doc.write_bytes(doc.read_bytes().replace(b'"format"', b'"\xff\xfeformat"', 1))
    err = _one_line_2(capsys, "eval", str(out), "--data", str(data))
    assert "schedule.json: unreadable" in err and "utf-8" in err
    with pytest.raises(UserError, match=r"schedule\.json: unreadable"):
        load_exported(out)


def test_empty_weights_for_a_backbone_is_one_line(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 23 item 5: `model --arch backbone=…,weights=<empty file>` was an IndexError."""
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    err = _one_line_2(capsys, "model", "--schedule", "1,2", "--arch",
                      f"backbone=resnet18,weights={empty}")
    assert f"weights={str(empty)!r}: cannot load a state_dict (EOFError" in err
