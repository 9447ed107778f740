"""What a search stores in its study, as typed records defined once.

A nas-dil study is an ordinary Optuna study plus two kinds of record, both plain JSON:

- `StudyMeta`: one study user attribute, `META_KEY`, written once when the study is created
  (nas-dil version, git commit, the study config, objectives, space, data, hypervolume ranges,
  early-stopping settings, warnings).
- `TrialRecord`: a trial's user attributes, flat (one attribute per field; the analytic metrics
  and the worker's results are spread into their own attributes, so the Optuna dashboard shows
  each as a column). `TrialRecord.to_attrs()` is what the driver writes; `from_frozen()` reads
  any stored trial back, including those written before a field was renamed.

Stored attributes are decoded here and nowhere else (a test holds every other module to it):
`StoredTrial.from_frozen` turns an Optuna trial into number, state, values, Optuna's
constraints, the typed `TrialRecord` and parameters, once; the driver's recovery, the report,
the dashboard and export read those. `TrialRecord`'s typed reads (`number`, `flag`,
`rf_facts`, `schedule_facts`, `dead_taps`) are what they show. Feasibility has one rule,
`feasible`: every stored constraint value <= 0 (Optuna's).

`TrialPayload` is what the driver sends a Ray worker for one trial. The search writes these
records; report, export and dashboard read them (they sit to the right of ``search``). The
looks at one candidate (``[sampler] repeats``) are merged in `nas_dil.search.looks`.

Renamed attribute: up to nas-dil 0.1, ``hdc_rule1`` was the per-group verdict of HDC rule 1
and ``hdc_rule1_whole`` the whole-schedule one. Now ``hdc_rule1`` is the whole-schedule
verdict everywhere (as in `nas_dil.schedule.analyze` and the export certificate) and
``hdc_rule1_groups`` the per-group one; `from_frozen` maps the old names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
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
    "RFFacts",
    "StoredTrial",
    "StudyMeta",
    "TrialPayload",
    "TrialRecord",
    "as_number",
    "asked_attrs",
    "feasible",
    "rf_facts",
    "stored_meta",
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
    "erf": Metric("erf", "maximize", False, "effective RF of the whole net (image px): the "
                  "side of the smallest centred window holding 95 % of the path-count map's "
                  "mass, dead taps at the crop removed (after Luo et al. 2016)"),
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

    @property
    def confirm_seeds(self) -> int:
        """Seeds a pick needs to count as confirmed (the study's ``[confirm] seeds``; a study
        written before confirmation, or with it off: 1, every trained candidate)."""
        c = self.study_config.get("confirm")
        seeds = c.get("seeds") if isinstance(c, Mapping) else None
        return max(1, _int(seeds) or 1)

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
                 "hdc_rule3", "hdc", "m", "macs", "flops", "gflops", "params", "erf")
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
    confirm: bool | None = None  # a confirmation look ([confirm]): trained after n_trials to
    # confirm a front candidate over seeds; counted apart from n_trials
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
    weights_backbone: Mapping[str, Any] | None = None  # head-only weights (a frozen backbone):
    # the backbone they were trained on (`nas_dil.train.kept.BackboneRef`: weights, seed,
    # state digest); None: the file holds every tensor
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

    # -- typed reads (what report, export and dashboard show) ------------------------------

    def number(self, name: str) -> float | None:
        """A stored number as a finite float (None: absent, not a number, a bool, inf/nan)."""
        return as_number(self.get(name))

    def integer(self, name: str) -> int | None:
        return _int(self.get(name))

    def flag(self, name: str) -> bool | None:
        v = self.get(name)
        numpy_bool = type(v).__module__ == "numpy" and type(v).__name__ in ("bool", "bool_")
        return bool(v) if isinstance(v, bool) or numpy_bool else None

    @property
    def dead_taps(self) -> int:
        """The stack's taps that were dead in the trial's training (not recorded: 0)."""
        return _int(self.analytic.get("dead_taps")) or 0

    def schedule_facts(self) -> tuple[str, int | None, int | None, int | None]:
        """(rates "1,2,5", kernel, output_stride, width) of the ``candidate``; "?" if none."""
        c = self.candidate
        if not isinstance(c, Mapping):
            return "?", None, None, None
        rates = c.get("rates") or []
        return (",".join(str(r) for r in rates) or "?", _int(c.get("kernel")),
                _int(c.get("output_stride")), _int(c.get("width")))

    def crop(self) -> tuple[int, int] | None:
        """(h, w) of the trial's training crop (its trial_config), None if not recorded."""
        tc = self.trial_config
        data = tc.get("data") if isinstance(tc, Mapping) else None
        return _crop(data.get("image_size") if isinstance(data, Mapping) else None)

    def rf_facts(self, fallback_crop: Any = None) -> RFFacts:
        """The trial's RF against its training crop; ``fallback_crop``: the study's
        ``image_size`` for trials that carry no ``trial_config``."""
        a = self.analytic
        crop = self.crop() or _crop(fallback_crop)
        rf = a.get("rf")
        rf = float(rf) if isinstance(rf, int | float) and not isinstance(rf, bool) else None
        if "rf_nominal" not in a:  # written before the usable RF: ``rf`` is the nominal one
            return RFFacts(None, rf, crop, None, ())
        nominal = a.get("rf_nominal")
        layers = a.get("dead_layers")
        return RFFacts(
            usable=rf,
            nominal=float(nominal) if isinstance(nominal, int | float) else None,
            crop=crop, dead_taps=_int(a.get("dead_taps")),
            dead_layers=tuple(x for d in (layers if isinstance(layers, list) else ())
                              if (x := _dead_layer(d)) is not None))


def as_number(v: Any) -> float | None:
    """A stored value as a finite float (None: absent, not a number, a bool, inf/nan)."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(v: Any) -> int | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    return int(v) if ok else None


def _crop(v: Any) -> tuple[int, int] | None:
    """(h, w) of a data config's ``image_size`` (a side or [h, w]); None if neither."""
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return v, v
    if isinstance(v, list | tuple) and len(v) == 2 and all(_int(x) for x in v):
        return int(v[0]), int(v[1])
    return None


def _dead_layer(d: Any) -> str | None:
    if not isinstance(d, dict) or not str(d.get("name", "")).startswith("stack."):
        return None
    dil = d.get("dilation") or []
    rate = (f"r{dil[0]}" if len(dil) == 2 and dil[0] == dil[1] else
            f"r({','.join(map(str, dil))})")
    return f"{d['name']} {rate}: {d.get('dead', '?')} dead"


@dataclass(frozen=True)
class RFFacts:
    """A trial's RF against its training crop (its analytic attrs, `nas_dil.models.analytic`).

    Studies written before the usable RF was recorded (no ``rf_nominal`` attr) stored the
    nominal RF as ``rf``: there ``usable`` and ``dead_taps`` are None (unknown), and every rule
    that avoids dead taps counts them as 0.
    """

    usable: float | None  # image px, smaller axis: the ``rf`` objective (None: not recorded)
    nominal: float | None  # every tap, the formula's RF, image px
    crop: tuple[int, int] | None  # (h, w) of the training crop
    dead_taps: int | None  # the stack's taps that read only padding at the crop
    dead_layers: tuple[str, ...]  # the stack's layers with dead taps

    def per_crop(self, rf: float | None) -> float | None:
        """``rf`` over the crop's smaller side (the usable RF's axis): at most 1 for usable."""
        return None if rf is None or self.crop is None else rf / min(self.crop)


def rf_facts(attrs: Mapping[str, Any], fallback_crop: Any = None) -> RFFacts:
    """The RF facts of stored trial attributes (`TrialRecord.rf_facts`)."""
    return TrialRecord.from_attrs(attrs).rf_facts(fallback_crop)


# -- a stored trial, decoded once ------------------------------------------------------------

def feasible(constraints: Mapping[str, float]) -> bool:
    """The one feasibility rule, Optuna's: every constraint value <= 0 (none: feasible). The
    search computes the values (`nas_dil.search.resolved.constraint_values`) and stores them
    with the trial; everything that reads a study judges feasibility by them."""
    return all(float(v) <= 0.0 for v in constraints.values())


_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "fail", "RUNNING": "running",
           "WAITING": "waiting"}


@dataclass(frozen=True)
class StoredTrial:
    """A trial as the storage holds it, decoded once (`from_frozen`): what the driver's
    recovery, the report, the dashboard and export read instead of Optuna's `FrozenTrial`."""

    number: int
    state: str  # "complete", "pruned", "fail", "running", "waiting"
    values: tuple[float, ...] | None  # the objectives (COMPLETE trials), study order
    record: TrialRecord = field(default_factory=TrialRecord)  # its user attributes
    constraints: Mapping[str, float] = field(default_factory=dict)  # Optuna's (<= 0: met)
    params: Mapping[str, Any] = field(default_factory=dict)  # its Optuna parameters
    trial_id: int = -1  # Optuna's storage id (-1: a trial not read from storage)
    intermediate: tuple[float, ...] = ()  # reported values (by step), when any
    datetime_start: datetime | None = None
    datetime_complete: datetime | None = None

    @classmethod
    def from_frozen(cls, t: FrozenTrial) -> StoredTrial:
        iv = t.intermediate_values
        return cls(number=t.number, state=_STATES.get(t.state.name, t.state.name.lower()),
                   values=None if t.values is None else tuple(float(v) for v in t.values),
                   record=TrialRecord.from_attrs(t.user_attrs), constraints=dict(t.constraints),
                   params=dict(t.params), trial_id=t._trial_id,
                   intermediate=tuple(float(iv[k]) for k in sorted(iv)),
                   datetime_start=t.datetime_start, datetime_complete=t.datetime_complete)

    @property
    def feasible(self) -> bool:
        return feasible(self.constraints)

    @property
    def attrs(self) -> dict[str, Any]:
        """Its user attributes as stored (today's names)."""
        return self.record.to_attrs()


def asked_attrs(trial: Any) -> dict[str, Any]:
    """The user attributes an asked trial came with (what it was enqueued with)."""
    return dict(trial.user_attrs)


def stored_meta(study: Any) -> Any:
    """The `META_KEY` study attribute as stored (a dict, or None when absent) of an Optuna
    study or frozen study; `StudyMeta.from_dict` decodes it."""
    return study.user_attrs.get(META_KEY)


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
