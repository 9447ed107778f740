"""The docs: a README read in one screen with the two commands as CI runs them, a study-file
reference generated from the config types (every key of every table), and a site that builds
with ``mkdocs build --strict``."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from nas_dil.search.config import _TOP
from nas_dil.search.objectives import CONSTRAINT_METRICS
from nas_dil.search.records import METRICS
from nas_dil.search.samplers import SAMPLERS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
QUICKSTART = "bash scripts/setup.sh && .venv/bin/nas-dil search studies/quickstart.toml"
TESTS = "bash scripts/setup.sh --dev && .venv/bin/python -m pytest"


def _gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nas_dil_gen_docs",
                                                  REPO / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _section(page: str, name: str) -> str:
    return page.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_is_one_screen_with_both_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert f"```bash\n{QUICKSTART}\n```" in text
    assert f"```bash\n{TESTS}\n```" in text


def test_ci_runs_the_readme_test_command() -> None:
    assert (REPO / ".ci" / "run").read_text().rstrip().splitlines()[-1] == TESTS


def test_study_file_reference_lists_every_key_of_every_table() -> None:
    gen = _gen_docs()
    page = gen.study_file_page()
    top = _section(page, "Top-level keys")
    for key in _TOP:  # a new top-level key or table must be documented
        assert f"| `{key}` |" in top, key
    tables = gen.tables()
    assert set(tables) | set(gen.SPECIAL) == {k for k in _TOP if f"table, [below](#{k})"
                                              in top}
    for name, (cls, exclude) in tables.items():
        body = _section(page, name)
        keys = [f.name for f in dataclasses.fields(cls) if f.name not in exclude]
        assert keys, name
        for key in keys:
            assert f"| `{key}` |" in body, f"{name}.{key}"
        for key in exclude:
            assert f"| `{key}` |" not in body, f"{name}.{key} is set per net, not in a study"
    for m in CONSTRAINT_METRICS:
        for kind in ("min", "max"):
            assert f"| `{kind}_{m}` |" in _section(page, "constraints")
    for m in METRICS:
        assert f"| `{m}` |" in _section(page, "objectives")
    for s in SAMPLERS:
        assert f"| `{s}` |" in _section(page, "sampler")


@pytest.mark.parametrize(("table", "key", "default", "comment"), [
    # hand-read from the sources: nas_dil/search/config.py, nas_dil/train/config.py
    ("parallel", "max_in_flight", "2", "trials running at once (the driver keeps this many busy)"),
    ("confirm", "seeds", "3", "seeds each front candidate needs after n_trials (0, 1: no "
                              "confirmation)"),
    ("train", "batch_size", "16", "images per step"),
])
def test_reference_rows_carry_default_range_and_comment(table: str, key: str, default: str,
                                                        comment: str) -> None:
    body = _section(_gen_docs().study_file_page(), table)
    row = next(r for r in body.splitlines() if r.startswith(f"| `{key}` |"))
    assert f"| `{default}` |" in row
    assert comment in row
    assert "an integer" in row


def test_cli_reference_has_every_subcommand() -> None:
    from nas_dil.cli import COMMANDS

    page = _gen_docs().cli_page()
    for name in COMMANDS:
        assert f"\n## nas-dil {name}\n\n```text\nusage: nas-dil {name}" in page, name


@pytest.mark.slow
def test_docs_site_builds_strictly(tmp_path: Path) -> None:
    _gen_docs().generate()  # the hook does it too; here a failure names the generator
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(REPO / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "reference" / "study_file" / "index.html").is_file()
