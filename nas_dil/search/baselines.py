"""Baselines: named seed schedules (`BASELINES`) trained beside the searched candidates, the
``[[baselines]]`` entries of a study file, and each as a candidate of the study's space."""

from __future__ import annotations

from dataclasses import dataclass

from nas_dil._check import MAX_CHANNELS, MAX_KERNEL
from nas_dil._toml import TomlReader
from nas_dil.errors import UserError
from nas_dil.spaces import Candidate, Space

__all__ = ["BASELINES", "BaselineConfig", "baseline_candidate", "baseline_candidates",
           "parse_baselines"]

# Named seed schedules (kernel 3 unless a baseline entry says otherwise)
BASELINES: dict[str, tuple[int, ...]] = {
    "yu_koltun": (1, 1, 2, 4, 8, 16, 1),  # Yu & Koltun's context module rates
    "constant2": (2, 2, 2, 2, 2, 2),  # one constant rate: grids (every odd offset is a hole)
    "hdc": (1, 2, 5, 1, 2, 5),  # HDC sawtooth (Wang et al. 2018), hole-free
    "multigrid": (2, 4, 8),  # DeepLab v3 multi-grid (1, 2, 4) × base rate 2
}


@dataclass(frozen=True)
class BaselineConfig:
    name: str  # a BASELINES name or any label (then `rates` is required)
    rates: tuple[int, ...]
    kernel: int | None = None  # None: 3 if the space allows it, else the space's first kernel
    output_stride: int | None = None  # None: the space's first output stride
    width: int | None = None  # None: the space's first width


def parse_baselines(rd: TomlReader, raw: object) -> tuple[BaselineConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise rd.err("baselines", f"expected a list of tables ([[baselines]]), got {raw!r}")
    out: list[BaselineConfig] = []
    allowed = ("name", "rates", "kernel", "output_stride", "width")
    for key, t, name in rd.named_tables(raw, "baselines", allowed):
        if "rates" in t:
            rates = t["rates"]
            if not isinstance(rates, list) or not rates or not all(
                    isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in rates):
                raise rd.err(f"{key}.rates", f"expected a list of integers >= 1, got {rates!r}")
            rates_t = tuple(rates)
        elif name in BASELINES:
            rates_t = BASELINES[name]
        else:
            raise rd.err(f"{key}.name", f"unknown baseline {name!r} (known: "
                                        f"{', '.join(BASELINES)}; or give rates = [...])")
        if any(b.name == name for b in out):
            raise rd.err(f"{key}.name", f"baseline {name!r} given twice")
        most = {"kernel": MAX_KERNEL, "output_stride": 32, "width": MAX_CHANNELS}
        opt = {k: rd.integer(t[k], f"{key}.{k}", 1, hi) for k, hi in most.items() if k in t}
        out.append(BaselineConfig(name, rates_t, **opt))
    return tuple(out)


def baseline_candidates(baselines: tuple[BaselineConfig, ...], space: Space,
                        where: str) -> list[tuple[str, Candidate]]:
    """(name, candidate) of every baseline; a bad one is one line naming the study file
    (``where``) and its key (``baselines[i]``)."""
    out = []
    for i, b in enumerate(baselines):
        try:
            out.append((b.name, baseline_candidate(b, space)))
        except UserError as e:
            raise UserError(f"{where}: baselines[{i}] ({b.name}): "
                            f"{str(e).removeprefix('candidate: ')}") from None
    return out


def baseline_candidate(b: BaselineConfig, space: Space) -> Candidate:
    """The baseline's rates with its kernel / output stride / width, else the space's first
    choices (kernel 3 when the space allows it)."""
    cfg = space.config
    kernel = b.kernel or (3 if 3 in cfg.kernel else cfg.kernel[0])
    return Candidate(b.rates, kernel, b.output_stride or cfg.output_stride[0],
                     b.width or cfg.width[0])
