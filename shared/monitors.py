"""Training monitors the design brief asks for, at any resolution: attention entropy and the
conv/attention gradient-norm ratio.

Pure torch, no Lightning (``import shared`` stays free of the trainer); the Lightning callback
that logs these during training is :class:`shared.engine.HybridMonitorCallback`.

**Attention entropy.** A monitored :class:`~shared.attention.SpatialSelfAttention` records in its
forward pass the entropy ``H`` (nats) of its attention rows, averaged over heads and a fixed
sample of queries, and ``ln N``, the mean log of how many keys each sampled query may attend to
(N is their geometric mean): ``H*W(*D)`` positions for global attention, the window's token count
for windowed attention, fewer where the shifted-window or padding mask removes keys (counting
those would flag uniform attention in a small masked region as collapse). ``H <= ln N``, equal for
uniform attention, so an absolute band cannot serve every resolution: ``hybrid_tiny`` on 64 px
chips attends over 16 and 4 tokens (ceilings 2.77 and 1.39 nats), below all of the brief's
2.8-3.5. The monitors report ``h = H / ln N`` beside ``H`` and judge ``h``.

Rule: ``h_low = 2.8 / ln 49 = 0.719`` and ``h_high = 3.5 / ln 49 = 0.899``; a layer over ``N``
keys is healthy for ``h_low * ln N <= H <= h_high * ln N``. Derivation: the brief gives its band
for 8 heads at 224 px input. Our presets' attention stages (``CCHH``, stem and every stage
stride 2) see 224/16 = 14x14 = 196 positions (stage 2) and 224/32 = 7x7 = 49 (stage 3), and
windowed attention's default window (``StageConfig.window_size = 7``) holds 7x7 = 49 keys at any
stage. The band needs ``ln N >= 3.5`` (N >= 34) to be reachable at all, which both satisfy; we
take ``N = 49``: it is the 7x7 last stage where the brief's progressive conversion starts (its
serial topology: CNN backbone, Transformer head), the only 8-head stage of ``hybrid_tiny``
(heads 4, 4, 4, 8), and every default window. There the band means a perplexity ``exp(H)`` of
16-33 of 49 keys; at N = 196 the same numbers would call 34 of 196 keys "near-uniform". At
N = 49 the rule gives the brief's 2.8-3.5 nats exactly; at 196 it gives 3.80-4.75, at 16
1.99-2.49, at 4 1.00-1.25.

Collapse (``h < h_low``, attention on ever fewer keys, the instability of Zhai et al. 2023,
"Stabilizing Transformer Training by Preventing Attention Entropy Collapse") is warned from the
first step. Near-uniform attention (``h > h_high``) is warned only from
``MonitorThresholds.uniform_after_steps`` optimiser steps on: every freshly initialised layer
attends almost uniformly (``h >= 0.999`` measured on the presets the verticals train), so the
brief's band taken literally flags every new model, at 224 px too (``hybrid_small``: 5.28 and
3.89 nats, both above 3.5), and attention leaves uniform slowly (in a 2000-step ``hybrid_tiny``
run on synthetic 64 px gratings one of three layers entered the band after about 1500 steps,
two stayed at ``h = 0.99``: seen while developing this, not a benchmark).
A layer over one key (``N = 1``) has nothing to choose: no normalised value, no warning.

**Gradient ratio.** ``||grad conv path|| / ||grad attention path||`` per hybrid block (any module
with ``conv_parameters()``/``attention_parameters()``); the brief warns above 1.5.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .attention import SpatialSelfAttention

__all__ = [
    "EntropyReading",
    "MonitorIssue",
    "MonitorThresholds",
    "attention_entropies",
    "enable_attention_monitoring",
    "grad_norm_ratios",
    "monitor_issues",
    "monitor_warnings",
]


@dataclass(frozen=True)
class MonitorThresholds:
    """The brief's healthy ranges and the key count its entropy band was stated for.

    ``entropy_low``/``entropy_high`` (nats) hold at ``reference_keys`` keys per query and scale
    with ``ln N`` elsewhere (see the module docstring). The near-uniform bound applies from
    ``uniform_after_steps`` optimiser steps on; collapse and the gradient ratio from step 0.
    """

    entropy_low: float = 2.8
    entropy_high: float = 3.5
    reference_keys: int = 49
    max_grad_ratio: float = 1.5
    uniform_after_steps: int = 1000

    def __post_init__(self) -> None:
        if self.reference_keys < 2:
            raise ValueError(f"reference_keys must be >= 2, got {self.reference_keys}")
        ceiling = math.log(self.reference_keys)
        if not 0 <= self.entropy_low < self.entropy_high <= ceiling:
            raise ValueError(
                f"need 0 <= entropy_low < entropy_high <= ln(reference_keys) = {ceiling:.3f} "
                f"nats, got {self.entropy_low}-{self.entropy_high}"
            )
        if self.uniform_after_steps < 0:
            raise ValueError(f"uniform_after_steps must be >= 0, got {self.uniform_after_steps}")

    def normalised_band(self) -> tuple[float, float]:
        """Healthy ``H / ln N`` range: the nats band divided by ``ln(reference_keys)``."""
        ceiling = math.log(self.reference_keys)
        return self.entropy_low / ceiling, self.entropy_high / ceiling

    def entropy_band(self, log_keys: float) -> tuple[float, float]:
        """Healthy entropy range in nats for attention whose ceiling is ``log_keys = ln N``."""
        low, high = self.normalised_band()
        return low * log_keys, high * log_keys


@dataclass(frozen=True)
class EntropyReading:
    """One attention layer's entropy: ``nats`` and its ceiling ``log_keys = ln N``."""

    nats: float
    log_keys: float

    @property
    def keys(self) -> float:
        """N, keys per query (geometric mean over queries where masks make it vary)."""
        return math.exp(self.log_keys)

    @property
    def normalised(self) -> float:
        """``H / ln N`` in [0, 1] (1: uniform); NaN for attention over a single key."""
        return self.nats / self.log_keys if self.log_keys > 0 else math.nan


@dataclass(frozen=True)
class MonitorIssue:
    """An out-of-range monitor value: the layer, what is wrong, and a readable message."""

    layer: str
    kind: str
    """``entropy_collapse``, ``entropy_uniform`` or ``grad_ratio``."""
    message: str


def enable_attention_monitoring(model: nn.Module, enabled: bool = True) -> int:
    """Make every attention layer record its entropy on the next forward; returns the count."""
    layers = [m for m in model.modules() if isinstance(m, SpatialSelfAttention)]
    for layer in layers:
        layer.monitor = enabled
        if not enabled:
            layer.last_entropy = None
            layer.last_log_keys = None
    return len(layers)


def attention_entropies(model: nn.Module) -> dict[str, EntropyReading]:
    """Entropy and key count recorded by each monitored attention layer in the last forward."""
    return {
        name: EntropyReading(float(module.last_entropy), float(module.last_log_keys))
        for name, module in model.named_modules()
        if isinstance(module, SpatialSelfAttention)
        and module.last_entropy is not None
        and module.last_log_keys is not None
    }


def _grad_norm(parameters: Iterable[nn.Parameter]) -> float:
    squares = [p.grad.detach().float().pow(2).sum() for p in parameters if p.grad is not None]
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0


def grad_norm_ratios(model: nn.Module) -> dict[str, float]:
    """``||grad conv path|| / ||grad attention path||`` per gated module, after ``backward``.

    Modules whose attention path has no gradient yet, or whose gradients are all zero (e.g.
    behind a zero-initialised output layer on the first step), are skipped: the ratio is
    undefined. An attention gradient of exactly zero beside a non-zero conv gradient is ``inf``.
    """
    ratios: dict[str, float] = {}
    for name, module in model.named_modules():
        if not (hasattr(module, "conv_parameters") and hasattr(module, "attention_parameters")):
            continue
        attention_params = list(module.attention_parameters())
        if all(p.grad is None for p in attention_params):
            continue
        conv_norm = _grad_norm(module.conv_parameters())
        attention_norm = _grad_norm(attention_params)
        if conv_norm == 0 and attention_norm == 0:
            continue
        ratios[name] = conv_norm / attention_norm if attention_norm > 0 else math.inf
    return ratios


def _keys_text(keys: float) -> str:
    return f"{keys:.0f}" if abs(keys - round(keys)) < 0.05 else f"{keys:.1f}"


def monitor_issues(
    entropies: dict[str, EntropyReading],
    ratios: dict[str, float],
    thresholds: MonitorThresholds | None = None,
    trained_steps: int = 0,
) -> list[MonitorIssue]:
    """Values outside the healthy ranges; ``trained_steps`` gates the near-uniform bound."""
    limits = thresholds or MonitorThresholds()
    norm_low, norm_high = limits.normalised_band()
    band_rule = (
        f"{norm_low:.3f}-{norm_high:.3f} x ln N, the brief's {limits.entropy_low}-"
        f"{limits.entropy_high} nats at N={limits.reference_keys}"
    )
    issues = []
    for name, reading in entropies.items():
        if reading.log_keys <= 0:
            continue  # one key: nothing to choose between
        low, high = limits.entropy_band(reading.log_keys)
        if reading.normalised < norm_low:
            kind, what = "entropy_collapse", "collapsed"
        elif reading.normalised > norm_high and trained_steps >= limits.uniform_after_steps:
            kind, what = "entropy_uniform", f"near-uniform after {trained_steps} steps"
        else:
            continue
        message = (
            f"{name}: attention entropy {what}: {reading.nats:.2f} nats over "
            f"N={_keys_text(reading.keys)} keys (normalised {reading.normalised:.3f}); healthy "
            f"band {low:.2f}-{high:.2f} nats ({band_rule})"
        )
        issues.append(MonitorIssue(name, kind, message))
    issues += [
        MonitorIssue(
            name,
            "grad_ratio",
            f"{name}: conv/attention grad-norm ratio {value:.2f} > {limits.max_grad_ratio}",
        )
        for name, value in ratios.items()
        if value > limits.max_grad_ratio
    ]
    return issues


def monitor_warnings(
    entropies: dict[str, EntropyReading],
    ratios: dict[str, float],
    thresholds: MonitorThresholds | None = None,
    trained_steps: int = 0,
) -> list[str]:
    """The messages of :func:`monitor_issues`: one line per out-of-range value."""
    return [issue.message for issue in monitor_issues(entropies, ratios, thresholds, trained_steps)]
