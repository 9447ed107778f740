"""Fixtures shared by the report, export and CLI tests: real SQLite studies that follow the
search's storage contract (tests/report/studies.py builds them)."""

from __future__ import annotations

import os
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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true",
                     help="also run the tests marked slow (CI runs them: CI is set there)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A run on a developer's machine skips the `slow` tests (the default run stays under
    ~10 minutes on 2 cores); CI (the `CI` variable, set by every CI service) runs them all, as
    do ``--run-slow`` and any ``-m`` expression (``-m slow`` runs only them)."""
    if os.environ.get("CI") or config.getoption("--run-slow") or config.getoption("markexpr"):
        return
    skip = pytest.mark.skip(reason="slow: runs in CI (CI=1), with --run-slow or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
