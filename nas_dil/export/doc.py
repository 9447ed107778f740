"""`ExportDoc`: the content of an export folder's ``schedule.json``, one type for every writer
(`nas_dil.export.bundle.export_trial`, ``nas-dil train --out``) and reader (`load_exported`,
``nas-dil eval``). `from_dict` reads any earlier ``schedule.json`` (missing keys take their
defaults, keys it does not know are kept in ``extra`` and written back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["FORMAT", "FORMAT_VERSION", "ExportDoc"]

FORMAT = "nas-dil-export"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ExportDoc:
    """One exported net: what rebuilds it, what it measured, where it came from."""

    model_config: Mapping[str, Any]  # what `model_from_config` takes: schedule, arch
    candidate: Mapping[str, Any] | None = None  # Candidate.to_dict(); None: not from a study
    objectives: tuple[Mapping[str, str], ...] = ()  # the study's, {"name", "direction"}
    values: Mapping[str, Any] = field(default_factory=dict)  # objective name -> value
    metrics: Mapping[str, Any] = field(default_factory=dict)  # miou, curves, throughput…
    rf: Any = None  # the analytic facts of the net (`nas_dil.models.analytic`)
    rf_stack: Any = None
    holes: Any = None
    coverage: Any = None
    gridding_free: Any = None
    macs: Any = None
    flops: Any = None
    gflops: Any = None
    params: int | None = None  # trainable parameters (None: counted by the writer)
    hdc_certificate: Mapping[str, Any] | None = None  # None: made by the writer
    mmseg: Mapping[str, Any] | None = None  # an mmsegmentation fragment (None: made by it)
    feasible: bool | None = None  # within the study's constraints (None: no study)
    constraints: Mapping[str, float] = field(default_factory=dict)  # Optuna's, <= 0 met
    class_names: tuple[str, ...] | None = None  # the data's class names (train --out)
    pick: Mapping[str, Any] = field(default_factory=dict)  # {"rule", "reason"}
    # the pick's looks (`export.pick.seed_facts`): trials, seeds, per-seed miou, mean, std, n,
    # confirm_seeds, confirmed, and the study's seed noise (None: unknown); {}: not a study's
    seeds: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, str | None] | None = None  # weights / onnx file names (None: writer)
    # the weights file holds the head only: the frozen backbone that rebuilds the rest
    # (`nas_dil.train.kept.BackboneRef.to_dict()`); None: every tensor (written only when set)
    backbone: Mapping[str, Any] | None = None
    weights_note: str | None = None  # where the weights came from, or why there are none
    provenance: Mapping[str, Any] = field(default_factory=dict)  # study, trial, seed, versions…
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys of another version, kept

    @property
    def schedule(self) -> Mapping[str, Any]:
        return self.model_config["schedule"]

    @property
    def arch(self) -> Mapping[str, Any]:
        return self.model_config["arch"]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document, keys in the order of the format."""
        out: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION,
                               "schedule": self.schedule, "candidate": self.candidate,
                               "arch": self.arch}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("candidate", "extra") or (f.name in ("class_names", "backbone")
                                                     and v is None):
                continue
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExportDoc:
        """Any ``schedule.json`` document (or a writer's partial one: ``model_config`` is the
        one key it needs); ValueError when ``model_config`` is missing."""
        if not isinstance(d.get("model_config"), Mapping):
            raise ValueError("no model_config (what rebuilds the net)")
        names = {f.name for f in fields(cls)} - {"extra"}
        kw: dict[str, Any] = {k: d[k] for k in names if d.get(k) is not None}
        for k in ("objectives", "class_names"):
            if k in kw:
                kw[k] = tuple(kw[k])
        derived = ("format", "format_version", "schedule", "arch")  # written from the rest
        return cls(**kw, extra={k: v for k, v in d.items() if k not in names
                                and k not in derived})
