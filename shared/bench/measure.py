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
    "tree_cpu_seconds",
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


def _machine_busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine since boot (``/proc/stat``), or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait is busy.
    ticks = [int(value) for value in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children) from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone between listing /proc and reading it
        return None
    # The command name (field 2) may hold spaces and parentheses: fields start after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    # fields[1] is ppid; fields[11:15] are utime, stime, cutime, cstime (man 5 proc).
    ticks = sum(int(value) for value in fields[11:15])
    return int(fields[1]), ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds of a process and all its descendants, running or finished (Linux).

    A finished child that was waited for is in its parent's ``cutime``/``cstime``; a running
    descendant is read from its own ``/proc/<pid>/stat``. psutil is not a dependency, so the
    process tree is built here from ``/proc/*/stat``'s parent pids.
    """
    pid = os.getpid() if pid is None else pid
    parents: dict[int, list[int]] = {}
    seconds: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None:
                parents.setdefault(stat[0], []).append(int(entry.name))
                seconds[int(entry.name)] = stat[1]
    own = _proc_stat(pid)
    total, todo = (own[1] if own else 0.0), list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        total += seconds.get(child, 0.0)
        todo += parents.get(child, [])
    return total


class MachineLoad:
    """How many cores other processes kept busy while a benchmark ran (Linux only).

    Other processes' CPU is the machine's busy CPU minus this process's whole tree: the
    benchmark's own child processes (one per trained model in the product benchmarks) are the
    benchmark, not other load.
    """

    def __init__(self, read: Callable[[], tuple[float | None, float]] | None = None) -> None:
        """``read`` returns (machine busy seconds, this tree's CPU seconds); tests inject it."""
        self._read = read or (lambda: (_machine_busy_seconds(), tree_cpu_seconds()))
        self._start = self._read()
        self._started = time.perf_counter()

    def other_cores(self, wall: float | None = None) -> float | None:
        """Average number of cores busy with other processes since construction."""
        end = self._read()
        wall = time.perf_counter() - self._started if wall is None else wall
        if self._start[0] is None or end[0] is None or wall <= 0:
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
