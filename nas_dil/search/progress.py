"""The live status line of a search (stderr): done / running / failed / pruned, Pareto-front
size, hypervolume, the seed noise once known (``noise ±std``), the confirmation looks after
``n_trials`` (``confirm 2/6``), elapsed and ETA. On a terminal it rewrites one line;
otherwise it prints a line whenever a trial finishes. `SearchSummary`: what a finished search
reports (``--json``)."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

__all__ = ["Progress", "SearchSummary", "Status", "fmt_duration"]


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


@dataclass
class Status:
    n_trials: int
    done: int = 0  # finished trials that count towards n_trials
    running: int = 0
    complete: int = 0
    pruned: int = 0  # stopped early
    failed: int = 0
    infeasible: int = 0  # never trained (constraints); not counted in done
    reused: int = 0  # duplicates answered from a stored result
    repeats: int = 0  # further looks at a tried candidate, trained from the next seed
    confirm_done: int = 0  # confirmation looks finished (after n_trials; not in done)
    confirm_total: int = 0  # confirmation looks finished + still needed, capped (0: none)
    noise: float | None = None  # the pooled seed std of mIoU (None: unknown)
    front: int = 0
    hypervolume: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float | None = None

    def line(self) -> str:
        extra = ""
        if self.infeasible:
            extra += f" · infeasible {self.infeasible}"
        if self.reused:
            extra += f" · reused {self.reused}"
        if self.repeats:
            extra += f" · repeats {self.repeats}"
        if self.confirm_total:
            extra += f" · confirm {self.confirm_done}/{self.confirm_total}"
        noise = "" if self.noise is None else f" · noise ±{self.noise:.4f}"
        return (f"[{self.done}/{self.n_trials}] running {self.running} · complete "
                f"{self.complete} · pruned {self.pruned} · failed {self.failed}{extra} · "
                f"front {self.front} · HV {self.hypervolume:.4f}{noise} · "
                f"{fmt_duration(self.elapsed_s)} elapsed · ETA {fmt_duration(self.eta_s)}")


class Progress:
    """Renders `Status` to ``stream`` (disabled: renders nothing)."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None,
                 min_interval_s: float = 0.25) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._width = 0

    def show(self, status: Status, event: str | None = None) -> None:
        """Redraw (terminal) or, when ``event`` is given, print it with the status."""
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if event:
                self._clear()
                self.stream.write(event + "\n")
            if event or now - self._last >= self.min_interval_s:
                text = status.line()
                self.stream.write("\r" + text + " " * max(0, self._width - len(text)))
                self._width = len(text)
                self._last = now
        elif event:
            self.stream.write(f"{event}\n  {status.line()}\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def _clear(self) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0

    def close(self, status: Status) -> None:
        if not self.enabled:
            return
        if self.tty:
            self._clear()
        self.stream.write(status.line() + "\n")
        self.stream.flush()


@dataclass
class SearchSummary:
    """What a search did; ``to_dict()`` is the ``--json`` output."""

    study_name: str
    storage: str  # URL, password hidden
    out_dir: str
    n_trials: int
    done: int
    complete: int
    pruned: int
    failed: int
    infeasible: int
    reused: int
    front: list[int]  # trial numbers of the Pareto front (feasible COMPLETE trials)
    hypervolume: float  # normalised (see nas_dil.search.objectives)
    elapsed_s: float
    interrupted: bool = False
    exhausted: bool = False  # the sampler tried every candidate (brute force)
    warnings: list[str] = field(default_factory=list)
    loop_s: float = 0.0  # from the first ask to the last tell (set-up excluded)
    driver_s: dict[str, float] = field(default_factory=dict)  # driver time: ask, collect
    feature_cache: dict[str, Any] | None = None  # [train] freeze: folders, bytes, built, build_s
    repeats: int = 0  # finished trials that were further looks ([sampler] repeats)
    # the seed noise (`looks.pooled_noise` of mIoU: name, std, dof, n_candidates); None:
    # unknown (no candidate trained with two seeds or more)
    noise: dict[str, Any] | None = None
    confirm_seeds: int = 0  # seeds a front candidate needs ([confirm] seeds; < 2: off)
    confirmed: int = 0  # confirmation looks finished (after n_trials; not in done)
    confirm_cap: int | None = None  # the cap on confirmation looks this run (None: none ran)
    unconfirmed: list[int] = field(default_factory=list)  # front trials with < seeds looks

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
