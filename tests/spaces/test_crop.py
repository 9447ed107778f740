"""Dead taps and usable RF of candidates (the search's ask-time fields): batch = scalar."""

from __future__ import annotations

import numpy as np
import pytest

from nas_dil.schedule import Schedule, net_crop_report
from nas_dil.spaces import (
    CROP_FIELDS,
    Candidate,
    batch_candidate_crop,
    candidate_crop_fields,
    dead_fraction,
    dead_tap_reason,
    live_rate_cap,
    space_from_dict,
)

SPACE = {"depth": {"min": 1, "max": 4}, "kernel": [3, 5], "output_stride": [4, 8, 16],
         "width": [16], "smooth": [False, True], "tail": [[], [2, 1]], "per_axis": True,
         "rates": {"rule": "free", "choices": [1, 2, 3, 5, 9]}}


@pytest.mark.parametrize(("h", "w", "arch"), [
    (48, 48, {}),
    (48, 40, {"context": True, "context_rates": (1, 2, 4)}),
    (33, 70, {"backbone_stride": 16}),
])
def test_batch_equals_one_by_one(h: int, w: int, arch: dict) -> None:
    cands = space_from_dict(SPACE).draw(150, np.random.default_rng(h + w))
    if "backbone_stride" in arch:
        cands = [c for c in cands if c.output_stride <= 16]
    b = batch_candidate_crop(cands, h, w, **arch)
    for i, c in enumerate(cands):
        f = candidate_crop_fields(c, h, w, **arch)
        assert {k: f[k] for k in CROP_FIELDS} == {k: int(b[k][i]) for k in CROP_FIELDS}, c


def test_issue_example_fields_and_reason() -> None:
    c = Candidate((1, 3, 9, 1, 3, 9), 3, 8, 32)
    f = candidate_crop_fields(c, 48, 48, backbone_stride=8, norm="bn", width=99)
    assert f["dead_taps"] == 16 and f["rf_usable"] == 48 and f["rf_nominal"] == 431
    assert dead_tap_reason(f) == (
        "16 dead taps at 48×48 (they read only padding, so they would never train): stack.2 "
        "(dilation 9 on a 6×6 map: 8 of 9 taps), stack.5 (dilation 9 on a 6×6 map: 8 of 9 taps)")
    rep = net_crop_report(48, 48, Schedule((1, 3, 9, 1, 3, 9)), output_stride=8)
    assert f["dead_taps_net"] == rep.dead_taps
    ok = Candidate((1, 2, 5, 1, 2, 5), 3, 8, 32)
    assert candidate_crop_fields(ok, 48, 48)["dead_taps"] == 0
    assert dead_fraction([c, ok], 48, 48) == 0.5 and dead_fraction([], 48, 48) == 0.0


def test_live_rate_cap_is_exact() -> None:
    # 48×40 at OS 8: 6×5 maps; K = 3: rates up to 5 (h) and 4 (w) keep every tap live
    assert live_rate_cap(3, 8, 48, 40) == (5, 4)
    assert live_rate_cap(5, 8, 48, 40) == (2, 2) and live_rate_cap(1, 8, 48, 40) == (None, None)
    cands = space_from_dict(SPACE).draw(300, np.random.default_rng(7))
    b = batch_candidate_crop(cands, 48, 40)
    for i, c in enumerate(cands):
        cap_h, cap_w = live_rate_cap(c.kernel, c.output_stride, 48, 40)
        if cap_h is None:
            assert b["dead_taps"][i] == 0
            continue
        rh, rw = c.rates + c.tail, (c.rates_w or c.rates) + c.tail
        under = max(rh) <= cap_h and max(rw) <= cap_w
        assert under == (b["dead_taps"][i] == 0), c
