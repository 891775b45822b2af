"""``python -m shared.bench backbone [--quick]``: our presets beside timm and MONAI models.

Everything is measured in one run on this machine, so every ratio compares numbers taken under
the same load and library versions: parameters, forward MACs, inference and train-step
throughput and train-step peak memory of every model at one thread; our 2D presets and resnet18
again at all cores; and window vs global attention at two input sizes. The headline
(:mod:`shared.bench.headline`) states each preset's speed as a ratio to resnet18 and checks the
targets against botnet26t and coatnet_nano. The command line is in :mod:`shared.bench.cli`.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.benchmark import set_torch_threads

from ..layers import count_parameters
from .headline import (
    headline_ratios,
    reference_ratios,
    reference_sentence,
    target_line,
    threads_text,
)
from .measure import TrainStep, count_macs, inference_step, peak_memory, time_call
from .registry import (
    HEADLINE_BASELINES,
    HEADLINE_MODEL,
    HEADLINE_TRAIN_TARGET,
    REFERENCE_CNN,
    THREE_D_CAVEAT,
    ModelSpec,
)
from .report import OURS, BenchResult, Report, Section, Table
from .scaling import ScalingPoint, scaling_section, scaling_summary

__all__ = [
    "FULL_DEFAULTS",
    "QUICK_DEFAULTS",
    "Settings",
    "bench_model",
    "build_report",
    "measure_all",
]

METHOD_NOTE = (
    "Random weights, fp32, CPU. Each time is the median over blocks of calls timed by "
    "`torch.utils.benchmark.Timer.blocked_autorange` until the mode's minimum time has passed "
    "(at least one block), after Timer's untimed sizing call; throughput = batch / median. "
    "Inference: eval mode under `torch.inference_mode`. Train: forward + cross-entropy on random "
    "labels + backward + AdamW step; AdamW's state is allocated by an untimed step. Train peak "
    "MiB (first thread count only): inputs, weights and AdamW state, counted from the tensors, "
    "plus the peak of what one steady train step allocates (gradients, activations), from the "
    "torch profiler's allocation events. GMACs: forward multiply-accumulates per image (or "
    "volume) from `torch.utils.flop_counter` (FLOPs / 2; convolutions, matmuls and attention "
    "only)."
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
                f"{dims}D ({s.size}^{dims}, batch {s.batch}, {threads_text(count)}, "
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
            text=[f"- {target_line(ratio)}" for ratio in targets]
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
    ok = [r for r in results if not r.error and r.threads == threads]
    panels = sorted({r.dims for r in ok}) or ([] if scaling else [2])
    count = len(panels) + bool(scaling)
    figure.set_size_inches(6.5 * count, 4.8)
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
        if rows:
            shape = rows[0].input_shape
            ax.set_title(
                f"{dims}D train step, {_shape_text(shape)}, batch {shape[0]} (ours: red stars)"
            )
        else:
            ax.set_title("no successful measurements")
        _log_axes(ax)
        ax.set_xlabel("parameters (M, log scale)")
        ax.set_ylabel(f"train throughput ({_UNIT[dims]}, log scale)")
        ax.grid(True, which="major", alpha=0.3)
        ax.margins(0.15)
    if scaling:
        _plot_scaling(figure.add_subplot(1, count, count), scaling)


def _log_axes(ax: Any) -> None:
    """Log-log axes with ticks at 1-2-5 steps as plain numbers (easier to read than 10^x)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())


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
    _log_axes(ax)
    ax.set_xlabel("tokens (log scale)")
    ax.set_ylabel("forward ms (log scale)")
    ax.set_title("our attention layer: dotted = linear, dashed = quadratic")
    ax.legend()
    ax.grid(True, which="major", alpha=0.3)


def measure_all(
    plan: list[tuple[ModelSpec, int]], settings: dict[int, Settings], scaling: Callable | None
) -> tuple[list[BenchResult], list[ScalingPoint]]:
    """Measure each (model, threads) pair of ``plan``, then run ``scaling`` if given.

    The first thread count of the plan also measures memory. A model that fails is reported
    with its error instead of stopping the run. A rich progress bar goes to stderr.
    """
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
