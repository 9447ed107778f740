"""What runs inside a Ray worker: one trial, start to end, returned as plain data.

`execute(payload)` never raises for a trial's own failure: a diverging or out-of-memory trial
(`TrialFailed`) or a bad setting (`UserError`) comes back as ``status = "fail"`` with its
reason. Anything else is a bug and propagates (Ray wraps it in a RayTaskError). A dead worker
or node is Ray's error, seen by the driver, which retries the trial.

Three kinds of trial (what each needs: `nas_dil.search.kinds`), one runner each (`RUNNERS`):
- ``train``: `nas_dil.train.run_trial`, with the early-stopping rule as its callback; the
  state_dict of a completed trial comes back as bytes (torch.save), with the model config.
- ``sleep``: sleeps ``sleep_s`` over ``evals`` evaluations and reports a synthetic, seeded
  mIoU curve that grows with RF and coverage. It exercises everything around a trial
  (orchestration, storage, early stopping, faults) at no compute cost; never use it to
  compare architectures. It does not import torch.
- ``tabular``: reads the mIoU curve of (schedule, seed) from a tabular benchmark
  (`nas_dil.search.tabular`) and reports it evaluation by evaluation, early stopping included.
  No training, no torch: sampler comparisons in seconds, exactly repeatable.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from nas_dil.errors import UserError
from nas_dil.search.early_stop import FrontSnapshot, stop_reason
from nas_dil.search.records import TrialPayload

__all__ = ["RUNNERS", "describe_data", "execute", "nas_dil_trial"]

_DATA: dict[str, Any] = {}  # one loaded data set per worker process (key: config + device)


def _where() -> dict[str, Any]:
    out: dict[str, Any] = {"pid": os.getpid(), "node": platform.node(), "node_id": None,
                           "node_ip": None}
    try:
        import ray

        if ray.is_initialized():
            out["node_id"] = ray.get_runtime_context().get_node_id()
            out["node_ip"] = ray.util.get_node_ip_address()
    except Exception:  # pragma: no cover - outside Ray the host name is enough
        pass
    return out


def _data(data_cfg: dict[str, Any], device_name: str) -> Any:
    from nas_dil.data import DataConfig, load_data
    from nas_dil.train import resolve_device

    key = json.dumps([data_cfg, device_name], sort_keys=True)
    if key not in _DATA:
        _DATA.clear()  # a worker serves one study at a time; keep memory flat
        _DATA[key] = load_data(DataConfig(**data_cfg), resolve_device(device_name))
    return _DATA[key]


def describe_data(data_cfg: dict[str, Any], device_name: str) -> dict[str, Any]:
    """``{"describe": data.describe(), "num_classes": n}`` loaded where trials run; the
    description gains ``val_class_pixels`` (labelled val pixels per class: the report's
    chance level, `nas_dil.report.data.chance_miou`)."""
    d = _data(data_cfg, device_name)
    return {"describe": {**d.describe(), "val_class_pixels": _val_class_pixels(d)},
            "num_classes": int(d.num_classes)}


def build_features(request: dict[str, Any]) -> dict[str, Any]:
    """The frozen study's feature caches planned and built on this node (a Ray task on each
    other host, `cluster.TrialTasks.build_features`; `features.build_elsewhere`)."""
    from nas_dil.train.features import build_elsewhere

    return {**build_elsewhere(request), "where": _where()}


def _val_class_pixels(d: Any) -> list[int]:
    """Pixels per class over the val split's labels (ignore_index left out), read once."""
    import torch

    counts = torch.zeros(int(d.num_classes), dtype=torch.int64)
    for _, y in d.val_batches(64):
        y = y.reshape(-1).cpu()
        y = y[(y != d.ignore_index) & (y >= 0) & (y < d.num_classes)]
        counts += torch.bincount(y, minlength=int(d.num_classes))
    return [int(c) for c in counts.tolist()]


def execute(payload: TrialPayload) -> dict[str, Any]:
    """Run one trial (``payload``: `TrialPayload`, built by the driver)."""
    info = _where()
    t0 = time.perf_counter()
    snap: FrontSnapshot | None = payload.snapshot
    losses = payload.losses
    why: list[str] = []

    def callback(index: int, miou: float, partial: dict[str, Any]) -> bool:
        reason = stop_reason(partial["miou_curve"], losses, snap)
        if reason:
            why.append(reason)
        return bool(reason)

    try:
        result, weights = RUNNERS[payload.kind](payload, callback)
    except UserError as e:
        return {**info, "status": "fail", "reason": f"bad setting: {e}", "result": None,
                "weights": None, "wall_s": time.perf_counter() - t0}
    except Exception as e:
        trial_mod = sys.modules.get("nas_dil.train.trial")  # loaded if a trial could fail
        if trial_mod is not None and isinstance(e, trial_mod.TrialFailed):  # diverged, OOM
            return {**info, "status": "fail", "reason": str(e.reason), "result": None,
                    "weights": None, "wall_s": time.perf_counter() - t0}
        raise
    stopped = bool(result.get("stopped_early"))
    return {**info, "status": "pruned" if stopped else "complete",
            "reason": why[0] if stopped and why else None, "result": result,
            "weights": None if stopped else weights, "wall_s": time.perf_counter() - t0}


def nas_dil_trial(payload: TrialPayload) -> dict[str, Any]:
    """`execute` under the name a Ray worker shows while it runs it (``ray::nas_dil_trial``)."""
    return execute(payload)


def _train_trial(payload: TrialPayload, callback: Any) -> tuple[dict[str, Any], bytes | None]:
    import torch

    from nas_dil.models import model_config
    from nas_dil.schedule import Schedule
    from nas_dil.train import TrialConfig, run_trial

    cfg = TrialConfig.from_dict(dict(payload.trial_config))
    data = _data(payload.trial_config["data"], cfg.train.device)
    outcome = run_trial(cfg, Schedule.from_dict(dict(payload.schedule)), payload.seed,
                        callback=callback, data=data,
                        feature_cache=payload.options.get("feature_cache"),
                        known=payload.analytic)
    r = outcome.result
    model: Any = outcome.model  # a DilatedSegNet or BackboneSegNet: both have a model_config
    weights = None
    if payload.keep_weights and not r.stopped_early:
        buf = io.BytesIO()
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save({"state_dict": state, "model_config": model_config(model)}, buf)
        weights = buf.getvalue()
    out = r.to_dict()
    out.pop("config", None)  # the driver stores the trial config itself
    return out, weights


def _sleep_trial(payload: TrialPayload, callback: Any) -> dict[str, Any]:
    opts = payload.options
    a = payload.analytic
    width = payload.trial_config["arch"]["width"]
    if opts.get("fail_width") == width or opts.get("oom_width") == width:
        from nas_dil.train import TrialDiverged, TrialOOM

        if opts.get("fail_width") == width:
            raise TrialDiverged(1, float("nan"))
        raise TrialOOM(16, 32, 32, "cpu", "sleep trial: oom_width")
    # a seeded quality in [0.3, 0.8]: more RF and coverage help, a little noise per candidate
    h = hashlib.sha256(f"{payload.key}:{payload.seed}".encode()).digest()
    noise = (int.from_bytes(h[:4], "big") / 2**32 - 0.5) * 0.04
    quality = (0.3 + 0.4 * (1 - math.exp(-a["rf"] / 48.0)) * math.sqrt(a["coverage"])
               + 0.05 * math.log2(1 + width / 16) + noise)
    quality = min(0.8, max(0.3, quality))
    evals = int(opts["evals"])
    per = float(opts["sleep_s"]) / evals
    t0 = time.perf_counter()
    curve: list[float] = []
    stopped = False
    for e in range(1, evals + 1):
        time.sleep(per)
        curve.append(quality * (0.55 + 0.45 * e / evals))
        if e < evals and callback(e, curve[-1], {"miou_curve": list(curve)}):
            stopped = True
            break
    wall = time.perf_counter() - t0
    return {"miou": curve[-1], "per_class_iou": [], "pixel_acc": curve[-1],
            "miou_curve": curve, "loss_curve": [1.0 - m for m in curve], "wall_time_s": wall,
            "images_per_s": 0.0, "stopped_early": stopped, "device": "cpu",
            "peak_mem_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "peak_mem_kind": "process_rss", "steps": len(curve), "epochs": float(len(curve))}


def _tabular_trial(payload: TrialPayload, callback: Any) -> dict[str, Any]:
    from nas_dil.search.looks import table_seed
    from nas_dil.search.tabular import load_table

    opts = payload.options  # the [trial] table: kind, table, table_seed
    arch = payload.trial_config["arch"]
    sched = payload.schedule
    table = load_table(opts["table"])
    first = opts.get("table_seed")  # look 0's seed: the table's, else the study's
    first = payload.seed - payload.look if first is None else int(first)
    seed = table_seed(table.seeds, first, payload.look)  # a repeat: the table's next seed
    row = table.lookup(sched["rates"], sched["kernels"][0], arch["output_stride"],
                       arch["width"], seed)
    t0 = time.perf_counter()
    curve: list[float] = []
    stopped = False
    full = list(row["miou_curve"])
    for e, m in enumerate(full, 1):
        curve.append(m)
        if e < len(full) and callback(e, m, {"miou_curve": list(curve)}):
            stopped = True
            break
    miou = curve[-1] if stopped else float(row["miou"])
    return {"miou": miou, "per_class_iou": [], "pixel_acc": float(row.get("pixel_acc", miou)),
            "miou_curve": curve, "loss_curve": [], "wall_time_s": time.perf_counter() - t0,
            "train_time_s": float(row.get("train_time_s", 0.0)),  # when the table was made
            "images_per_s": 0.0, "stopped_early": stopped, "device": "table",
            "peak_mem_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "peak_mem_kind": "process_rss", "steps": len(curve), "epochs": float(len(curve))}


# how each kind of `nas_dil.search.kinds.KINDS` runs: (payload, callback) -> (result, weights)
Runner = Callable[[TrialPayload, Any], tuple[dict[str, Any], bytes | None]]
RUNNERS: dict[str, Runner] = {
    "train": _train_trial,
    "sleep": lambda payload, callback: (_sleep_trial(payload, callback), None),
    "tabular": lambda payload, callback: (_tabular_trial(payload, callback), None),
}
