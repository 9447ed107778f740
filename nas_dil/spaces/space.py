"""`Space`: a loaded search space; `load_space` reads one, `sample_candidates` draws from one."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import BaseTrial

from nas_dil.resources import load_toml
from nas_dil.schedule.crop import max_live_rate
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

    A space bound to a training crop (`live`; a study with ``dead_taps = "avoid"`` binds its
    space) admits only the candidates whose stack taps all land on the image there: every rate
    (tail included) at most the largest live rate of its stack's feature map
    (`nas_dil.schedule.crop.max_live_rate`). Rates that a cap drops rename the parameters
    it touches (``_le<m>``; ``output_stride_k<K>`` when the live strides differ by kernel).
    Per-axis rates take the smaller side's cap on both axes (conservative on non-square crops).
    """

    def __init__(self, config: SpaceConfig,
                 sides: Mapping[int, tuple[int, int]] | None = None) -> None:
        self.config = config
        self.name: str = config.name
        self.path: Path = config.path
        self.description: str = config.description
        self.rule: Rule = make_rule(config)  # raises SpaceError if the space is empty
        self._count: int | None = None
        # output stride -> (h, w) of the stack's feature map at the bound crop; None: unbound
        self.sides = None if sides is None else {int(o): (int(h), int(w))
                                                 for o, (h, w) in sides.items()}
        self._live: dict[tuple[int, int], bool] = {}
        if self.sides is not None:
            missing = [o for o in config.output_stride if o not in self.sides]
            if missing:
                raise ValueError(f"sides={self.sides}: no feature map size for output "
                                 f"strides {missing}")
            if not any(self._ok(k, o) for k in config.kernel for o in config.output_stride):
                raise SpaceError(f"{config.path}: no candidate of space {self.name} has every "
                                 f"tap on the image (stack maps {self._sides_text()}): use "
                                 "smaller rates, a smaller output stride or a larger crop")

    def live(self, sides: Mapping[int, tuple[int, int]]) -> Space:
        """This space restricted to candidates without dead stack taps, given the (h, w) of
        the stack's feature map at the training crop for each of its output strides."""
        return Space(self.config, sides)

    def __repr__(self) -> str:
        return f"Space(name={self.name!r}, rule={self.config.rule!r}, path={str(self.path)!r})"

    # -- the crop binding ------------------------------------------------------------------
    def _sides_text(self) -> str:
        assert self.sides is not None
        return ", ".join(f"{h}×{w} at output stride {o}" for o, (h, w) in self.sides.items())

    def cap(self, kernel: int, output_stride: int) -> int | None:
        """The largest rate whose taps all land on the image (None: no limit)."""
        if self.sides is None:
            return None
        caps = [c for c in (max_live_rate(kernel, s) for s in self.sides[output_stride])
                if c is not None]
        return min(caps) if caps else None

    def _ok(self, kernel: int, output_stride: int) -> bool:
        """Whether (kernel, output stride) has any live candidate."""
        key = (kernel, output_stride)
        if key not in self._live:
            cap = self.cap(kernel, output_stride)
            self._live[key] = cap is None or (
                cap >= 1 and next(iter(self.rule.iter_rates(kernel, cap)), None) is not None)
        return self._live[key]

    def _kernels(self) -> list[int]:
        return [k for k in self.config.kernel if any(self._ok(k, o)
                                                     for o in self.config.output_stride)]

    def _strides(self, kernel: int) -> tuple[str, list[int]]:
        """(parameter name, live output strides) for ``kernel``."""
        mine = [o for o in self.config.output_stride if self._ok(kernel, o)]
        same = all([o for o in self.config.output_stride if self._ok(k, o)] == mine
                   for k in self._kernels())
        return ("output_stride" if same else f"output_stride_k{kernel}"), mine

    def _tails(self, cap: int | None) -> tuple[str, list[tuple[int, ...]]]:
        """(parameter name, tails whose rates are all <= cap)."""
        tails = self.config.tail
        kept = [t for t in tails if cap is None or not t or max(t) <= cap]
        if len(kept) == len(tails) or not any(kept):
            return "tail", kept
        return f"tail_le{max(max(t) for t in kept if t)}", kept

    # -- the Optuna side ---------------------------------------------------------------------
    def sample(self, trial: BaseTrial) -> Candidate:
        """Define-by-run: always a valid candidate, never a rejection loop.

        Records ``trial.user_attrs["candidate"]`` (the candidate's dict) and
        ``["repaired"]`` (True when a gapfree repair changed the raw per-layer rates).
        """
        cfg = self.config
        kernel = int(trial.suggest_categorical("kernel", self._kernels()))
        name, strides = self._strides(kernel)
        output_stride = int(trial.suggest_categorical(name, strides))
        width = int(trial.suggest_categorical("width", cfg.width))
        cap = self.cap(kernel, output_stride)
        rates, repaired = self.rule.suggest_rates(trial, kernel, cap)
        rates_w: tuple[int, ...] = ()
        if cfg.per_axis:
            rates_w, repaired_w = self.rule.suggest_rates_w(trial, kernel, len(rates), cap)
            repaired = repaired or repaired_w
        smooth = (bool(trial.suggest_categorical("smooth", list(cfg.smooth)))
                  if len(cfg.smooth) > 1 else cfg.smooth[0])
        tail_name, tails = self._tails(cap)
        tail = tails[0]
        if len(tails) > 1:
            labels = [_tail_label(t) for t in tails]
            tail = tails[labels.index(str(trial.suggest_categorical(tail_name, labels)))]
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
            total = 0
            for k in cfg.kernel:
                for o in cfg.output_stride:
                    if not self._ok(k, o):
                        continue
                    cap = self.cap(k, o)
                    if cfg.per_axis:  # (r_h, r_w) of one depth: the square of that count
                        rates = sum(n * n for n in self.rule.count_by_depth(k, cap).values())
                    else:
                        rates = self.rule.count_rates(k, cap)
                    total += rates * len(cfg.width) * len(cfg.smooth) * len(self._tails(cap)[1])
            self._count = total
        return self._count

    def enumerate(self) -> Iterator[Candidate]:
        """Every distinct candidate once: kernel, then rates (rule order), [width rates,]
        stride, width[, smooth, tail]."""
        cfg = self.config
        for k in cfg.kernel:
            # per live output stride: its cap and the tails under it (once, not per candidate)
            caps = {o: (cap, self._tails(cap)[1]) for o in cfg.output_stride
                    if self._ok(k, o) for cap in [self.cap(k, o)]}
            for rates in self.rule.iter_rates(k):
                ws = (self.rule.iter_rates_of_depth(k, len(rates)) if cfg.per_axis
                      else iter([rates]))
                for rates_w in ws:
                    top = max(rates + rates_w)
                    for os_, (cap, tails) in caps.items():
                        if cap is not None and top > cap:
                            continue
                        for w in cfg.width:
                            for sm in cfg.smooth:
                                for tail in tails:
                                    yield Candidate(rates, k, os_, w, rates_w, sm, tail)

    def contains(self, c: Candidate) -> bool:
        """Whether ``c`` obeys this space: its choices, depth and rate rule (and, bound to a
        crop, has every stack tap on the image)."""
        cfg = self.config
        if not (isinstance(c, Candidate) and c.kernel in cfg.kernel
                and c.output_stride in cfg.output_stride and c.width in cfg.width
                and c.smooth in cfg.smooth and c.tail in cfg.tail
                and self.rule.contains_rates(c.rates, c.kernel)):
            return False
        if c.rates_w and not (cfg.per_axis and self.rule.contains_rates(c.rates_w, c.kernel)):
            return False
        if self.sides is not None:
            cap = self.cap(c.kernel, c.output_stride)
            if cap is not None and max(c.rates + c.rates_w + c.tail) > cap:
                return False
        return True

    def params_for(self, c: Candidate) -> dict[str, Any] | None:
        """The inverse of `sample`: the parameters it suggests to produce ``c``; None if ``c``
        is not in the space (then no parameter set describes it)."""
        if not self.contains(c):
            return None
        cfg = self.config
        cap = self.cap(c.kernel, c.output_stride)
        out = {"kernel": c.kernel, self._strides(c.kernel)[0]: c.output_stride,
               "width": c.width, **self.rule.params_for(c.rates, c.kernel, cap)}
        if cfg.per_axis:  # a square candidate in a per-axis space: its width rates = rates
            out.update(self.rule.params_w_for(c.rates_w or c.rates, c.kernel, cap))
        if len(cfg.smooth) > 1:
            out["smooth"] = c.smooth
        tail_name, tails = self._tails(cap)
        if len(tails) > 1:
            out[tail_name] = _tail_label(c.tail)
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
        if self.sides is not None:
            out["live"] = {"feature_maps": {str(o): list(hw) for o, hw in self.sides.items()},
                           "max_rate": {f"k{k}_os{o}": self.cap(k, o) for k in cfg.kernel
                                        for o in cfg.output_stride}}
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
