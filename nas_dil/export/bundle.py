"""Write one trial as a self-describing folder, and rebuild its net from it.

``export_trial(study, pick, out)`` writes into ``out`` (new or empty; ``force`` to replace the
files of an earlier export):

- ``schedule.json``: the schedule, the architecture (``model_config``: what
  ``model_from_config`` takes), metrics, RF, holes, FLOPs, params, the HDC certificate (M_i
  trace, sawtooth groups, their M traces and gcds, rule verdicts with reasons, exact
  coverage), ``mmseg`` (an mmsegmentation config fragment where the net is expressible
  there, and what is not: ``nas_dil.export.mmseg``), the pick rule, and provenance (study,
  storage, trial number, seed, data, trial config, package versions, git commit when the
  code is a git checkout).
  ``seeds`` says which seeds the pick was trained with, its per-seed mIoU, their mean and
  std, whether it is confirmed over the study's ``[confirm] seeds``, and the study's seed
  noise (an unconfirmed pick is refused unless ``allow_unconfirmed``).
- ``weights.pt``: the trial's state_dict, when the search kept it (a search keeps the weights
  of Pareto-front trials and seed baselines, ``OUT/weights/trial_<N>.pt``, recorded in the
  trial's ``weights`` attr). Checked on export: it loads into the rebuilt net (strict) and the
  parameter count matches the trial's. A frozen-backbone trial's holds the head's tensors
  only, and ``schedule.json``'s ``backbone`` names the frozen backbone they need
  (`nas_dil.train.kept`: weights, seed, state digest).
- ``model.onnx`` with ``onnx=True`` (needs the ``onnx`` extra: ``pip install nas-dil[onnx]``),
  traced at the trial's training image size.

``load_exported(out)`` rebuilds the exact net: same parameter count, the trained weights
(``torch.load(..., weights_only=True)``), eval mode. A net on a torchvision backbone is
rebuilt whole (trunk, head) from the state_dict; its ``weights`` setting (the backbone's
starting point, perhaps a file on the search's machine) is not read then. Head-only weights
(``backbone`` set) are the exception: the frozen backbone is rebuilt from its weights
("none": seeded; "imagenet"; the file, or ``backbone_weights``) and must have the recorded
state digest, else one line.

Everything is checked and written into a temporary folder beside ``out`` first; ``out`` only
changes once all files exist, so bad input overwrites nothing.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_dil.errors import UserError, writable_folder
from nas_dil.export.doc import FORMAT, FORMAT_VERSION, ExportDoc
from nas_dil.export.pick import Pick, check_confirmed, parse_pick, seed_facts, select_trial
from nas_dil.report.source import StudySource, open_study
from nas_dil.resources import source_commit

if TYPE_CHECKING:
    import optuna
    import torch

    from nas_dil.search.looks import CandidateResult
    from nas_dil.search.records import TrialRecord
    from nas_dil.train.kept import BackboneRef

__all__ = ["FORMAT", "FORMAT_VERSION", "ExportDoc", "ExportError", "ExportResult",
           "export_trial", "load_exported", "read_export", "write_bundle"]
SCHEDULE_FILE = "schedule.json"
WEIGHTS_FILE = "weights.pt"
ONNX_FILE = "model.onnx"
MMSEG_CONFIG_FILE = "mmseg_config.py"  # = nas_dil.export.mmseg's (not imported: lazy)
MMSEG_WEIGHTS_FILE = "mmseg_weights.pth"
_VERSIONED = ("nas-dil", "torch", "optuna", "numpy", "optuna-dashboard", "plotly", "onnx")
_METRICS = ("miou", "pixel_acc", "per_class_iou", "miou_curve", "loss_curve", "wall_time_s",
            "images_per_s", "peak_mem_bytes")


class ExportError(UserError, ValueError):
    """An export that cannot be done as asked; nothing was written."""


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    trial: int
    reason: str  # why this trial was picked
    schedule_json: Path
    weights: Path | None  # the exported state_dict, if the search kept one (a frozen
    # backbone's trial: the head's tensors; ``document["backbone"]`` names the backbone)
    weights_source: Path | None  # where it came from
    onnx: Path | None
    document: dict[str, Any]  # the content of schedule.json
    mmseg_config: Path | None = None  # mmseg_config.py (mmseg=True)
    mmseg_weights: Path | None = None  # the converted checkpoint (mmseg=True, with weights)


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _model_config(number: int, rec: TrialRecord, where: str) -> dict[str, Any]:
    from nas_dil.models import ArchConfig
    from nas_dil.spaces import Candidate

    missing = [k for k in ("candidate", "arch") if not isinstance(getattr(rec, k), dict)]
    if missing:
        raise ExportError(f"{where}: trial {number} lacks the {', '.join(missing)} attribute "
                          "(not written by a nas-dil search)")
    from nas_dil.models.analytic import trial_schedule

    cand = Candidate.from_dict(dict(rec.candidate or {}))
    arch = ArchConfig.from_dict(dict(rec.arch or {}))
    # on a torchvision backbone the targeted blocks keep their own kernels (as the trial built)
    return {"schedule": trial_schedule(cand, arch).to_dict(), "arch": arch.to_dict()}


def _load_state_dict(path: Path) -> tuple[dict[str, Any], BackboneRef | None]:
    """(the tensors, the frozen backbone they need or None: every tensor) of a weights file:
    a state_dict, or a checkpoint dict around one (the search's, with ``backbone`` when it
    holds a frozen-backbone trial's head)."""
    import torch

    from nas_dil.train.kept import BackboneRef

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle with code in it, a truncated file, not torch at all
        why = (str(e).splitlines() or [type(e).__name__])[0][:160]  # an empty file: EOFError()
        raise ExportError(f"{path}: not a loadable state_dict ({why})") from None
    ref = None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        if obj.get("backbone") is not None:
            try:
                ref = BackboneRef.from_dict(obj["backbone"])
            except ValueError as e:
                raise ExportError(f"{path}: {e}") from None
        obj = obj["state_dict"]  # a checkpoint dict around the state_dict
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ExportError(f"{path}: expected a state_dict (name -> tensor)")
    return obj, ref


def _build(config: dict[str, Any], state: dict[str, Any] | None, source: str,
           backbone: BackboneRef | None = None, backbone_weights: str | None = None
           ) -> torch.nn.Module:
    """The whole net (`nas_dil.train.kept.rebuild`: a frozen backbone rebuilt and checked
    when ``state`` holds the head only)."""
    from nas_dil.train.kept import KeptWeightsError, rebuild

    try:
        return rebuild(config, state, backbone, source, backbone_weights=backbone_weights)
    except KeptWeightsError as e:
        raise ExportError(str(e)) from None


def _n_params(model: torch.nn.Module) -> int:
    from nas_dil.models import count_params

    return int(count_params(model))


def _hdc_certificate(config: dict[str, Any]) -> dict[str, Any]:
    from nas_dil.schedule import Schedule, analyze

    s = Schedule.from_dict(config["schedule"])
    a = analyze(s)
    keys = ("schedule", "kernels", "effective_rates", "rf", "rf_per_layer", "m", "groups",
            "group_m", "group_gcd", "hdc_rule1", "hdc_rule1_reason", "hdc_rule1_groups",
            "hdc_rule1_groups_reason", "hdc_rule2", "hdc_rule2_reason", "hdc_rule3",
            "hdc_rule3_reason", "hdc", "coverage", "holes", "holes_1d", "largest_gap",
            "gridding_free", "counts_1d")
    return {k: a[k] for k in keys}


def _mmseg(config: dict[str, Any]) -> dict[str, Any]:
    from nas_dil.export.mmseg import mmseg_fragment

    return mmseg_fragment(config["schedule"], config["arch"])


def _mmseg_files(config: dict[str, Any], state: Mapping[str, Any] | None,
                 meta: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """(mmseg_config.py's text, the converted checkpoint or None); ExportError when mmseg
    cannot build the net."""
    from nas_dil.export.mmseg import (
        MMSEG_WEIGHTS_FILE,
        MmsegExportError,
        mmseg_checkpoint,
        mmseg_config_text,
    )

    try:
        text = mmseg_config_text(config["schedule"], config["arch"],
                                 weights_file=MMSEG_WEIGHTS_FILE if state is not None else None)
        ckpt = mmseg_checkpoint(state, meta) if state is not None else None
    except MmsegExportError as e:
        raise ExportError(f"--mmseg: mmseg cannot build this net ({e})") from None
    return text, ckpt


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out}: folder is not empty (nothing overwritten; "
                          "use --force to replace an earlier export)")
    try:  # the export is written beside ``out`` first, then moved in
        writable_folder(out.absolute().parent, f"--out {out}: folder")
    except UserError as e:
        raise ExportError(str(e)) from None


def check_export_dir(out: str | os.PathLike[str], force: bool = False) -> None:
    """ExportError unless ``out`` can take an export (new, empty, or ``force``)."""
    _check_out(Path(out), force)


def _export_onnx(model: torch.nn.Module, in_channels: int, hw: tuple[int, int], path: Path
                 ) -> None:
    import io
    from contextlib import redirect_stdout

    import torch

    dummy = torch.zeros(1, in_channels, *hw)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), str(path), input_names=["image"],
                          output_names=["logits"], external_data=False)


def _publish(tmp: Path, out: Path) -> None:
    if not out.exists():
        tmp.rename(out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        tmp.rename(out)
        return
    # --force: no stale file survives
    for name in (SCHEDULE_FILE, WEIGHTS_FILE, ONNX_FILE, MMSEG_CONFIG_FILE, MMSEG_WEIGHTS_FILE):
        if (out / name).is_file() and not (tmp / name).exists():
            (out / name).unlink()
    for f in tmp.iterdir():  # --force over an earlier export: replace file by file
        target = out / f.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(f, target)
    tmp.rmdir()


def export_trial(
    source: str | os.PathLike[str] | optuna.Study | StudySource,
    pick: str | Pick,
    out: str | os.PathLike[str],
    *,
    study: str | None = None,
    force: bool = False,
    onnx: bool = False,
    mmseg: bool = False,
    allow_unconfirmed: bool = False,
    backbone_weights: str | os.PathLike[str] | None = None,
) -> ExportResult:
    """Export the picked trial of a nas-dil study into ``out`` (see the module docstring);
    ``mmseg``: also ``mmseg_config.py`` and ``mmseg_weights.pth`` (`nas_dil.export.mmseg`).
    A pick trained with fewer seeds than the study confirms over is refused
    (`pick.check_confirmed`) unless ``allow_unconfirmed``. ``backbone_weights``: where a
    frozen-backbone trial's weights file is on this machine when it moved since the search
    (its tensors must be the same; default: the recorded path)."""
    p = parse_pick(pick) if isinstance(pick, str) else pick
    out_dir = Path(out)
    _check_out(out_dir, force)
    if onnx:
        try:
            import onnx as _onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            raise ExportError("--onnx needs the onnx extra: pip install 'nas-dil[onnx]'"
                              ) from None
    src = open_study(source, study)
    picked, reason = select_trial(src, p)
    if not allow_unconfirmed:
        check_confirmed(src, picked, p)
    return _export(src, picked, p, reason, out_dir, force=force, onnx=onnx, mmseg=mmseg,
                   backbone_weights=None if backbone_weights is None else str(backbone_weights))


def _export(src: StudySource, picked: CandidateResult, p: Pick, reason: str, out_dir: Path, *,
            force: bool, onnx: bool, mmseg: bool = False,
            backbone_weights: str | None = None) -> ExportResult:
    """Export ``picked`` (a candidate: its representative look's net and weights, its values
    the mean over its looks)."""
    rec = picked.record
    where = f"{src.location}: study {src.name!r}"
    config = _model_config(picked.number, rec, where)

    rel = rec.weights if isinstance(rec.weights, str) else None
    weights_src = src.resolve(rel) if rel else None
    if rel and weights_src is None:
        where_out = src.out_dir or src.meta.out_dir
        note = (f"the trial records weights {rel!r} but the file is not under {where_out}; "
                "exported without weights")
    elif rel is None:
        note = ("the search kept no weights for this trial (it keeps those of Pareto-front "
                "trials and seed baselines, in OUT/weights/trial_<N>.pt); exported without")
    else:
        note = f"weights from {weights_src}"
    state, ref = _load_state_dict(weights_src) if weights_src is not None else (None, None)
    if ref is not None:
        note += (f" (the head; the frozen backbone rebuilt from weights={ref.weights!r}, seed "
                 f"{ref.seed}, its state digest checked)")
    model = _build(config, state, str(weights_src or "the recorded architecture"), ref,
                   backbone_weights=backbone_weights)
    n_params = _n_params(model)
    recorded = rec.get("params")
    if isinstance(recorded, int) and recorded != n_params:
        raise ExportError(f"{where}: trial {picked.number} records {recorded} parameters but "
                          f"its architecture has {n_params}")

    rep = picked.representative
    doc = ExportDoc(
        model_config=config,
        candidate=rec.candidate,
        objectives=tuple(o.to_dict() for o in src.objectives),
        values=dict(zip((o.name for o in src.objectives), picked.values or (), strict=True)),
        metrics={k: picked.get(k) for k in _METRICS if k in rec.result},
        rf=rec.get("rf"), rf_stack=rec.get("rf_stack"), holes=rec.get("holes"),
        coverage=rec.get("coverage"), gridding_free=rec.get("gridding_free"),
        macs=rec.get("macs"), flops=rec.get("flops"), gflops=rec.get("gflops"),
        params=n_params,
        hdc_certificate=_hdc_certificate(config),
        mmseg=_mmseg(config),
        feasible=picked.feasible,
        constraints=dict(rep.constraints),
        pick={"rule": str(p), "reason": reason},
        seeds=seed_facts(src, picked),
        files={"weights": WEIGHTS_FILE if state is not None else None,
               "onnx": ONNX_FILE if onnx else None},
        weights_note=note,
        provenance={
            "study": src.name,
            "storage": src.location,
            "trial": picked.number,
            "seed": rec.seed,
            "key": rec.key,
            "baseline": rec.baseline,
            "reused_from": rec.reused_from,
            "weights_source": str(weights_src) if weights_src is not None else None,
            "data": src.meta.data,
            "trial_config": rec.trial_config,
            "search_version": src.meta.version,
            "search_git_commit": src.meta.git_commit,
            "node": rec.node,
            "datetime_complete": (rep.datetime_complete.isoformat()
                                  if rep.datetime_complete else None),
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": _versions(),
            "git_commit": source_commit(),
        },
    )

    written = write_bundle(out_dir, doc, model, weights=state is not None, force=force,
                           onnx_hw=(rec.crop() or (64, 64)) if onnx else None, mmseg=mmseg,
                           backbone=ref)
    return ExportResult(
        out_dir=out_dir, trial=picked.number, reason=reason,
        schedule_json=out_dir / SCHEDULE_FILE,
        weights=out_dir / WEIGHTS_FILE if state is not None else None,
        weights_source=weights_src, onnx=out_dir / ONNX_FILE if onnx else None,
        document=written,
        mmseg_config=out_dir / MMSEG_CONFIG_FILE if mmseg else None,
        mmseg_weights=out_dir / MMSEG_WEIGHTS_FILE if mmseg and state is not None else None,
    )


def write_bundle(out: str | os.PathLike[str], doc: ExportDoc | Mapping[str, Any],
                 model: torch.nn.Module, *, weights: bool = True, force: bool = False,
                 onnx_hw: tuple[int, int] | None = None, mmseg: bool = False,
                 backbone: BackboneRef | None = None) -> dict[str, Any]:
    """Write an export folder: ``schedule.json`` from ``doc`` (+ ``weights.pt``, + ``model.onnx``
    traced at ``onnx_hw``, + ``mmseg_config.py`` and ``mmseg_weights.pth`` with ``mmseg``),
    all or nothing (see the module docstring). The one writer of the
    format: `export_trial` and ``nas-dil train --out`` both use it.

    ``backbone``: ``model``'s backbone is this frozen one (`nas_dil.train.kept`):
    ``weights.pt`` keeps the head's tensors and ``schedule.json``'s ``backbone`` names it
    (the mmseg checkpoint, which mmseg loads alone, keeps every tensor).

    ``doc`` (an `ExportDoc`, or its dict) needs ``model_config`` (what `model_from_config`
    takes); what the model itself says (params, HDC certificate, mmseg, files, versions, git
    commit, time) is filled in where ``doc`` lacks it. Returns the document written.
    """
    import torch

    out_dir = Path(out)
    _check_out(out_dir, force)
    if onnx_hw is not None:
        try:
            import onnx as _onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            raise ExportError("--onnx needs the onnx extra: pip install 'nas-dil[onnx]'"
                              ) from None
    if not isinstance(doc, ExportDoc):
        try:
            doc = ExportDoc.from_dict(doc)
        except ValueError as e:
            raise ExportError(f"--out {out_dir}: {e}") from None
    config = dict(doc.model_config)
    state = ({k: v.detach().cpu() for k, v in model.state_dict().items()} if weights
             else None)
    mm = (_mmseg_files(config, state, {"nas_dil_export": SCHEDULE_FILE,
                                       "provenance": {k: doc.provenance.get(k) for k in
                                                      ("study", "trial", "seed")}})
          if mmseg else None)
    if state is not None and backbone is not None:
        from nas_dil.train.kept import BACKBONE_PREFIX

        state = {k: v for k, v in state.items() if not k.startswith(BACKBONE_PREFIX)}
        doc = replace(doc, backbone=backbone.to_dict())
    prov = dict(doc.provenance)
    prov.setdefault("exported_at", datetime.now(UTC).isoformat(timespec="seconds"))
    prov.setdefault("versions", _versions())
    prov.setdefault("git_commit", source_commit())
    doc = replace(
        doc, provenance=prov,
        params=_n_params(model) if doc.params is None else doc.params,
        hdc_certificate=(_hdc_certificate(config) if doc.hdc_certificate is None
                         else doc.hdc_certificate),
        mmseg=_mmseg(config) if doc.mmseg is None else doc.mmseg,
        files=({"weights": WEIGHTS_FILE if weights else None,
                "onnx": ONNX_FILE if onnx_hw is not None else None}
               if doc.files is None else doc.files))
    if mm is not None:
        doc = replace(doc, files={**(doc.files or {}), "mmseg_config": MMSEG_CONFIG_FILE,
                                  "mmseg_weights": MMSEG_WEIGHTS_FILE if mm[1] else None})
    written = doc.to_dict()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        if state is not None:
            torch.save(state, tmp / WEIGHTS_FILE)
        if mm is not None:
            (tmp / MMSEG_CONFIG_FILE).write_text(mm[0])
            if mm[1] is not None:
                torch.save(mm[1], tmp / MMSEG_WEIGHTS_FILE)
        if onnx_hw is not None:
            _export_onnx(model.cpu(), int(config["arch"]["in_channels"]), onnx_hw,
                         tmp / ONNX_FILE)
        (tmp / SCHEDULE_FILE).write_text(json.dumps(written, indent=2, default=str) + "\n")
        _check_out(out_dir, force)  # again: someone may have written there meanwhile
        _publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written


def _doc_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    doc_path = p if p.is_file() else p / SCHEDULE_FILE
    if not doc_path.is_file():
        raise ExportError(f"{p}: no {SCHEDULE_FILE} (not a nas-dil export)")
    return doc_path


def read_export(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``schedule.json`` document of an export folder (or of the file itself)."""
    doc_path = _doc_path(path)
    try:
        doc = json.loads(doc_path.read_text())
    except (OSError, ValueError) as e:  # ValueError: bad JSON, or bytes that are not UTF-8
        raise ExportError(f"{doc_path}: unreadable ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ExportError(f"{doc_path}: not a nas-dil export (format {FORMAT!r} expected)")
    return doc


def load_exported(path: str | os.PathLike[str], *, require_weights: bool = False,
                  backbone_weights: str | os.PathLike[str] | None = None) -> torch.nn.Module:
    """Rebuild the exported net (eval mode) from a folder ``export_trial`` wrote.

    Loads ``weights.pt`` with ``weights_only=True``. Without weights (the search kept none)
    the net has its initial weights and a warning says so; ``require_weights`` makes that an
    error. The parameter count is checked against ``schedule.json``. Head-only weights (a
    frozen backbone's trial, ``schedule.json``'s ``backbone``): the backbone is rebuilt as
    the trial had it and checked by its state digest; ``backbone_weights``: the path of its
    weights file here, when the recorded path is another machine's.
    """
    doc_path = _doc_path(path)
    try:
        doc = ExportDoc.from_dict(read_export(doc_path))
    except ValueError as e:
        raise ExportError(f"{doc_path}: {e}") from None
    folder = doc_path.parent
    wname = (doc.files or {}).get("weights")
    state, ref = None, None
    if wname:
        wpath = folder / wname
        if not wpath.is_file():
            raise ExportError(f"{folder}: {wname} is missing")
        state, ref = _load_state_dict(wpath)
        if doc.backbone is not None:
            from nas_dil.train.kept import BackboneRef

            try:
                ref = BackboneRef.from_dict(doc.backbone)
            except ValueError as e:
                raise ExportError(f"{doc_path}: backbone: {e}") from None
    elif require_weights:
        raise ExportError(f"{folder}: exported without weights")
    else:
        warnings.warn(f"{folder}: exported without weights; the net has its initial weights",
                      stacklevel=2)
    model = _build(dict(doc.model_config), state, str(folder), ref,
                   None if backbone_weights is None else str(backbone_weights))
    n = _n_params(model)
    if doc.params is not None and n != doc.params:
        raise ExportError(f"{folder}: rebuilt net has {n} parameters, {doc.params} recorded")
    return model
