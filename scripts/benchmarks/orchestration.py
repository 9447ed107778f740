"""scripts/bench_orchestration.py (run as a subprocess, its JSON kept): per-trial overhead of
driver + Ray + storage, trials/s with 1-16 workers on a simulated 4-node Ray cluster, and the
sampler's ask latency with 16 trials in flight. Targets <= 1 % of a 30 s trial, scaling >= 0.9
N, ask <= 10 ms."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from benchmarks._common import REPO, SCRIPTS, met


def run(quick: bool) -> dict[str, Any]:
    """scripts/bench_orchestration.py in a subprocess (it starts and stops its own Ray
    cluster); its --json result, as is."""
    cmd = [sys.executable, str(SCRIPTS / "bench_orchestration.py"), "--json"]
    if quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"bench_orchestration.py exited {proc.returncode}: {tail[0]}"}
    text = proc.stdout[proc.stdout.index("{"):]  # the JSON document (Ray may log before it)
    out: dict[str, Any] = json.loads(text)
    o = out["overhead"]
    a = out.get("ask", {})
    out["summary"] = {
        "ask_ms_16_in_flight": round(a.get("steady_median_s", float("nan")) * 1000, 1),
        "ask_p90_ms": round(a.get("steady_p90_s", float("nan")) * 1000, 1),
        "ask_target_met": a.get("target_met", False),
        "overhead_ms": round(o["overhead_per_trial_s"] * 1000, 1),
        "share_of_30s_trial": o["share_of_30s_trial"],
        "overhead_target_met": o["target_met"],
        "efficiency": {r["workers"]: round(r["efficiency"], 3) for r in out["scaling"]},
        "scaling_target_met": all(r["efficiency"] >= 0.9 for r in out["scaling"]),
    }
    return out


def show(r: dict[str, Any]) -> None:
    if "error" in r:
        print(f"  {r['error']}")
        return
    s = r["summary"]
    print(f"  overhead {s['overhead_ms']} ms/trial = {s['share_of_30s_trial'] * 100:.2f} % of a "
          f"30 s trial (target <= 1 % {met(s['overhead_target_met'])})")
    print(f"  hvi ask with 16 trials in flight: {s['ask_ms_16_in_flight']} ms median, "
          f"p90 {s['ask_p90_ms']} ms (target <= 10 ms {met(s['ask_target_met'])})")
    print(f"  scaling efficiency by workers {s['efficiency']} "
          f"(target >= 0.9 {met(s['scaling_target_met'])})")
