"""Benchmarks: ``python -m shared.bench backbone [--quick]`` and ``python -m shared.bench engine``,
and the harness of the verticals' product benchmarks (``hv-med bench``, ``hv-rs bench``,
``hv-vsr bench``).

The top of the layering: it may import anything in ``shared``, nothing imports it but the
verticals' own benchmarks. ``registry`` lists the models, ``measure`` times and counts (and the
machine's other load), ``report`` writes every benchmark's md/json/png; ``backbone`` (with
``headline`` for its ratios and ``scaling`` for window vs global attention) and ``engine`` are
the benchmarks; ``cli`` is the command line. ``product`` runs a vertical's variants x seeds as
child processes (``child``) and reports them; ``seeds`` holds the statistics over seeds.
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
from .product import (
    Column,
    ProductBench,
    Variant,
    add_arguments,
    bench_main,
    product_report,
    run_rows,
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
from .seeds import Row, Run, Stat, format_stat, paired, speed_ratio

__all__ = [
    "ALL_CORES",
    "MODEL_SPECS",
    "OURS",
    "REFERENCE_CNN",
    "BenchResult",
    "Column",
    "MachineLoad",
    "ModelSpec",
    "ProductBench",
    "Report",
    "Row",
    "Run",
    "Section",
    "Stat",
    "Table",
    "TrainStep",
    "Variant",
    "add_arguments",
    "bench_main",
    "build_parser",
    "command_line",
    "count_macs",
    "format_stat",
    "inference_step",
    "machine_info",
    "main",
    "paired",
    "peak_memory",
    "product_report",
    "run_rows",
    "speed_ratio",
    "time_call",
    "write_report",
]
