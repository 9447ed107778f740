"""`nas-dil search` on a study whose trials never learn (a learning rate of 1e-9): its
summary and report say the mIoU sits at chance level."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

STUDY = """
name = "chance"
space = "hdc"
n_trials = 2
seed = 0
[sampler]
name = "random"
[parallel]
max_in_flight = 1
cpus = 1
[trial]
kind = "train"
[arch]
stem_width = 4
[data]
source = "synthetic"
image_size = 32
n_train = 8
n_val = 4
[train]
steps = 2
batch_size = 4
lr = 1e-9
threads = 1
[early_stop]
enabled = false
"""


def test_a_study_at_chance_level_warns_in_its_summary(tmp_path: Path) -> None:
    study = tmp_path / "chance.toml"
    study.write_text(STUDY)
    out = subprocess.run([sys.executable, "-m", "nas_dil", "search", str(study), "--out",
                          str(tmp_path / "out")], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "  warning: near chance level: the best mIoU" in out.stdout
    html = (tmp_path / "out" / "report" / "report.html").read_text()
    assert "near chance level" in html and "chance level 0." in html
