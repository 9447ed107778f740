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
counts once, with its mean mIoU over the looks (`nas_dil.search.looks.merge_looks`), exported
from the look whose weights were kept. Feasible and the front: `looks.feasible_front`, the same
as the report's.

Confirmation: a study created with ``[confirm] seeds = k`` (k >= 2) confirms a pick over k
seeds; `check_confirmed` refuses a pick whose candidate has fewer looks (one line, naming how
to confirm it or to export it anyway). Studies written before confirmation need one look.
`seed_facts` is what ``schedule.json`` carries about the pick's seeds and the study's noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nas_dil.errors import UserError
from nas_dil.report.data import knee_trial
from nas_dil.report.source import StudySource
from nas_dil.search.looks import (
    CandidateResult,
    confirmed,
    feasible_front,
    group_of,
    look_group,
    merge_looks,
    pooled_noise,
)
from nas_dil.search.records import StoredTrial

__all__ = ["LIMIT_ATTRS", "Pick", "PickError", "UnconfirmedPick", "check_confirmed",
           "parse_pick", "seed_facts", "select_trial"]

LIMIT_ATTRS = ("gflops", "flops", "macs", "params", "rf", "rf_nominal", "rf_stack", "holes",
               "miou")
_USAGE = "use knee, best-miou, trial=N or max-gflops=X[,min-rf=Y]"


class PickError(UserError, ValueError):
    """A --pick that does not parse, or that no trial satisfies."""


class UnconfirmedPick(PickError):
    """A pick trained with fewer seeds than the study confirms over (``--allow-unconfirmed``)."""


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


def _val(r: CandidateResult, key: str) -> float | None:
    v = r.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _best_miou(results: Sequence[CandidateResult]) -> CandidateResult:
    def key(r: CandidateResult) -> tuple[float, float, int]:
        m, g = _val(r, "miou"), _val(r, "gflops")
        return (-(m if m is not None else -math.inf), g if g is not None else math.inf, r.number)

    return min(results, key=key)


def _span(results: Sequence[CandidateResult], attr: str) -> str:
    vals = [v for r in results if (v := _val(r, attr)) is not None]
    return f"{attr} {min(vals):g}–{max(vals):g}" if vals else f"no {attr} recorded"


def _trained(results: Sequence[CandidateResult], where: str,
             what: str) -> tuple[list[CandidateResult], str]:
    """(``results`` without dead taps, a note naming those left out). PickError if none is
    left."""
    dead = [r for r in results if r.record.dead_taps > 0]
    named = ", ".join(f"#{r.number} ({r.record.dead_taps})" for r in dead)
    if dead and len(dead) == len(results):
        raise PickError(f"{where}: every {what} had dead taps at its training crop (taps that "
                        f"read only padding never trained): {named}; export one with trial=N "
                        "if you must")
    return [r for r in results if r.record.dead_taps == 0], (
        f"; left out for dead taps at the training crop: {named}" if dead else "")


def select_trial(src: StudySource, pick: Pick | str) -> tuple[CandidateResult, str]:
    """(the picked candidate, one line saying why it was picked); ``trial=N`` gives that
    trial alone. Raises PickError / UserError."""
    from nas_dil.report.data import NoCompleteTrialError

    p = parse_pick(pick) if isinstance(pick, str) else pick
    trials = src.trials()
    where = f"{src.location}: study {src.name!r}"
    if not trials:
        raise NoCompleteTrialError(f"{where} has no trials yet")
    if p.kind == "trial":
        match = [t for t in trials if t.number == p.trial]
        if not match:
            raise PickError(f"{where} has no trial {p.trial} "
                            f"(trials {trials[0].number}–{trials[-1].number})")
        t = match[0]
        if t.state != "complete":
            raise PickError(f"{where}: trial {p.trial} is {t.state.upper()}; only COMPLETE "
                            "trials can be exported")
        dead = t.record.dead_taps
        flags = [*([] if t.feasible else ["infeasible"]),
                 *([f"{dead} dead taps at its training crop, never trained"] if dead else [])]
        return (CandidateResult((t,), t, t.values),
                f"trial {t.number}, as asked" + (f" ({'; '.join(flags)})" if flags else ""))
    complete = [t for t in trials if t.state == "complete"]
    if not complete:
        raise NoCompleteTrialError(f"{where} has no COMPLETE trial yet")
    results = merge_looks(complete, src.objectives)
    feas = [r for r in results if r.feasible]
    if not feas:
        raise PickError(f"{where}: none of its {len(complete)} COMPLETE trials is feasible")
    if p.kind == "knee":
        front = feasible_front(results, src.objectives)
        knee, note = knee_trial(front, src.objectives)
        if knee is None:
            raise PickError(f"{where}: {note}; export one with trial=N if you must")
        live = sum(r.record.dead_taps == 0 for r in front)
        over = "the front" if live == len(front) else f"its {live} trials without dead taps"
        return knee, (f"knee of the {len(front)}-trial Pareto front (objectives normalised over "
                      f"{over}, closest to the utopia point)" + (f"; {note}" if note else ""))
    if p.kind == "best-miou":
        with_miou = [r for r in feas if _val(r, "miou") is not None]
        if not with_miou:
            raise PickError(f"{where}: no feasible COMPLETE trial recorded an mIoU")
        with_miou, left = _trained(with_miou, where, "feasible COMPLETE trial")
        return _best_miou(with_miou), (f"highest mIoU of {len(with_miou)} feasible COMPLETE "
                                       f"trials{left}")
    ok = []
    for r in feas:
        vals = [(_val(r, a), op, b) for a, op, b in p.limits]
        if all(v is not None and (v <= b if op == "max" else v >= b) for v, op, b in vals):
            ok.append(r)
    ok = [r for r in ok if _val(r, "miou") is not None]
    text = " and ".join(f"{a} {'≤' if op == 'max' else '≥'} {b:g}" for a, op, b in p.limits)
    if not ok:
        spans = "; ".join(dict.fromkeys(_span(feas, a) for a, _, _ in p.limits))
        raise PickError(f"{where}: no feasible COMPLETE trial has {text} "
                        f"(the {len(feas)} feasible ones span {spans})")
    ok, left = _trained(ok, where, f"feasible COMPLETE trial with {text}")
    return _best_miou(ok), (f"highest mIoU of the {len(ok)} feasible COMPLETE trials with "
                            f"{text}{left}")


def _complete(src: StudySource) -> tuple[list[StoredTrial], list[CandidateResult]]:
    complete = [t for t in src.trials() if t.state == "complete"]
    return complete, merge_looks(complete, src.objectives)


def looks_of(results: Sequence[CandidateResult], picked: CandidateResult) -> CandidateResult:
    """The candidate (its looks merged) that ``picked`` (a candidate or one trial) belongs to;
    ``picked`` itself when no COMPLETE look of it is known."""
    group = group_of(picked.record)  # a reused duplicate's: its twin's candidate
    for r in results:
        if any(t.number == picked.number for t in r.looks) or (
                group is not None and look_group(r.record) == group):
            return r
    return picked


def check_confirmed(src: StudySource, picked: CandidateResult, pick: Pick | str) -> None:
    """UnconfirmedPick when the study confirms picks over k seeds (``[confirm] seeds``) and
    the picked candidate has fewer COMPLETE looks."""
    k = src.meta.confirm_seeds
    if k < 2:
        return
    _, results = _complete(src)
    cand = looks_of(results, picked)
    if confirmed(cand, k):
        return
    rates = picked.record.schedule_facts()[0]
    raise UnconfirmedPick(
        f"{src.location}: study {src.name!r}: --pick {pick} is trial {picked.number} "
        f"({rates}), trained with {cand.n_looks} seed(s); the study confirms a pick over {k} "
        f"(run its search again to confirm the front, e.g. nas-dil search STUDY --confirm {k}, "
        "or export it anyway with --allow-unconfirmed)")


def seed_facts(src: StudySource, picked: CandidateResult) -> dict[str, Any]:
    """What ``schedule.json`` says about the pick's seeds: each look's seed and mIoU, their
    mean and std, the seeds the study confirms over, whether the pick has them, and the
    study's seed noise (`looks.pooled_noise`; None: unknown)."""
    _, results = _complete(src)
    cand = looks_of(results, picked)
    miou = cand.look_values("miou", src.objectives)
    k = src.meta.confirm_seeds
    noise = pooled_noise(results)
    return {
        "trials": [t.number for t in cand.looks],
        "seeds": list(cand.seeds),
        "miou": list(miou),
        "mean": sum(miou) / len(miou) if miou else None,
        "std": cand.std.get("miou"),
        "n": cand.n_looks,
        "confirm_seeds": k,
        "confirmed": confirmed(cand, k),
        "noise": None if noise is None else noise.to_dict(),
    }
