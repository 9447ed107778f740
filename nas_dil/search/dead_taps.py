"""Dead taps: the study's one policy for candidates whose stack taps read only padding at the
training crop (they never train; docs/theory.md). The study file's top-level ``dead_taps``:

- ``"refuse"`` (default): such a candidate is infeasible, recorded and never trained (an
  Optuna constraint ``dead_taps``); a space wholly dead at the crop is refused before the
  search, one mostly dead gets a warning;
- ``"avoid"``: as refuse, and the space is bound to the crop (`Space.live`), so the sampler
  proposes only candidates whose taps all land on the image;
- ``"allow"``: they train like any other (the report flags them).

Older files still load: a study's ``[constraints] allow_dead_taps = true`` reads as
``"allow"``; a space file's ``avoid_dead_taps = true`` makes a study that refuses them avoid
them, and contradicts one that allows them (one line). Binding, planning, feasibility, the
sampler's feasibility and the driver's warning all ask `DeadTaps`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nas_dil.errors import UserError
from nas_dil.models.config import ArchTemplate
from nas_dil.spaces import Space, dead_tap_reason

__all__ = ["POLICIES", "DeadTaps"]

POLICIES = ("refuse", "avoid", "allow")


@dataclass(frozen=True)
class DeadTaps:
    policy: str = "refuse"  # one of POLICIES

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"dead_taps={self.policy!r}: expected one of {', '.join(POLICIES)}")

    @property
    def refused(self) -> bool:
        """Whether a candidate with dead taps is infeasible (refuse and avoid)."""
        return self.policy != "allow"

    def with_space(self, space: Space, where: str) -> DeadTaps:
        """The policy a study with this space follows: a space file's old ``avoid_dead_taps =
        true`` turns refuse into avoid and contradicts allow (one line)."""
        if not space.config.avoid_dead_taps or self.policy == "avoid":
            return self
        if self.policy == "allow":
            raise UserError(f"{where}: dead_taps = \"allow\", but space {space.name} sets "
                            "avoid_dead_taps = true: choose one")
        return DeadTaps("avoid")

    def bind(self, space: Space, arch: ArchTemplate, crop: tuple[int, int],
             where: str) -> Space:
        """The space the study samples: bound to the crop when avoiding (`Space.live`)."""
        if self.policy != "avoid":
            return space
        from nas_dil.models.analytic import stack_maps

        try:
            sides = stack_maps(arch, space.config.output_stride, crop)
        except ValueError as e:
            raise UserError(f"{where}: space {space.name}: dead_taps = \"avoid\": {e}") from None
        return space.live(sides)

    def constraint(self, analytic: Mapping[str, Any],
                   crop: tuple[int, int]) -> tuple[float, str | None] | None:
        """Optuna's ``dead_taps`` constraint value and, when violated, the reason; None when
        dead taps are allowed (no constraint)."""
        if not self.refused:
            return None
        n = analytic["dead_taps"]
        return float(n), (dead_tap_reason({**analytic, "crop": list(crop)}) if n else None)

    def warning(self, share: float, exact: bool, space: str, crop: tuple[int, int]) -> str | None:
        """Most of the space dead at the crop (rates far larger than the feature map): say
        so before the search starts (refused, most asks would be wasted)."""
        if share <= 0.5:
            return None
        h, w = crop
        what = "of the candidates" if exact else "of sampled candidates"
        then = ("they train anyway (dead_taps = \"allow\")" if not self.refused
                else "they are refused as infeasible, never trained")
        return (f"{share:.0%} {what} of space {space} have dead taps at the {h}×{w} crop "
                f"(rates larger than the feature map: taps that read only padding); {then} — "
                "use smaller rates or a larger crop")

    def none_live(self, where: str, of: str, space: str, crop: tuple[int, int],
                  fewest: int) -> UserError:
        """Every scored candidate has dead taps while they are refused: the refusal."""
        h, w = crop
        return UserError(
            f"{where}: every candidate {of} of space {space} has dead taps at the {h}×{w} "
            f"crop (taps that read only padding; the fewest is {fewest}): use smaller rates, "
            "a smaller output stride or a larger crop, or set dead_taps = \"allow\"")
