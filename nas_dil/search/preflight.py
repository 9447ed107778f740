"""Preflight: everything that can refuse a search, checked before its first write, and the
study's metadata (`StudyMeta`) for a new study.

- the sampler fits the space (brute force needs a countable one; samplers other than hvi, tpe
  and random need every baseline inside the space);
- the storage can be reached and, when the study exists, it is a nas-dil study with the same
  objectives, trial-defining settings and search space (a resumed study means the same thing);
- ``--resume`` finds the study;
- the study's [arch] makes a net of every candidate (`check_arch`): output strides the
  backbone runs at, on a torchvision backbone depths that fit the targeted blocks, and
  torchvision and the weights there when trials build nets;
- a frozen backbone's feature caches fit the disk (`feature_plan`: the caches are planned
  here, the driver builds them once the study exists).

Every refusal is one `UserError` / `StorageError` line and leaves every study as it was.

`resolve_study` then makes the `ResolvedStudy` the search runs on: the space's candidates
scored once (`objectives.score_space`) for the objective ranges, the dead-tap share and the
constraints' feasibility (`check_feasible`), the warnings, and the sampler.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_dil.errors import UserError
from nas_dil.pareto import REFERENCE
from nas_dil.resources import source_commit
from nas_dil.search.config import StudyConfig
from nas_dil.search.objectives import (
    RANGE_SAMPLES,
    ObjectiveRange,
    SpaceScores,
    objective_ranges,
    score_space,
)
from nas_dil.search.records import StudyMeta
from nas_dil.search.resolved import ResolvedStudy
from nas_dil.search.storage import StorageError, check_storage, read_meta, safe_url
from nas_dil.spaces import Candidate, Space, load_space

if TYPE_CHECKING:
    from nas_dil.train.features import FeaturePlan

__all__ = ["Existing", "check_arch", "check_baselines", "check_feasible", "check_paths",
           "check_sampler", "check_study", "feature_plan", "resolve_study", "study_meta",
           "study_space"]

_INSIDE_ONLY_OK = ("hvi", "tpe", "random")  # samplers that take trials outside the space


def study_space(cfg: StudyConfig) -> Space:
    """The study's space; a study that avoids dead taps (search/dead_taps.py) binds it to
    its crop (`Space.live`): it proposes only stacks whose taps all land on the image."""
    space = load_space(cfg.space_path)
    where = str(cfg.path)
    return cfg.dead_taps.with_space(space, where).bind(space, cfg.arch, cfg.data.crop_hw, where)


def check_sampler(cfg: StudyConfig, space: Space) -> None:
    # repeats with [train] freeze: the study file alone decides it, so parsing refuses it
    if cfg.sampler.name == "brute":
        try:
            space.count()
        except UserError as e:
            raise UserError(f"{cfg.path}: sampler brute needs a countable space: {e}") from None


def check_baselines(cfg: StudyConfig, space: Space,
                    baselines: list[tuple[str, Candidate]]) -> None:
    if cfg.arch.backbone != "stem":  # each must be a net of that backbone
        from nas_dil.models.analytic import trial_schedule
        from nas_dil.models.config import ArchError
        from nas_dil.schedule import ScheduleError

        for name, c in baselines:
            try:
                trial_schedule(c, cfg.arch.at(c))
            except (ArchError, ScheduleError) as e:
                raise UserError(f"{cfg.path}: baselines {name!r}: {e}") from None
    outside = [n for n, c in baselines if space.params_for(c) is None]
    if outside and cfg.sampler.name not in _INSIDE_ONLY_OK:
        raise UserError(
            f"{cfg.path}: baselines {', '.join(outside)} are not in space {space.name}; "
            f"sampler {cfg.sampler.name!r} needs every trial inside the space (use hvi, tpe "
            "or random, or a space that contains them)")


def check_arch(cfg: StudyConfig, space: Space) -> None:
    """The study's [arch] around every candidate of the space, one line per problem:

    - every output stride of the space makes a valid `ArchConfig` (the stem net: 4-32;
      torchvision backbones 8, 16, 32);
    - on a torchvision backbone with target "backbone" or "both" the number of block rates
      follows from the backbone and the output stride (``tables.block_kernels``): each depth
      the space proposes must equal it ("backbone") or exceed it ("both", the rest is the
      head's); with no head, kernel and width have one choice each (else twins);
    - degridding dimensions are the stem net's;
    - trials that build nets (kind "train") need torchvision and the weights: checked here,
      loading them once (``backbones.check_backbone``).
    """
    from nas_dil.models.config import ArchError, Place

    sc = space.config
    where = f"{cfg.path}: [arch] with space {space.name}"
    for os_ in sc.output_stride:
        try:
            cfg.arch.at(Place(os_, sc.width[0]))
        except ArchError as e:
            raise UserError(f"{where}: {e}") from None
    name = cfg.arch.backbone
    if name == "stem":
        return
    from nas_dil.models.tables import backbone_table, needs_extraction

    if needs_extraction(name):  # a timm model without a stored table: tabulated from timm
        import nas_dil.models.backbones  # noqa: F401  (registers the extraction)
    for os_ in sc.output_stride:  # the model exists, tabulates, and runs at each stride
        try:
            backbone_table(name, os_)
        except UserError as e:
            raise UserError(f"{where}: {e}") from None
    if sc.degridding:
        raise UserError(f"{where}: smooth, tail and per_axis are the stem net's; "
                        f"backbone={name!r} takes square, unsmoothed layers")
    target = cfg.arch.target
    if target != "head":
        from nas_dil.models.tables import block_kernels

        depths = space.depths()
        for os_ in sc.output_stride:
            blocks = block_kernels(name, os_)[0]
            n = len(blocks)
            bad = [d for d in depths if (d != n if target == "backbone" else d <= n)]
            if bad:
                need = f"depth = {n}" if target == "backbone" else f"depths > {n}"
                raise UserError(
                    f"{where}: depth {bad[0]} cannot fit: target={target!r} on {name} at "
                    f"output_stride={os_} sets {n} block rates ({blocks[0]} … {blocks[-1]})"
                    f"{'' if target == 'backbone' else ' before the head'}; the space's "
                    f"depths are {list(depths)}, it needs {need}")
    if target == "backbone" and (len(sc.kernel) > 1 or len(sc.width) > 1):
        raise UserError(f"{where}: target='backbone' has no head stack, so kernel "
                        f"{list(sc.kernel)} and width {list(sc.width)} would train one net "
                        "under several names; give one value each")
    weights = cfg.arch.weights
    if weights not in ("none", "imagenet") and not Path(weights).expanduser().is_absolute():
        raise UserError(f"{cfg.path}: [arch] weights={weights!r}: give the state_dict's "
                        "absolute path (trials run in Ray workers, in other folders)")
    if cfg.kind.builds_nets:
        from nas_dil.models.backbones import check_backbone

        check_backbone(name, weights)


@dataclass(frozen=True)
class Existing:
    """What the storage already holds under the study's name."""

    exists: bool
    meta: StudyMeta | None


def check_study(cfg: StudyConfig, space: Space, url: str, resume: bool) -> Existing:
    """Reach the storage; an existing study must be this one (see the module docstring)."""
    check_storage(url)
    exists, raw, directions = read_meta(url, cfg.name)
    where = f"study {cfg.name!r} in {safe_url(url)}"
    if resume and not exists:
        raise StorageError(f"--resume: no {where}")
    if not exists:
        return Existing(False, None)
    if raw is None:
        raise StorageError(f"{where} exists and is not a nas-dil study; "
                           "choose another name or storage")
    _check_same(cfg, space, raw, directions, where)
    return Existing(True, StudyMeta.from_dict(raw))


def _plain(v: Any) -> Any:
    return json.loads(json.dumps(v))


def _check_same(cfg: StudyConfig, space: Space, meta: Mapping[str, Any], directions: list[str],
                where: str) -> None:
    ours = [o.to_dict() for o in cfg.objectives]
    if meta.get("objectives") != ours or directions != [o.direction for o in cfg.objectives]:
        theirs = ", ".join(f"{o['name']} {o['direction']}" for o in
                           meta.get("objectives") or [])
        mine = ", ".join(f"{o.name} {o.direction}" for o in cfg.objectives)
        raise StorageError(f"{where} exists with other objectives ({theirs}; this "
                           f"config: {mine}); choose another name or storage")
    stored = {k: (meta.get("study_config") or {}).get(k) for k in cfg.identity()}
    stored["objectives"] = meta.get("objectives")
    for k, v in cfg.identity().items():
        if _plain(v) != stored.get(k):
            raise StorageError(f"{where} exists with a different {k!r} setting; "
                               "choose another name or storage, or restore the config")
    mine_space = {k: v for k, v in space.describe().items() if k != "path"}
    if {k: v for k, v in (meta.get("space") or {}).items() if k != "path"} != _plain(mine_space):
        raise StorageError(f"{where} exists with a different search space; choose another "
                           "name or storage")


def study_meta(cfg: StudyConfig, space: Space, *, n_trials: int, url: str, out: Path,
               data: Any, ranges: Mapping[str, ObjectiveRange], early_stop: bool,
               n_evals: int | None, warnings: list[str]) -> StudyMeta:
    """The metadata a new study records (`StudyMeta`)."""
    from nas_dil import __version__

    d = cfg.to_dict()
    d["n_trials"] = n_trials
    d["storage"] = safe_url(url)
    d["out"] = str(out)
    return StudyMeta(
        version=__version__,
        git_commit=source_commit(),
        study_config=d,
        objectives=tuple(cfg.objectives),
        space=space.describe(),
        out_dir=str(out),
        data=data,
        hypervolume={"reference": REFERENCE, "normalised": True,
                     "ranges": {k: {"best": r.best, "worst": r.worst, "exact": r.exact}
                                for k, r in ranges.items()}},
        early_stop={"enabled": early_stop, "n_evals": n_evals, **asdict(cfg.early_stop)},
        warnings=tuple(warnings),
    )


# -- constraints the space can meet (issue 11, item 9) ----------------------------------------

def check_feasible(cfg: StudyConfig, space: Space, scores: SpaceScores) -> None:
    """Refuse a study whose constraints no candidate of the space meets: one line naming the
    constraint and the best value the space achieves over the scored candidates (the whole
    space when it has at most `objectives.ENUMERATE_LIMIT` candidates, else
    `objectives.RANGE_SAMPLES` seeded draws, said so). Dead taps at the crop count as a
    constraint unless the study allows them; a space mostly dead there gets a warning
    (`resolve_study`), one wholly dead this refusal."""
    if not cfg.constraints and not cfg.gridding_free and not cfg.dead_taps.refused:
        return
    import numpy as np

    n = scores.n_space
    if not n:
        return
    of = (f"of the {n} candidates" if scores.exact
          else f"of {RANGE_SAMPLES} sampled candidates")
    ok = np.ones(n, dtype=bool)
    for c in cfg.constraints:
        v = scores.space_col(c.metric).astype(float)
        met = np.array([c.violation(float(x)) <= 0 for x in v])
        if not met.any():
            best = float(v.min() if c.kind == "max" else v.max())
            raise UserError(
                f"{cfg.path}: constraints.{c.name} = {c.bound:g}: no candidate of space "
                f"{space.name} meets it; the best {c.metric} {of} is {best:g}")
        ok &= met
    if cfg.gridding_free:
        holes = scores.space_col("holes")
        free = holes == 0
        if not free.any():
            raise UserError(
                f"{cfg.path}: constraints.gridding_free: no candidate of space {space.name} is "
                f"hole-free; the fewest holes {of} is {int(np.min(holes))}")
        ok &= free
    if cfg.dead_taps.refused:
        dead = scores.space_col("dead_taps")
        live = dead == 0
        if not live.any():
            raise cfg.dead_taps.none_live(str(cfg.path), of, space.name, cfg.data.crop_hw,
                                          int(np.min(dead)))
        ok &= live
    if not ok.any():
        names = [f"{c.name} = {c.bound:g}" for c in cfg.constraints]
        names += ["gridding_free"] if cfg.gridding_free else []
        names += ["no dead taps"] if cfg.dead_taps.refused else []
        raise UserError(f"{cfg.path}: constraints {', '.join(names)}: each is met by some "
                        f"candidate of space {space.name} but none {of} meets them all")


def resolve_study(cfg: StudyConfig, space: Space, num_classes: int,
                  baselines: list[tuple[str, Candidate]]) -> ResolvedStudy:
    """The study the search runs on (`ResolvedStudy`), after its last refusals: the space's
    candidates scored once for `check_feasible`, the objective ranges and the warnings (an
    objective that cannot vary; a space mostly dead at the crop), then the sampler."""
    from dataclasses import replace

    from nas_dil.search.trials import make_sampler

    study = ResolvedStudy(cfg, space, num_classes, tuple(baselines))
    scores = score_space(space, cfg.seed, [c for _, c in baselines], study.score)
    check_feasible(cfg, space, scores)
    ranges = objective_ranges(cfg.objectives, scores)
    warnings = [f"objective {o.name} cannot vary in space {space.name}: every "
                f"candidate{' sampled' if not r.exact else ''} has {o.name} = {r.best:g}"
                for o in cfg.objectives
                if not o.measured and (r := ranges[o.name]).best == r.worst]
    dead = cfg.dead_taps.warning(scores.dead_share(), scores.exact, space.name,
                                 cfg.data.crop_hw)
    warnings += [dead] if dead else []
    study = replace(study, ranges=ranges, warnings=tuple(warnings))
    study = replace(study, features=feature_plan(study))  # refused here if it cannot fit
    return replace(study, sampler=make_sampler(study))


# -- paths the search will write (issue 11, item 6) --------------------------------------------

def check_paths(out: Path, url: str) -> None:
    """The output folder and an SQLite storage can be written, before anything is: one line
    naming the path otherwise (an existing file as --out, a folder under a file or /proc, a
    read-only study.db)."""
    import os

    from nas_dil.errors import writable_folder
    from nas_dil.search.storage import _sqlite_file

    writable_folder(out, "--out")
    db = _sqlite_file(url)
    if db is None:
        if url.startswith("sqlite:"):
            raise StorageError(f"storage {safe_url(url)}: an in-memory SQLite database keeps "
                               "nothing after the search; give a file (sqlite:///PATH)")
        return
    where = f"storage {safe_url(url)}"
    if db.is_dir():
        raise StorageError(f"{where}: is a folder, not a file")
    try:
        writable_folder(db.parent, where + ": folder")
    except UserError as e:
        raise StorageError(str(e)) from None
    if db.exists():
        try:  # opened for writing, nothing written: the study must take new trials
            with db.open("r+b"):
                pass
        except OSError as e:
            raise StorageError(f"{where}: cannot write the study file ({e.strerror or e}); "
                               "a search needs it writable") from None
        if not os.access(db, os.W_OK):  # pragma: no cover - open() would have failed
            raise StorageError(f"{where}: the study file is read-only")


# -- the feature caches of a frozen backbone (issue 13 §2) ------------------------------------

def feature_plan(study: ResolvedStudy) -> FeaturePlan | None:
    """``[train] freeze = "backbone"``: every feature cache the trials will read (one per
    output stride the space or a baseline uses), each found valid or sized for its build
    (`train.features.plan_features`: loads the data on this machine); refused in one line
    when those to build do not fit the disk. The driver builds them (`FeaturePlan.build`)
    after creating the study; trials on this machine then read them, a worker on another node
    builds its own copy once (under a lock) at the same node-local path. None: nothing is
    frozen, or the trials build no nets."""
    cfg = study.cfg
    if cfg.train.freeze == "none" or not study.kind.builds_nets:
        return None
    from nas_dil.models.config import Place
    from nas_dil.train.config import TrialConfig
    from nas_dil.train.features import plan_features

    strides = sorted({*study.space.config.output_stride,
                      *(c.output_stride for _, c in study.baselines)})
    archs = [study.arch(Place(s, study.space.config.width[0])) for s in strides]
    return plan_features(TrialConfig(archs[0], cfg.data, cfg.train), cfg.seed,
                         cfg.feature_cache, archs=archs[1:])
