"""Which trial to export: `parse_pick("knee" | "best-miou" | "trial=N" | "max-gflops=X,min-rf=Y")`
then `select_trial(study_source, pick)`.

- ``knee``: the knee of the Pareto front (feasible COMPLETE trials, the study's objectives):
  each objective normalised to [0, 1] over the front trials without dead taps, the point
  closest to the utopia point (``nas_dil.report.data.knee_trial``, as the report).
- ``best-miou``: the highest mIoU among feasible COMPLETE trials.
- ``trial=N``: that trial; it must be COMPLETE (an infeasible one, or one with dead taps, is
  allowed: you asked for it, and the reason says so).
- ``max-NAME=X`` / ``min-NAME=Y``, comma-separated (``max-gflops=2.5,min-rf=100``): the highest
  mIoU among feasible COMPLETE trials within every limit. NAME is one of ``LIMIT_ATTRS``.

``knee`` and the ``best-*``/limit picks never choose a trial whose taps were dead in training
(``dead_taps`` > 0: taps that read only padding at the training crop, still at their initial
values); when those are all there is, the pick fails naming them. Ties go to fewer GFLOPs,
then to the lower trial number. A candidate trained with several seeds (sampler repeats)
counts once, with its mean mIoU over the looks (`merge_looks`), exported from the look whose
weights were kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nas_dil.errors import UserError
from nas_dil.report.data import dead_taps, feasible, knee_trial, pareto_trials
from nas_dil.report.source import StudySource
from nas_dil.search.records import merge_looks

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["LIMIT_ATTRS", "Pick", "PickError", "parse_pick", "select_trial"]

LIMIT_ATTRS = ("gflops", "flops", "macs", "params", "rf", "rf_nominal", "rf_stack", "holes",
               "miou")
_USAGE = "use knee, best-miou, trial=N or max-gflops=X[,min-rf=Y]"


class PickError(UserError, ValueError):
    """A --pick that does not parse, or that no trial satisfies."""


@dataclass(frozen=True)
class Pick:
    kind: str  # "knee", "best-miou", "trial" or "limits"
    trial: int | None = None
    limits: tuple[tuple[str, str, float], ...] = ()  # (attr, "max" | "min", bound)

    def __str__(self) -> str:
        if self.kind == "trial":
            return f"trial={self.trial}"
        if self.kind == "limits":
            return ",".join(f"{op}-{a}={v:g}" for a, op, v in self.limits)
        return self.kind


def parse_pick(text: str) -> Pick:
    t = text.strip().lower()
    if t in ("knee", "best-miou"):
        return Pick(t)
    if t.startswith("trial="):
        n = t.split("=", 1)[1].strip()
        if not n.isdigit():
            raise PickError(f"--pick {text!r}: the trial number must be an integer >= 0")
        return Pick("trial", trial=int(n))
    limits = []
    for part in (p.strip() for p in t.split(",")):
        name, eq, value = part.partition("=")
        op, dash, attr = name.partition("-")
        if not (eq and dash) or op not in ("max", "min"):
            raise PickError(f"--pick {text!r}: {_USAGE}")
        if attr not in LIMIT_ATTRS:
            raise PickError(f"--pick {text!r}: {attr!r} is not one of {', '.join(LIMIT_ATTRS)}")
        try:
            bound = float(value)
        except ValueError:
            raise PickError(f"--pick {text!r}: {value!r} is not a number") from None
        if not math.isfinite(bound):
            raise PickError(f"--pick {text!r}: {value!r} is not a finite number")
        limits.append((attr, op, bound))
    return Pick("limits", limits=tuple(limits))


def _val(t: FrozenTrial, key: str) -> float | None:
    v = t.user_attrs.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _best_miou(trials: Sequence[FrozenTrial]) -> FrozenTrial:
    def key(t: FrozenTrial) -> tuple[float, float, int]:
        m, g = _val(t, "miou"), _val(t, "gflops")
        return (-(m if m is not None else -math.inf), g if g is not None else math.inf, t.number)

    return min(trials, key=key)


def _span(trials: Sequence[FrozenTrial], attr: str) -> str:
    vals = [v for t in trials if (v := _val(t, attr)) is not None]
    return f"{attr} {min(vals):g}–{max(vals):g}" if vals else f"no {attr} recorded"


def _trained(trials: Sequence[FrozenTrial], where: str,
             what: str) -> tuple[list[FrozenTrial], str]:
    """(``trials`` without dead taps, a note naming those left out). PickError if none is left."""
    dead = [t for t in trials if dead_taps(t) > 0]
    named = ", ".join(f"#{t.number} ({dead_taps(t)})" for t in dead)
    if dead and len(dead) == len(trials):
        raise PickError(f"{where}: every {what} had dead taps at its training crop (taps that "
                        f"read only padding never trained): {named}; export one with trial=N "
                        "if you must")
    return [t for t in trials if dead_taps(t) == 0], (
        f"; left out for dead taps at the training crop: {named}" if dead else "")


def select_trial(src: StudySource, pick: Pick | str) -> tuple[FrozenTrial, str]:
    """(trial, one line saying why it was picked). Raises PickError / UserError."""
    from optuna.trial import TrialState

    from nas_dil.report.data import NoCompleteTrialError

    p = parse_pick(pick) if isinstance(pick, str) else pick
    trials = sorted(src.study.get_trials(deepcopy=False), key=lambda t: t.number)
    where = f"{src.location}: study {src.name!r}"
    if not trials:
        raise NoCompleteTrialError(f"{where} has no trials yet")
    if p.kind == "trial":
        match = [t for t in trials if t.number == p.trial]
        if not match:
            raise PickError(f"{where} has no trial {p.trial} "
                            f"(trials {trials[0].number}–{trials[-1].number})")
        t = match[0]
        if t.state != TrialState.COMPLETE:
            raise PickError(f"{where}: trial {p.trial} is {t.state.name}; only COMPLETE trials "
                            "can be exported")
        flags = [*([] if feasible(t) else ["infeasible"]),
                 *([f"{dead_taps(t)} dead taps at its training crop, never trained"]
                   if dead_taps(t) else [])]
        return t, f"trial {t.number}, as asked" + (f" ({'; '.join(flags)})" if flags else "")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise NoCompleteTrialError(f"{where} has no COMPLETE trial yet")
    feas = [t for t in merge_looks(complete, src.objectives) if feasible(t)]
    if not feas:
        raise PickError(f"{where}: none of its {len(complete)} COMPLETE trials is feasible")
    if p.kind == "knee":
        front = pareto_trials(complete, src.objectives)
        knee, note = knee_trial(front, src.objectives)
        if knee is None:
            raise PickError(f"{where}: {note}; export one with trial=N if you must")
        live = sum(dead_taps(t) == 0 for t in front)
        over = "the front" if live == len(front) else f"its {live} trials without dead taps"
        return knee, (f"knee of the {len(front)}-trial Pareto front (objectives normalised over "
                      f"{over}, closest to the utopia point)" + (f"; {note}" if note else ""))
    if p.kind == "best-miou":
        with_miou = [t for t in feas if _val(t, "miou") is not None]
        if not with_miou:
            raise PickError(f"{where}: no feasible COMPLETE trial recorded an mIoU")
        with_miou, left = _trained(with_miou, where, "feasible COMPLETE trial")
        return _best_miou(with_miou), (f"highest mIoU of {len(with_miou)} feasible COMPLETE "
                                       f"trials{left}")
    ok = []
    for t in feas:
        vals = [(_val(t, a), op, b) for a, op, b in p.limits]
        if all(v is not None and (v <= b if op == "max" else v >= b) for v, op, b in vals):
            ok.append(t)
    ok = [t for t in ok if _val(t, "miou") is not None]
    text = " and ".join(f"{a} {'≤' if op == 'max' else '≥'} {b:g}" for a, op, b in p.limits)
    if not ok:
        spans = "; ".join(dict.fromkeys(_span(feas, a) for a, _, _ in p.limits))
        raise PickError(f"{where}: no feasible COMPLETE trial has {text} "
                        f"(the {len(feas)} feasible ones span {spans})")
    ok, left = _trained(ok, where, f"feasible COMPLETE trial with {text}")
    return _best_miou(ok), (f"highest mIoU of the {len(ok)} feasible COMPLETE trials with "
                            f"{text}{left}")
