"""The weights a trial keeps (issue 22 item 4): a frozen-backbone trial keeps its head and names
its backbone; `rebuild` makes the whole net again, refusing in one line a backbone whose
tensors differ from those it was trained on; whole-net weights (older files) still load."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
import torch

from nas_dil.data import DataConfig
from nas_dil.models import ArchConfig
from nas_dil.models.backbones import Backbone
from nas_dil.models.net import model_config
from nas_dil.train import TrainConfig, TrialConfig
from nas_dil.train.features import frozen_net, state_digest
from nas_dil.train.kept import BackboneRef, KeptWeightsError, kept_state, rebuild

RATES = [1, 2, 3]


def _weights(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    torch.save(Backbone("resnet18").trunk.state_dict(), path)
    return path


def _cfg(weights: str, freeze: str = "backbone") -> TrialConfig:
    arch = ArchConfig(backbone="resnet18", target="head", output_stride=8, width=16,
                      weights=weights)
    return TrialConfig(arch, DataConfig(image_size=32), TrainConfig(freeze=freeze))


def _trained(cfg: TrialConfig, seed: int) -> torch.nn.Module:
    """A frozen net as a trial leaves it: the backbone as built, the head moved by training."""
    net = frozen_net(RATES, cfg.arch, seed)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if not n.startswith("backbone."):
                p.add_(0.5)
    return net


def _nbytes(obj: object) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return len(buf.getvalue())


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("weights", ["none", "file"])
def test_head_only_weights_rebuild_the_whole_net(tmp_path: Path, weights: str) -> None:
    w = str(_weights(tmp_path / "r18.pt", 1)) if weights == "file" else "none"
    cfg = _cfg(w)
    net = _trained(cfg, seed=7)
    state, ref = kept_state(net, cfg, 7)
    assert ref is not None and ref.weights == w and ref.seed == 7
    assert ref.digest == state_digest(net.backbone) and ref.digest.startswith("state:")
    assert ref.file_sha256 == (hashlib.sha256(Path(w).read_bytes()).hexdigest()
                               if weights == "file" else None)
    assert state and not any(k.startswith("backbone.") for k in state)
    assert set(state) == {k for k in net.state_dict() if not k.startswith("backbone.")}
    assert BackboneRef.from_dict(ref.to_dict()) == ref

    again = rebuild(model_config(net), state, ref, "here")
    assert _equal(again, net) and not again.training

    # the size a kept frozen trial had (every tensor) against the head only: well under 10 %
    whole = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    assert _nbytes(state) < 0.1 * _nbytes(whole)


def test_whole_net_weights_still_load(tmp_path: Path) -> None:
    """Files from before (every tensor, no backbone named), and unfrozen trials, as before:
    the arch's starting weights are not read (a file on another machine is not needed)."""
    w = _weights(tmp_path / "r18.pt", 1)
    cfg = _cfg(str(w))
    net = _trained(cfg, seed=0)
    whole = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    w.unlink()
    assert _equal(rebuild(model_config(net), whole, None, "here"), net)
    unfrozen = _cfg("none", freeze="none")
    state, ref = kept_state(net, unfrozen, 0)
    assert ref is None and state.keys() == whole.keys()


@pytest.mark.parametrize(("change", "fragment"), [
    ("other file", "head-only weights were trained on another backbone: weights="),
    ("other seed", "head-only weights were trained on another backbone: weights='none' (seed 8)"),
    ("no file", "cannot rebuild the frozen backbone (weights="),
])
def test_another_backbone_is_refused_in_one_line(tmp_path: Path, change: str,
                                                 fragment: str) -> None:
    w = "none" if change == "other seed" else str(_weights(tmp_path / "r18.pt", 1))
    cfg = _cfg(w)
    net = _trained(cfg, seed=7)
    state, ref = kept_state(net, cfg, 7)
    assert ref is not None
    if change == "other file":
        _weights(tmp_path / "r18.pt", 2)  # the same path, other tensors
    elif change == "other seed":
        ref = BackboneRef(ref.weights, 8, ref.digest)
    else:
        Path(w).unlink()
    with pytest.raises(KeptWeightsError) as e:
        rebuild(model_config(net), state, ref, "trial 3")
    msg = str(e.value)
    assert msg.startswith("trial 3: ") and fragment in msg and "\n" not in msg, msg


def test_the_backbone_file_may_be_given_elsewhere(tmp_path: Path) -> None:
    w = _weights(tmp_path / "r18.pt", 1)
    cfg = _cfg(str(w))
    net = _trained(cfg, seed=0)
    state, ref = kept_state(net, cfg, 0)
    moved = w.rename(tmp_path / "moved.pt")
    again = rebuild(model_config(net), state, ref, "here", backbone_weights=str(moved))
    assert _equal(again, net)


@pytest.mark.parametrize("bad", [None, {}, {"weights": "none", "seed": "0", "digest": "x"},
                                 {"weights": "none", "seed": True, "digest": "x"},
                                 {"weights": 1, "seed": 0, "digest": "x"}])
def test_a_malformed_reference_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="not a frozen-backbone reference"):
        BackboneRef.from_dict(bad)
