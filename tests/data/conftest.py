"""Fixtures: tiny data sets in each layout, built fresh in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._builders import make_cityscapes, make_folder, make_voc


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "plain", n=10)


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    return make_voc(tmp_path / "voc")


@pytest.fixture
def city_root(tmp_path: Path) -> Path:
    return make_cityscapes(tmp_path / "city")
