"""Early stopping for multi-objective studies (Optuna's pruners refuse them).

A trial's analytic objectives (RF, GFLOPs, params) are fixed before it trains; only its mIoU
is still moving. So it is worth finishing only if its *final* mIoU could put it on the
Pareto front at its own, known analytic values.

The rule, checked by the worker after every evaluation e (of E when the budget fixes E):

1. Nothing is stopped before `min_completed` trials have completed (trained to the end),
   before evaluation `min_evals`, or at the last evaluation (nothing left to save).
2. Optimistic final mIoU: ``u = max(curve[:e]) + G_e + margin``, where ``G_e`` is the largest
   gain ``final − curve[e]`` any completed trial made after its own evaluation e (clipped at
   0). The trial is thus credited with the best improvement seen so far from the same point.
3. Stop when a Pareto-front trial ``p`` dominates the optimistic point: ``p``'s mIoU ≥ u and
   ``p`` is no worse in every analytic objective, strictly better in at least one coordinate.
   Such a trial could not enter the front even if it made the best gain ever seen.

The driver builds a `FrontSnapshot` (front + gains) when it launches a trial and ships it with
the task, so the decision is taken in the worker without a round trip; a front that improves
while the trial runs is seen by later trials (the rule only gets more conservative). Stopped
trials are stored as PRUNED with their partial curve, never as COMPLETE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nas_dil.pareto import nondominated

__all__ = ["FrontEntry", "FrontSnapshot", "make_snapshot", "optimistic_miou", "stop_reason"]


@dataclass(frozen=True)
class FrontEntry:
    number: int  # trial number
    miou: float  # its final mIoU
    losses: tuple[float, ...]  # its analytic objectives as losses (sign · value)


@dataclass(frozen=True)
class FrontSnapshot:
    front: tuple[FrontEntry, ...]  # Pareto front of the completed trials
    gains: tuple[float, ...]  # gains[e-1]: largest later gain of a completed trial after eval e
    n_evals: int | None  # evaluations per trial when the budget fixes them (None: seconds)
    margin: float  # mIoU added to the optimistic bound
    min_evals: int  # evaluations every trial gets
    names: tuple[str, ...] = ()  # names of the analytic objectives (for the reason text)


@dataclass(frozen=True)
class Completed:
    number: int
    curve: tuple[float, ...]  # mIoU after each evaluation; the last is the final mIoU
    losses: tuple[float, ...]  # analytic objectives as losses


def make_snapshot(completed: Sequence[Completed], *, min_completed: int, n_evals: int | None,
                  margin: float, min_evals: int,
                  names: Sequence[str] = ()) -> FrontSnapshot | None:
    """The snapshot a worker needs, or None while fewer than ``min_completed`` completed."""
    done = [c for c in completed if c.curve]
    if len(done) < min_completed:
        return None
    rows = np.array([(-c.curve[-1], *c.losses) for c in done], dtype=float)
    front = tuple(FrontEntry(c.number, c.curve[-1], c.losses)
                  for c, keep in zip(done, nondominated(rows), strict=True) if keep)
    longest = max(len(c.curve) for c in done)
    gains = []
    for e in range(1, longest):
        later = [c.curve[-1] - c.curve[e - 1] for c in done if len(c.curve) > e]
        gains.append(max(0.0, max(later)))
    return FrontSnapshot(front, tuple(gains), n_evals, margin, min_evals, tuple(names))


def optimistic_miou(curve: Sequence[float], snap: FrontSnapshot) -> float | None:
    """``max(curve) + G_e + margin``; None when no completed trial went past eval e."""
    e = len(curve)
    if e == 0 or e > len(snap.gains):
        return None
    return max(curve) + snap.gains[e - 1] + snap.margin


def stop_reason(curve: Sequence[float], losses: Sequence[float],
                snap: FrontSnapshot | None) -> str | None:
    """Why the trial should stop now (one line), or None to let it go on."""
    if snap is None:
        return None
    e = len(curve)
    if e < snap.min_evals or (snap.n_evals is not None and e >= snap.n_evals):
        return None
    u = optimistic_miou(curve, snap)
    if u is None:
        return None
    own = tuple(losses)
    for p in snap.front:
        no_worse = all(a <= b for a, b in zip(p.losses, own, strict=True))
        strictly = p.miou > u or any(a < b for a, b in zip(p.losses, own, strict=True))
        if p.miou >= u and no_worse and strictly:
            of = f"/{snap.n_evals}" if snap.n_evals else ""
            at = f" at no worse {', '.join(snap.names)}" if snap.names else ""
            return (f"cannot reach the Pareto front: optimistic final mIoU {u:.4f} after eval "
                    f"{e}{of} is dominated by trial {p.number} (mIoU {p.miou:.4f}{at})")
    return None
