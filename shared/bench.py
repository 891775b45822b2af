"""Speed and size benchmarks: ``python -m shared.bench backbone [--quick]``.

The ``backbone`` subcommand measures our presets beside well-known timm (2D) and MONAI (3D)
models on this machine, in one run, so every ratio it prints compares numbers taken under the
same load, threads and library versions. It writes ``backbone.md``, ``backbone.json`` and
``backbone.png`` into the output folder. Other subcommands can be added in ``build_parser``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import shlex
import statistics
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .engine.io import atomic_write_bytes

__all__ = [
    "MODEL_SPECS",
    "BenchResult",
    "ModelSpec",
    "Settings",
    "bench_model",
    "build_parser",
    "count_macs",
    "headline_ratios",
    "machine_info",
    "main",
    "run_backbone",
    "time_inference",
    "time_train_step",
]

# ---------------------------------------------------------------------------------------------
# The models, as data: add a row here to add a model to the benchmark.
# ---------------------------------------------------------------------------------------------

OURS = "ours"
HEADLINE_MODEL = "hybrid_small"
HEADLINE_BASELINES = ("botnet26t_256", "coatnet_nano_rw_224")


@dataclass(frozen=True)
class ModelSpec:
    """One benchmarked model.

    ``build`` takes the input side length, because some models (botnet) bake the image size
    into fixed positional embeddings. ``quick`` marks the models ``--quick`` runs.
    """

    name: str
    dims: int
    family: str
    build: Callable[[int], nn.Module]
    in_chans: int = 3
    quick: bool = False
    note: str = ""


def _timm(name: str, *, img_size: bool = False) -> Callable[[int], nn.Module]:
    """Builder for a timm model with random weights (random initialisation only)."""

    def build(size: int) -> nn.Module:
        # No ``import shared`` needed for the hybrid_* names: this module lives in the package,
        # so shared/__init__ (which registers them in timm) has always run first.
        import timm

        kwargs: dict[str, Any] = {"img_size": size} if img_size else {}
        return timm.create_model(name, pretrained=False, **kwargs)

    return build


def _ours_3d(preset: str) -> Callable[[int], nn.Module]:
    """Builder for a preset as a 3D, 1-channel, 2-class volume classifier."""

    def build(size: int) -> nn.Module:
        from shared import HybridClassifier

        return HybridClassifier(config=preset, spatial_dims=3, in_chans=1, num_classes=2)

    return build


def _swin_unetr(size: int) -> nn.Module:
    """MONAI SwinUNETR, the usual BTCV-sized configuration at feature size 24."""
    # monai 1.6's SwinUNETR has no ``img_size`` argument any more: it takes any input whose
    # sides are divisible by 32, so ``size`` is not needed.
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=1, out_channels=2, feature_size=24)


def _monai_unet(size: int) -> nn.Module:
    """MONAI's residual 3D UNet, five levels of 16-256 channels (input size is free)."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        channels=(16, 32, 64, 128, 256),
        strides=(2, 2, 2, 2),
        num_res_units=2,
    )


_SEG_NOTE = "full segmentation net (encoder + decoder, per-voxel logits)"
_CLS_NOTE = "encoder + pooled 2-class head"

MODEL_SPECS: list[ModelSpec] = [
    ModelSpec("hybrid_tiny", 2, OURS, _timm("hybrid_tiny"), quick=True),
    ModelSpec("hybrid_small", 2, OURS, _timm("hybrid_small"), quick=True),
    ModelSpec("hybrid_base", 2, OURS, _timm("hybrid_base")),
    ModelSpec("resnet18", 2, "timm", _timm("resnet18"), quick=True),
    ModelSpec("resnet50", 2, "timm", _timm("resnet50")),
    ModelSpec(
        "botnet26t_256",
        2,
        "timm",
        _timm("botnet26t_256", img_size=True),
        quick=True,
        note="built at the benchmark size (fixed positional embeddings)",
    ),
    ModelSpec("coatnet_nano_rw_224", 2, "timm", _timm("coatnet_nano_rw_224"), quick=True),
    ModelSpec("mobilevitv2_100", 2, "timm", _timm("mobilevitv2_100")),
    ModelSpec(
        "hybrid_tiny", 3, OURS, _ours_3d("hybrid_tiny"), in_chans=1, quick=True, note=_CLS_NOTE
    ),
    ModelSpec("hybrid_small", 3, OURS, _ours_3d("hybrid_small"), in_chans=1, note=_CLS_NOTE),
    ModelSpec("hybrid_base", 3, OURS, _ours_3d("hybrid_base"), in_chans=1, note=_CLS_NOTE),
    ModelSpec("SwinUNETR", 3, "monai", _swin_unetr, in_chans=1, note=_SEG_NOTE),
    ModelSpec("UNet", 3, "monai", _monai_unet, in_chans=1, quick=True, note=_SEG_NOTE),
]

THREE_D_CAVEAT = (
    "3D: our rows are an encoder with a global-average-pooled 2-class head; MONAI SwinUNETR and "
    "UNet are full encoder-decoder segmentation networks with per-voxel outputs, so they do "
    "strictly more work. These rows compare what our backbone costs against what those "
    "networks cost as a whole; they are not a like-for-like segmentation comparison."
)

METHOD_NOTE = (
    "Random weights, fp32, CPU. Throughput = batch / median time of the timed iterations after "
    "untimed warm-up. Inference: eval mode under `torch.inference_mode`. Train: forward + "
    "cross-entropy on random labels + backward + AdamW step. GMACs: forward multiply-accumulates "
    "per image (or volume) from `torch.utils.flop_counter` (FLOPs / 2; convolutions, matmuls "
    "and attention only)."
)

# ---------------------------------------------------------------------------------------------
# Settings and results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Input shape and timing schedule for one dimensionality."""

    dims: int
    size: int
    batch: int
    warmup: int
    iters: int

    def input_shape(self, in_chans: int) -> tuple[int, ...]:
        """``(batch, channels, *spatial)`` for a model with ``in_chans`` inputs."""
        return (self.batch, in_chans, *([self.size] * self.dims))


@dataclass
class BenchResult:
    """Raw measurements for one model (times in seconds per batch)."""

    name: str
    dims: int
    family: str
    note: str
    input_shape: list[int]
    params: int = 0
    macs_per_sample: float = 0.0
    infer_times_s: list[float] = field(default_factory=list)
    train_times_s: list[float] = field(default_factory=list)
    infer_per_s: float = 0.0
    train_per_s: float = 0.0
    error: str | None = None


# Defaults per mode and dimensionality; explicit flags override each value. 3D steps take
# seconds each, so 3D gets fewer of them.
FULL_DEFAULTS = {
    2: Settings(2, 224, 8, warmup=2, iters=5),
    3: Settings(3, 96, 1, warmup=1, iters=3),
}
QUICK_DEFAULTS = {
    2: Settings(2, 224, 8, warmup=1, iters=3),
    3: Settings(3, 64, 1, warmup=1, iters=2),
}
FULL_OUT, QUICK_OUT = "docs/benchmarks", "runs/bench"

# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, x: torch.Tensor) -> tuple[float, torch.Size]:
    """Forward multiply-accumulates for the whole batch ``x``, and the output's shape.

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
    return counter.get_total_flops() / 2, out.shape


def _timed(
    step: Callable[[], None], warmup: int, iters: int, tick: Callable[[], None]
) -> list[float]:
    """Run ``step`` ``warmup`` times untimed, then ``iters`` times timed; seconds per call."""
    times: list[float] = []
    for index in range(warmup + iters):
        start = time.perf_counter()
        step()
        if index >= warmup:
            times.append(time.perf_counter() - start)
        tick()
    return times


def time_inference(
    model: nn.Module, x: torch.Tensor, warmup: int, iters: int, tick: Callable[[], None]
) -> list[float]:
    """Seconds per eval-mode forward pass of ``x`` under ``torch.inference_mode``."""
    model.eval()

    def step() -> None:
        with torch.inference_mode():
            model(x)

    return _timed(step, warmup, iters, tick)


def time_train_step(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    warmup: int,
    iters: int,
    tick: Callable[[], None],
) -> list[float]:
    """Seconds per train step: forward, cross-entropy, backward and an AdamW update."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), target).backward()
        optimizer.step()

    # The first warm-up step also allocates AdamW's state, which is why warm-up is not timed.
    return _timed(step, warmup, iters, tick)


def _random_target(out_shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """Random class labels matching a logits shape ``(B, C)`` or ``(B, C, *spatial)``."""
    label_shape = (out_shape[0], *out_shape[2:])
    return torch.randint(0, out_shape[1], label_shape, generator=generator)


def bench_model(
    spec: ModelSpec,
    settings: Settings,
    tick: Callable[[], None] = lambda: None,
) -> BenchResult:
    """Build ``spec`` with random weights and measure size, MACs and both throughputs.

    ``tick`` is called after every timed or warm-up step (drives the progress bar).
    """
    shape = settings.input_shape(spec.in_chans)
    result = BenchResult(spec.name, spec.dims, spec.family, spec.note, list(shape))
    # Fixed seeds: the same weights, inputs and labels on every run.
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = spec.build(settings.size)
    x = torch.randn(shape, generator=generator)
    result.params = count_params(model)
    macs, out_shape = count_macs(model, x)
    result.macs_per_sample = macs / settings.batch
    target = _random_target(out_shape, generator)
    result.infer_times_s = time_inference(model, x, settings.warmup, settings.iters, tick)
    result.train_times_s = time_train_step(model, x, target, settings.warmup, settings.iters, tick)
    result.infer_per_s = settings.batch / statistics.median(result.infer_times_s)
    result.train_per_s = settings.batch / statistics.median(result.train_times_s)
    return result


# ---------------------------------------------------------------------------------------------
# Machine description and headline ratios
# ---------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (``platform.processor()`` is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Versions, thread count and CPU of this machine, for the report."""
    import monai
    import timm

    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _find(results: list[BenchResult], name: str, dims: int) -> BenchResult | None:
    for result in results:
        if result.name == name and result.dims == dims and result.error is None:
            return result
    return None


def headline_ratios(results: list[BenchResult]) -> list[dict[str, Any]]:
    """hybrid_small against each 2D headline baseline measured in this run.

    Target: train throughput ratio >= 1.0 with a parameter ratio <= 1.0 (no more parameters).
    Baselines that were not measured are left out.
    """
    ours = _find(results, HEADLINE_MODEL, 2)
    if ours is None:
        return []
    ratios = []
    for baseline_name in HEADLINE_BASELINES:
        baseline = _find(results, baseline_name, 2)
        if baseline is None:
            continue
        train_ratio = ours.train_per_s / baseline.train_per_s
        infer_ratio = ours.infer_per_s / baseline.infer_per_s
        param_ratio = ours.params / baseline.params
        ratios.append(
            {
                "model": HEADLINE_MODEL,
                "baseline": baseline_name,
                "train_ratio": train_ratio,
                "infer_ratio": infer_ratio,
                "param_ratio": param_ratio,
                "verdict": "PASS" if train_ratio >= 1.0 and param_ratio <= 1.0 else "MISS",
            }
        )
    return ratios


def _ratio_line(ratio: dict[str, Any]) -> str:
    """One human sentence for a headline ratio."""
    return (
        f"{ratio['verdict']}: {ratio['model']} / {ratio['baseline']}: "
        f"train {ratio['train_ratio']:.2f}x (want >= 1), "
        f"params {ratio['param_ratio']:.2f}x (want <= 1), "
        f"inference {ratio['infer_ratio']:.2f}x"
    )


# ---------------------------------------------------------------------------------------------
# Output: rich table, markdown, plot, atomic files
# ---------------------------------------------------------------------------------------------

_UNIT = {2: "img/s", 3: "vol/s"}


def _row(result: BenchResult) -> list[str]:
    """Table cells for one result (the same columns in rich and markdown)."""
    label = f"{result.name} (ours)" if result.family == OURS else result.name
    size = _shape_text(result.input_shape)
    if result.error is not None:
        return [label, size, "-", "-", "-", f"failed: {result.error}"]
    return [
        label,
        size,
        f"{result.params / 1e6:.2f}",
        f"{result.macs_per_sample / 1e9:.2f}",
        _rate_text(result.infer_per_s),
        _rate_text(result.train_per_s),
    ]


def _rate_text(rate: float) -> str:
    """Three significant digits, so 0.0312 vol/s and 51.9 img/s both keep their precision."""
    return f"{rate:.0f}" if rate >= 100 else f"{rate:#.3g}"


def _columns(dims: int) -> list[str]:
    """Column headers (GMACs are per image or volume; throughput in img/s or vol/s)."""
    unit = _UNIT[dims]
    return ["model", "input", "params M", "GMACs", f"infer {unit}", f"train {unit}"]


def _rich_table(results: list[BenchResult], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for index, column in enumerate(_columns(results[0].dims)):
        table.add_column(column, justify="left" if index < 2 else "right", no_wrap=index == 0)
    for result in results:
        table.add_row(*_row(result), style="bold green" if result.family == OURS else None)
    return table


def _markdown_table(results: list[BenchResult]) -> str:
    columns = _columns(results[0].dims)
    lines = ["| " + " | ".join(columns) + " |", "|---|---|" + "---:|" * (len(columns) - 2)]
    lines += ["| " + " | ".join(_row(result)) + " |" for result in results]
    return "\n".join(lines)


def markdown_report(report: dict[str, Any], results: list[BenchResult]) -> str:
    """The ``backbone.md`` text: tables, ratios, method, command, date and machine."""
    machine = report["machine"]
    parts = [
        "# Backbone benchmark",
        "",
        f"- Date: {report['date']}",
        f"- Mode: {report['mode']}",
        f"- Reproduce (from the repository root): `{report['command']}`",
        f"- Machine: {machine['cpu']}, {machine['cpu_count']} CPUs, "
        f"{machine['torch_threads']} torch threads; torch {machine['torch']}, "
        f"timm {machine['timm']}, monai {machine['monai']}, Python {machine['python']}; "
        f"other processes kept {machine['other_processes_cores']} cores busy on average",
        f"- Wall time: {report['wall_time_s']} s",
        *[f"- **Warning**: {warning}" for warning in report["warnings"]],
        "",
        METHOD_NOTE,
        "",
    ]
    for dims, settings in sorted(report["settings"].items()):
        rows = [r for r in results if r.dims == int(dims)]
        if not rows:
            continue
        parts += [
            f"## {dims}D ({settings['size']}^{dims}, batch {settings['batch']}, "
            f"{settings['warmup']} warm-up + {settings['iters']} timed iterations)",
            "",
            _markdown_table(rows),
            "",
        ]
        if int(dims) == 3:
            parts += [THREE_D_CAVEAT, ""]
    parts += ["## Headline ratios (same run)", ""]
    if report["ratios"]:
        parts += [f"- {_ratio_line(ratio)}" for ratio in report["ratios"]]
    else:
        parts.append(f"- not measured ({HEADLINE_MODEL} or its baselines were not in this run)")
    return "\n".join(parts) + "\n"


def _shape_text(input_shape: Sequence[int]) -> str:
    """``224^2`` / ``96^3`` for cubic inputs, else ``64x32``."""
    spatial = list(input_shape[2:])
    if len(set(spatial)) == 1:
        return f"{spatial[0]}^{len(spatial)}"
    return "x".join(str(side) for side in spatial)


def plot_png(results: list[BenchResult]) -> bytes:
    """PNG of train throughput against parameters (log-log), one panel per dimensionality."""
    # The Agg canvas directly, not pyplot: no global backend switch in the caller's process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ok = [r for r in results if r.error is None]
    dims_present = sorted({r.dims for r in ok}) or [2]
    fig = Figure(figsize=(6.5 * len(dims_present), 4.8))
    FigureCanvasAgg(fig)
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for index, dims in enumerate(dims_present, start=1):
        ax = fig.add_subplot(1, len(dims_present), index)
        rows = [r for r in ok if r.dims == dims]
        for result in rows:
            _plot_point(ax, result)
        if rows:
            ax.set_title(
                f"{dims}D train step, {_shape_text(rows[0].input_shape)}, "
                f"batch {rows[0].input_shape[0]} (ours: red stars)"
            )
        else:
            ax.set_title("no successful measurements")
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
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def _plot_point(ax: Any, result: BenchResult) -> None:
    """One labelled marker; our models are larger red stars with bold labels."""
    ours = result.family == OURS
    point = (result.params / 1e6, result.train_per_s)
    ax.scatter(
        *point,
        s=120 if ours else 40,
        color="tab:red" if ours else "tab:gray",
        marker="*" if ours else "o",
        zorder=3,
    )
    ax.annotate(
        result.name,
        point,
        textcoords="offset points",
        # Ours below-right, baselines above-right: same-size neighbours (hybrid_small beside
        # resnet18) would otherwise print their labels on top of each other.
        xytext=(6, -11) if ours else (6, 4),
        fontsize=8,
        fontweight="bold" if ours else "normal",
    )


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _mode_help(title: str, defaults: dict[int, Settings], quick_only: bool, out_dir: str) -> str:
    """One paragraph of ``backbone --help``: what a mode runs, at which sizes, where it writes."""
    lines = [title]
    for dims, settings in defaults.items():
        names = [s.name for s in MODEL_SPECS if s.dims == dims and (s.quick or not quick_only)]
        shape = "x".join([str(settings.size)] * dims)
        lines += textwrap.wrap(
            f"{dims}D at {shape}, batch {settings.batch}, {settings.warmup} warm-up + "
            f"{settings.iters} timed steps: {', '.join(names)}",
            width=78,
            initial_indent="  ",
            subsequent_indent="      ",
        )
    lines.append(f"  files in {out_dir}/")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m shared.bench`` argument parser (one subparser per benchmark)."""
    parser = argparse.ArgumentParser(
        prog="python -m shared.bench",
        description="Benchmarks for hybridvision. Run from the repository root; CPU, fp32, "
        "random weights only.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    description = "\n\n".join(
        [
            "Measure parameters, forward MACs per sample, inference throughput and train-step\n"
            "throughput (forward + cross-entropy + backward + AdamW) of our presets beside\n"
            "timm and MONAI baselines, all in one run on this machine. Prints a table and the\n"
            f"headline ratios: {HEADLINE_MODEL} train throughput and parameters against\n"
            f"{' and '.join(HEADLINE_BASELINES)} (target: train >= 1.0x, params <= 1.0x).\n"
            "Writes backbone.md (table), backbone.json (raw numbers) and backbone.png (plot).\n"
            "Uses one torch thread unless --threads says otherwise (see --threads).",
            _mode_help(
                "Full run (default, about 8 min on one AMD EPYC core):",
                FULL_DEFAULTS,
                False,
                FULL_OUT,
            ),
            _mode_help(
                "--quick (used by `make demo`, about 1.5 min, noisier numbers):",
                QUICK_DEFAULTS,
                True,
                QUICK_OUT,
            ),
            "3D caveat: our 3D rows are an encoder + pooled head, the MONAI rows are full\n"
            "segmentation networks, so the 3D table compares costs, not equal tasks.",
            "Example (a tiny run, seconds):\n"
            "  python -m shared.bench backbone --models hybrid_tiny resnet18 \\\n"
            "      --size 64 --batch 2 --iters 1 --no-3d --out-dir /tmp/bench",
        ]
    )
    backbone = commands.add_parser(
        "backbone",
        help="speed and size of our backbones against timm and MONAI models",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=description,
    )
    backbone.add_argument("--quick", action="store_true", help="short run (see above)")
    backbone.add_argument(
        "--out-dir",
        type=Path,
        metavar="DIR",
        help=f"where the three files go (default {FULL_OUT}, or {QUICK_OUT} with --quick)",
    )
    backbone.add_argument(
        "--models",
        nargs="+",
        metavar="NAME",
        help="only these models (in 2D and/or 3D, by name); overrides the --quick selection",
    )
    backbone.add_argument("--size", type=int, metavar="N", help="2D image side (default 224)")
    backbone.add_argument("--batch", type=int, metavar="N", help="2D batch size (default 8)")
    backbone.add_argument(
        "--size-3d", type=int, metavar="N", help="3D volume side (default 96, quick 64)"
    )
    backbone.add_argument("--batch-3d", type=int, metavar="N", help="3D batch size (default 1)")
    backbone.add_argument(
        "--warmup", type=int, metavar="N", help="untimed warm-up steps (both 2D and 3D)"
    )
    backbone.add_argument(
        "--iters", type=int, metavar="N", help="timed steps, median kept (both 2D and 3D)"
    )
    backbone.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch CPU threads (default 1: multi-threaded timings collapse when another "
        "process shares the cores; 0 keeps torch's default of one per core)",
    )
    backbone.add_argument("--no-2d", action="store_true", help="skip the 2D models")
    backbone.add_argument("--no-3d", action="store_true", help="skip the 3D models")
    backbone.set_defaults(handler=run_backbone)
    engine = commands.add_parser(
        "engine",
        help="overhead of the Lightning training engine against a bare PyTorch loop",
        description="Train the toy task (hybrid_tiny, 32x32 quadrant images) with the engine\n"
        "(checkpoints, CSV logs, summary, plots) and with a bare PyTorch loop doing the same\n"
        "optimiser steps and per-epoch validation; runs alternate and medians are compared.\n"
        "Target: engine/bare < 1.10. Writes engine.md and engine.json.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    engine.add_argument("--epochs", type=int, default=8, help="epochs per run (default 8)")
    engine.add_argument("--num-train", type=int, default=256, help="training images (256)")
    engine.add_argument("--repeats", type=int, default=3, help="alternating runs each (3)")
    engine.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    engine.add_argument("--out-dir", type=Path, default=Path(FULL_OUT), help="output folder")
    engine.set_defaults(handler=run_engine)
    return parser


def _settings(args: argparse.Namespace) -> dict[int, Settings]:
    """Per-dimensionality settings: the mode's defaults, overridden by explicit flags."""
    defaults = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    # (setting, flag) pairs; --warmup and --iters apply to both dimensionalities.
    flags = {
        2: {"size": args.size, "batch": args.batch},
        3: {"size": args.size_3d, "batch": args.batch_3d},
    }
    settings = {}
    for dims, default in defaults.items():
        chosen = {**flags[dims], "warmup": args.warmup, "iters": args.iters}
        changes = {key: value for key, value in chosen.items() if value is not None}
        settings[dims] = dataclasses.replace(default, **changes)
    return settings


def select_specs(args: argparse.Namespace) -> list[ModelSpec]:
    """The models this invocation runs, in ``MODEL_SPECS`` order."""
    specs = [
        s
        for s in MODEL_SPECS
        if not (s.dims == 2 and args.no_2d) and not (s.dims == 3 and args.no_3d)
    ]
    if args.models:
        return [s for s in specs if s.name in args.models]
    return [s for s in specs if s.quick] if args.quick else specs


def _validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    known = {s.name for s in MODEL_SPECS}
    unknown = sorted(set(args.models or []) - known)
    if unknown:
        parser.error(f"unknown model(s) {unknown}; available: {sorted(known)}")
    for key in ("size", "batch", "size_3d", "batch_3d", "iters"):
        value = getattr(args, key)
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1, got {value}")
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    if args.warmup is not None and args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")


def _command_line(argv: Sequence[str]) -> str:
    return "python -m shared.bench " + " ".join(shlex.quote(a) for a in argv)


def _run_all(specs: list[ModelSpec], settings: dict[int, Settings]) -> list[BenchResult]:
    """Benchmark every spec with a rich progress bar on stderr (stdout keeps the table)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    steps = sum(2 * (settings[s.dims].warmup + settings[s.dims].iters) for s in specs)
    results = []
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("starting", total=steps)
        for spec in specs:
            progress.update(task, description=f"{spec.dims}D {spec.name}")
            try:
                result = bench_model(spec, settings[spec.dims], lambda: progress.advance(task))
            except Exception as err:  # one broken baseline must not hide the rest
                shape = settings[spec.dims].input_shape(spec.in_chans)
                result = BenchResult(spec.name, spec.dims, spec.family, spec.note, list(shape))
                result.error = f"{type(err).__name__}: {err}"[:200]
                progress.console.print(f"[red]{spec.dims}D {spec.name} failed: {result.error}")
            results.append(result)
    return results


def run_backbone(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The ``backbone`` subcommand: measure, print, and write md/json/png. 0 if all ran."""
    from rich.console import Console

    console = Console()
    settings = _settings(args)
    specs = select_specs(args)
    if not specs:
        console.print("[red]no models selected")
        return 2
    out_dir = args.out_dir or Path(QUICK_OUT if args.quick else FULL_OUT)
    cpu_at_start = _cpu_seconds()
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        machine = machine_info()
        results = _run_all(specs, settings)
    finally:
        # Callers running in-process (tests) keep their own thread setting.
        torch.set_num_threads(previous_threads)
    wall_s = time.perf_counter() - started
    others = _other_cores(cpu_at_start, wall_s)
    machine["other_processes_cores"] = None if others is None else round(others, 2)
    used_dims = sorted({s.dims for s in specs})
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": _mode_label(args),
        "command": _command_line(argv),
        "machine": machine,
        "warnings": _load_warnings(machine),
        "notes": {"method": METHOD_NOTE, "3d": THREE_D_CAVEAT},
        "settings": {str(d): asdict(settings[d]) for d in used_dims},
        "wall_time_s": round(wall_s, 1),
        "ratios": headline_ratios(results),
        "results": [asdict(r) for r in results],
    }
    _print_report(console, report, results)
    atomic_write_bytes(out_dir / "backbone.json", (json.dumps(report, indent=2) + "\n").encode())
    atomic_write_bytes(out_dir / "backbone.md", markdown_report(report, results).encode())
    atomic_write_bytes(out_dir / "backbone.png", plot_png(results))
    console.print(f"Results written to {out_dir}/backbone.{{md,json,png}}")
    return 1 if any(r.error for r in results) else 0


def _mode_label(args: argparse.Namespace) -> str:
    """``full`` or ``quick``, flagged when options changed the mode's models or schedule."""
    mode = "quick" if args.quick else "full"
    tuned = ("models", "size", "batch", "size_3d", "batch_3d", "warmup", "iters")
    if args.no_2d or args.no_3d or any(getattr(args, key) is not None for key in tuned):
        mode += " (customised by flags, see the command)"
    return mode


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


def _other_cores(start: tuple[float, float] | None, wall_s: float) -> float | None:
    """Average number of cores other processes kept busy since ``start``."""
    end = _cpu_seconds()
    if start is None or end is None or wall_s <= 0:
        return None
    others = (end[0] - start[0]) - (end[1] - start[1])
    return max(others, 0.0) / wall_s


def _load_warnings(machine: dict[str, Any]) -> list[str]:
    """Warn when other processes competed for the cores this run used."""
    others = machine["other_processes_cores"]
    if others is None or others + machine["torch_threads"] <= (machine["cpu_count"] or 1) + 0.25:
        return []
    return [
        f"other processes kept {others:.2f} of the {machine['cpu_count']} CPUs busy on average "
        f"while this run used {machine['torch_threads']} torch threads: absolute throughputs "
        "are low and noisy (ratios within this run are less affected)"
    ]


def _print_report(console: Any, report: dict[str, Any], results: list[BenchResult]) -> None:
    """Tables, headline ratios, reproduce command and machine, on stdout."""
    for dims in (2, 3):
        rows = [r for r in results if r.dims == dims]
        if rows:
            s = report["settings"][str(dims)]
            per = "image" if dims == 2 else "volume"
            title = (
                f"{dims}D, batch {s['batch']}: median of {s['iters']} steps after "
                f"{s['warmup']} warm-up (GMACs per {per})"
            )
            console.print(_rich_table(rows, title))
            if dims == 3:
                console.print(THREE_D_CAVEAT, style="italic")
    console.print("[bold]Headline ratios (measured in this run):")
    for ratio in report["ratios"]:
        colour = "green" if ratio["verdict"] == "PASS" else "yellow"
        console.print(f"  [{colour}]{_ratio_line(ratio)}", highlight=False)
    if not report["ratios"]:
        console.print(f"  not measured ({HEADLINE_MODEL} or its baselines were not in this run)")
    for warning in report["warnings"]:
        console.print(f"[yellow]Warning: {warning}", highlight=False)
    machine = report["machine"]
    console.print(f"Reproduce: {report['command']}", highlight=False, soft_wrap=True)
    console.print(
        f"Machine: {machine['cpu']}, {machine['cpu_count']} CPUs, {machine['torch_threads']} "
        f"torch threads, torch {machine['torch']}; other processes used "
        f"{machine['other_processes_cores']} cores on average; wall time {report['wall_time_s']} s",
        highlight=False,
    )


def run_engine(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The ``engine`` subcommand: engine vs bare-loop wall time on the toy task."""
    from rich.console import Console
    from rich.table import Table

    from .engine.overhead import measure_engine_overhead

    console = Console()
    torch.set_num_threads(args.threads or torch.get_num_threads())
    with console.status("training the toy task with the engine and with a bare loop..."):
        result = measure_engine_overhead(args.epochs, args.num_train, 16, args.repeats)
    verdict = "PASS" if result["ratio"] < 1.10 else "MISS"
    table = Table(title=f"engine overhead ({result['steps']} optimiser steps per run)")
    for column in ("loop", "median s", "all runs s"):
        table.add_column(column)
    for name in ("bare", "engine"):
        runs = ", ".join(f"{v:.2f}" for v in result[f"{name}_all"])
        table.add_row(name, f"{result[f'{name}_seconds']:.2f}", runs)
    console.print(table)
    command = _command_line(argv)
    console.print(f"{verdict}: engine / bare = {result['ratio']:.3f} (target < 1.10)")
    console.print(f"reproduce: {command}")
    report = {"command": command, "machine": machine_info(), **result, "verdict": verdict}
    atomic_write_bytes(args.out_dir / "engine.json", json.dumps(report, indent=2).encode())
    markdown = (
        "# Engine overhead\n\n"
        f"- Date: {datetime.now(UTC).isoformat(timespec='seconds')}\n"
        f"- Reproduce: `{command}`\n"
        f"- Torch threads: {torch.get_num_threads()}\n\n"
        "Toy task (hybrid_tiny, 32x32, batch 16), same optimiser steps, schedule, clipping and\n"
        "per-epoch validation metrics; the engine also writes its run folder.\n\n"
        "| loop | median s | runs s |\n|---|---:|---|\n"
        + "".join(
            f"| {n} | {result[f'{n}_seconds']:.2f} | "
            + ", ".join(f"{v:.2f}" for v in result[f"{n}_all"])
            + " |\n"
            for n in ("bare", "engine")
        )
        + f"\n**engine / bare = {result['ratio']:.3f}** ({verdict}, target < 1.10)\n"
    )
    atomic_write_bytes(args.out_dir / "engine.md", markdown.encode())
    console.print(f"results: {args.out_dir / 'engine.md'}, {args.out_dir / 'engine.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "backbone":
        _validate(parser, args)
    return args.handler(args, argv)


if __name__ == "__main__":
    sys.exit(main())
