"""`analytic_attrs` against the schedule code it combines, and `analytic_batch` against
`analytic_attrs` row by row (same values, same Python types)."""

from __future__ import annotations

import numpy as np
import pytest

from nas_dil.models import ArchConfig
from nas_dil.models.analytic import BATCH_KEYS, analytic_attrs, analytic_batch
from nas_dil.schedule import Schedule, coverage, hdc_report, net_cost
from nas_dil.spaces import Candidate, load_space


def test_analytic_attrs_match_the_schedule_code() -> None:
    s = Schedule((1, 2, 9), (3,))
    arch = ArchConfig(output_stride=8, width=16, num_classes=5)
    a = analytic_attrs(s, arch, 32)
    cost = net_cost(32, 32, (1, 2, 9), kernel=3, **arch.cost_kwargs())
    cov = coverage(s)
    hdc = hdc_report([1, 2, 9], 3)
    # 32 px at output stride 8: 4×4 maps, so the rate-9 layer's 8 off-centre taps read only
    # padding; the usable RF is the crop, the nominal one the formula's 207 px
    assert a["rf_nominal"] == cost.rf_image == 207 and a["rf"] == a["rf_usable_h"] == 32
    assert a["dead_taps"] == 8 and [d["name"] for d in a["dead_layers"]] == ["stack.2"]
    assert a["flops"] == cost.flops and a["params"] == cost.params
    assert a["macs"] == cost.macs and a["gflops"] == cost.flops / 1e9
    assert a["rf_stack"] == cov.rf == 25 and a["holes"] == cov.holes > 0
    assert a["coverage"] == cov.coverage and a["gridding_free"] is False and a["m"] == [3, 5, 9]
    # hdc_rule1: the whole schedule; hdc_rule1_groups: within every sawtooth group
    assert a["hdc_rule1"] is hdc.rule1.passed is False
    assert a["hdc_rule1_groups"] is hdc.rule1_groups.passed
    assert a["hdc"] is hdc.passed
    assert set(a) == {*BATCH_KEYS, "m", "dead_layers"}


def test_rule1_whole_and_per_group_differ() -> None:
    """[1, 2, 5, 1, 2, 5]: each group [1, 2, 5] has M = 1, 2, 5 (M_2 = 2 <= 3), but over the
    whole schedule M runs 5, 2, 1, 9, 5, 3 from the last layer back: M_2 = 5 > 3."""
    a = analytic_attrs(Schedule((1, 2, 5, 1, 2, 5), (3,)), ArchConfig(), 32)
    assert a["m"][1] == 5
    assert a["hdc_rule1_groups"] is True and a["hdc_rule1"] is False and a["hdc"] is True


@pytest.mark.parametrize("arch", [
    {"stem_width": 8, "num_classes": 5},
    {"num_classes": 21, "context": True, "backbone_stride": 16, "norm": "none"},
    {"num_classes": 3, "norm": "gn", "context": True, "context_rates": (1, 2, 3)},
    {"num_classes": 5, "residual": True},  # the ERF counts the identity paths
])
def test_batch_equals_one_by_one(arch: dict) -> None:
    space = load_space("free")  # depths 3-6, OS 8/16, widths 16/32: several groups at once
    cands = space.draw(150, np.random.default_rng(0))
    cands += [Candidate((1,), 1, 8, 16), Candidate((3, 3), 5, 16, 8)]  # 1 layer; K 5
    b = analytic_batch(cands, arch, 48)
    assert set(b) == set(BATCH_KEYS)
    for i, c in enumerate(cands):
        one = analytic_attrs(c.schedule, ArchConfig(**arch, output_stride=c.output_stride,
                                                    width=c.width), 48)
        for k in BATCH_KEYS:
            v = b[k][i].item()
            assert v == one[k] and type(v) is type(one[k]), (k, c, v, one[k])


def test_batch_equals_one_by_one_with_degridding_and_non_square_crops() -> None:
    from nas_dil.spaces import space_from_dict

    space = space_from_dict({"depth": {"min": 1, "max": 3}, "kernel": [3], "output_stride": [8],
                             "width": [16], "rates": {"rule": "free", "choices": [1, 2, 5]},
                             "smooth": [False, True], "tail": [[], [2, 1]], "per_axis": True})
    cands = space.draw(80, np.random.default_rng(1))
    assert any(c.plain for c in cands) and not all(c.plain for c in cands)
    arch = {"num_classes": 5}
    b = analytic_batch(cands, arch, (48, 40))
    for i, c in enumerate(cands):
        one = analytic_attrs(c.schedule, ArchConfig(**arch, output_stride=c.output_stride,
                                                    width=c.width), (48, 40))
        for k in BATCH_KEYS:
            assert b[k][i].item() == one[k], (k, c)


def test_batch_of_nothing_and_bad_arch() -> None:
    b = analytic_batch([], {}, 32)
    assert all(len(b[k]) == 0 for k in BATCH_KEYS)
    with pytest.raises(ValueError, match="backbone_stride"):
        analytic_batch([Candidate((1, 2), 3, 16, 8)], {"backbone_stride": 8}, 32)


@pytest.mark.parametrize("backbone", ["stem", "resnet18", "mobilenet_v3_large"])
def test_stack_maps_make_live_spaces_free_of_dead_taps(backbone: str) -> None:
    """`Space.live(stack_maps(...))` keeps exactly the candidates whose analytic dead_taps are
    0 at the crop, behind the stem and behind a torchvision trunk (target head)."""
    from nas_dil.models.analytic import stack_maps
    from nas_dil.spaces import space_from_dict

    arch = {} if backbone == "stem" else {"backbone": backbone, "target": "head"}
    strides = [4, 8] if backbone == "stem" else [8, 16]
    space = space_from_dict({"kernel": [3, 5], "output_stride": strides, "width": [16],
                             "depth": 2, "rates": {"rule": "free", "choices": [1, 2, 4, 8]}})
    cands = list(space.enumerate())
    cols = analytic_batch(cands, {**arch, "num_classes": 5}, (64, 48))
    want = [c for c, d in zip(cands, cols["dead_taps"].tolist(), strict=True) if d == 0]
    assert 0 < len(want) < len(cands)
    assert list(space.live(stack_maps(arch, strides, (64, 48))).enumerate()) == want


def test_stack_maps_refuse_block_targets() -> None:
    from nas_dil.models.analytic import stack_maps

    with pytest.raises(ValueError, match="target='backbone'"):
        stack_maps({"backbone": "resnet18", "target": "backbone"}, [16], 64)
