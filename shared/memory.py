"""Memory measurements for benchmarks and memory-bounded commands.

* Resident memory of this process (:func:`peak_rss_mib`, :func:`current_rss_mib`), read from
  Linux's ``/proc/self/status`` first: ``getrusage``'s ``ru_maxrss`` carries over the parent's
  peak across fork + exec, so a child of a large process would report its parent's size.
* Peak tensor memory of one call (:func:`peak_memory`), which ``hv-vsr upscale --max-memory``
  uses to size its tiles and the benchmarks report.

The lowest layer of ``shared``: it imports nothing of the project.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

__all__ = ["current_rss_mib", "peak_memory", "peak_rss_mib"]


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


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: the profiler's C++ start/stop lines would tear progress bars."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory(fn: Callable[[], object], device: str | torch.device = "cpu") -> int:
    """Bytes of tensors allocated during one call of ``fn`` and alive at its peak.

    Counts only what the call allocates (add what was alive before, e.g.
    :meth:`shared.bench.measure.TrainStep.resting_bytes`). On a GPU, CUDA's allocator
    statistics; on the CPU, which keeps no statistics, the torch profiler's allocation and free
    events in time order.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # The raw events: the public FunctionEvent list folds allocations into the op that made them.
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    alive = peak = 0
    for _, nbytes in events:
        alive += nbytes
        peak = max(peak, alive)
    return peak
