"""`write_bundle`: the one writer of the export format, used outside a study too."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nas_dil.export import ExportError, load_exported, read_export, write_bundle
from nas_dil.models import ArchConfig, build_model, count_params, model_config


def test_write_bundle_round_trips_a_net(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("1,2,3", arch=ArchConfig(output_stride=4, stem_width=8, width=8,
                                                  num_classes=5))
    doc = write_bundle(tmp_path / "out", {"model_config": model_config(model),
                                          "provenance": {"seed": 3}}, model)
    assert doc["params"] == count_params(model) and doc["hdc_certificate"]["hdc"]
    assert doc["provenance"]["seed"] == 3 and doc["provenance"]["versions"]["torch"]
    back = read_export(tmp_path / "out")
    assert back["params"] == doc["params"] and back["model_config"] == model_config(model)
    again = load_exported(tmp_path / "out", require_weights=True)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items(),
                                strict=True):
        assert k == k2 and torch.equal(v, v2)
    with pytest.raises(ExportError, match="not empty"):
        write_bundle(tmp_path / "out", {"model_config": model_config(model)}, model)
    write_bundle(tmp_path / "out", {"model_config": model_config(model)}, model,
                 weights=False, force=True)
    assert not (tmp_path / "out" / "weights.pt").exists()  # --force leaves no stale file
