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


def test_an_older_schedule_json_still_loads(tmp_path: Path) -> None:
    """A schedule.json as nas-dil wrote it before `ExportDoc` (keys hand-built, one this
    version does not know, none of ``mmseg`` / ``class_names``) loads, and reads back whole."""
    import json

    from nas_dil.export.doc import ExportDoc

    torch.manual_seed(0)
    model = build_model("1,2", arch=ArchConfig(output_stride=4, stem_width=8, width=8,
                                                num_classes=3))
    write_bundle(tmp_path / "new", {"model_config": model_config(model)}, model)
    old = read_export(tmp_path / "new")
    del old["mmseg"]
    old["from_the_future"] = {"x": 1}
    (tmp_path / "new" / "schedule.json").write_text(json.dumps(old))
    assert count_params(load_exported(tmp_path / "new")) == old["params"]
    doc = ExportDoc.from_dict(old)
    assert doc.mmseg is None and doc.extra == {"from_the_future": {"x": 1}}
    assert doc.to_dict() == {**old, "mmseg": None}
    with pytest.raises(ValueError, match="model_config"):
        ExportDoc.from_dict({"format": "nas-dil-export"})
