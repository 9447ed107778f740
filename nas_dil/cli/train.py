"""`nas-dil train --schedule 1,2,5,1,2,5 [--arch …] [--data synthetic|PATH] [--out DIR] …`:
one trial; ``--out`` saves the trained net as an export folder (`nas-dil eval` reads it).

``--from-study OUT_DIR_OR_STORAGE --trial N`` trains a stored trial again: its stored config
(`TrialRecord.trial_config`), candidate and seed, so the same seed gives the same mIoU; the
flags that define a trial are refused with it (they would change it), those that only say
where it runs (device, CPUs, --out, output) are kept.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from nas_dil._check import MAX_KERNEL, SEED, field_flag, flag_type
from nas_dil.cli._arch import parse_arch
from nas_dil.cli._common import format_table, int_flag, print_json
from nas_dil.data.config import DataConfig
from nas_dil.errors import UserError
from nas_dil.train.config import FREEZE, TrainConfig

if TYPE_CHECKING:
    from nas_dil.schedule import Schedule
    from nas_dil.train import TrialConfig


def image_size(text: str) -> int | tuple[int, int]:
    """`64` or `48,64` (h,w) for --image-size."""
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SIDE or H,W in px") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise argparse.ArgumentTypeError(f"{text!r}: expected SIDE or H,W in px")


def hw_pair(text: str) -> tuple[int, int]:
    """`512,1024` (h,w) or `512` (a square) for --slide / --stride."""
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected H,W or SIDE in px") from None
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected H,W or SIDE in px (>= 1)")
    return parts[0], parts[-1]


def class_weights(text: str) -> tuple[float, ...] | str:
    """`1,2.5,0.5` (one per class) or `inverse_frequency` for --class-weights."""
    if text == "inverse_frequency":
        return text
    try:
        return tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected W,W,… (one per class) or inverse_frequency") from None


# --flag -> TrainConfig field: the recipe, passed only when given (defaults: the config's)
RECIPE_FLAGS = ("optimizer", "momentum", "nesterov", "lr_schedule", "poly_power",
                "warmup_steps", "weight_decay", "class_weights", "label_smoothing",
                "aux_weight", "slide", "slide_stride", "freeze", "freeze_views")
# --flag -> DataConfig field, passed only when given
DATA_FLAGS = ("val_size", "val_subset", "scale_min", "scale_max")
# what a trial is made of, with the defaults used when neither the flag nor --from-study sets
# it; each is refused with --from-study (the stored trial's own values are used)
TRIAL_DEFAULTS: dict[str, Any] = {"schedule": None, "kernel": 3, "arch": None,
                                  "data": "synthetic", "layout": "auto", "image_size": 64,
                                  "num_classes": None, "epochs": None, "steps": None,
                                  "seconds": None, "batch_size": 16, "lr": 3e-3, "seed": 0,
                                  **dict.fromkeys(RECIPE_FLAGS + DATA_FLAGS)}


def _budget(args: argparse.Namespace) -> dict[str, Any]:
    """The one budget given (its flag's type holds it to TrainConfig's range: 0, NaN and inf
    are refused, 0 used to fall back to 6 epochs)."""
    for name in ("epochs", "steps", "seconds"):
        v = getattr(args, name)
        if v is not None:
            return {"epochs": None, name: v}
    return {"epochs": 6}


def _train_flag(name: str) -> Any:
    return field_flag(TrainConfig, name, f"--{name.replace('_', '-')}")


def _data_flag(name: str) -> Any:
    return field_flag(DataConfig, name, f"--{name.replace('_', '-')}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedule", help="dilation rates, e.g. 1,2,5,1,2,5 (or --from-study)")
    p.add_argument("--kernel", type=int_flag("--kernel", 1, MAX_KERNEL),
                   help="stack kernel size (odd; default 3)")
    p.add_argument("--arch", help="key=value,… (output_stride=8,width=32,context=true) or JSON")
    p.add_argument("--data", help="'synthetic' (default) or a data folder")
    p.add_argument("--layout", choices=["auto", "folder", "voc", "cityscapes"],
                   help="default auto")
    p.add_argument("--image-size", type=image_size, metavar="SIDE|H,W",
                   help="train crop: a side or H,W (px; default 64)")
    p.add_argument("--num-classes", type=_data_flag("num_classes"),
                   help="default: read from the data")
    p.add_argument("--val-size", type=_data_flag("val_size"), metavar="PX",
                   help="resize val images to this longer side (default: full size)")
    p.add_argument("--val-subset", type=_data_flag("val_subset"), metavar="N",
                   help="evaluate on N val images (a seeded pick; default: all)")
    p.add_argument("--scale-min", type=_data_flag("scale_min"),
                   help="random training scale: the smallest factor (default 1)")
    p.add_argument("--scale-max", type=_data_flag("scale_max"),
                   help="random training scale: the largest factor (default 1)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=_train_flag("epochs"), help="budget in epochs (default 6)")
    budget.add_argument("--steps", type=_train_flag("steps"), help="budget in optimiser steps")
    budget.add_argument("--seconds", type=_train_flag("seconds"),
                        help="budget in seconds of training")
    p.add_argument("--batch-size", type=_train_flag("batch_size"), help="default 16")
    p.add_argument("--lr", type=_train_flag("lr"), help="peak learning rate (default 3e-3)")
    r = p.add_argument_group("recipe (docs/recipes.md; defaults: AdamW, cosine, plain CE)")
    r.add_argument("--optimizer", choices=["adamw", "sgd"])
    r.add_argument("--momentum", type=_train_flag("momentum"), help="sgd momentum (default 0.9)")
    r.add_argument("--nesterov", action="store_true", default=None, help="sgd: Nesterov")
    r.add_argument("--weight-decay", type=_train_flag("weight_decay"), help="default 1e-4")
    r.add_argument("--lr-schedule", choices=["cosine", "poly"],
                   help="after warm-up: cosine to 0, or poly (1 - t)^power")
    r.add_argument("--poly-power", type=_train_flag("poly_power"),
                   help="poly: the power (default 0.9)")
    r.add_argument("--warmup-steps", type=_train_flag("warmup_steps"),
                   help="linear warm-up steps (default 0)")
    r.add_argument("--class-weights", type=class_weights, metavar="W,W,…|inverse_frequency",
                   help="per-class loss weights, or inverse frequency of the training labels")
    r.add_argument("--label-smoothing", type=_train_flag("label_smoothing"),
                   help="in [0, 1) (default 0)")
    r.add_argument("--aux-weight", type=_train_flag("aux_weight"),
                   help="auxiliary FCN head on an earlier stage (torchvision backbones; 0.4 "
                        "in mmseg)")
    r.add_argument("--slide", type=hw_pair, metavar="H,W",
                   help="evaluate in sliding windows of H,W px (default: whole images)")
    r.add_argument("--slide-stride", type=hw_pair, metavar="H,W",
                   help="--slide: window step (default 2/3 of the window)")
    fz = p.add_argument_group("frozen backbone (docs/training.md)")
    fz.add_argument("--freeze", choices=FREEZE,
                    help="backbone: train only the head on the frozen backbone's cached "
                         "features (a torchvision backbone, target=head; default none)")
    fz.add_argument("--freeze-views", type=_train_flag("freeze_views"), metavar="N",
                    help="--freeze backbone: augmented views of the training set cached "
                         "(default 4)")
    fz.add_argument("--feature-cache", metavar="DIR",
                    help="--freeze backbone: the cache folder (default: the study's with "
                         "--from-study, else $NAS_DIL_CACHE or ~/.cache/nas-dil, features/)")
    st = p.add_argument_group("train a stored trial again")
    st.add_argument("--from-study", metavar="OUT_DIR_OR_STORAGE",
                    help="a search's output folder, its study.db, or a storage URL: train "
                         "--trial N again with its stored config and seed (flags that "
                         "define a trial, --schedule to --seed, are refused with it; "
                         "--device, --threads, --cpus, --workers, --feature-cache apply)")
    st.add_argument("--study", metavar="NAME", help="--from-study: the study, when the "
                                                    "storage holds several")
    st.add_argument("--trial", type=int_flag("--trial", 0), metavar="N",
                    help="--from-study: the trial's number")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=_train_flag("threads"), default=None,
                   help="torch CPU threads")
    p.add_argument("--cpus", type=_train_flag("cpus"), default=None,
                   help="CPUs to use: torch threads and data workers split them "
                        "(default: those this process may run on)")
    p.add_argument("--workers", type=field_flag(DataConfig, "workers", "--workers"), default=None,
                   help="data loading processes (default: from --cpus)")
    p.add_argument("--seed", type=flag_type(SEED, "--seed"),
                   help="training seed (default 0)")
    p.add_argument("--out", metavar="DIR",
                   help="save the trained net as an export folder (schedule.json + weights.pt)"
                        "; `nas-dil eval DIR --data …` measures it")
    p.add_argument("--force", action="store_true", help="with --out: replace an earlier export")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _from_flags(args: argparse.Namespace) -> tuple[TrialConfig, Schedule, int]:
    """(config, schedule, seed) of the trial the flags describe."""
    from nas_dil.data import DataConfig
    from nas_dil.models import ArchConfig
    from nas_dil.schedule import Schedule
    from nas_dil.train import TrainConfig, TrialConfig

    for dest in ("study", "trial"):
        if getattr(args, dest) is not None:
            raise UserError(f"{_flag(dest)} {getattr(args, dest)}: needs --from-study "
                            "OUT_DIR_OR_STORAGE")
    if args.schedule is None:
        raise UserError("give --schedule RATES (e.g. 1,2,5), or --from-study "
                        "OUT_DIR_OR_STORAGE --trial N")
    a = {k: v if getattr(args, k) is None else getattr(args, k)
         for k, v in TRIAL_DEFAULTS.items()}
    s = Schedule.parse(a["schedule"], kernel=a["kernel"])
    arch = ArchConfig.from_dict(parse_arch(a["arch"]))
    data = {k: a[k] for k in DATA_FLAGS if a[k] is not None}
    data_cfg = DataConfig(source=a["data"], layout=a["layout"], image_size=a["image_size"],
                          num_classes=a["num_classes"], workers=args.workers, **data)
    recipe = {k: a[k] for k in RECIPE_FLAGS if a[k] is not None}
    train = TrainConfig(**_budget(args), batch_size=a["batch_size"], lr=a["lr"],
                        device=args.device or "auto", threads=args.threads, cpus=args.cpus,
                        **recipe)
    return TrialConfig(arch=arch, data=data_cfg, train=train), s, a["seed"]


def _from_study(args: argparse.Namespace) -> tuple[TrialConfig, Schedule, int, dict[str, Any]]:
    """(config, schedule, seed, what it reruns) of ``--trial`` in ``--from-study``: the
    stored trial config with only the flags that say where it runs (device, CPUs) applied."""
    from collections.abc import Mapping
    from dataclasses import replace

    from nas_dil.models.analytic import trial_schedule
    from nas_dil.report.source import open_study
    from nas_dil.spaces import Candidate
    from nas_dil.train import TrialConfig

    given = [_flag(k) for k in TRIAL_DEFAULTS if getattr(args, k) is not None]
    if given:
        raise UserError(f"--from-study reruns a stored trial's config: {', '.join(given)} "
                        "would change it (leave them out)")
    if args.trial is None:
        raise UserError(f"--from-study {args.from_study}: needs --trial N")
    src = open_study(args.from_study, args.study)
    where = f"--from-study {args.from_study}: study {src.name!r}"
    trials = {t.number: t for t in src.trials()}
    t = trials.get(args.trial)
    if t is None:
        raise UserError(f"{where} has no trial {args.trial} (trials 0 to "
                        f"{max(trials, default=-1)})")
    study_cfg = src.meta.study_config
    kind = (study_cfg.get("trial") or {}).get("kind", "train")
    rec = t.record
    if kind != "train":
        raise UserError(f"{where}: trial {args.trial} is a {kind!r} trial (nothing was "
                        "trained): only kind 'train' trials can be trained again")
    if not (isinstance(rec.trial_config, Mapping) and isinstance(rec.candidate, Mapping)
            and isinstance(rec.seed, int)):
        missing = [k for k in ("trial_config", "candidate", "seed") if rec.get(k) is None]
        raise UserError(f"{where}: trial {args.trial} stores no {', '.join(missing) or 'config'}"
                        " (not written by a nas-dil search)")
    cfg = TrialConfig.from_dict(dict(rec.trial_config))
    s = trial_schedule(Candidate.from_dict(dict(rec.candidate)), cfg.arch)
    where_runs = {"device": args.device, "threads": args.threads, "cpus": args.cpus}
    train = replace(cfg.train, **{k: v for k, v in where_runs.items() if v is not None})
    data = (replace(cfg.data, workers=args.workers) if args.workers is not None else cfg.data)
    source = {"study": src.name, "storage": src.location, "trial": t.number,
              "state": t.state, "miou": rec.result.get("miou"),
              "feature_cache": study_cfg.get("feature_cache")}  # where the search's cache is
    return replace(cfg, train=train, data=data), s, rec.seed, source


def run(args: argparse.Namespace) -> int:
    from nas_dil.data import load_data
    from nas_dil.train import TrialFailed, resolve_device, run_trial

    source: dict[str, Any] | None = None
    if args.from_study is not None:
        cfg, s, seed, source = _from_study(args)
    else:
        cfg, s, seed = _from_flags(args)
    data_cfg, train = cfg.data, cfg.train
    feature_cache = (args.feature_cache if args.feature_cache is not None or source is None
                     else source["feature_cache"])
    if args.out:
        from nas_dil.export.bundle import check_export_dir

        check_export_dir(args.out, args.force)  # before training, not after it
    device = resolve_device(train.device)
    data = load_data(data_cfg, device)
    info = data.describe()
    if not args.json:
        # a class count read off the masks is worth a look: a stray value changes it
        if "masks" in str(info.get("classes_from", "")):
            print(f"data: {data.num_classes} classes from the {info['classes_from']}",
                  file=sys.stderr)
        for note in info.get("notes") or ():
            print(f"data: {note}", file=sys.stderr)

    # the bar starts on the first step, so a bad data folder fails before any bar is drawn
    show_bar = not args.quiet and not args.json
    bar = None

    def progress(step: int, total: int | None, _info: dict) -> None:
        nonlocal bar
        if not show_bar:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(desc=f"train {s}", unit="step", total=total, file=sys.stderr,
                       dynamic_ncols=True)
        bar.update(step - bar.n)

    def on_eval(i: int, miou: float, partial: dict) -> bool:
        if bar is not None:
            bar.set_postfix(miou=f"{miou:.3f}", loss=f"{partial['loss_curve'][-1]:.3f}")
        return False

    try:
        outcome = run_trial(cfg, s, seed=seed, callback=on_eval, progress=progress,
                            data=data, feature_cache=feature_cache)
    except TrialFailed as e:
        if bar is not None:
            bar.close()
            bar = None
        if args.json:
            print_json({"status": "fail", "reason": e.reason})
        print(f"nas-dil train: trial failed: {e.reason}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
        data.close()
    d = outcome.result.to_dict()
    written = _save(args, outcome.model, cfg, d, info, source) if args.out else None
    if args.json:
        print_json({"status": "complete", **d, **({"out": written} if written else {}),
                    **({"from_study": source} if source else {})})
        return 0
    if source:
        stored = source["miou"]
        print(f"trial {source['trial']} of study {source['study']!r} ({source['storage']}) "
              f"trained again, seed {seed}; stored mIoU "
              + ("-" if stored is None else f"{stored:.4f}") + f" ({source['state']})")
    print(format_table(
        ["eval", "loss", "mIoU"],
        [(i + 1, f"{lo:.4f}", f"{m:.4f}")
         for i, (lo, m) in enumerate(zip(d["loss_curve"], d["miou_curve"], strict=True))],
    ))
    print(f"\nmIoU {d['miou']:.4f}  pixel acc {d['pixel_acc']:.4f}  per class "
          + " ".join("-" if v is None else f"{v:.3f}" for v in d["per_class_iou"]))
    dead = f", {d['dead_taps']} dead taps at the crop" if d.get("dead_taps") else ""
    print(f"RF {d['rf']} usable / {d['rf_nominal']} nominal image px (stack "
          f"{d['rf_stack']}){dead}, holes {d['holes']}, params "
          f"{d['params']:,}, {d['flops'] / 1e9:.4f} GFLOPs/image")
    print(f"{d['steps']} steps, {d['images_per_s']:.1f} images/s, wall {d['wall_time_s']:.1f} s "
          f"on {d['device']}, peak memory {d['peak_mem_bytes'] / 2**20:.0f} MiB "
          f"({d['peak_mem_kind']})")
    if written:
        print(f"written: {written} (nas-dil eval {written} --data DIR)")
    return 0


def _save(args: argparse.Namespace, model: Any, trial: TrialConfig, d: dict[str, Any],
          info: dict[str, Any], source: dict[str, Any] | None) -> str:
    """The trained net as an export folder, through export's one writer (a frozen backbone's
    net: the head's weights and the backbone named, `nas_dil.train.kept`)."""
    from nas_dil.export.bundle import write_bundle
    from nas_dil.export.doc import ExportDoc
    from nas_dil.models import model_config
    from nas_dil.train.kept import backbone_ref

    keys = ("miou", "pixel_acc", "per_class_iou", "miou_curve", "loss_curve", "wall_time_s",
            "images_per_s", "peak_mem_bytes")
    cfg = d["config"]
    backbone = backbone_ref(model, trial, d["seed"])
    doc = ExportDoc(
        model_config=model_config(model),
        values={"miou": d["miou"], "rf": d["rf"], "gflops": d["flops"] / 1e9},
        metrics={k: d[k] for k in keys},
        rf=d["rf"], rf_stack=d["rf_stack"], holes=d["holes"],
        gridding_free=d["gridding_free"], macs=d["macs"], flops=d["flops"],
        gflops=d["flops"] / 1e9,
        class_names=tuple(info.get("class_names") or []),
        pick={"rule": "train", "reason": "trained by nas-dil train --out" + (
            f" --from-study, trial {source['trial']} again" if source else "")},
        weights_note="weights of the trained net (nas-dil train --out)" + (
            "; the head's only, the frozen backbone named by `backbone`" if backbone else ""),
        provenance={"study": source and source["study"],
                    "storage": source and source["storage"],
                    "trial": source and source["trial"], "seed": d["seed"],
                    "data": info, "trial_config": cfg, "node": d["node"]},
    )
    write_bundle(args.out, doc, model, force=args.force, backbone=backbone)
    return str(args.out)
