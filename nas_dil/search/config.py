"""Study configs: TOML data (``studies/*.toml``) parsed into frozen dataclasses.

A study file names everything a search needs; every key is optional except ``space``:

    name = "quickstart"          # study name in the storage (default: the file's stem); a
                                 #   name, not a path: no '/', '\\', not '.' or '..'
    description = "…"            # one line for reports
    space = "hdc"                # shipped space name, or a space file (relative to this file)
    n_trials = 24                # trials to finish; infeasible candidates do not count
    seed = 0                     # sampler seed AND every trial's training seed
    storage = "postgresql://…"   # SQLAlchemy URL (default: sqlite:///<out>/study.db)
    out = "runs/quickstart"      # output folder (default: runs/<name>, relative to the cwd)
    keep_weights = true          # save the state_dict of Pareto-front trials and baselines
    feature_cache = "auto"       # [train] freeze = "backbone": folder of the cached backbone
                                 #   features ("auto": $NAS_DIL_CACHE or ~/.cache/nas-dil, then
                                 #   features/; node-local, kept when a study is deleted)
    dead_taps = "refuse"         # candidates whose taps read only padding at the crop: refuse
                                 #   (infeasible, never trained), avoid (the space proposes
                                 #   none) or allow (they train); see search/dead_taps.py
    objectives = [{ name = "miou", direction = "maximize" }, …]   # default: miou↑ rf↑ gflops↓
    [constraints]                # min_<metric> / max_<metric> for rf, rf_stack, gflops, params;
    max_gflops = 0.05            #   gridding_free = true keeps only hole-free stacks
                                 #   (allow_dead_taps = true: the old dead_taps = "allow")
    [sampler]                    # name = hvi (default) | tpe | nsga2 | nsga3 | gp | random |
    name = "hvi"                 #   brute, and any keyword of that sampler class (hvi: beta,
                                 #   n_startup, pool_size, seed, noise = true for noisy mIoU,
                                 #   repeats = k: up to k more looks at a promising
                                 #   candidate, each trained from the next seed; the front
                                 #   takes their mean; kernel = "ard" (default) | "iso";
                                 #   tpe: n_startup_trials, …)
    [parallel]                   # max_in_flight, cpus, gpus (fractional packs trials per GPU),
    max_in_flight = 2            #   memory_gb, resources = { … } (Ray custom), max_retries,
                                 #   pending_timeout_s (trials no node can fit: FAIL after it)
    [trial]                      # kind = "train" (run_trial), "sleep" (orchestration tests) or
                                 #   "tabular" (mIoU read from table = "tabular_dilation.csv":
                                 #   a shipped name under benchmarks/ or a path relative to
                                 #   this file; table_seed = the rows' seed, default `seed`);
                                 #   what each kind needs: search/kinds.py
    [arch] [data] [train]        # ArchConfig (but output_stride, width, num_classes: an
                                 #   ArchTemplate) / DataConfig / TrainConfig fields (a relative
                                 #   data.source is relative to this file, as space and table)
    [early_stop]                 # enabled, min_completed, min_evals, margin (see early_stop.py)
    [[baselines]]                # name = yu_koltun | constant2 | hdc | multigrid, or name +
    name = "hdc"                 #   rates; kernel / output_stride / width optional
    [noise]                      # baseline_seeds = 3: each baseline trained with that many
                                 #   seeds (looks, as repeats): the study's seed noise
                                 #   (`looks.pooled_noise`); 1: one training each
    [confirm]                    # seeds = 3: after n_trials, the front's candidates are
                                 #   trained again until each has that many seeds (0: off);
                                 #   max_trials caps those looks (default seeds x front size)

Every problem is a `StudyConfigError` (a UserError): ``"<file>: <dotted.key>: <problem>"``,
one format for every line.

Where each check lives (one check per rule): what the study file alone decides is checked
here, when it is parsed; what needs the space, storage, cluster or data is checked in
preflight (``nas_dil.search.preflight``). A number's range is declared once, on its config
field (``bounded(…)``, `nas_dil._check`), and checked by the config itself: a study file,
Python code and a CLI flag meet the same check; NaN and ±inf are refused everywhere (no
setting takes them). Kept on dataclasses rather than pydantic: their annotations already type
each key, and pydantic's errors are multi-line and coerce values a study file must refuse.

Over 500 lines on purpose: every table of the study file, its types and its checks, in
one place (the validation rule: what the file alone decides is checked where it is parsed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from nas_dil._check import SEED, bounded, check_fields
from nas_dil._toml import TomlReader
from nas_dil.data.config import DataConfig
from nas_dil.errors import UserError
from nas_dil.models.config import PER_NET, ArchConfig, ArchTemplate
from nas_dil.resources import load_toml, resolve, shipped_names
from nas_dil.search.baselines import BASELINES, BaselineConfig, parse_baselines
from nas_dil.search.dead_taps import POLICIES, DeadTaps
from nas_dil.search.kinds import KINDS, TrialKind
from nas_dil.search.objectives import CONSTRAINT_METRICS
from nas_dil.search.records import METRICS, Objective
from nas_dil.search.samplers import (
    SAMPLERS,
    SamplerConfig,
    parse_sampler,
    sampler_class,
)
from nas_dil.train.config import TrainConfig, check_aux, check_freeze

__all__ = [
    "BASELINES",
    "SAMPLERS",
    "BaselineConfig",
    "ConfirmConfig",
    "Constraint",
    "EarlyStopConfig",
    "NoiseConfig",
    "ParallelConfig",
    "SamplerConfig",
    "StudyConfig",
    "StudyConfigError",
    "TrialKindConfig",
    "load_study_config",
    "parse_study_config",
    "sampler_class",
]


class StudyConfigError(UserError, ValueError):
    """A bad study file or option; one line naming the file and the key."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


_TOP = ("name", "description", "space", "n_trials", "seed", "storage", "out", "keep_weights",
        "feature_cache", "dead_taps",
        "objectives", "constraints", "sampler", "parallel", "trial", "arch", "data", "train",
        "early_stop", "baselines", "noise", "confirm")


@dataclass(frozen=True)
class Constraint:
    """``metric`` must stay ``<= bound`` (kind "max") or ``>= bound`` (kind "min")."""

    metric: str  # an analytic metric: rf, rf_stack, gflops, params
    kind: str  # "min" or "max"
    bound: float

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.metric}"

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 is feasible (by how much it is met or missed)."""
        return value - self.bound if self.kind == "max" else self.bound - value


@dataclass(frozen=True)
class ParallelConfig:
    max_in_flight: int = bounded(2, ge=1)  # trials running at once (the driver keeps this
    # many busy)
    cpus: float = bounded(1.0, ge=0, le=4096)  # Ray CPUs per trial
    gpus: float = bounded(0.0, ge=0, le=1024)  # Ray GPUs per trial; 0.25 packs four trials
    # on one GPU
    memory_gb: float | None = bounded(None, ge=0, le=2**20, integer=False)  # Ray memory per
    # trial (None: no reservation)
    resources: Mapping[str, float] = field(default_factory=dict)  # Ray custom resources
    # (each a finite number >= 0)
    max_retries: int = bounded(2, ge=0, le=1000)  # reruns of a trial whose worker or node
    # died, then FAIL
    pending_timeout_s: float = bounded(600.0, ge=0, le=10**7)  # trials no live node can fit
    # for this long: FAIL (0: wait)

    def __post_init__(self) -> None:
        check_fields(self, StudyConfigError, "parallel")
        for k, v in self.resources.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < math.inf:
                e = StudyConfigError(f"parallel: resources.{k}={v!r}: expected a finite "
                                     "number >= 0")
                e.field = (f"resources.{k}", f"expected a finite number >= 0, got {v!r}")
                raise e
        object.__setattr__(self, "resources", {k: float(v) for k, v in self.resources.items()})


@dataclass(frozen=True)
class TrialKindConfig:
    kind: str = "train"  # a KINDS name: "train" run_trial, "sleep" a synthetic curve
    # (orchestration only), "tabular" a benchmark table's curve (search/kinds.py)
    sleep_s: float = bounded(1.0, ge=0, le=86_400)  # sleep: seconds per trial, spread over
    # the evaluations
    evals: int = bounded(3, ge=1, le=10_000)  # sleep: evaluations per trial (the curve's length)
    fail_width: int | None = bounded(None, ge=1, integer=True)  # sleep: candidates of this
    # width raise TrialDiverged
    oom_width: int | None = bounded(None, ge=1, integer=True)  # sleep: candidates of this
    # width raise TrialOOM
    table: str | None = None  # tabular: the table (resolved to an absolute path when parsed)
    table_seed: int | None = bounded(None, bound=SEED)  # tabular: seed
    # of the table rows to read (None: the study's)

    def __post_init__(self) -> None:
        check_fields(self, StudyConfigError, "trial")


@dataclass(frozen=True)
class EarlyStopConfig:
    enabled: bool = True  # stop trials that cannot reach the Pareto front (needs miou)
    min_completed: int = bounded(4, ge=1)  # completed trials needed before any trial is stopped
    min_evals: int = bounded(1, ge=1)  # evaluations a trial always gets
    margin: float = bounded(0.01, ge=0)  # mIoU added to the optimistic bound (noise allowance)

    def __post_init__(self) -> None:
        check_fields(self, StudyConfigError, "early_stop")


@dataclass(frozen=True)
class NoiseConfig:
    baseline_seeds: int = bounded(3, ge=1, le=100)  # looks (training seeds) per baseline: the
    # study's seed noise (1: one look each, the noise then comes only from repeats)

    def __post_init__(self) -> None:
        check_fields(self, StudyConfigError, "noise")


@dataclass(frozen=True)
class ConfirmConfig:
    seeds: int = bounded(3, ge=0, le=100)  # seeds each front candidate needs after n_trials
    # (0, 1: no confirmation)
    max_trials: int | None = bounded(None, ge=0, le=10**6, integer=True)  # cap on
    # confirmation looks (None: seeds x the front's size)

    def __post_init__(self) -> None:
        check_fields(self, StudyConfigError, "confirm")

    @property
    def enabled(self) -> bool:
        return self.seeds >= 2


@dataclass(frozen=True)
class StudyConfig:
    path: Path  # the study file (names it in errors; relative paths start here)
    name: str
    description: str
    space: str  # as written (a shipped name or a path)
    space_path: Path  # resolved space file
    n_trials: int
    seed: int
    storage: str | None  # None: sqlite:///<out>/study.db
    out: Path
    keep_weights: bool
    feature_cache: str  # [train] freeze: where cached backbone features live ("auto": see
    # `_feature_cache`); where, not what: a resumed study may move it
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...]
    gridding_free: bool  # constraint: only hole-free stacks
    dead_taps: DeadTaps  # candidates with taps that read only padding at the crop
    sampler: SamplerConfig
    parallel: ParallelConfig
    trial: TrialKindConfig
    arch: ArchTemplate  # ArchConfig fields but output_stride, width (the candidate's) and
    # num_classes (the data's)
    data: DataConfig
    train: TrainConfig
    early_stop: EarlyStopConfig
    baselines: tuple[BaselineConfig, ...]
    noise: NoiseConfig = NoiseConfig()  # seeds per baseline (search/looks.py: the noise)
    confirm: ConfirmConfig = ConfirmConfig()  # the front confirmed over seeds after n_trials

    @property
    def kind(self) -> TrialKind:
        """What this study's trials are (``[trial] kind``; search/kinds.py)."""
        return KINDS[self.trial.kind]

    @property
    def repeats(self) -> int:
        """Extra looks (training seeds) the sampler may give one candidate (hvi's
        ``repeats``): the driver trains each with the next seed instead of reusing a result."""
        r = self.sampler.options.get("repeats", 0) if self.sampler.name == "hvi" else 0
        return int(r)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: what the study records as ``study_config``."""
        return {
            "path": str(self.path),
            "name": self.name,
            "description": self.description,
            "space": self.space,
            "space_path": str(self.space_path),
            "n_trials": self.n_trials,
            "seed": self.seed,
            "storage": self.storage,
            "out": str(self.out),
            "keep_weights": self.keep_weights,
            "feature_cache": self.feature_cache,
            "dead_taps": self.dead_taps.policy,
            "objectives": [o.to_dict() for o in self.objectives],
            "constraints": {c.name: c.bound for c in self.constraints}
            | ({"gridding_free": True} if self.gridding_free else {})
            # allow: spelled as before, so a stored study resumes with the same constraints
            | ({"allow_dead_taps": True} if not self.dead_taps.refused else {}),
            "sampler": {"name": self.sampler.name, **dict(self.sampler.options)},
            "parallel": {**asdict(self.parallel), "resources": dict(self.parallel.resources)},
            "trial": asdict(self.trial),
            "arch": self.arch.to_dict(),
            "data": asdict(self.data),
            "train": self.train.to_dict(),
            "early_stop": asdict(self.early_stop),
            "baselines": [{**asdict(b), "rates": list(b.rates)} for b in self.baselines],
            "noise": asdict(self.noise),
            "confirm": asdict(self.confirm),
        }

    def identity(self) -> dict[str, Any]:
        """The parts a resumed study must share with the stored one (what trials mean)."""
        d = self.to_dict()
        keep = ("objectives", "constraints", "seed", "trial", "arch", "data", "train")
        return {k: d[k] for k in keep}


# -- readers ---------------------------------------------------------------------------------

class _Reader(TomlReader):
    """`TomlReader` raising StudyConfigError naming the study file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(lambda key, problem: StudyConfigError(
            f"{path}: {key}: {problem}" if key else f"{path}: {problem}"))


def _objectives(rd: _Reader, raw: object) -> tuple[Objective, ...]:
    if raw is None:
        return tuple(Objective(n, METRICS[n].direction) for n in ("miou", "rf", "gflops"))
    if not isinstance(raw, list) or not raw:
        raise rd.err("objectives", f"expected a non-empty list of {{ name, direction }}, "
                                   f"got {raw!r}")
    out: list[Objective] = []
    for key, t, name in rd.named_tables(raw, "objectives", ("name", "direction")):
        if name not in METRICS:
            raise rd.err(f"{key}.name", f"unknown objective {name!r} "
                                        f"(expected one of {', '.join(METRICS)})")
        direction = t.get("direction", METRICS[name].direction)
        if direction not in ("maximize", "minimize"):
            raise rd.err(f"{key}.direction", f"expected maximize or minimize, got {direction!r}")
        if any(o.name == name for o in out):
            raise rd.err(f"{key}.name", f"objective {name!r} given twice")
        out.append(Objective(name, direction))
    return tuple(out)


def _constraints(rd: _Reader,
                 raw: object) -> tuple[tuple[Constraint, ...], bool, bool | None]:
    t = rd.table(raw if raw is not None else {}, "constraints")
    allowed = tuple(f"{k}_{m}" for m in CONSTRAINT_METRICS for k in ("min", "max"))
    rd.keys(t, (*allowed, "gridding_free", "allow_dead_taps"), "constraints.")
    out = []
    for k, v in t.items():
        if k in ("gridding_free", "allow_dead_taps"):
            continue
        kind, metric = k.split("_", 1)
        out.append(Constraint(metric, kind, rd.number(v, f"constraints.{k}")))
    for m in CONSTRAINT_METRICS:
        lo = next((c.bound for c in out if c.metric == m and c.kind == "min"), None)
        hi = next((c.bound for c in out if c.metric == m and c.kind == "max"), None)
        if lo is not None and hi is not None and lo > hi:
            raise rd.err(f"constraints.min_{m}", f"{lo} > max_{m} {hi}: nothing is feasible")
    old = t.get("allow_dead_taps")  # the old spelling of dead_taps; None: not given
    return (tuple(out), rd.boolean(t.get("gridding_free", False), "constraints.gridding_free"),
            None if old is None else rd.boolean(old, "constraints.allow_dead_taps"))


def _dead_taps(rd: _Reader, raw: object, allow_dead_taps: bool | None) -> DeadTaps:
    """The top-level ``dead_taps`` (search/dead_taps.py); an older file's
    ``constraints.allow_dead_taps`` reads as "allow" (true) or "refuse" (false)."""
    if raw is not None and allow_dead_taps is not None:
        raise rd.err("constraints.allow_dead_taps", f"the old spelling of dead_taps, given with "
                                                    f"dead_taps = {raw!r}: keep one")
    if raw is None:
        return DeadTaps("allow" if allow_dead_taps else "refuse")
    policy = rd.string(raw, "dead_taps", nonempty=True)
    if policy not in POLICIES:
        raise rd.err("dead_taps", f"expected one of {', '.join(POLICIES)}, got {policy!r}")
    return DeadTaps(policy)


def _sampler(rd: _Reader, raw: object) -> SamplerConfig:
    return parse_sampler(rd.table(raw if raw is not None else {}, "sampler"), rd)


def _parallel(rd: _Reader, raw: object) -> ParallelConfig:
    t = dict(rd.table(raw if raw is not None else {}, "parallel"))
    res = rd.table(t.pop("resources", {}), "parallel.resources")
    kw = rd.dataclass_kwargs(ParallelConfig, t, "parallel.")
    kw["resources"] = dict(res)
    return rd.construct(ParallelConfig, kw, "parallel")


def _trial(rd: _Reader, raw: object) -> TrialKindConfig:
    t = rd.table(raw if raw is not None else {}, "trial")
    kw = rd.dataclass_kwargs(TrialKindConfig, t, "trial.")
    cfg = rd.construct(TrialKindConfig, kw, "trial")
    if cfg.kind not in KINDS:
        raise rd.err("trial.kind", f"expected one of {', '.join(KINDS)}, got {cfg.kind!r}")
    if KINDS[cfg.kind].needs_table:
        cfg = replace(cfg, table=str(_table_path(rd, cfg.table)))
    return cfg


def _table_path(rd: _Reader, table: str | None) -> Path:
    """A tabular benchmark: a path relative to the study file, or a name under benchmarks/."""
    if not table:
        raise rd.err("trial.table", "kind tabular needs table = <csv> (e.g. "
                                    "\"tabular_dilation.csv\", shipped under benchmarks/)")
    here = rd.path.parent / table
    found = here if here.is_file() else resolve("benchmarks", table)
    if found is None:
        raise rd.err("trial.table", f"{table!r}: no such file (relative to the study file, "
                                    f"or shipped: {', '.join(shipped_names('benchmarks'))})")
    return found.resolve()


def _check_table(rd: _Reader, cfg: StudyConfig) -> None:
    """Every candidate of the space must have a row of the table's seed (one line if not)."""
    from nas_dil.search.tabular import TableError, load_table
    from nas_dil.spaces import load_space

    seed = cfg.trial.table_seed if cfg.trial.table_seed is not None else cfg.seed
    try:
        table = load_table(str(cfg.trial.table))
        table.check_space(load_space(cfg.space_path), seed,
                          [b.rates for b in cfg.baselines])
    except TableError as e:
        raise rd.err("trial.table", str(e)) from None


def _early_stop(rd: _Reader, raw: object) -> EarlyStopConfig:
    t = rd.table(raw if raw is not None else {}, "early_stop")
    return rd.construct(EarlyStopConfig, rd.dataclass_kwargs(EarlyStopConfig, t, "early_stop."),
                        "early_stop")


def _noise(rd: _Reader, raw: object) -> NoiseConfig:
    t = rd.table(raw if raw is not None else {}, "noise")
    return rd.construct(NoiseConfig, rd.dataclass_kwargs(NoiseConfig, t, "noise."), "noise")


def _confirm(rd: _Reader, raw: object) -> ConfirmConfig:
    t = rd.table(raw if raw is not None else {}, "confirm")
    return rd.construct(ConfirmConfig, rd.dataclass_kwargs(ConfirmConfig, t, "confirm."),
                        "confirm")


def _space_path(rd: _Reader, space: str) -> Path:
    here = rd.path.parent / space
    if here.is_file():
        return here.resolve()
    found = resolve("search_spaces", space)
    if found is None:
        raise rd.err("space", f"{space!r}: no such file, and not a shipped space "
                              f"(shipped: {', '.join(shipped_names('search_spaces'))})")
    return found.resolve()


def _feature_cache(rd: _Reader, raw: object) -> str:
    """"auto" (``nas_dil.train.features.default_root()``: ``$NAS_DIL_CACHE`` or
    ``~/.cache/nas-dil``, then ``features/``; node-local and outside every study's folder, so
    deleting a study keeps it and the next study with the same features reuses them) or a
    folder, relative to the study file like ``space``."""
    v = rd.string(raw, "feature_cache", nonempty=True)
    if v == "auto":
        return v
    folder = Path(v).expanduser()
    return str(folder if folder.is_absolute() else (rd.path.parent / folder).resolve())


def _study_name(rd: _Reader, name: str) -> str:
    """A name, not a path: it names the study in its storage and the default runs/<name>."""
    bad = [c for c in name if c in "/\\" or ord(c) < 32 or ord(c) == 127]
    if bad or name in (".", "..") or len(name) > 200 or name != name.strip():
        raise rd.err("name", f"{name!r}: expected a name (no '/', '\\', control characters, "
                             "leading or trailing spaces; not '.' or '..'; at most 200 "
                             "characters)")
    return name


def parse_study_config(data: Mapping[str, Any], path: str | Path) -> StudyConfig:
    """Validate a parsed TOML table (``path`` names the file in messages)."""
    path = Path(path)
    rd = _Reader(path)
    if not isinstance(data, Mapping):
        raise rd.err(None, f"expected a TOML table, got {type(data).__name__}")
    rd.keys(data, _TOP, "")
    if "space" not in data:
        raise rd.err("space", "missing (a shipped space name such as hdc, or a space file)")
    name = _study_name(rd, rd.string(data.get("name", path.stem), "name", nonempty=True))
    space = rd.string(data["space"], "space", nonempty=True)
    storage = data.get("storage")
    if storage is not None:
        storage = rd.string(storage, "storage", nonempty=True)
    out = (Path(rd.string(data["out"], "out", nonempty=True)) if "out" in data
           else Path("runs") / name)
    arch_t = rd.table(data.get("arch", {}), "arch")
    arch_kw = rd.dataclass_kwargs(ArchConfig, arch_t, "arch.", exclude=PER_NET,
                                  why_excluded="is set per trial by the search space")
    try:
        arch = ArchTemplate.of(arch_kw)
        arch.check()
    except UserError as e:
        raise rd.refusal(e, "arch") from None
    except TypeError as e:
        raise rd.err("arch", str(e)) from None
    data_cfg = DataConfig(**rd.dataclass_kwargs(DataConfig, rd.table(data.get("data", {}),
                                                                      "data"), "data."))
    try:
        data_cfg.validate()
    except UserError as e:
        raise rd.refusal(e, "data") from None
    if data_cfg.source != "synthetic":  # like space and table: relative to the study file
        src = Path(data_cfg.source).expanduser()
        data_cfg = replace(data_cfg, source=str(src if src.is_absolute()
                                                else (path.parent / src).resolve()))
    train = rd.construct(TrainConfig, _train_kwargs(rd, rd.table(data.get("train", {}), "train")),
                         "train")
    constraints, gridding_free, allow_dead_taps = _constraints(rd, data.get("constraints"))
    dead_taps = _dead_taps(rd, data.get("dead_taps"), allow_dead_taps)
    cfg = StudyConfig(
        path=path,
        name=name,
        description=rd.string(data.get("description", ""), "description"),
        space=space,
        space_path=_space_path(rd, space),
        n_trials=rd.integer(data.get("n_trials", 24), "n_trials", 1),
        seed=rd.ranged(data.get("seed", 0), "seed", SEED),
        storage=storage,
        out=out,
        keep_weights=rd.boolean(data.get("keep_weights", True), "keep_weights"),
        feature_cache=_feature_cache(rd, data.get("feature_cache", "auto")),
        objectives=_objectives(rd, data.get("objectives")),
        constraints=constraints,
        gridding_free=gridding_free,
        dead_taps=dead_taps,
        sampler=_sampler(rd, data.get("sampler")),
        parallel=_parallel(rd, data.get("parallel")),
        trial=_trial(rd, data.get("trial")),
        arch=arch,
        data=data_cfg,
        train=train,
        early_stop=_early_stop(rd, data.get("early_stop")),
        baselines=parse_baselines(rd, data.get("baselines")),
        noise=_noise(rd, data.get("noise")),
        confirm=_confirm(rd, data.get("confirm")),
    )
    if cfg.kind.needs_table:
        _check_table(rd, cfg)
    if train.freeze != "none":
        if not cfg.kind.builds_nets:
            raise rd.err("train.freeze", f"{train.freeze!r} trains on cached features: needs "
                                         f"[trial] kind = \"train\", got {cfg.trial.kind!r}")
        try:
            check_freeze(train.freeze, arch.backbone, arch.target)
        except UserError as e:
            raise rd.err("train.freeze", str(e).removeprefix("train: ")) from None
        if cfg.repeats:  # a look is another seed, and the frozen features are cached per seed
            raise rd.err("sampler", f"repeats = {cfg.repeats} with [train] freeze = "
                                    f"{train.freeze!r}: each look would need its own feature "
                                    "cache; use repeats = 0 for frozen studies")
    try:
        check_aux(train, arch.backbone)
    except UserError as e:
        raise rd.err("train", str(e).removeprefix("train: ")) from None
    return cfg


def _train_kwargs(rd: _Reader, t: Mapping[str, Any]) -> dict[str, Any]:
    kw = rd.dataclass_kwargs(TrainConfig, t, "train.")
    # one budget: naming steps or seconds replaces the default epochs budget
    if ("steps" in kw or "seconds" in kw) and "epochs" not in kw:
        kw["epochs"] = None
    return kw


def load_study_config(name_or_path: str | Path) -> StudyConfig:
    """A study file by path, or a shipped study by name (``quickstart``)."""
    data, path = load_toml("studies", name_or_path, StudyConfigError, "study")
    return parse_study_config(data, path)
