"""Fixtures shared by the report, export and CLI tests: real SQLite studies that follow the
search's storage contract (tests/report/studies.py builds them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.report.studies import Trained, hand_made_study, shared_trained


@pytest.fixture(scope="session")
def hand_made_ro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-made study's output folder, shared: tests must not change it."""
    out = tmp_path_factory.mktemp("hand") / "out"
    hand_made_study(out)
    return out


@pytest.fixture
def hand_made(hand_made_ro: Path, tmp_path: Path) -> Path:
    """A private copy of the hand-made output folder (the study's out_dir attr still names
    the shared one; nothing in it depends on that)."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(hand_made_ro / "study.db", out / "study.db")
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return shared_trained(tmp_path_factory.getbasetemp())


@pytest.fixture(autouse=True)
def _node_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Data-check verdicts and decoded-image caches go to a temporary folder, never the
    user's ~/.cache (subprocesses inherit the variable)."""
    monkeypatch.setenv("NAS_DIL_CACHE", str(tmp_path_factory.mktemp("nas-dil-cache")))
