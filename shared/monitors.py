"""Training monitors the design brief asks for: attention entropy and conv/attention gradients.

* Attention entropy per attention layer, in nats, averaged over heads and sampled queries; the
  brief's healthy range is 2.8-3.5 (collapse below, near-uniform attention above).
* Gradient-norm ratio ``||grad conv|| / ||grad attention||`` per hybrid block (any module with
  ``conv_parameters()``/``attention_parameters()``); the brief warns above 1.5.

Plain functions work on any model containing our layers; :class:`HybridMonitorCallback` logs them
through Lightning during training.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from .attention import SpatialSelfAttention

__all__ = [
    "MonitorThresholds",
    "enable_attention_monitoring",
    "attention_entropies",
    "grad_norm_ratios",
    "monitor_warnings",
    "HybridMonitorCallback",
]


@dataclass(frozen=True)
class MonitorThresholds:
    """Healthy ranges from the design brief."""

    entropy_low: float = 2.8
    entropy_high: float = 3.5
    max_grad_ratio: float = 1.5


def enable_attention_monitoring(model: nn.Module, enabled: bool = True) -> int:
    """Make every attention layer record its entropy on the next forward; returns the count."""
    layers = [m for m in model.modules() if isinstance(m, SpatialSelfAttention)]
    for layer in layers:
        layer.monitor = enabled
        if not enabled:
            layer.last_entropy = None
    return len(layers)


def attention_entropies(model: nn.Module) -> dict[str, float]:
    """Entropy (nats) recorded by each monitored attention layer in the last forward pass."""
    return {
        name: float(module.last_entropy)
        for name, module in model.named_modules()
        if isinstance(module, SpatialSelfAttention) and module.last_entropy is not None
    }


def _grad_norm(parameters: Iterable[nn.Parameter]) -> float:
    squares = [p.grad.detach().float().pow(2).sum() for p in parameters if p.grad is not None]
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0


def grad_norm_ratios(model: nn.Module) -> dict[str, float]:
    """``||grad conv path|| / ||grad attention path||`` per gated module, after ``backward``.

    Modules whose attention path has no gradient yet are skipped (ratio undefined); an attention
    gradient of exactly zero gives ``inf``.
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
        ratios[name] = conv_norm / attention_norm if attention_norm > 0 else math.inf
    return ratios


def monitor_warnings(
    entropies: dict[str, float],
    ratios: dict[str, float],
    thresholds: MonitorThresholds | None = None,
) -> list[str]:
    """Human-readable warnings for values outside the brief's healthy ranges."""
    limits = thresholds or MonitorThresholds()
    messages = [
        f"attention entropy of {name} is {value:.2f} nats, outside "
        f"{limits.entropy_low}-{limits.entropy_high}"
        for name, value in entropies.items()
        if not limits.entropy_low <= value <= limits.entropy_high
    ]
    messages += [
        f"conv/attention grad-norm ratio of {name} is {value:.2f} (> {limits.max_grad_ratio})"
        for name, value in ratios.items()
        if value > limits.max_grad_ratio
    ]
    return messages


class HybridMonitorCallback(pl.Callback):
    """Logs attention entropy and conv/attention gradient ratios every ``every_n_steps`` steps.

    Entropy is recorded during the regular training forward of the monitored step (no extra
    forward pass). Values go to the Lightning logger as ``monitor/entropy/<layer>`` and
    ``monitor/grad_ratio/<block>``; out-of-range values raise a warning once per layer.
    """

    def __init__(
        self, every_n_steps: int = 50, thresholds: MonitorThresholds | None = None
    ) -> None:
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.thresholds = thresholds or MonitorThresholds()
        self.latest: dict[str, float] = {}
        self._warned: set[str] = set()

    def _due(self, trainer: pl.Trainer) -> bool:
        return trainer.global_step % self.every_n_steps == 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: D102
        enable_attention_monitoring(pl_module, self._due(trainer))

    def on_after_backward(self, trainer, pl_module) -> None:  # noqa: D102
        if not self._due(trainer):
            return
        entropies = attention_entropies(pl_module)
        ratios = grad_norm_ratios(pl_module)
        metrics = {f"monitor/entropy/{k}": v for k, v in entropies.items()}
        metrics |= {f"monitor/grad_ratio/{k}": v for k, v in ratios.items()}
        self.latest = metrics
        if metrics:
            pl_module.log_dict(metrics, on_step=True, on_epoch=False)
        for message in monitor_warnings(entropies, ratios, self.thresholds):
            key = message.split(" is ")[0]
            if key not in self._warned:
                self._warned.add(key)
                rank_zero_warn(message, category=UserWarning)

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: D102
        enable_attention_monitoring(pl_module, False)
