"""The weights a trial keeps, and the whole net rebuilt from them.

A frozen-backbone trial (``[train] freeze = "backbone"``) trains only its head: its backbone
is the one every trial of (arch, seed) starts from (`features.frozen_backbone`: seeded random
weights for ``weights = "none"``, ImageNet's, or a file's). Keeping it per trial would repeat
the same ~95 MB (ResNet-50) in every kept file, so such a trial keeps the head's tensors and a
`BackboneRef` naming the backbone: its weights, the seed, and `features.state_digest` of its
tensors. `rebuild` makes the whole net again: the backbone rebuilt the same way, refused in one
line unless its digest equals the recorded one (another file, other ImageNet weights), then
the head loaded on top. A net that trained whole keeps its whole state_dict, as before, and
every earlier file (whole-net weights) still loads.

One module for the format, used by the search's worker (``OUT/weights/trial_<N>.pt``),
``nas-dil train --out`` and export (``weights.pt``, `load_exported`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas_dil.errors import UserError
from nas_dil.models.config import ArchConfig
from nas_dil.models.net import model_from_config
from nas_dil.train.config import TrialConfig
from nas_dil.train.features import frozen_backbone, state_digest

__all__ = ["BACKBONE_PREFIX", "BackboneRef", "KeptWeightsError", "backbone_ref", "kept_state",
           "rebuild"]

BACKBONE_PREFIX = "backbone."  # the backbone's tensors in a BackboneSegNet's state_dict


class KeptWeightsError(UserError, ValueError):
    """Head-only weights whose backbone cannot be rebuilt as it was trained; one line."""


@dataclass(frozen=True)
class BackboneRef:
    """The frozen backbone head-only weights were trained on (what rebuilds it)."""

    weights: str  # [arch] weights: "none" (random, seeded by ``seed``), "imagenet" or a file
    seed: int  # the trial's seed: `frozen_backbone(arch, seed)` rebuilds it
    digest: str  # `features.state_digest` of its tensors ("state:<sha256>"): checked on rebuild
    file_sha256: str | None = None  # a weights file's sha256 (None: "none" or "imagenet")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> BackboneRef:
        """A stored reference; ValueError when it is not one."""
        ok = (isinstance(d, Mapping) and isinstance(d.get("weights"), str)
              and isinstance(d.get("seed"), int) and not isinstance(d.get("seed"), bool)
              and isinstance(d.get("digest"), str)
              and isinstance(d.get("file_sha256"), str | None))
        if not ok:
            raise ValueError(f"not a frozen-backbone reference: {d!r}"[:200])
        return cls(d["weights"], d["seed"], d["digest"], d.get("file_sha256"))


def kept_state(model: nn.Module, cfg: TrialConfig, seed: int
               ) -> tuple[dict[str, torch.Tensor], BackboneRef | None]:
    """(the tensors to keep on the CPU, the backbone they need or None) of a trained net:
    the head's and a `BackboneRef` when ``cfg`` froze the backbone, else every tensor."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ref = backbone_ref(model, cfg, seed)
    if ref is None:
        return state, None
    return {k: v for k, v in state.items() if not k.startswith(BACKBONE_PREFIX)}, ref


def backbone_ref(model: nn.Module, cfg: TrialConfig, seed: int) -> BackboneRef | None:
    """The frozen backbone of a net ``cfg`` trained from ``seed`` (None: nothing frozen)."""
    if cfg.train.freeze == "none":
        return None
    w = cfg.arch.weights
    backbone = model.get_submodule(BACKBONE_PREFIX.rstrip("."))
    return BackboneRef(w, int(seed), state_digest(backbone),
                       None if w in ("none", "imagenet") else _sha256(w))


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def rebuild(config: Mapping[str, Any], state: Mapping[str, torch.Tensor] | None,
            backbone: BackboneRef | None, where: str, *,
            backbone_weights: str | None = None) -> nn.Module:
    """The net of ``config`` (`model_config`'s dict) with ``state`` loaded (strict), in eval
    mode. ``state`` holds every tensor (``backbone`` None: the starting weights of the arch
    are not read, so a file on another machine is not needed), or the head's: then the
    backbone is rebuilt from ``backbone`` (its weights file at ``backbone_weights`` when given)
    and must have the recorded digest. `KeptWeightsError` (one line) when it cannot."""
    arch = dict(config["arch"])
    if state is not None and arch.get("weights", "none") != "none":
        # the tensors come from ``state`` (and the rebuilt backbone): no starting weights read
        config = {**config, "arch": {**arch, "weights": "none"}}
    model = model_from_config(dict(config))
    if state is not None and backbone is not None:
        state = {**_backbone_state(arch, backbone, where, backbone_weights), **state}
    if state is not None:
        try:
            model.load_state_dict(dict(state), strict=True)
        except RuntimeError as e:
            first = str(e).splitlines()[0][:200]
            raise KeptWeightsError(f"{where}: weights do not fit the recorded architecture "
                                   f"({first})") from None
    return model.eval()


def _backbone_state(arch: Mapping[str, Any], ref: BackboneRef, where: str,
                    weights: str | None) -> dict[str, torch.Tensor]:
    """The frozen backbone's tensors as `frozen_backbone` rebuilds them, checked by digest."""
    w = weights or ref.weights
    a = replace(ArchConfig.from_dict(dict(arch)), weights=w)
    with torch.random.fork_rng(devices=[]):  # seeded like the trial; the caller's RNG kept
        try:
            bb = frozen_backbone(a, ref.seed)
        except UserError as e:
            raise KeptWeightsError(f"{where}: head-only weights: cannot rebuild the frozen "
                                   f"backbone (weights={w!r}, seed={ref.seed}): {e}") from None
    got = state_digest(bb)
    if got != ref.digest:
        raise KeptWeightsError(
            f"{where}: head-only weights were trained on another backbone: weights={w!r} "
            f"(seed {ref.seed}) rebuild {got[:19]}…, recorded {ref.digest[:19]}… (give the "
            "weights the trial was trained on)")
    return {BACKBONE_PREFIX + k: v for k, v in bb.state_dict().items()}
