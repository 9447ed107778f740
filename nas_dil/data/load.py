"""load_data: the one entry point; validates everything before any training starts."""

from __future__ import annotations

import torch

from nas_dil.data.base import SegData
from nas_dil.data.config import DataConfig


def load_data(cfg: DataConfig, device: str | torch.device = "cpu", split: str = "train"
              ) -> SegData:
    """Build the data set `cfg` describes on `device`; raises DataError on any bad input.

    ``split``: "train" for training (both splits); "val" or "all" load only what
    `nas-dil eval` measures on (real folders only).
    """
    cfg.validate()
    if cfg.source == "synthetic":
        if split != "train":
            from nas_dil.data.errors import DataError

            raise DataError("synthetic data: evaluate on a data folder (--data DIR)")
        from nas_dil.data.synthetic import SyntheticData

        return SyntheticData(cfg, device)
    from nas_dil.data.folders import FolderData

    return FolderData(cfg, device, split)
