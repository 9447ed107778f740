"""The 2-D count-map heat map of one schedule: how often each input pixel reaches the centre
unit. Holes (never reached) are drawn in a colour no count can take, so gridding shows.

Compute (`coverage_map_data`, plain numbers) then render (`plot_coverage_map`, thin).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nas_dil.errors import UserError
from nas_dil.schedule import Schedule, count_map_2d, coverage

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.image import AxesImage

__all__ = ["CoverageMapData", "coverage_map_data", "plot_coverage_map"]

ANNOTATE_MAX_RF = 15  # print the counts in the cells (like the seed's tables) up to this size


@dataclass(frozen=True)
class CoverageMapData:
    title: str
    counts: np.ndarray  # RF×RF path counts
    holes: int
    rf: int
    coverage: float


def coverage_map_data(s: Schedule) -> CoverageMapData:
    cov = coverage(s)
    return CoverageMapData(
        title=f"rates {s}  K={s.uniform_kernel or list(s.kernels)}",
        counts=count_map_2d(s),
        holes=cov.holes,
        rf=cov.rf,
        coverage=cov.coverage,
    )


def draw_coverage_map(ax: Axes, d: CoverageMapData) -> AxesImage:
    """Draw onto a matplotlib Axes; returns the image for a colour bar."""
    from matplotlib import colors

    counts = d.counts.astype(np.float64)
    masked = np.ma.masked_equal(counts, 0)
    cmap = colors.LinearSegmentedColormap.from_list(
        "paths", ["#fee8c8", "#e34a33", "#7f0000"]
    ).with_extremes(bad="#2b8cbe")  # holes: blue, far from every count colour
    norm = colors.LogNorm(vmin=1, vmax=max(2.0, counts.max()))
    half = d.rf // 2
    extent = (-half - 0.5, half + 0.5, half + 0.5, -half - 0.5)
    im = ax.imshow(masked, cmap=cmap, norm=norm, extent=extent, interpolation="nearest")
    if d.rf <= ANNOTATE_MAX_RF:
        for y in range(d.rf):
            for x in range(d.rf):
                c = int(counts[y, x])
                ax.text(x - half, y - half, str(c), ha="center", va="center", fontsize=6,
                        color="white" if c == 0 or c > counts.max() / 4 else "black")
    ax.set_title(f"{d.title}\nRF {d.rf}×{d.rf}, coverage {100 * d.coverage:.1f} %, "
                 f"{d.holes} holes (blue)", fontsize=9)
    ax.set_xlabel("offset x (stack-input px)")
    ax.set_ylabel("offset y")
    return im


def plot_coverage_map(d: CoverageMapData, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UserError(f"--plot {path}: use a .png, .svg or .pdf file name")
    if not path.parent.exists():
        raise UserError(f"--plot {path}: folder {path.parent} does not exist")
    fig, ax = plt.subplots(figsize=(5.5, 5))
    im = draw_coverage_map(ax, d)
    fig.colorbar(im, ax=ax, label="paths to the centre unit (log)")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as e:  # a read-only folder, a file in the way
        raise UserError(f"--plot {path}: cannot write ({e.strerror or e})") from None
    finally:
        plt.close(fig)
    return path
