"""`analytic_attrs` / `analytic_batch` on torchvision backbones, held to the built net: MACs and
params = FlopCounterMode, usable RF and dead taps = gradients of a linearised copy, the searched
part's coverage = its gradient support; the stored layer tables = a fresh extraction."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas_dil.models import ArchConfig, build_model, count_params
from nas_dil.models.analytic import BATCH_KEYS, analytic_attrs, analytic_batch, trial_schedule
from nas_dil.models.backbones import layer_table, model_table
from nas_dil.models.config import TV_BACKBONES
from nas_dil.models.tables import block_kernels, searched_rows, table_path, trunk_table
from nas_dil.schedule import ScheduleError
from nas_dil.schedule.layertable import sub_table, table_rf, table_support
from nas_dil.spaces import Candidate
from tests.models.test_backbones import _candidate, _columns, _linearise


@pytest.mark.parametrize("name", TV_BACKBONES)
def test_stored_table_is_a_fresh_extraction(name: str) -> None:
    # a torchvision upgrade that changes a trunk fails here: rerun backbones.write_tables()
    assert trunk_table(name) == layer_table(name), f"{table_path(name)} is stale"


def test_the_analytic_path_needs_no_torch() -> None:
    import subprocess

    code = ("import sys; from nas_dil.models import ArchConfig; "
            "from nas_dil.models.analytic import analytic_attrs; "
            "analytic_attrs([1, 2, 4], ArchConfig(backbone='resnet50', target='backbone', "
            "output_stride=16), 48); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", TV_BACKBONES)
def test_macs_and_params_are_flop_counter_mode(name: str) -> None:
    rng = random.Random(f"macs-{name}")
    for _ in range(4):
        rates, arch = _candidate(rng, name)
        h, w = rng.randint(33, 72), rng.randint(33, 72)
        a = analytic_attrs(rates, ArchConfig(**arch), (h, w))
        with torch.device("meta"):
            model = build_model(rates, **arch)
            with FlopCounterMode(display=False) as fc:
                model(torch.empty(1, 3, h, w))
        assert (a["flops"], a["params"]) == (fc.get_total_flops(), count_params(model)), (
            rates, arch)
        assert a["macs"] * 2 == a["flops"] and a["gflops"] == a["flops"] / 1e9
        assert a["rf_nominal"] == table_rf(model_table(model))


def _linear_model(rng: random.Random, name: str) -> tuple[list[int], dict, nn.Module]:
    rates, arch = _candidate(rng, name)
    arch.update(norm=rng.choice(["bn", "none"]), act="identity", context=False,
                width=2, num_classes=1)
    if name == "vgg16":  # pool5 stays at OS 32 and sits inside the searched rows; tested below
        arch["output_stride"] = rng.choice([8, 16])
        n_bb = len(block_kernels(name, arch["output_stride"])[0])
        rates = [rng.randint(1, 6) for _ in range(n_bb * (arch["target"] != "head")
                                                  + rng.randint(1, 3) * (
                                                      arch["target"] != "backbone"))]
    return rates, arch, _linearise(build_model(rates, **arch))


def _all_unit_grads(f: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """d(unit)/d(x) for every output unit at once: (units, *x.shape)."""
    y = f(x)
    n = y[0, 0].numel()
    one_hot = torch.zeros(n, *y.shape, dtype=y.dtype)
    one_hot.view(n, -1)[torch.arange(n), torch.arange(n)] = 1.0  # channel 0 only
    (g,) = torch.autograd.grad(y, x, grad_outputs=one_hot, is_grads_batched=True)
    return g, tuple(y.shape[-2:])


@pytest.mark.slow
@pytest.mark.parametrize("name", TV_BACKBONES)
def test_usable_rf_and_dead_taps_are_the_gradients(name: str) -> None:
    rng = random.Random(f"usable-{name}")
    for _ in range(2 if name in ("resnet18", "vgg16") else 1):
        rates, arch, model = _linear_model(rng, name)
        h, w = rng.randint(33, 56), rng.randint(33, 56)
        a = analytic_attrs(rates, model.arch, (h, w))
        table = model_table(model)
        # usable RF per axis: the widest gradient support of any output unit along that axis,
        # on an input of that length and the fewest columns the net takes (the 2-D support
        # is the outer product of the per-axis ones)
        for n, key in ((h, "rf_usable_h"), (w, "rf_usable_w")):
            x = torch.zeros(1, 3, n, _columns(table, n), dtype=torch.float64,
                            requires_grad=True)
            g, _ = _all_unit_grads(model.forward_lowres, x)
            rows = (g.abs().sum(dim=(1, 2, 4)) > 0).numpy()  # (units, n)
            ext = max(int(np.flatnonzero(r)[-1] - np.flatnonzero(r)[0] + 1) for r in rows)
            assert a[key] == ext, (key, rates, arch, h, w)
        assert a["rf"] == min(a["rf_usable_h"], a["rf_usable_w"]) <= min(h, w)
        # dead taps: exactly the weights that get no gradient from any output unit
        model.zero_grad()
        model.forward_lowres(torch.rand(1, 3, h, w, dtype=torch.float64) + 0.1).sum().backward()
        dead = {d["name"]: d for d in a["dead_layers"]}
        total = searched = 0
        _, names = searched_rows(table, model.arch)
        for mname, m in model.named_modules():
            if not isinstance(m, nn.Conv2d) or m.kernel_size[0] == 1:
                continue
            moved = m.weight.grad.abs().sum(dim=(0, 1)).numpy() > 0
            n_dead = int((~moved).sum())
            assert n_dead == (dead[mname]["dead"] if mname in dead else 0), (mname, rates, arch)
            total += n_dead
            searched += n_dead if mname in names else 0
        assert (a["dead_taps_net"], a["dead_taps"]) == (total, searched)
        assert all(d["searched"] == (d["name"] in names) for d in a["dead_layers"])


def _searched_part(model: nn.Module) -> nn.Module:
    """The searched part of a (linearised) BackboneSegNet as its own module: from the first
    targeted block (or the reduce conv, target "head") to the end of the stack."""
    a = model.arch
    parts: list[nn.Module] = []
    if a.target != "head":
        trunk = model.backbone.trunk
        first = block_kernels(a.backbone, a.output_stride)[0][0]  # "layer3.0", "features.13"
        seq, _, idx = first.rpartition(".")
        parts.append(trunk.get_submodule(seq)[int(idx):])
        names = [n for n, _ in trunk.named_children()]
        parts += [trunk.get_submodule(n) for n in names[names.index(seq) + 1:]]
    if model.stack is not None:
        parts += [model.reduce, model.stack]
    return nn.Sequential(*parts)


@pytest.mark.slow
@pytest.mark.parametrize("name", TV_BACKBONES)
def test_searched_coverage_is_the_gradient_support(name: str) -> None:
    rng = random.Random(f"cov-{name}")
    for _ in range(2):
        rates, arch, model = _linear_model(rng, name)
        a = analytic_attrs(rates, model.arch, 64)
        table = model_table(model)
        rows, _ = searched_rows(table, model.arch)
        sub = sub_table(table, rows)
        _lo, nominal = table_support(sub)
        assert a["rf_stack"] == nominal.size and a["holes"] == (
            nominal.size ** 2 - int(nominal.sum()) ** 2)
        assert a["gridding_free"] == bool(nominal.all())
        part = _searched_part(model)
        n = nominal.size + 24  # the centre unit sees its whole support, unclipped
        c_in = sub.in_channels
        x = torch.zeros(1, c_in, n, 1, dtype=torch.float64, requires_grad=True)
        y = part(x)
        unit = y.shape[-2] // 2
        (g,) = torch.autograd.grad(y[0, 0, unit, 0], x)
        got = np.flatnonzero(g.abs().sum(dim=(0, 1, 3)).numpy() > 0)
        lo_u, at_n = table_support(sub, n, unit)
        assert at_n.tolist() == nominal.tolist(), (rates, arch)  # not clipped at this size
        assert got.tolist() == (lo_u + np.flatnonzero(at_n)).tolist(), (rates, arch)


@pytest.mark.parametrize("name", TV_BACKBONES)
def test_batch_equals_one_by_one(name: str) -> None:
    rng = random.Random(f"batch-{name}")
    for target in ("head", "backbone", "both"):
        arch = {"backbone": name, "target": target, "num_classes": 3}
        cands = []
        for _ in range(3):
            os_ = rng.choice([8, 16, 32])
            n_bb = len(block_kernels(name, os_)[0]) if target != "head" else 0
            depth = n_bb + (rng.randint(1, 3) if target != "backbone" else 0)
            cands.append(Candidate(tuple(rng.randint(1, 5) for _ in range(depth)),
                                   rng.choice([1, 3]), os_, rng.choice([4, 8])))
        cands.append(cands[0])  # a twin: scored once, stored twice
        b = analytic_batch(cands, arch, (40, 56))
        assert set(b) == set(BATCH_KEYS)
        for i, c in enumerate(cands):
            a = ArchConfig(**arch, output_stride=c.output_stride, width=c.width)
            one = analytic_attrs(trial_schedule(c, a), a, (40, 56))
            for k in BATCH_KEYS:
                v = b[k][i].item()
                assert v == one[k] and type(v) is type(one[k]), (k, c, target)


def test_block_kernels_and_the_trial_schedule() -> None:
    # MobileNetV3's last stage is 5×5: the blocks keep their kernels, the head takes the
    # candidate's; the count of block rates follows from the output stride
    blocks, ks = block_kernels("mobilenet_v3_large", 32)
    assert len(blocks) == len(ks) >= 1 and set(ks) <= {3, 5}
    a = ArchConfig(backbone="mobilenet_v3_large", target="both", output_stride=32)
    s = trial_schedule(Candidate((1,) * len(blocks) + (2, 3), 3, 32, 8), a)
    assert s.kernels == (*ks, 3, 3)
    assert len(block_kernels("resnet50", 16)[0]) == 3 and len(block_kernels("resnet50", 8)[0]) == 9
    with pytest.raises(ScheduleError, match="per-axis rates, smoothing and tails"):
        trial_schedule(Candidate((1, 2, 3, 2), 3, 16, 8, smooth=True),
                       ArchConfig(backbone="resnet50", target="both", output_stride=16))
    with pytest.raises(ScheduleError, match=r"needs 3 rates \(blocks layer4.0"):
        analytic_attrs([1, 2], ArchConfig(backbone="resnet50", target="backbone",
                                          output_stride=16), 48)
