"""A trial's own peak memory, not its process's: Ray reuses a worker process for many trials,
so a lifetime peak would hand one trial's peak on to every later trial of the process.

- CUDA: the allocator's peak, its counter reset when the trial starts (``cuda_allocated``).
- CPU on Linux: the process's peak resident set since the trial started (``process_rss``):
  writing "5" to ``/proc/self/clear_refs`` resets the kernel's high-water mark (``VmHWM``)
  to the current RSS (proc(5)); ``VmHWM`` is read at the end.
- Elsewhere (macOS, Windows, a read-only /proc): the process's lifetime peak, said so by its
  kind, ``process_rss_lifetime``.

Data-loading worker processes are not counted (their own processes).
"""

from __future__ import annotations

import resource
import sys

import torch

__all__ = ["PeakMemory"]

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


class PeakMemory:
    """Started with the trial (``PeakMemory(device)``); `peak()` at its end."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.kind = "cuda_allocated"
        else:
            self.kind = "process_rss" if _reset_rss_peak() else "process_rss_lifetime"

    def peak(self) -> int:
        """Bytes: the peak since the start (see the module docstring for each kind)."""
        if self.kind == "cuda_allocated":
            return int(torch.cuda.max_memory_allocated(self.device))
        if self.kind == "process_rss":
            hwm = _rss_high_water()
            if hwm is not None:
                return hwm
        rss = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return rss if sys.platform == "darwin" else rss * 1024  # macOS: bytes; else KiB


def _reset_rss_peak() -> bool:
    """Reset the kernel's RSS high-water mark of this process; False where it cannot."""
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
    except OSError:
        return False
    return _rss_high_water() is not None


def _rss_high_water() -> int | None:
    """``VmHWM`` of /proc/self/status in bytes, or None."""
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # "VmHWM:  123456 kB"
    except (OSError, ValueError, IndexError):
        return None
    return None
