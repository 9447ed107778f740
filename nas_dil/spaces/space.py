"""`Space`: a loaded search space; `load_space` reads one, `sample_candidates` draws from one."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import BaseTrial

from nas_dil.resources import load_toml
from nas_dil.spaces.candidate import Candidate
from nas_dil.spaces.config import SpaceConfig, parse_config
from nas_dil.spaces.errors import SpaceError
from nas_dil.spaces.rules import Rule, make_rule

__all__ = ["Space", "load_space", "sample_candidates", "space_from_dict"]


class Space:
    """The candidates one space file admits: sample (Optuna), count, enumerate, test.

    Optuna parameters (names fixed, one distribution per name): ``kernel``, ``output_stride``,
    ``width`` (categoricals), then the rule's own: ``depth`` and ``r1 … rN`` (free, gapfree) or
    ``rates`` / ``rates_k<K>`` (hdc, exponential, multigrid; see `nas_dil.spaces.rules`).
    Degridding dimensions, only where the space opens them (so older spaces suggest exactly
    what they did): ``w1 … wN`` / ``rates_w_d<N>[_k<K>]`` (per_axis), ``smooth``, ``tail``.
    """

    def __init__(self, config: SpaceConfig) -> None:
        self.config = config
        self.name: str = config.name
        self.path: Path = config.path
        self.description: str = config.description
        self.rule: Rule = make_rule(config)  # raises SpaceError if the space is empty
        self._count: int | None = None

    def __repr__(self) -> str:
        return f"Space(name={self.name!r}, rule={self.config.rule!r}, path={str(self.path)!r})"

    def sample(self, trial: BaseTrial) -> Candidate:
        """Define-by-run: always a valid candidate, never a rejection loop.

        Records ``trial.user_attrs["candidate"]`` (the candidate's dict) and
        ``["repaired"]`` (True when a gapfree repair changed the raw per-layer rates).
        """
        cfg = self.config
        kernel = int(trial.suggest_categorical("kernel", cfg.kernel))
        output_stride = int(trial.suggest_categorical("output_stride", cfg.output_stride))
        width = int(trial.suggest_categorical("width", cfg.width))
        rates, repaired = self.rule.suggest_rates(trial, kernel)
        rates_w: tuple[int, ...] = ()
        if cfg.per_axis:
            rates_w, repaired_w = self.rule.suggest_rates_w(trial, kernel, len(rates))
            repaired = repaired or repaired_w
        smooth = (bool(trial.suggest_categorical("smooth", list(cfg.smooth)))
                  if len(cfg.smooth) > 1 else cfg.smooth[0])
        tail = cfg.tail[0]
        if len(cfg.tail) > 1:
            labels = [_tail_label(t) for t in cfg.tail]
            tail = cfg.tail[labels.index(str(trial.suggest_categorical("tail", labels)))]
        cand = Candidate(rates, kernel, output_stride, width, rates_w, smooth, tail)
        trial.set_user_attr("candidate", cand.to_dict())
        trial.set_user_attr("repaired", repaired)
        return cand

    def draw(self, n: int, rng: np.random.Generator) -> list[Candidate]:
        """``n`` candidates drawn as Optuna's RandomSampler would (each parameter uniform, in
        `sample`'s define-by-run order), without a study: ~50× faster, for samplers that
        score many candidates per ask."""
        out = []
        for _ in range(n):
            trial = _DrawTrial(rng)
            out.append(self.sample(trial))  # type: ignore[arg-type]  # duck-typed trial
        return out

    def depths(self) -> tuple[int, ...]:
        """The stack depths (rate-list lengths, tails not counted) the space proposes."""
        cfg = self.config
        if cfg.depth is not None and cfg.rule in ("free", "gapfree"):
            return tuple(cfg.depth.values())  # [1] * d is valid at every depth of the range
        return tuple(sorted({d for k in cfg.kernel
                             for d, n in self.rule.count_by_depth(k).items() if n}))

    def count(self) -> int:
        """Exact number of distinct candidates (every Candidate field)."""
        if self._count is None:
            cfg = self.config
            per = len(cfg.output_stride) * len(cfg.width) * len(cfg.smooth) * len(cfg.tail)
            if cfg.per_axis:  # (r_h, r_w) of one depth: the square of that depth's count
                rates = sum(n * n for k in cfg.kernel
                            for n in self.rule.count_by_depth(k).values())
            else:
                rates = sum(self.rule.count_rates(k) for k in cfg.kernel)
            self._count = per * rates
        return self._count

    def enumerate(self) -> Iterator[Candidate]:
        """Every distinct candidate once: kernel, then rates (rule order), [width rates,]
        stride, width[, smooth, tail]."""
        cfg = self.config
        for k in cfg.kernel:
            for rates in self.rule.iter_rates(k):
                ws = (self.rule.iter_rates_of_depth(k, len(rates)) if cfg.per_axis
                      else iter([rates]))
                for rates_w in ws:
                    for os_ in cfg.output_stride:
                        for w in cfg.width:
                            for sm in cfg.smooth:
                                for tail in cfg.tail:
                                    yield Candidate(rates, k, os_, w, rates_w, sm, tail)

    def contains(self, c: Candidate) -> bool:
        """Whether ``c`` obeys this space: its choices, depth and rate rule."""
        cfg = self.config
        if not (isinstance(c, Candidate) and c.kernel in cfg.kernel
                and c.output_stride in cfg.output_stride and c.width in cfg.width
                and c.smooth in cfg.smooth and c.tail in cfg.tail
                and self.rule.contains_rates(c.rates, c.kernel)):
            return False
        if c.rates_w:
            return cfg.per_axis and self.rule.contains_rates(c.rates_w, c.kernel)
        return True

    def params_for(self, c: Candidate) -> dict[str, Any] | None:
        """The inverse of `sample`: the parameters it suggests to produce ``c``; None if ``c``
        is not in the space (then no parameter set describes it)."""
        if not self.contains(c):
            return None
        cfg = self.config
        out = {"kernel": c.kernel, "output_stride": c.output_stride, "width": c.width,
               **self.rule.params_for(c.rates, c.kernel)}
        if cfg.per_axis:  # a square candidate in a per-axis space: its width rates = rates
            out.update(self.rule.params_w_for(c.rates_w or c.rates, c.kernel))
        if len(cfg.smooth) > 1:
            out["smooth"] = c.smooth
        if len(cfg.tail) > 1:
            out["tail"] = _tail_label(c.tail)
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-able summary: the config, the Optuna parameters and the exact count."""
        out = self.config.to_json()
        out["rule"] = self.config.rule
        cfg = self.config
        out["params"] = {"kernel": list(cfg.kernel),
                         "output_stride": list(cfg.output_stride),
                         "width": list(cfg.width), **self.rule.params(),
                         **(self.rule.params_w() if cfg.per_axis else {}),
                         **({"smooth": list(cfg.smooth)} if len(cfg.smooth) > 1 else {}),
                         **({"tail": [_tail_label(t) for t in cfg.tail]}
                            if len(cfg.tail) > 1 else {})}
        try:
            out["count"] = self.count()
        except SpaceError as e:  # too large to count exactly (huge gapfree spaces)
            out["count"] = None
            out["count_error"] = str(e)
        return out


def _tail_label(tail: tuple[int, ...]) -> str:
    """The categorical's label for a degridding tail: "none" or "2-1"."""
    return "-".join(map(str, tail)) or "none"


class _DrawTrial:
    """The three trial methods `Space.sample` calls, drawing uniformly from ``rng``."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.params: dict[str, Any] = {}
        self.user_attrs: dict[str, Any] = {}

    def suggest_int(self, name: str, low: int, high: int) -> int:
        self.params[name] = int(self.rng.integers(low, high + 1))
        return self.params[name]

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.params[name] = choices[int(self.rng.integers(len(choices)))]
        return self.params[name]

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value


def space_from_dict(data: Mapping[str, Any], path: str | Path = "<dict>") -> Space:
    """A Space from an already-parsed TOML table (``path`` only names it in errors)."""
    return Space(parse_config(data, path))


def load_space(name_or_path: str | Path | Space) -> Space:
    """A shipped space by name (``"hdc"``) or a TOML file by path."""
    if isinstance(name_or_path, Space):
        return name_or_path
    data, path = load_toml("search_spaces", name_or_path, SpaceError, "space")
    return space_from_dict(data, path)


def sample_candidates(space: Space | str | Path, n: int, seed: int) -> list[Candidate]:
    """``n`` candidates from an in-memory study with ``RandomSampler(seed)``: same seed, same
    list. Sampling is the same `Space.sample` a search uses (ask, sample, tell 0.0)."""
    space = load_space(space)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{n=}: must be an integer >= 0")
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" chatter
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        out: list[Candidate] = []
        for _ in range(n):
            trial = study.ask()
            out.append(space.sample(trial))
            study.tell(trial, 0.0)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return out
