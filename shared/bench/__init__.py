"""Benchmarks: ``python -m shared.bench backbone [--quick]`` and ``python -m shared.bench engine``.

The top of the layering: it may import anything in ``shared``, nothing imports it but the
verticals' own benchmarks. ``registry`` lists the models, ``measure`` times and counts,
``report`` writes every benchmark's md/json/png; ``backbone`` (with ``headline`` for its ratios
and ``scaling`` for window vs global attention) and ``engine`` are the benchmarks; ``cli`` is
the command line.
"""

# ruff: noqa: E402 (the logger must be quiet before torch.utils.benchmark is first imported)
import logging

# torch.utils.benchmark imports cpp_extension, which logs on every CPU-only machine that it found
# no CUDA runtime; benchmarks compile nothing, so the line is only noise in the report.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

from .cli import build_parser, main
from .measure import (
    ALL_CORES,
    MachineLoad,
    TrainStep,
    count_macs,
    inference_step,
    peak_memory,
    time_call,
)
from .registry import MODEL_SPECS, REFERENCE_CNN, ModelSpec
from .report import (
    OURS,
    BenchResult,
    Report,
    Section,
    Table,
    command_line,
    machine_info,
    write_report,
)

__all__ = [
    "ALL_CORES",
    "MODEL_SPECS",
    "OURS",
    "REFERENCE_CNN",
    "BenchResult",
    "MachineLoad",
    "ModelSpec",
    "Report",
    "Section",
    "Table",
    "TrainStep",
    "build_parser",
    "command_line",
    "count_macs",
    "inference_step",
    "machine_info",
    "main",
    "peak_memory",
    "time_call",
    "write_report",
]
