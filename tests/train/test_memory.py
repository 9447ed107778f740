"""A trial's recorded peak memory is its own (issue 23 item 17): Ray runs many trials in one
worker process, and a later, smaller trial must not report an earlier one's peak."""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
import pytest
import torch

from nas_dil.data import DataConfig, load_data
from nas_dil.models import ArchConfig
from nas_dil.train import TrainConfig, TrialConfig, run_trial
from nas_dil.train.memory import PeakMemory

BALLAST = 256 * 2**20  # bytes the first trial holds for a moment (resident: every page set)
CFG = TrialConfig(ArchConfig(output_stride=4, stem_width=8, width=8),
                  DataConfig(image_size=24, n_train=16, n_val=8),
                  TrainConfig(epochs=1, batch_size=8, threads=1, device="cpu"))

resets = pytest.mark.skipif(PeakMemory(torch.device("cpu")).kind != "process_rss",
                            reason="needs /proc/self/clear_refs (Linux)")


@resets
def test_the_second_trial_of_a_process_does_not_inherit_the_first_ones_peak() -> None:
    data = load_data(CFG.data)

    def heavy(i: int, miou: float, partial: dict[str, Any]) -> bool:
        # a mapping of its own, every page written (resident), unmapped on return: malloc
        # may keep a freed block resident (a CI run saw both trials report one peak)
        with mmap.mmap(-1, BALLAST) as m:
            ballast = np.frombuffer(m, dtype=np.uint8)
            ballast.fill(1)
            assert int(ballast[-1]) == 1
            del ballast  # the buffer export ends before the unmap
        return False

    first = run_trial(CFG, "1,2", seed=0, data=data, callback=heavy).result
    second = run_trial(CFG, "1,2", seed=0, data=data).result
    assert first.peak_mem_kind == second.peak_mem_kind == "process_rss"
    assert first.peak_mem_bytes > BALLAST
    # the same trial without the ballast: its own peak, well below the first one's
    assert 0 < second.peak_mem_bytes < first.peak_mem_bytes - BALLAST // 2


@resets
def test_peak_counts_from_the_start_not_below_it() -> None:
    meter = PeakMemory(torch.device("cpu"))
    held = np.ones(BALLAST // 4, dtype=np.uint8)
    assert meter.peak() >= held.nbytes  # the resident set now holds at least this
