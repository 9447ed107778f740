"""Paths stored in a study are data, not places to go (issue 11, item 10): weights are found
only inside the study's folder, and a report never writes into a stored ``out_dir``."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from nas_dil.report.files import write_report
from nas_dil.report.source import open_study
from tests.report.studies import STUDY, Trained, hand_made_study


def test_resolve_stays_inside_the_study_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hand_made_study(out)
    (out / "weights").mkdir()
    (out / "weights" / "trial_0.pt").write_bytes(b"w")
    secret = tmp_path / "secret.pt"
    secret.write_bytes(b"s")
    (out / "weights" / "link.pt").symlink_to(secret)
    src = open_study(out)
    assert src.resolve("weights/trial_0.pt") == (out / "weights" / "trial_0.pt").resolve()
    for stored in ("../secret.pt", str(secret), "weights/../../secret.pt", "weights/link.pt",
                   ""):
        assert src.resolve(stored) is None, stored


def test_report_of_a_study_without_a_folder_needs_out(tmp_path: Path) -> None:
    hand_made_study(tmp_path / "a")
    victim = tmp_path / "victim"
    victim.mkdir()
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{tmp_path / 'a' / 'study.db'}")
    study.set_user_attr("nas_dil", {**study.user_attrs["nas_dil"], "out_dir": str(victim)})
    mem = optuna.storages.InMemoryStorage()
    optuna.copy_study(from_study_name=STUDY, from_storage=study._storage, to_storage=mem)
    copied = optuna.load_study(study_name=STUDY, storage=mem)
    with pytest.raises(Exception, match="no local output folder known; give --out DIR"):
        write_report(copied)
    assert list(victim.iterdir()) == []  # the stored out_dir is never written into
    files = write_report(copied, tmp_path / "mine")
    assert files.html.is_file() and list(victim.iterdir()) == []


def test_export_refuses_stored_weights_outside_the_folder(trained: Trained, tmp_path: Path) -> None:
    import json
    import shutil
    import sqlite3

    from nas_dil.export.bundle import export_trial

    out = tmp_path / "copy"
    shutil.copytree(trained.out_dir, out)
    outside = tmp_path / "outside.pt"  # a loadable state_dict, but not the study's
    shutil.copy(out / "weights" / "trial_0.pt", outside)
    con = sqlite3.connect(out / "study.db")
    for stored in (str(outside), "../outside.pt"):
        with con:
            con.execute("UPDATE trial_user_attributes SET value_json = ? WHERE key = 'weights' "
                        "AND trial_id = (SELECT trial_id FROM trials WHERE number = 0)",
                        (json.dumps(stored),))
        r = export_trial(out, "trial=0", tmp_path / f"x{len(stored)}")
        assert r.weights is None and r.weights_source is None
        assert "not under" in r.document["weights_note"]
    con.close()


@pytest.mark.parametrize("command", ["report", "export"])
@pytest.mark.parametrize("where", ["file", "proc"])
def test_out_that_cannot_be_written_is_one_line(hand_made_ro: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                command: str, where: str) -> None:
    from nas_dil.cli import main

    f = tmp_path / "afile"
    f.write_text("keep")
    out = f / "sub" if where == "file" else Path("/proc/nas-dil-test/out")
    args = [command, str(hand_made_ro), "--out", str(out)]
    code = main([*args, "--pick", "knee"] if command == "export" else args)
    _, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nas-dil {command}: error: --out "), err
    assert f.read_text() == "keep" and not [p for p in tmp_path.iterdir() if p != f]
