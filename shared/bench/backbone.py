"""``python -m shared.bench backbone [--quick]``: our presets beside timm and MONAI models.

Everything is measured in one run on this machine, so every ratio compares numbers taken under
the same load and library versions: parameters, forward MACs, inference and train-step
throughput and train-step peak memory of every model at one thread; our 2D presets and resnet18
again at all cores; and window vs global attention at two input sizes. The headline states each
preset's speed as a ratio to resnet18 and checks the targets against botnet26t and coatnet_nano.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.benchmark import set_torch_threads

from ..layers import count_parameters
from .measure import (
    ALL_CORES,
    MachineLoad,
    TrainStep,
    count_macs,
    inference_step,
    peak_memory,
    resolve_threads,
    time_call,
)
from .registry import (
    HEADLINE_BASELINES,
    HEADLINE_MODEL,
    HEADLINE_TRAIN_TARGET,
    MODEL_SPECS,
    REFERENCE_CNN,
    THREE_D_CAVEAT,
    ModelSpec,
)
from .report import OURS, BenchResult, Report, Section, Table, command_line, write_report
from .scaling import SIDES, ScalingPoint, measure_scaling, scaling_section, scaling_summary

__all__ = [
    "FULL_DEFAULTS",
    "QUICK_DEFAULTS",
    "Settings",
    "add_parser",
    "bench_model",
    "build_report",
    "headline_ratios",
    "reference_ratios",
    "reference_sentence",
    "run_backbone",
]

METHOD_NOTE = (
    "Random weights, fp32, CPU. Each time is the median over blocks timed by "
    "`torch.utils.benchmark.Timer.blocked_autorange` until the mode's minimum time has passed "
    "(at least one block), after its untimed sizing call; throughput = batch / median. "
    "Inference: eval mode under `torch.inference_mode`. Train: forward + cross-entropy on random "
    "labels + backward + AdamW step, after one untimed step that allocates AdamW's state. Train "
    "peak MiB: the tensors alive at the peak of one train step (inputs, weights, AdamW state, "
    "then gradients and activations from the torch profiler's allocation events). GMACs: forward "
    "multiply-accumulates per image (or volume) from `torch.utils.flop_counter` (FLOPs / 2; "
    "convolutions, matmuls and attention only)."
)


@dataclass(frozen=True)
class Settings:
    """Input shape and timing schedule for one dimensionality."""

    dims: int
    size: int
    batch: int
    warmup: int
    """Untimed calls before timing, besides the one Timer makes to size its blocks."""
    min_time: float
    """Seconds each measurement keeps timing for (at least one block)."""

    def input_shape(self, in_chans: int) -> tuple[int, ...]:
        """``(batch, channels, *spatial)`` for a model with ``in_chans`` inputs."""
        return (self.batch, in_chans, *([self.size] * self.dims))


# 3D steps take seconds each, so a minimum time still gives at least one timed step.
FULL_DEFAULTS = {2: Settings(2, 224, 8, 0, 6.0), 3: Settings(3, 96, 1, 0, 6.0)}
QUICK_DEFAULTS = {2: Settings(2, 224, 8, 0, 1.5), 3: Settings(3, 64, 1, 0, 1.0)}
FULL_OUT, QUICK_OUT = "docs/benchmarks", "runs/bench"
_UNIT = {2: "img/s", 3: "vol/s"}


def bench_model(spec: ModelSpec, settings: Settings, threads: int, memory: bool) -> BenchResult:
    """Build ``spec`` with random weights; measure size, MACs, both throughputs (and memory).

    Everything, untimed steps included, runs at ``threads`` torch threads.
    """
    with set_torch_threads(threads):
        return _bench_model(spec, settings, threads, memory)


def _bench_model(spec: ModelSpec, settings: Settings, threads: int, memory: bool) -> BenchResult:
    shape = settings.input_shape(spec.in_chans)
    result = BenchResult(spec.name, spec.family, spec.dims, list(shape), threads)
    result.info["note"] = spec.note
    # Fixed seeds: the same weights, inputs and labels on every run.
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = spec.build(settings.size)
    x = torch.randn(shape, generator=generator)
    result.params = count_parameters(model)
    macs, out = count_macs(model, x)
    out_shape = out.shape
    target = torch.randint(0, out_shape[1], (out_shape[0], *out_shape[2:]), generator=generator)
    timing = {"warmup": settings.warmup, "min_time": settings.min_time}
    infer_times = time_call(inference_step(model, x), threads, **timing)
    train = TrainStep(model, x, target)
    if memory:
        train()  # allocates AdamW's state, so the profiled step below is a steady one
        model.zero_grad(set_to_none=True)
        peak = train.resting_bytes() + peak_memory(train)
        result.metrics["train_peak_mib"] = peak / 2**20
    train_times = time_call(train, threads, **timing)
    result.metrics["macs_per_sample"] = macs / settings.batch
    result.metrics["infer_per_s"] = settings.batch / statistics.median(infer_times)
    result.metrics["train_per_s"] = settings.batch / statistics.median(train_times)
    result.info.update(infer_times_s=infer_times, train_times_s=train_times)
    return result


def _find(results: list[BenchResult], name: str, dims: int, threads: int) -> BenchResult | None:
    for result in results:
        if (result.name, result.dims, result.threads) == (name, dims, threads) and not result.error:
            return result
    return None


def headline_ratios(results: list[BenchResult], threads: int = 1) -> list[dict[str, Any]]:
    """The targets: ``HEADLINE_MODEL`` against each headline baseline measured at ``threads``.

    PASS when it trains at least ``HEADLINE_TRAIN_TARGET`` times as fast with no more
    parameters. Baselines that were not measured are left out.
    """
    ours = _find(results, HEADLINE_MODEL, 2, threads)
    ratios: list[dict[str, Any]] = []
    for baseline_name in HEADLINE_BASELINES if ours else ():
        baseline = _find(results, baseline_name, 2, threads)
        if baseline is None:
            continue
        train = ours.metrics["train_per_s"] / baseline.metrics["train_per_s"]
        params = ours.params / baseline.params
        passed = train >= HEADLINE_TRAIN_TARGET and params <= 1.0
        ratios.append(
            {
                "model": HEADLINE_MODEL,
                "baseline": baseline_name,
                "threads": threads,
                "train_ratio": train,
                "infer_ratio": ours.metrics["infer_per_s"] / baseline.metrics["infer_per_s"],
                "param_ratio": params,
                "verdict": "PASS" if passed else "MISS",
            }
        )
    return ratios


def _target_line(ratio: dict[str, Any]) -> str:
    return (
        f"{ratio['verdict']}: {ratio['model']} / {ratio['baseline']}: "
        f"train {ratio['train_ratio']:.2f}x (want >= {HEADLINE_TRAIN_TARGET}), "
        f"params {ratio['param_ratio']:.2f}x (want <= 1), inference {ratio['infer_ratio']:.2f}x"
    )


def reference_ratios(results: list[BenchResult]) -> list[dict[str, Any]]:
    """Each of our 2D models against ``REFERENCE_CNN`` measured at the same thread count."""
    rows = []
    for ours in results:
        if ours.family != OURS or ours.dims != 2 or ours.error:
            continue
        reference = _find(results, REFERENCE_CNN, 2, ours.threads)
        if reference is None:
            continue
        rows.append(
            {
                "model": ours.name,
                "reference": REFERENCE_CNN,
                "threads": ours.threads,
                "train_ratio": ours.metrics["train_per_s"] / reference.metrics["train_per_s"],
                "infer_ratio": ours.metrics["infer_per_s"] / reference.metrics["infer_per_s"],
                "param_ratio": ours.params / reference.params,
            }
        )
    return sorted(rows, key=lambda row: row["threads"])


def _threads_text(threads: int, all_cores: int) -> str:
    text = f"{threads} thread{'s' if threads != 1 else ''}"
    return f"{text} (all cores)" if threads == all_cores and threads > 1 else text


def _speed_word(ratio: float) -> str:
    shown = round(ratio, 2)  # the word agrees with the printed number
    return "slower" if shown < 1 else "faster" if shown > 1 else "the same speed"


def reference_sentence(row: dict[str, Any], all_cores: int = ALL_CORES) -> str:
    """Plain words for one :func:`reference_ratios` row, as true when ours is slower."""
    train, infer = row["train_ratio"], row["infer_ratio"]
    return (
        f"{row['model']} trains at {train:.2f}x {row['reference']}'s speed "
        f"({_speed_word(train)}) and infers at {infer:.2f}x ({_speed_word(infer)}), "
        f"{_threads_text(row['threads'], all_cores)}; {row['param_ratio']:.2f}x its parameters"
    )


def _rate_text(rate: float) -> str:
    """Three significant digits, so 0.0312 vol/s and 51.9 img/s both keep their precision."""
    return f"{rate:.0f}" if rate >= 100 else f"{rate:#.3g}"


def _shape_text(input_shape: Sequence[int]) -> str:
    """``224^2`` / ``96^3`` for cubic inputs, else ``64x32``."""
    spatial = list(input_shape[2:])
    if len(set(spatial)) == 1:
        return f"{spatial[0]}^{len(spatial)}"
    return "x".join(str(side) for side in spatial)


def _results_table(results: list[BenchResult]) -> Table:
    unit = _UNIT[results[0].dims]
    columns = ["model", "input", "params M", "GMACs", f"infer {unit}", f"train {unit}"]
    columns.append("train peak MiB")
    rows = []
    for r in results:
        cells = [r.label, _shape_text(r.input_shape)]
        if r.error:
            rows.append([*cells, "-", "-", "-", "-", f"failed: {r.error}"])
            continue
        peak = r.metrics.get("train_peak_mib")
        rows.append(
            [
                *cells,
                f"{r.params / 1e6:.2f}",
                f"{r.metrics['macs_per_sample'] / 1e9:.2f}",
                _rate_text(r.metrics["infer_per_s"]),
                _rate_text(r.metrics["train_per_s"]),
                "-" if peak is None else f"{peak:.0f}",
            ]
        )
    return Table(columns, rows, bold=[r.family == OURS for r in results], text_columns=2)


def _result_sections(
    results: list[BenchResult], settings: dict[int, Settings], threads: list[int]
) -> list[Section]:
    sections = []
    for count in threads:
        for dims, s in sorted(settings.items()):
            rows = [r for r in results if r.dims == dims and r.threads == count]
            if not rows:
                continue
            subset = "" if count == threads[0] else f": our presets and {REFERENCE_CNN}"
            heading = (
                f"{dims}D ({s.size}^{dims}, batch {s.batch}, {_threads_text(count, ALL_CORES)}, "
                f"timed for >= {s.min_time:g} s per measurement){subset}"
            )
            notes = [THREE_D_CAVEAT] if dims == 3 else []
            sections.append(Section(heading, table=_results_table(rows), notes=notes))
    return sections


def build_report(
    results: list[BenchResult],
    scaling: list[ScalingPoint],
    settings: dict[int, Settings],
    threads: list[int],
    command: str,
    facts: dict[str, str],
) -> Report:
    """The backbone report: tables, the resnet18 headline, targets, attention scaling."""
    references = reference_ratios(results)
    targets = headline_ratios(results, threads[0])
    sections = _result_sections(results, settings, threads)
    missing = "- not measured ({} or {} were not in this run)"
    sections.append(
        Section(
            f"Headline: our presets against {REFERENCE_CNN} (same run)",
            text=[f"- {reference_sentence(row)}" for row in references]
            or [missing.format("our 2D presets", REFERENCE_CNN)],
        )
    )
    sections.append(
        Section(
            f"Targets: {HEADLINE_MODEL} trains >= {HEADLINE_TRAIN_TARGET}x as fast as "
            f"{' and '.join(HEADLINE_BASELINES)} with no more parameters",
            text=[f"- {_target_line(ratio)}" for ratio in targets]
            or [missing.format(HEADLINE_MODEL, "its baselines")],
        )
    )
    if scaling:
        sections.append(scaling_section(scaling, threads[0]))
    data = {
        "settings": {str(dims): dataclasses.asdict(s) for dims, s in settings.items()},
        "threads": threads,
        "reference_ratios": references,
        "ratios": targets,
        "scaling": {"points": scaling, "summary": scaling_summary(scaling)},
        "results": results,
    }
    return Report(
        name="backbone",
        title="Backbone benchmark",
        command=command,
        sections=sections,
        data=data,
        plot=lambda figure: _plot(figure, results, scaling, threads[0]),
        facts=facts,
        method=METHOD_NOTE,
    )


def _plot(figure: Any, results: list[BenchResult], scaling: list[ScalingPoint], threads: int):
    """Train throughput against parameters per dimensionality, and attention time vs tokens."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ok = [r for r in results if not r.error and r.threads == threads]
    panels = sorted({r.dims for r in ok}) or [2]
    count = len(panels) + bool(scaling)
    figure.set_size_inches(6.5 * count, 4.8)
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for index, dims in enumerate(panels, start=1):
        ax = figure.add_subplot(1, count, index)
        rows = [r for r in ok if r.dims == dims]
        for r in rows:
            ours = r.family == OURS
            point = (r.params / 1e6, r.metrics["train_per_s"])
            ax.scatter(
                *point,
                s=120 if ours else 40,
                zorder=3,
                marker="*" if ours else "o",
                color="tab:red" if ours else "tab:gray",
            )
            # Ours below-right, others above-right: same-size neighbours (hybrid_small beside
            # resnet18) would otherwise print their labels on top of each other.
            ax.annotate(
                r.name,
                point,
                textcoords="offset points",
                fontsize=8,
                xytext=(6, -11) if ours else (6, 4),
                fontweight="bold" if ours else "normal",
            )
        title = f"{dims}D train step, {_shape_text(rows[0].input_shape)}, batch "
        ax.set_title(title + f"{rows[0].input_shape[0]} (ours: red stars)" if rows else "no data")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            # Ticks at 1-2-5 steps with plain numbers: easier to read than 10^x on short ranges.
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("parameters (M, log scale)")
        ax.set_ylabel(f"train throughput ({_UNIT[dims]}, log scale)")
        ax.grid(True, which="major", alpha=0.3)
        ax.margins(0.15)
    if scaling:
        _plot_scaling(figure.add_subplot(1, count, count), scaling)


def _plot_scaling(ax: Any, points: list[ScalingPoint]) -> None:
    """Attention time against tokens (log-log), with linear and quadratic guides."""
    for attention, colour in (("window", "tab:red"), ("global", "tab:blue")):
        mine = sorted((p for p in points if p.attention == attention), key=lambda p: p.tokens)
        tokens = [p.tokens for p in mine]
        ax.plot(tokens, [p.seconds * 1e3 for p in mine], "o-", color=colour, label=attention)
        if len(mine) >= 2:
            base = mine[0]
            for power, style in ((1, ":"), (2, "--")):
                guide = [base.seconds * 1e3 * (t / base.tokens) ** power for t in tokens]
                ax.plot(tokens, guide, style, color=colour, alpha=0.5, linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens (log scale)")
    ax.set_ylabel("forward ms (log scale)")
    ax.set_title("attention block: dotted = linear, dashed = quadratic")
    ax.legend()
    ax.grid(True, which="major", alpha=0.3)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def add_parser(commands: Any) -> None:
    """Add the ``backbone`` subcommand to ``python -m shared.bench``."""
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
    if args.no_2d or args.no_3d or any(getattr(args, key) is not None for key in tuned):
        mode += " (customised by flags, see the command)"
    return mode


def _run_all(
    plan: list[tuple[ModelSpec, int]], settings: dict[int, Settings], scaling: Callable | None
) -> tuple[list[BenchResult], list[ScalingPoint]]:
    """Measure every planned model, then the scaling; a rich progress bar goes to stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    results: list[BenchResult] = []
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("starting", total=len(plan) + (4 if scaling else 0))
        first = plan[0][1] if plan else 0
        for spec, threads in plan:
            progress.update(task, description=f"{spec.dims}D {spec.name}, {threads} thread(s)")
            try:
                result = bench_model(spec, settings[spec.dims], threads, threads == first)
            except Exception as err:  # one broken baseline must not hide the rest
                shape = list(settings[spec.dims].input_shape(spec.in_chans))
                result = BenchResult(spec.name, spec.family, spec.dims, shape, threads)
                result.error = f"{type(err).__name__}: {err}"[:200]
                progress.console.print(f"[red]{spec.dims}D {spec.name} failed: {result.error}")
            results.append(result)
            progress.advance(task)
        progress.update(task, description="window vs global attention")
        points = scaling(lambda: progress.advance(task)) if scaling else []
    return results, points


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
        min_time = 0.5 if args.quick else 2.0
        if args.min_time is not None:
            min_time = min(min_time, args.min_time)
        return measure_scaling(args.scaling_sides, threads[0], min_time, tick)

    results, points = _run_all(plan, settings, None if args.no_scaling else scaling)
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
