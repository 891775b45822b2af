"""The ``python -m shared.bench`` command line: ``backbone [--quick]`` and ``engine``.

Parsing, validation and the runs' bookkeeping (threads, load, output folder); the measuring
and the reports live in :mod:`shared.bench.backbone`, :mod:`shared.bench.scaling` and
:mod:`shared.bench.engine`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.benchmark import set_torch_threads

from . import engine
from .backbone import FULL_DEFAULTS, QUICK_DEFAULTS, Settings, build_report, measure_all
from .measure import MachineLoad, resolve_threads
from .registry import (
    HEADLINE_BASELINES,
    HEADLINE_MODEL,
    HEADLINE_TRAIN_TARGET,
    MODEL_SPECS,
    REFERENCE_CNN,
    ModelSpec,
)
from .report import OURS, command_line, write_report
from .scaling import SIDES, ScalingPoint, measure_scaling

__all__ = ["build_parser", "main", "run_backbone", "run_engine"]

FULL_OUT, QUICK_OUT = "docs/benchmarks", "runs/bench"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subcommand per benchmark."""
    parser = argparse.ArgumentParser(
        prog="python -m shared.bench",
        description="Benchmarks for hybridvision. Run from the repository root; CPU, fp32, "
        "random weights only. Each writes <name>.md, <name>.json and <name>.png.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_backbone(commands)
    _add_engine(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "validate"):
        args.validate(parser, args)
    return args.handler(args, argv)


def _add_backbone(commands: Any) -> None:
    """The ``backbone`` subcommand."""
    parser = commands.add_parser(
        "backbone",
        help="speed and size of our backbones against timm and MONAI models",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_description(),
    )
    parser.add_argument("--quick", action="store_true", help="short run (see above)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        metavar="DIR",
        help=f"where the files go (default {FULL_OUT}, or {QUICK_OUT} with --quick)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="NAME",
        help="only these models (by name); overrides the --quick selection",
    )
    parser.add_argument("--size", type=int, metavar="N", help="2D image side (default 224)")
    parser.add_argument("--batch", type=int, metavar="N", help="2D batch size (default 8)")
    parser.add_argument("--size-3d", type=int, metavar="N", help="3D side (default 96, quick 64)")
    parser.add_argument("--batch-3d", type=int, metavar="N", help="3D batch size (default 1)")
    parser.add_argument(
        "--warmup", type=int, metavar="N", help="extra untimed calls per measurement (default 0)"
    )
    parser.add_argument(
        "--min-time",
        type=float,
        metavar="S",
        help="seconds timed per measurement, at least one call (both 2D and 3D)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 0],
        metavar="N",
        help="torch thread counts, 0 = torch's default of one per core (default: 1 0). The "
        "first measures every model; the others re-measure our 2D presets and resnet18. One "
        "thread is the stable number: multi-threaded timings collapse when another process "
        "shares the cores.",
    )
    parser.add_argument("--no-2d", action="store_true", help="skip the 2D models")
    parser.add_argument("--no-3d", action="store_true", help="skip the 3D models")
    parser.add_argument(
        "--no-scaling", action="store_true", help="skip the window vs global attention measurement"
    )
    parser.add_argument(
        "--scaling-sides",
        type=int,
        nargs=2,
        default=list(SIDES),
        metavar=("SMALL", "LARGE"),
        help=f"input sides of the attention scaling (default {SIDES[0]} {SIDES[1]})",
    )
    parser.set_defaults(handler=run_backbone, validate=_validate)


def _description() -> str:
    def mode(title: str, defaults: dict[int, Settings], quick_only: bool, out_dir: str) -> str:
        lines = [title]
        for dims, s in defaults.items():
            names = [m.name for m in MODEL_SPECS if m.dims == dims and (m.quick or not quick_only)]
            text = f"{dims}D at {s.size}^{dims}, batch {s.batch}, >= {s.min_time:g} s per "
            text += f"measurement: {', '.join(names)}"
            lines += textwrap.wrap(text, 78, initial_indent="  ", subsequent_indent="      ")
        return "\n".join([*lines, f"  files in {out_dir}/"])

    return "\n\n".join(
        [
            "Measure parameters, forward MACs, inference and train-step throughput (forward +\n"
            "cross-entropy + backward + AdamW) and train-step peak memory of our presets beside\n"
            "timm and MONAI models in one run. Headline: each preset's speed as a ratio to\n"
            f"{REFERENCE_CNN} at 1 thread and at all cores, and the targets ({HEADLINE_MODEL} "
            f"train >= {HEADLINE_TRAIN_TARGET}x\n{' and '.join(HEADLINE_BASELINES)} "
            "at <= their parameters). Also times window vs global\nattention at two input "
            "sizes. Writes backbone.md, backbone.json and backbone.png.",
            mode("Full run (default):", FULL_DEFAULTS, False, FULL_OUT),
            mode(
                "--quick (used by `make demo`, noisier numbers):", QUICK_DEFAULTS, True, QUICK_OUT
            ),
            "Example (a tiny run, seconds):\n"
            "  python -m shared.bench backbone --models hybrid_tiny resnet18 --size 64 \\\n"
            "      --batch 2 --min-time 0 --no-3d --no-scaling --out-dir /tmp/bench",
        ]
    )


def _validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    known = {s.name for s in MODEL_SPECS}
    unknown = sorted(set(args.models or []) - known)
    if unknown:
        parser.error(f"unknown model(s) {unknown}; available: {sorted(known)}")
    for key in ("size", "batch", "size_3d", "batch_3d"):
        value = getattr(args, key)
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1, got {value}")
    for key in ("warmup", "min_time"):
        value = getattr(args, key)
        if value is not None and value < 0:
            parser.error(f"--{key.replace('_', '-')} must be >= 0, got {value}")
    if min(args.threads) < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    if min(args.scaling_sides) < 1:
        parser.error(f"--scaling-sides must be >= 1, got {args.scaling_sides}")


def _settings(args: argparse.Namespace) -> dict[int, Settings]:
    """Per-dimensionality settings: the mode's defaults, overridden by explicit flags."""
    flags = {
        2: {"size": args.size, "batch": args.batch},
        3: {"size": args.size_3d, "batch": args.batch_3d},
    }
    settings = {}
    for dims, default in (QUICK_DEFAULTS if args.quick else FULL_DEFAULTS).items():
        if (dims == 2 and args.no_2d) or (dims == 3 and args.no_3d):
            continue
        chosen = {**flags[dims], "warmup": args.warmup, "min_time": args.min_time}
        changes = {key: value for key, value in chosen.items() if value is not None}
        settings[dims] = dataclasses.replace(default, **changes)
    return settings


def _plan(args: argparse.Namespace, threads: list[int]) -> list[tuple[ModelSpec, int]]:
    """(model, thread count) pairs to measure, in ``MODEL_SPECS`` order."""
    specs = [s for s in MODEL_SPECS if s.dims in _settings(args)]
    if args.models:
        specs = [s for s in specs if s.name in args.models]
    elif args.quick:
        specs = [s for s in specs if s.quick]
    plan = [(spec, threads[0]) for spec in specs]
    for count in threads[1:]:
        again = [s for s in specs if s.dims == 2 and (s.family == OURS or s.name == REFERENCE_CNN)]
        plan += [(spec, count) for spec in again]
    return plan


def _mode_label(args: argparse.Namespace) -> str:
    """``full`` or ``quick``, flagged when options changed the mode's models or schedule."""
    mode = "quick" if args.quick else "full"
    tuned = ("models", "size", "batch", "size_3d", "batch_3d", "warmup", "min_time")
    flags = args.no_2d or args.no_3d or args.no_scaling or args.threads != [1, 0]
    if (
        flags
        or args.scaling_sides != list(SIDES)
        or any(getattr(args, k) is not None for k in tuned)
    ):
        mode += " (customised by flags, see the command)"
    return mode


def run_backbone(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The ``backbone`` subcommand: measure, print, write md/json/png. 0 when everything ran."""
    from rich.console import Console

    console = Console()
    threads = list(dict.fromkeys(resolve_threads(t) for t in args.threads))
    settings = _settings(args)
    plan = _plan(args, threads)
    if not plan and args.no_scaling:
        console.print("[red]nothing selected")
        return 2
    load, started = MachineLoad(), time.perf_counter()

    def scaling(tick: Callable[[], None]) -> list[ScalingPoint]:
        min_time = 0.3 if args.quick else 2.0
        if args.min_time is not None:
            min_time = min(min_time, args.min_time)
        return measure_scaling(args.scaling_sides, threads[0], min_time, tick)

    results, points = measure_all(plan, settings, None if args.no_scaling else scaling)
    others = load.other_cores()
    facts = {
        "Mode": _mode_label(args),
        "Wall time": f"{time.perf_counter() - started:.1f} s",
        "Other processes": "unknown" if others is None else f"{others:.2f} cores busy on average",
    }
    used = {dims: s for dims, s in settings.items() if any(r.dims == dims for r in results)}
    report = build_report(
        results, points, used, threads, command_line("python -m shared.bench", argv), facts
    )
    report.warnings = MachineLoad.warnings(others, max(threads))
    out_dir = args.out_dir or Path(QUICK_OUT if args.quick else FULL_OUT)
    write_report(report, out_dir, console)
    return 1 if any(r.error for r in results) else 0


def _add_engine(commands: Any) -> None:
    """The ``engine`` subcommand."""
    parser = commands.add_parser(
        "engine",
        help="overhead of the Lightning training engine against a bare PyTorch loop",
        description="Train the toy task (hybrid_tiny, 32x32 quadrant images) with the engine\n"
        "(checkpoints, CSV logs, summary, plots) and with a bare PyTorch loop doing the same\n"
        "optimiser steps and per-epoch validation; runs alternate and medians are compared.\n"
        f"Target: engine/bare < {engine.TARGET}. Writes engine.md, engine.json and engine.png.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=8, help="epochs per run (default 8)")
    parser.add_argument("--num-train", type=int, default=256, help="training images (256)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs each (3)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads, 0 = one per core (default 1)"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=Path(FULL_OUT), help=f"output folder ({FULL_OUT})"
    )
    parser.set_defaults(handler=run_engine)


def run_engine(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The ``engine`` subcommand: engine vs bare-loop wall time on the toy task."""
    from rich.console import Console

    console = Console()
    threads = resolve_threads(args.threads)
    status = console.status("training the toy task with the engine and with a bare loop...")
    with set_torch_threads(threads), status:
        result = engine.measure_engine_overhead(
            args.epochs, args.num_train, engine.BATCH_SIZE, args.repeats
        )
    report = engine.build_report(result, command_line("python -m shared.bench", argv), threads)
    write_report(report, args.out_dir, console)
    return 0
