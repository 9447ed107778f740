"""Repeats (``[sampler] repeats = k``): several looks, each a training seed, at one candidate.

The one home of the feature. A candidate the sampler asks again is not a duplicate answered
from storage but its next look: look k trains from seed ``study seed + k`` (`look_seed`; the
tabular benchmark reads the table's next seed instead, `table_seed`) under another key, and
records ``look`` and ``look_of`` (the key of its look 0), which group its looks
(`look_group`). `LookCounter` is the driver's count of looks asked per candidate;
`count_looks` the sampler's.

What a study learned about a candidate is the mean of its looks, not its luckiest one:
`merge_looks` turns stored trials into one `CandidateResult` per candidate (each measured
objective the mean over the looks, with their sample std), and `feasible_front` is the one
feasible Pareto front over those, used by the driver's ledger, the report and export.

Noise (``[noise] baseline_seeds``, default 3: every baseline trained with that many seeds):
`pooled_noise` is the study's seed std of an objective, pooled over every candidate with two
looks or more, ``sqrt(Σ (n_i − 1) s_i² / Σ (n_i − 1))``; None (noise unknown) when no
candidate has two looks. It is recomputed from the stored trials wherever it is shown
(progress line, summary, report, export): the study's metadata is written once, the looks keep
coming.

Confirmation (``[confirm] seeds = k``): after ``n_trials`` the driver trains the front's
candidates again until each has k looks (`needs_looks`, `confirm_group`); such looks record
``confirm``. A candidate with k looks or more is `confirmed`; export refuses an unconfirmed
pick unless asked.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from nas_dil.pareto import pareto_mask
from nas_dil.search.records import Objective, StoredTrial, TrialRecord, as_number

__all__ = ["CandidateResult", "LookCounter", "Noise", "confirm_group", "confirmed",
           "count_looks", "feasible_front", "group_of", "look_group", "look_seed", "mean",
           "merge_looks", "needs_looks", "pooled_noise", "std", "table_seed", "within_noise"]

K = TypeVar("K", bound=Hashable)


def group_of(record: TrialRecord) -> str | None:
    """The look-0 key of a trial's candidate (a reused duplicate's: its twin's); None for a
    record without a key (an older study's)."""
    g = record.look_of or record.key
    return None if g is None else str(g)


def look_group(record: TrialRecord) -> str | None:
    """The key shared by every look at a trial's candidate (its look-0 key); None for a
    duplicate answered from another trial's result (``reused_from``: not a look of its own)."""
    return None if record.reused_from is not None else group_of(record)


def look_seed(study_seed: int, look: int) -> int:
    """The training seed of look ``look`` (0: the candidate's first training)."""
    return study_seed + look


def table_seed(seeds: Sequence[int], seed: int, look: int) -> int:
    """The tabular benchmark's seed for look ``look`` of a candidate whose look 0 reads
    ``seed``: the table's seeds in turn from there (a seed the table lacks starts at its
    first), cycling when the looks outnumber them."""
    if not look:
        return seed
    at = list(seeds).index(seed) if seed in seeds else 0
    return seeds[(at + look) % len(seeds)]


class LookCounter:
    """Looks asked per candidate (by `look_group`): which look the next ask of it is."""

    def __init__(self) -> None:
        self._asked: dict[str, int] = {}

    def next_look(self, group: str) -> int:
        """The look the next trial of a candidate is (0: its first)."""
        return self._asked.get(group, 0)

    def looked(self, group: str) -> None:
        """A trial of the candidate was asked (or found finished in the storage)."""
        self._asked[group] = self._asked.get(group, 0) + 1


def count_looks(keys: Iterable[K]) -> dict[K, int]:
    """How many looks each candidate (by whatever key identifies it) has, in first-seen order."""
    out: dict[K, int] = {}
    for k in keys:
        out[k] = out.get(k, 0) + 1
    return out


def mean(ys: Sequence[float]) -> float:
    return sum(ys) / len(ys)


def std(ys: Sequence[float]) -> float:
    """The sample standard deviation (n - 1) of two looks or more."""
    m = mean(ys)
    return (sum((y - m) ** 2 for y in ys) / (len(ys) - 1)) ** 0.5


@dataclass(frozen=True)
class CandidateResult:
    """What a study learned about one candidate from its looks (one look: that trial)."""

    looks: tuple[StoredTrial, ...]  # its trials, in trial order
    representative: StoredTrial  # the look that kept weights, else the first
    values: tuple[float, ...] | None  # the objectives; a measured one the mean over looks
    std: Mapping[str, float] = field(default_factory=dict)  # measured objective -> std (n-1)
    means: Mapping[str, float] = field(default_factory=dict)  # measured objective -> mean

    @property
    def n_looks(self) -> int:
        return len(self.looks)

    @property
    def number(self) -> int:
        """The trial that stands for the candidate (the representative's number)."""
        return self.representative.number

    @property
    def record(self) -> TrialRecord:
        return self.representative.record

    @property
    def feasible(self) -> bool:
        return self.representative.feasible

    @property
    def seeds(self) -> tuple[int | None, ...]:
        """The training seed of each look, in trial order."""
        return tuple(t.record.seed for t in self.looks)

    def look_values(self, name: str, objectives: Sequence[Objective] = ()) -> tuple[float, ...]:
        """Objective ``name`` of each look that has it (its stored value, else the attribute)."""
        i = next((i for i, o in enumerate(objectives) if o.name == name), None)
        out = []
        for t in self.looks:
            v = (t.values[i] if i is not None and t.values is not None
                 else as_number(t.record.get(name)))
            if v is not None:
                out.append(float(v))
        return tuple(out)

    def get(self, name: str) -> object:
        """A stored attribute of the representative, a measured objective its mean."""
        return self.means[name] if name in self.means else self.record.get(name)

    def number_of(self, name: str, objectives: Sequence[Objective] = ()) -> float | None:
        """`get` as a finite float; not stored: the value of the objective ``name``."""
        v = self.get(name)
        if v is None and self.values is not None:
            for o, val in zip(objectives, self.values, strict=False):
                if o.name == name:
                    v = val
        return as_number(v)


def _merge(looks: list[StoredTrial], measured: Sequence[tuple[int, str]]) -> CandidateResult:
    rep = next((t for t in looks if t.record.weights), looks[0])
    if len(looks) == 1:
        return CandidateResult(tuple(looks), rep, rep.values)
    values = list(rep.values) if rep.values is not None else None
    means: dict[str, float] = {}
    stds: dict[str, float] = {}
    for i, name in measured:
        ys = [float(t.values[i]) for t in looks if t.values is not None]
        if not ys:
            continue
        means[name] = mean(ys)
        if len(ys) > 1:
            stds[name] = std(ys)
        if values is not None:
            values[i] = means[name]
    return CandidateResult(tuple(looks), rep, None if values is None else tuple(values),
                           stds, means)


def merge_looks(trials: Sequence[StoredTrial],
                objectives: Sequence[Objective]) -> list[CandidateResult]:
    """One `CandidateResult` per candidate of ``trials`` (COMPLETE ones, as a rule), in the
    order of each candidate's first look. A duplicate answered from storage is no look of its
    own: where its twin's candidate is among ``trials`` it is that candidate (not counted
    again: a stale copy of one look would outlive the mean of the looks confirmation adds,
    and take the front from it); else it stands alone."""
    looked = {g for t in trials if (g := look_group(t.record)) is not None}
    groups: dict[object, list[StoredTrial]] = {}  # first-look order (dicts keep it)
    for i, t in enumerate(trials):
        g = look_group(t.record)
        if g is None and t.record.reused_from is not None and group_of(t.record) in looked:
            continue  # its twin's candidate
        groups.setdefault(("alone", i) if g is None else g, []).append(t)
    measured = [(i, o.name) for i, o in enumerate(objectives) if o.measured]
    return [_merge(looks, measured) for looks in groups.values()]


@dataclass(frozen=True)
class Noise:
    """A study's seed noise of one objective: the pooled std of its candidates' looks."""

    name: str  # the objective (miou)
    std: float  # sqrt(Σ (n_i − 1) s_i² / Σ (n_i − 1))
    dof: int  # Σ (n_i − 1): degrees of freedom
    n_candidates: int  # candidates with two looks or more

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "std": self.std, "dof": self.dof,
                "n_candidates": self.n_candidates}


def pooled_noise(results: Sequence[CandidateResult], name: str = "miou") -> Noise | None:
    """The pooled seed std of objective ``name`` over every candidate with >= 2 looks of it;
    None: no such candidate (noise unknown)."""
    ss, dof, n = 0.0, 0, 0
    for r in results:
        k = sum(1 for t in r.looks if t.values is not None) if name in r.std else 0
        if k < 2:  # one look (or a reused duplicate's): no spread to pool
            continue
        ss += (k - 1) * r.std[name] ** 2
        dof += k - 1
        n += 1
    return Noise(name, (ss / dof) ** 0.5, dof, n) if dof else None


def confirmed(result: CandidateResult, seeds: int) -> bool:
    """Whether a candidate has the ``seeds`` looks a confirmed pick needs."""
    return result.n_looks >= seeds


def confirm_group(result: CandidateResult) -> str | None:
    """The look group of a candidate (its look-0 key; a reused duplicate's: its twin's)."""
    return group_of(result.record)


def needs_looks(front: Sequence[CandidateResult], results: Sequence[CandidateResult],
                seeds: int, pending: Mapping[str, int]) -> list[tuple[CandidateResult, int]]:
    """(candidate, looks still missing) of each ``front`` candidate with fewer than ``seeds``
    looks (its group's in ``results``, plus ``pending`` ones: group -> looks asked, not told);
    each group once, in front order."""
    looks: dict[str, int] = {}
    for x in results:
        if (g := confirm_group(x)) is not None:
            looks[g] = max(looks.get(g, 0), x.n_looks)
    out: list[tuple[CandidateResult, int]] = []
    seen: set[str] = set()
    for r in front:
        g = confirm_group(r)
        if g is None or g in seen:
            continue
        seen.add(g)
        have = looks.get(g, 0) + pending.get(g, 0)
        if have < seeds:
            out.append((r, seeds - have))
    return out


def feasible_front(results: Sequence[CandidateResult],
                   objectives: Sequence[Objective]) -> list[CandidateResult]:
    """The one feasible Pareto front: the non-dominated feasible candidates (`records.feasible`
    on the stored constraints) over the study's objectives, in input order."""
    cand = [(r, r.values) for r in results if r.feasible and r.values is not None]
    if not cand:
        return []
    mask = pareto_mask([v for _, v in cand], [o.direction for o in objectives])
    return [r for (r, _), m in zip(cand, mask, strict=True) if m]


def within_noise(front: Sequence[CandidateResult], results: Sequence[CandidateResult],
                 objectives: Sequence[Objective], noise: float | None,
                 name: str = "miou") -> dict[int, int]:
    """Front members whose lead in ``name`` over some dominated feasible candidate at no worse
    cost (every other objective at least as good) is smaller than ``noise``: front trial ->
    the closest such candidate's trial. Empty when the noise is unknown."""
    idx = next((i for i, o in enumerate(objectives) if o.name == name), None)
    if noise is None or idx is None:
        return {}
    on_front = {r.number for r in front}
    others = [r for r in results if r.feasible and r.values is not None
              and r.number not in on_front]
    sign = objectives[idx].sign
    out: dict[int, int] = {}
    for f in front:
        fv = f.values
        if fv is None:
            continue
        close = []
        for d in others:
            dv = d.values
            assert dv is not None
            cheaper = all(o.sign * dv[i] <= o.sign * fv[i]
                          for i, o in enumerate(objectives) if i != idx)
            lead = sign * (dv[idx] - fv[idx])  # >= 0: the front member is better
            if cheaper and lead < noise:
                close.append((lead, d.number))
        if close:
            out[f.number] = min(close)[1]
    return out
