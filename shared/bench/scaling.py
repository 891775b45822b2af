"""Window vs global attention: how the cost grows when the number of positions grows.

The measured layer is our attention, :class:`shared.SpatialSelfAttention` (positional encoding,
q/k/v and output projections, SDPA), on a ``side x side`` feature map, i.e. ``side^2`` tokens,
built global and with 7x7 windows, and timed at two sides. Global attention's core grows with
the square of the tokens (16x for 4x the tokens), windowed attention linearly (4x); the
projections grow linearly in both, so global's measured ratio lands somewhat under 16x.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.benchmark import set_torch_threads

from .measure import count_macs, inference_step, time_call
from .report import Section, Table

__all__ = [
    "ATTENTION_KINDS",
    "SIDES",
    "ScalingPoint",
    "measure_scaling",
    "scaling_model",
    "scaling_section",
    "scaling_summary",
]

ATTENTION_KINDS = ("window", "global")
SIDES = (28, 56)
"""Default input sides: 784 and 3136 tokens, 4x apart (both divisible by the 7x7 window)."""
WINDOW = 7
CHANNELS, HEADS = 64, 2


@dataclass
class ScalingPoint:
    """One attention kind at one input side: median forward seconds and forward MACs."""

    attention: str
    side: int
    tokens: int
    seconds: float
    macs: float


def scaling_model(attention: str) -> torch.nn.Module:
    """The measured layer: our 2D attention, global or in ``WINDOW`` x ``WINDOW`` windows."""
    from shared import SpatialSelfAttention

    window = WINDOW if attention == "window" else None
    return SpatialSelfAttention(2, CHANNELS, HEADS, window_size=window).eval()


def measure_scaling(
    sides: Sequence[int] = SIDES,
    threads: int = 1,
    min_time: float = 0.5,
    tick: Callable[[], None] = lambda: None,
) -> list[ScalingPoint]:
    """Forward time (batch 1, inference mode) and MACs of each attention kind at each side."""
    with set_torch_threads(threads):
        return _measure(sides, threads, min_time, tick)


def _measure(
    sides: Sequence[int], threads: int, min_time: float, tick: Callable[[], None]
) -> list[ScalingPoint]:
    points = []
    for attention in ATTENTION_KINDS:
        torch.manual_seed(0)
        model = scaling_model(attention)
        for side in sides:
            x = torch.randn(1, CHANNELS, side, side, generator=torch.Generator().manual_seed(0))
            macs, _ = count_macs(model, x)
            times = time_call(inference_step(model, x), threads, warmup=1, min_time=min_time)
            points.append(
                ScalingPoint(attention, side, side * side, statistics.median(times), macs)
            )
            tick()
    return points


def scaling_summary(points: Sequence[ScalingPoint]) -> list[dict[str, float | str]]:
    """Per attention kind, the growth from its smallest to its largest input.

    ``exponent`` solves ``time_ratio = token_ratio ** exponent``: 1 is linear, 2 quadratic.
    """
    rows: list[dict[str, float | str]] = []
    for attention in ATTENTION_KINDS:
        mine = sorted((p for p in points if p.attention == attention), key=lambda p: p.tokens)
        if len(mine) < 2:
            continue
        small, large = mine[0], mine[-1]
        token_ratio = large.tokens / small.tokens
        time_ratio = large.seconds / small.seconds
        rows.append(
            {
                "attention": attention,
                "tokens_small": small.tokens,
                "tokens_large": large.tokens,
                "ms_small": small.seconds * 1e3,
                "ms_large": large.seconds * 1e3,
                "token_ratio": token_ratio,
                "time_ratio": time_ratio,
                "mac_ratio": large.macs / small.macs,
                "linear_ratio": token_ratio,
                "quadratic_ratio": token_ratio**2,
                "exponent": math.log(time_ratio) / math.log(token_ratio),
            }
        )
    return rows


def _sentence(row: dict[str, float | str]) -> str:
    exponent = float(row["exponent"])
    if exponent < 1.3:
        growth = "at most about linear"
    elif exponent > 1.7:
        growth = "about quadratic"
    else:
        growth = "between linear and quadratic"
    return (
        f"{row['attention']} attention: {row['token_ratio']:.0f}x the tokens took "
        f"{row['time_ratio']:.1f}x the time (MACs {row['mac_ratio']:.1f}x; linear would be "
        f"{row['linear_ratio']:.0f}x, quadratic {row['quadratic_ratio']:.0f}x): time grows as "
        f"tokens^{row['exponent']:.2f}, {growth}."
    )


def scaling_section(points: Sequence[ScalingPoint], threads: int) -> Section:
    """The report section: one row per attention kind, then one sentence each."""
    summary = scaling_summary(points)
    columns = ["attention", "tokens", "ms small", "ms large", "time ratio", "MAC ratio"]
    columns += ["linear", "quadratic"]
    rows = [
        [
            str(r["attention"]),
            f"{r['tokens_small']} -> {r['tokens_large']}",
            f"{r['ms_small']:.2f}",
            f"{r['ms_large']:.2f}",
            f"{r['time_ratio']:.1f}x",
            f"{r['mac_ratio']:.1f}x",
            f"{r['linear_ratio']:.0f}x",
            f"{r['quadratic_ratio']:.0f}x",
        ]
        for r in summary
    ]
    text = [
        f"Our attention layer (`SpatialSelfAttention`, {CHANNELS} channels, {HEADS} heads; "
        f"windows of {WINDOW}x{WINDOW}) on a side x side feature map, batch 1, forward in "
        f"inference mode, {threads} torch "
        f"thread{'s' if threads > 1 else ''}; median time per input size."
    ]
    return Section(
        "Window vs global attention: cost against the number of tokens",
        text=text,
        table=Table(columns, rows, text_columns=2),
        notes=[f"- {_sentence(r)}" for r in summary],
    )
