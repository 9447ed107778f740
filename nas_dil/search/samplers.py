"""Samplers: the names a study file may give (`SAMPLERS`), their options checked when the study
file is parsed (`parse_sampler`: names, types against the sampler's signature, the hvi
sampler's ranges), and the sampler built for a search (`build_sampler`).

A bad option is one `StudyConfigError` line before anything is written, e.g.
``studies/x.toml: sampler.n_startup_trials: expected int, got 'ten'``.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nas_dil._check import SEED, Bound
from nas_dil._toml import TomlReader, annotation_kinds
from nas_dil.errors import UserError, first_line

if TYPE_CHECKING:
    from nas_dil.search.hvi import SamplerContext

__all__ = ["SAMPLERS", "SamplerConfig", "build_sampler", "option_bound", "parse_sampler",
           "sampler_class"]

# name -> sampler class name (Optuna's: optuna.samplers.<class>, imported on first use)
SAMPLERS: dict[str, str] = {
    "tpe": "TPESampler",  # Optuna's default, multi-objective TPE
    "nsga2": "NSGAIISampler",
    "nsga3": "NSGAIIISampler",
    "gp": "GPSampler",  # needs scipy (pip install 'nas-dil[gp]')
    "random": "RandomSampler",
    "brute": "BruteForceSampler",  # finite spaces; stops when every candidate was tried
    # nas-dil's own: GP on mIoU, exact RF/FLOPs, optimistic hypervolume improvement; never
    # re-proposes a tried candidate (nas_dil.search.hvi)
    "hvi": "HVISampler",
}
# set by the driver, or Python-only (hvi in a plain Optuna study): not study-file options
_DRIVER_ARGS = ("self", "constraints_func", "context", "search_space", "known_objectives",
                "known_index")


@dataclass(frozen=True)
class SamplerConfig:
    name: str = "hvi"  # one of SAMPLERS
    options: Mapping[str, Any] = field(default_factory=dict)  # keywords of the sampler class


def sampler_class(name: str) -> type:
    """The sampler class of a SAMPLERS name (imported on first use: optuna is heavy)."""
    if name == "hvi":
        from nas_dil.search.hvi import HVISampler

        return HVISampler
    import optuna

    return getattr(optuna.samplers, SAMPLERS[name])  # type: ignore[no-any-return]


def _annotation(p: inspect.Parameter) -> str | None:
    """A parameter's annotation as text (Optuna's are strings already); None: unannotated."""
    a = p.annotation
    if a is inspect.Parameter.empty:
        return None
    return a if isinstance(a, str) else getattr(a, "__name__", str(a))


# Optuna's samplers check some options when they are built (preflight) and take others that
# fail later: a numeric option is >= 0 unless named here (hvi checks its own: check_options)
_OPTION_RANGES = {
    "seed": SEED,  # numpy's RandomState, every sampler
    "n_ei_candidates": Bound(True, ge=1),  # tpe: candidates scored per ask
    "prior_weight": Bound(False, gt=0),  # tpe
}


def option_bound(name: str, option: str, annotation: str | None) -> Bound | None:
    """The range a study file's ``[sampler]`` numeric option must lie in (None: not a
    number, or the hvi sampler's, checked by ``hvi.check_options``)."""
    kinds = annotation_kinds(annotation or "")
    if option in _OPTION_RANGES and (name != "hvi" or option == "seed"):
        return _OPTION_RANGES[option]
    if name == "hvi" or not {"int", "float"} & set(kinds):
        return None
    return Bound("float" not in kinds, ge=0)


def parse_sampler(table: Mapping[str, Any], rd: TomlReader) -> SamplerConfig:
    """The ``[sampler]`` table checked: a known name, options the class takes, each of the
    type its signature declares (ints are not floats' only spelling: ``beta = 2`` is 2.0),
    and the hvi sampler's own ranges. Errors go through ``rd`` (one line)."""
    t = dict(table)
    name = rd.string(t.pop("name", "hvi"), "sampler.name")
    if name not in SAMPLERS:
        raise rd.err("sampler.name", f"unknown sampler {name!r} "
                                     f"(expected one of {', '.join(SAMPLERS)})")
    if name == "gp":
        import importlib.util

        if importlib.util.find_spec("scipy") is None:
            raise rd.err("sampler.name", "the gp sampler needs scipy: pip install 'nas-dil[gp]'")
    params = inspect.signature(sampler_class(name)).parameters
    allowed = tuple(p for p in params if p not in _DRIVER_ARGS)
    options: dict[str, Any] = {}
    for k, v in t.items():
        if k not in allowed:
            raise rd.err(f"sampler.{k}", f"not an option of {SAMPLERS[name]} "
                                         f"(allowed: {', '.join(allowed)})")
        annotation = _annotation(params[k])
        options[k] = v if annotation is None else rd.typed(v, annotation, f"sampler.{k}")
        bound = option_bound(name, k, annotation)
        if bound is not None and options[k] is not None and bound.problem(options[k]):
            raise rd.err(f"sampler.{k}", f"{bound.problem(options[k])}, got {options[k]!r}")
    if name == "hvi":
        from nas_dil.search.hvi import check_options

        try:
            check_options(**options)
        except ValueError as e:
            raise rd.err("sampler", str(e)) from None
    return SamplerConfig(name, options)


def build_sampler(sampler: SamplerConfig, *, seed: int, context: SamplerContext | None,
                  where: str) -> Any:
    """The sampler, seeded with ``seed`` unless its options set one; samplers that take a
    ``context`` (hvi) get it. A failure is one UserError line naming ``where``."""
    import optuna

    cls = sampler_class(sampler.name)
    kwargs = dict(sampler.options)
    params = inspect.signature(cls).parameters
    if "seed" in params:
        kwargs.setdefault("seed", seed)
    if sampler.name == "gp":  # the space is dynamic (depth, r1…rN): fallback sampling is expected
        kwargs.setdefault("warn_independent_sampling", False)
    if "context" in params:
        kwargs["context"] = context
    try:
        with warnings.catch_warnings():  # brute, gp options: "experimental", said once in docs
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: sampler: {first_line(e)}") from None
