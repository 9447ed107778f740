"""Paths stored in a study are data, not places to go (issue 11, item 10): weights are found
only inside the study's folder, and a report never writes into a stored ``out_dir``."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from nas_dil.report.files import write_report
from nas_dil.report.source import open_study
from tests.report.studies import STUDY, hand_made_study


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
