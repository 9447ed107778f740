"""TensorBoard curves of a study, written by the driver as it tells each trial (the workers
write nothing): under ``OUT/tb/``, one run per trial (``trial_0007``: ``trial/miou`` and
``trial/loss`` at each evaluation, ``trial/final_miou`` once) and the study's run
(``study``: ``study/hypervolume`` after each trial told, at the trial's number).

Everything comes from the record the driver stores (`records.TrialRecord`'s result), so a
reused or resumed trial shows its stored curves. The writer is torch's
(``torch.utils.tensorboard``), which needs the ``tensorboard`` package (``pip install
'nas-dil[tensorboard]'``): imported on the first trial told; without it the driver notes it in
one line and the search goes on without curves. Off unless asked for (``run_search(...,
tensorboard=True)``, ``nas-dil search --tensorboard``): a study's folder holds only what was
asked for. ``tensorboard --logdir OUT/tb`` shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas_dil.search.records import TrialRecord

__all__ = ["INSTALL", "Board"]

INSTALL = "pip install 'nas-dil[tensorboard]'"


class Board:
    """The study's TensorBoard folder (``root`` None: off, every call a no-op)."""

    def __init__(self, root: Path | None, note: Callable[[str], None] = print) -> None:
        self.root = root
        self.note = note
        self._writer: Any = None  # SummaryWriter class, once imported
        self._study: Any = None  # the study run's writer

    def _writer_class(self) -> Any:
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                self.note(f"tensorboard: not written ({e}); install it with {INSTALL}")
                self.root = None
                return None
            self._writer = SummaryWriter
        return self._writer

    def told(self, number: int, record: TrialRecord, state: str,
             hypervolume: Callable[[], tuple[list[int], float]]) -> None:
        """Trial ``number`` was told ``state``: its curves, and the study's hypervolume after
        it (``hypervolume()``: the driver's front, numbers and normalised hypervolume)."""
        if self.root is None or self._writer_class() is None:
            return
        assert self.root is not None  # for mypy: _writer_class may have turned it off
        result = record.result
        with self._writer(str(self.root / f"trial_{number:04d}")) as w:
            for i, (m, lo) in enumerate(zip(result.get("miou_curve") or [],
                                            result.get("loss_curve") or [], strict=False)):
                w.add_scalar("trial/miou", m, i + 1)
                w.add_scalar("trial/loss", lo, i + 1)
            if state == "complete" and "miou" in result:
                w.add_scalar("trial/final_miou", result["miou"], number)
        if self._study is None:
            self._study = self._writer(str(self.root / "study"))
        self._study.add_scalar("study/hypervolume", hypervolume()[1], number)
        self._study.flush()

    def close(self) -> None:
        if self._study is not None:
            self._study.close()
            self._study = None
