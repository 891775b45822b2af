"""Resident memory of this process, for benchmarks and memory-bounded commands.

Read from Linux's ``/proc/self/status`` first: ``getrusage``'s ``ru_maxrss`` carries over the
parent's peak across fork + exec, so a child of a large process would report its parent's size.
"""

from __future__ import annotations

import resource
from pathlib import Path

__all__ = ["current_rss_mib", "peak_rss_mib"]


def _status_mib(field: str) -> float | None:
    """``field`` (``VmHWM``, ``VmRSS``) of ``/proc/self/status`` in MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (``VmHWM``; else ``ru_maxrss``)."""
    peak = _status_mib("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return peak


def current_rss_mib() -> float:
    """Resident memory of this process now, in MiB (``VmRSS``; else the peak)."""
    now = _status_mib("VmRSS")
    return peak_rss_mib() if now is None else now
