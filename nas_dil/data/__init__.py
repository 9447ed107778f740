"""Segmentation data: embedded synthetic default and real data folders (folder/VOC/Cityscapes).

Names load on first use: a study file parse needs `DataConfig`, not torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nas_dil._lazy import lazy_getattr

if TYPE_CHECKING:
    from nas_dil.data.base import SegData
    from nas_dil.data.config import DataConfig
    from nas_dil.data.errors import DataError
    from nas_dil.data.load import load_data

_LAZY = {"SegData": "nas_dil.data.base", "DataConfig": "nas_dil.data.config",
         "DataError": "nas_dil.data.errors", "load_data": "nas_dil.data.load"}

__all__ = ["DataConfig", "DataError", "SegData", "load_data"]

__getattr__ = lazy_getattr(__name__, _LAZY)
