"""Peak memory of a block of code in this process, shared by the benchmarks in this folder.

CPU: the growth of the process's peak resident set (Linux VmHWM, reset through /proc/self/clear_refs
on entry) above its resident set at entry, minus file-backed pages (library code) mapped in meanwhile:
what the block's live data added. Where /proc cannot be reset (not Linux), ru_maxrss is the fallback,
which only sees peaks above the process's earlier ones. CUDA: torch.cuda.max_memory_allocated over the
block minus memory_allocated at entry.
"""

from __future__ import annotations

import resource
from pathlib import Path
from types import TracebackType

import torch


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS
        return True
    except OSError:
        return False


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.bytes``: the block's peak extra memory."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.bytes = 0

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._before = torch.cuda.memory_allocated()
            return self
        self._exact = _reset_peak_rss()
        if self._exact:
            self._before, self._file_before = _status_kib("VmRSS"), _status_kib("RssFile")
        else:
            self._before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated() - self._before
        elif self._exact:
            file_growth = _status_kib("RssFile") - self._file_before
            self.bytes = (_status_kib("VmHWM") - self._before - file_growth) * 1024
        else:
            self.bytes = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._before) * 1024
