"""What a search stores in its study, as typed records defined once.

A nas-dil study is an ordinary Optuna study plus two kinds of record, both plain JSON:

- `StudyMeta`: one study user attribute, `META_KEY`, written once when the study is created
  (nas-dil version, git commit, the study config, objectives, space, data, hypervolume ranges,
  early-stopping settings, warnings).
- `TrialRecord`: a trial's user attributes, flat (one attribute per field; the analytic metrics
  and the worker's results are spread into their own attributes, so the Optuna dashboard shows
  each as a column). `TrialRecord.to_attrs()` is what the driver writes; `from_frozen()` reads
  any stored trial back, including those written before a field was renamed.

`TrialPayload` is what the driver sends a Ray worker for one trial. The search writes these
records; report, export and dashboard read them (they sit to the right of ``search``).

Renamed attribute: up to nas-dil 0.1, ``hdc_rule1`` was the per-group verdict of HDC rule 1
and ``hdc_rule1_whole`` the whole-schedule one. Now ``hdc_rule1`` is the whole-schedule
verdict everywhere (as in `nas_dil.schedule.analyze` and the export certificate) and
``hdc_rule1_groups`` the per-group one; `from_frozen` maps the old names.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = [
    "ANALYTIC_KEYS",
    "META_KEY",
    "METRICS",
    "RESULT_KEYS",
    "STORAGE_FILE",
    "Metric",
    "Objective",
    "StudyMeta",
    "TrialPayload",
    "TrialRecord",
    "look_group",
    "merge_looks",
]

META_KEY = "nas_dil"  # the study user attr every nas-dil study carries
STORAGE_FILE = "study.db"  # the SQLite file inside a search's output folder


# -- objectives ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    name: str
    direction: str  # the default direction when the study config names none
    measured: bool  # True: known only after training; False: analytic, known at ask time
    doc: str


METRICS: dict[str, Metric] = {
    "miou": Metric("miou", "maximize", True, "mean IoU on the val split after training"),
    "rf": Metric("rf", "maximize", False, "usable receptive field of the whole net at the "
                 "training crop (image px, smaller axis; never more than the crop)"),
    "rf_nominal": Metric("rf_nominal", "maximize", False, "RF of the whole net by the formula "
                         "(image px), whatever the crop can supply: nas-dil <= 0.1's rf"),
    "rf_stack": Metric("rf_stack", "maximize", False, "RF of the searched layers alone (the "
                       "stack; on a backbone the targeted blocks, then the head)"),
    "gflops": Metric("gflops", "minimize", False, "GFLOPs per image at the training size"),
    "params": Metric("params", "minimize", False, "trainable parameters"),
}


@dataclass(frozen=True)
class Objective:
    name: str  # a METRICS name (a foreign study may carry other names: then measured)
    direction: str  # "maximize" or "minimize"

    @property
    def sign(self) -> float:
        """+1 to minimise, -1 to maximise: ``sign * value`` is a loss."""
        return 1.0 if self.direction == "minimize" else -1.0

    @property
    def measured(self) -> bool:
        m = METRICS.get(self.name)
        return True if m is None else m.measured

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "direction": self.direction}


# -- the study -------------------------------------------------------------------------------

@dataclass(frozen=True)
class StudyMeta:
    """The `META_KEY` study attribute."""

    version: str | None = None  # nas-dil version that created the study
    git_commit: str | None = None  # commit of the checkout the search ran from (None: no git)
    study_config: Mapping[str, Any] = field(default_factory=dict)  # StudyConfig.to_dict()
    objectives: tuple[Objective, ...] = ()
    space: Mapping[str, Any] = field(default_factory=dict)  # Space.describe()
    out_dir: str | None = None  # the output folder (weights paths are relative to it)
    data: Any = None  # the data set's describe()
    hypervolume: Mapping[str, Any] = field(default_factory=dict)  # reference, ranges
    early_stop: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys of a newer version, kept

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        d["objectives"] = [o.to_dict() for o in self.objectives]
        d["warnings"] = list(self.warnings)
        return {**self.extra, **d}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StudyMeta:
        """Any stored meta (missing keys take their defaults); ValueError if malformed."""
        names = {f.name for f in fields(cls)} - {"extra"}
        kw: dict[str, Any] = {k: d[k] for k in names if d.get(k) is not None}
        try:
            kw["objectives"] = tuple(Objective(str(o["name"]), str(o["direction"]).lower())
                                     for o in d.get("objectives") or ())
        except (KeyError, TypeError):
            raise ValueError(f"malformed 'objectives': {d.get('objectives')!r}") from None
        kw["warnings"] = tuple(str(w) for w in d.get("warnings") or ())
        return cls(**kw, extra={k: v for k, v in d.items() if k not in names})


# -- a trial ---------------------------------------------------------------------------------

# analytic metrics of a candidate (known at ask time; `objectives.analytic_attrs`)
# (``rf`` is the usable RF at the crop from 0.2 on; studies of <= 0.1 stored the nominal one
# there and have no rf_nominal / dead_taps)
ANALYTIC_KEYS = ("rf", "rf_nominal", "rf_nominal_h", "rf_nominal_w", "rf_usable_h",
                 "rf_usable_w", "dead_taps", "dead_taps_net", "dead_layers", "rf_stack", "holes",
                 "coverage", "gridding_free", "hdc_rule1", "hdc_rule1_groups", "hdc_rule2",
                 "hdc_rule3", "hdc", "m", "macs", "flops", "gflops", "params")
# what a worker measured (`worker.execute`'s result)
RESULT_KEYS = ("miou", "per_class_iou", "pixel_acc", "miou_curve", "loss_curve",
               "wall_time_s", "train_time_s", "images_per_s", "peak_mem_bytes",
               "peak_mem_kind", "steps", "epochs", "device")
_OLD_NAMES = {"hdc_rule1": "hdc_rule1_groups", "hdc_rule1_whole": "hdc_rule1"}  # <= 0.1


@dataclass(frozen=True)
class TrialRecord:
    """A trial's user attributes. None fields are not stored (and read back as None)."""

    # what sampling set (stored while the trial runs) and what it was enqueued with
    candidate: Mapping[str, Any] | None = None  # Candidate.to_dict()
    repaired: bool | None = None  # a gapfree repair changed the raw rates
    baseline: str | None = None  # the seed baseline it trains
    rerun_of: int | None = None  # the trial it reruns (interrupted or orphaned)
    # the rest of the ask: the net, its training config, the key that dedupes it
    arch: Mapping[str, Any] | None = None  # ArchConfig.to_dict()
    trial_config: Mapping[str, Any] | None = None  # TrialConfig.to_dict()
    seed: int | None = None
    key: str | None = None  # trial_key: equal keys train the same thing
    # a repeat (`[sampler] repeats`): the candidate's look-th training, seed = study seed +
    # look, and the key of its first (look 0), which groups the looks (None: look 0)
    look: int | None = None
    look_of: str | None = None
    analytic: Mapping[str, Any] = field(default_factory=dict)  # ANALYTIC_KEYS
    # the outcome
    infeasible: bool | None = None  # constraints violated: PRUNED, never trained
    result: Mapping[str, Any] = field(default_factory=dict)  # RESULT_KEYS
    retries: int | None = None  # resubmissions after a lost worker
    retry_reasons: tuple[str, ...] | None = None
    node: str | None = None  # where it ran
    node_id: str | None = None
    node_ip: str | None = None
    pid: int | None = None
    weights: str | None = None  # state_dict file, relative to the output folder
    reused_from: int | None = None  # a duplicate answered from this trial's result
    pruned_reason: str | None = None
    fail_reason: str | None = None
    requeue: bool | None = None  # failed because the driver stopped: enqueued again
    extra: Mapping[str, Any] = field(default_factory=dict)  # attributes of a newer version

    def to_attrs(self) -> dict[str, Any]:
        """The user attributes to store, flat, JSON-able."""
        out: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("analytic", "result", "extra") or v is None:
                continue
            out[f.name] = list(v) if isinstance(v, tuple) else v
        out.update(self.analytic)
        out.update(self.result)
        return out

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> TrialRecord:
        """Any stored attributes (older names mapped, unknown ones kept in ``extra``)."""
        a = dict(attrs)
        if "hdc_rule1_whole" in a:  # written by nas-dil <= 0.1
            a = {_OLD_NAMES.get(k, k): v for k, v in a.items()}
        own = {f.name for f in fields(cls)} - {"analytic", "result", "extra"}
        kw: dict[str, Any] = {k: a[k] for k in own if k in a}
        if isinstance(kw.get("retry_reasons"), list):
            kw["retry_reasons"] = tuple(kw["retry_reasons"])
        rest = {k: v for k, v in a.items() if k not in own}
        return cls(**kw, analytic={k: rest[k] for k in ANALYTIC_KEYS if k in rest},
                   result={k: rest[k] for k in RESULT_KEYS if k in rest},
                   extra={k: v for k, v in rest.items()
                          if k not in ANALYTIC_KEYS and k not in RESULT_KEYS})

    @classmethod
    def from_frozen(cls, trial: FrozenTrial) -> TrialRecord:
        return cls.from_attrs(trial.user_attrs)

    def get(self, name: str) -> Any:
        """One stored attribute by name, wherever the record keeps it (None if absent)."""
        if name in self.analytic:
            return self.analytic[name]
        if name in self.result:
            return self.result[name]
        if name in self.extra:
            return self.extra[name]
        return getattr(self, name, None) if name not in ("analytic", "result", "extra") else None


# -- what a worker gets ----------------------------------------------------------------------

@dataclass(frozen=True)
class TrialPayload:
    """One trial as the driver sends it to a Ray worker (`nas_dil.search.worker.execute`)."""

    kind: str  # a `nas_dil.search.kinds.KINDS` name (its runner: worker.RUNNERS)
    trial_config: Mapping[str, Any]  # TrialConfig.to_dict()
    schedule: Mapping[str, Any]  # Schedule.to_dict()
    seed: int
    key: str
    number: int  # the Optuna trial number (for messages)
    analytic: Mapping[str, Any]  # ANALYTIC_KEYS of the candidate
    losses: tuple[float, ...]  # analytic objectives as losses, for early stopping
    keep_weights: bool
    options: Mapping[str, Any]  # the whole [trial] table (TrialKindConfig, every kind's
    # keys; each runner reads its own), plus ``feature_cache`` when [train] freeze is set
    snapshot: Any = None  # early_stop.FrontSnapshot at submit time, or None
    look: int = 0  # a repeat's look (``seed`` is already the study's seed + look)


# -- repeats: several looks (training seeds) at one candidate ---------------------------------

def look_group(attrs: Mapping[str, Any]) -> str | None:
    """The key shared by every look at a trial's candidate (its look-0 key); None for a
    duplicate answered from another trial's result (``reused_from``: not a look of its own)."""
    if attrs.get("reused_from") is not None:
        return None
    g = attrs.get("look_of") or attrs.get("key")
    return None if g is None else str(g)


def merge_looks(complete: Sequence[FrozenTrial],
                objectives: Sequence[Objective]) -> list[FrozenTrial]:
    """``complete`` (COMPLETE trials) with the looks at one candidate merged into one trial.

    A study with ``[sampler] repeats`` trains a promising candidate again with another seed;
    what it learned about that candidate is the mean of its looks, not its luckiest one. The
    merged trial is a copy of the look that kept weights (else the first), with each measured
    objective the mean over the looks (in ``values`` and in its user attribute) and
    ``looks``, ``look_trials``, ``<name>_looks``, ``<name>_std`` added. Single looks are
    returned as they are (the same objects), in input order; a group sits where its first
    look was.
    """
    groups: dict[object, list[FrozenTrial]] = {}  # in first-look order (dicts keep it)
    for i, t in enumerate(complete):
        g = look_group(t.user_attrs)
        groups.setdefault(i if g is None else g, []).append(t)
    measured = [i for i, o in enumerate(objectives) if o.measured]
    out: list[FrozenTrial] = []
    for looks in groups.values():
        if len(looks) == 1:
            out.append(looks[0])
            continue
        rep = next((t for t in looks if t.user_attrs.get("weights")), looks[0])
        merged = copy.copy(rep)
        attrs = dict(rep.user_attrs)
        attrs["looks"] = len(looks)
        attrs["look_trials"] = [t.number for t in looks]
        values = list(rep.values) if rep.values is not None else None
        for i in measured:
            name = objectives[i].name
            ys = [float(t.values[i]) for t in looks if t.values is not None]
            if not ys:
                continue
            mean = sum(ys) / len(ys)
            attrs[name] = mean
            attrs[f"{name}_looks"] = ys
            attrs[f"{name}_std"] = (sum((y - mean) ** 2 for y in ys) / (len(ys) - 1)) ** 0.5
            if values is not None:
                values[i] = mean
        merged.user_attrs = attrs
        if values is not None:
            merged.values = values
        out.append(merged)
    return out
