"""Measurements every benchmark shares: call time, forward MACs, peak memory, machine load.

Timing goes through :class:`torch.utils.benchmark.Timer`: it runs at the thread count it is
given and restores the caller's, sizes blocks of calls so the clock's overhead vanishes, and on
a GPU synchronises before reading the clock. ``peak_memory`` lives in :mod:`shared.memory`
(commands below the bench layer size their work with it) and is re-exported here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.benchmark import Timer, set_torch_threads

from ..memory import peak_memory

__all__ = [
    "ALL_CORES",
    "MachineLoad",
    "TrainStep",
    "count_macs",
    "inference_step",
    "peak_memory",
    "resolve_threads",
    "tensor_bytes",
    "time_call",
]

ALL_CORES = torch.get_num_threads()
"""torch's default thread count (one per core), read when this module is first imported."""


def resolve_threads(threads: int) -> int:
    """``threads``, with 0 meaning :data:`ALL_CORES`."""
    return threads or ALL_CORES


def time_call(
    fn: Callable[[], object], threads: int, *, warmup: int = 1, min_time: float = 1.0
) -> list[float]:
    """Seconds per call of ``fn`` at ``threads`` torch threads, one value per timed block.

    ``warmup`` untimed calls run first (a first train step also allocates the optimiser state
    and picks kernels); then ``Timer.blocked_autorange``, after one more untimed call to size
    its blocks, times blocks of calls until ``min_time`` seconds have passed (at least one).
    """
    with set_torch_threads(threads):
        for _ in range(warmup):
            fn()
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    return list(timer.blocked_autorange(min_run_time=min_time).times)


def inference_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One eval-mode forward pass of ``x`` under ``torch.inference_mode``, as a callable."""
    model.eval()

    def step() -> None:
        with torch.inference_mode():
            model(x)

    return step


class TrainStep:
    """One training step as a callable: forward, cross-entropy, backward, AdamW update.

    ``target`` holds class labels shaped like the logits without their class axis, so the
    same step trains classifiers ``(B, C)`` and segmenters ``(B, C, *spatial)``.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> None:
        self.model, self.x, self.target = model.train(), x, target
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.loss_fn = nn.CrossEntropyLoss()

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss_fn(self.model(self.x), self.target).backward()
        self.optimizer.step()

    def resting_bytes(self) -> int:
        """Bytes alive between steps once gradients are freed: inputs, weights, AdamW state."""
        states = [t for s in self.optimizer.state.values() for t in s.values()]
        return tensor_bytes([self.x, self.target, *self.model.parameters(), *states])


def tensor_bytes(tensors: list[object]) -> int:
    """Total storage of the tensors in ``tensors`` (other objects are skipped)."""
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def count_macs(model: nn.Module, x: torch.Tensor) -> tuple[float, Any]:
    """Forward multiply-accumulates for the whole batch ``x``, and the model's output.

    FlopCounterMode counts matmuls, convolutions and attention (not elementwise ops or
    norms); MACs are its FLOPs / 2.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    # The CPU's fused attention kernel has no FLOP formula, so it would count as zero; the math
    # backend decomposes attention into counted matmuls.
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = model(x)
    return counter.get_total_flops() / 2, out


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process), or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait is busy.
    ticks = [int(value) for value in fields[:8]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


class MachineLoad:
    """How many cores other processes kept busy while a benchmark ran (Linux only)."""

    def __init__(self) -> None:
        self._start = _cpu_seconds()
        self._started = time.perf_counter()

    def other_cores(self) -> float | None:
        """Average number of cores busy with other processes since construction."""
        end, wall = _cpu_seconds(), time.perf_counter() - self._started
        if self._start is None or end is None or wall <= 0:
            return None
        others = (end[0] - self._start[0]) - (end[1] - self._start[1])
        return max(others, 0.0) / wall

    @staticmethod
    def warnings(others: float | None, threads: int) -> list[str]:
        """A warning when other processes competed for the cores a run used."""
        cpus = os.cpu_count() or 1
        if others is None or others + threads <= cpus + 0.25:
            return []
        return [
            f"other processes kept {others:.2f} of the {cpus} CPUs busy on average while this "
            f"run used up to {threads} torch threads: absolute numbers are low and noisy "
            "(ratios within this run are less affected)"
        ]
