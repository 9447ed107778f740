"""Does each degridding remedy (docs/theory.md) recover the mIoU a gridded schedule lost?

Trains, at the quickstart's own settings (read from studies/quickstart.toml's [data] and
[train]: 48 px, today 10 epochs of 12-image steps at lr 0.005; output stride 4, width 16) and
3 seeds, the hole-free [1,3,5], the gridded [3,3,3], and
[3,3,3] with each remedy; prints a markdown table (docs/synthetic_data.md).

    .venv/bin/python scripts/remedies_table.py
"""

import statistics
import sys
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from calibrate_synthetic import trial_config  # noqa: E402

KINDS = {
    "hole-free [1,3,5]": dict(rates=(1, 3, 5)),
    "gridded [3,3,3]": dict(rates=(3, 3, 3)),
    "gridded + DRN tail [2,1]": dict(rates=(3, 3, 3), tail=(2, 1)),
    "gridded, smoothed (Wang & Ji)": dict(rates=(3, 3, 3), smooth=True),
    "gridded h, [1,3,5] w (per-axis)": dict(rates=(3, 3, 3), rates_w=(1, 3, 5)),
}


def job(args: tuple[str, int]) -> tuple[str, int, float, int, int]:
    kind, seed = args
    from nas_dil.spaces import Candidate
    from nas_dil.train import TrialConfig, run_trial

    c = Candidate(kernel=3, output_stride=4, width=16, **KINDS[kind])
    cfg = TrialConfig.from_dict(trial_config(REPO / "studies" / "quickstart.toml", 4, 16, 1))
    r = run_trial(cfg, c.schedule, seed=seed).result
    return kind, seed, r.miou, r.flops, r.holes


if __name__ == "__main__":
    jobs = [(k, s) for k in KINDS for s in (0, 1, 2)]
    with get_context("spawn").Pool(2) as p:
        res = p.map(job, jobs)
    rows = []
    for k in KINDS:
        m = [r[2] for r in res if r[0] == k]
        fl = next(r[3] for r in res if r[0] == k)
        ho = next(r[4] for r in res if r[0] == k)
        rows.append((k, statistics.mean(m), statistics.stdev(m), fl, ho))
    print("| schedule | mIoU (3 seeds) | GFLOPs | 2-D holes |\n| --- | --- | --- | --- |")
    for k, mu, sd, fl, ho in rows:
        print(f"| {k} | {mu:.3f} ± {sd:.3f} | {fl / 1e9:.5f} | {ho} |")
