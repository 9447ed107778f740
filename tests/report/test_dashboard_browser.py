"""`nas-dil dashboard` and `report.html` in a real headless Chromium (Debian's `chromium`).

The dashboard runs as the CLI runs it (its own process, stopped here); Chromium loads the
study page, the test checks the rendered DOM (study loaded, Pareto view drawn, our figures
attached, infeasible trial recognised) and saves a screenshot.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nas_dil.report import write_report

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (bash scripts/setup.sh --dev installs it as root)",
)


def _chromium(tmp: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}",
           "--virtual-time-budget=10000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def dashboard(hand_made: Path) -> Iterator[str]:
    """`nas-dil dashboard OUT --port 0` in its own process; yields the study's URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas_dil", "dashboard", str(hand_made), "--port", "0",
         "--refresh", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/\S+)", line)
        assert m, f"no URL in {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        url = m.group(1)
        base = url.split("/dashboard")[0]
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/meta", timeout=5).read()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise
        assert rc == 0, proc.stderr.read() if proc.stderr else rc


def _png_is_non_trivial(path: Path) -> None:
    from PIL import Image

    assert path.stat().st_size > 20_000
    with Image.open(path) as im:
        colours = im.convert("RGB").resize((200, 200)).getcolors(maxcolors=200 * 200)
    assert colours is not None and len(colours) > 50  # not a blank page


@needs_chromium
def test_dashboard_in_a_real_browser(dashboard: str, tmp_path: Path) -> None:
    dom = _chromium(tmp_path, dashboard, "--window-size=1400,2400", "--dump-dom").stdout
    assert "demo (id=1)" in dom  # the study loaded
    pareto = dom.split('id="graph-pareto-front"', 1)
    assert len(pareto) == 2, "no Pareto front view"
    # the Pareto view is drawn by plotly: an svg with one point per COMPLETE trial (5), at least
    assert pareto[1][:80_000].count('class="point"') >= 5
    for fig in ("miou_vs_gflops", "miou_vs_rf", "hypervolume", "miou_curves",
                "coverage_trial_0", "coverage_trial_1", "coverage_trial_6"):
        assert f'id="user-defined-plot:nasdil-{fig}"' in dom, fig
    assert ">Infeasible<" in dom or "Infeasible" in dom  # trial 3's named constraint is seen
    shot = Path(os.environ.get("NAS_DIL_SCREENSHOT_DIR", tmp_path)) / "dashboard.png"
    r = _chromium(tmp_path, dashboard, "--window-size=1400,2400", f"--screenshot={shot}")
    assert shot.exists(), r.stderr[-2000:]
    _png_is_non_trivial(shot)


@needs_chromium
def test_report_html_opens_offline(hand_made: Path, tmp_path: Path) -> None:
    html = write_report(hand_made).html
    dom = _chromium(tmp_path, html.as_uri(), "--dump-dom").stdout
    # every figure drawn by the inlined plotly.js (nothing fetched from a network)
    for fig in ("miou_vs_gflops", "miou_vs_rf", "hypervolume", "miou_curves"):
        part = dom.split(f'id="plot-{fig}"', 1)
        assert len(part) == 2 and 'class="main-svg"' in part[1][:20_000], fig
    shot = tmp_path / "report.png"
    _chromium(tmp_path, html.as_uri(), "--window-size=1300,2400", f"--screenshot={shot}")
    _png_is_non_trivial(shot)
