"""Segmentation data: embedded synthetic default and real data folders (folder/VOC/Cityscapes)."""

from nas_dil.data.base import SegData
from nas_dil.data.config import DataConfig
from nas_dil.data.errors import DataError
from nas_dil.data.load import load_data

__all__ = ["DataConfig", "DataError", "SegData", "load_data"]
