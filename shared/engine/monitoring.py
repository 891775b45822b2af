"""Lightning callback that logs the training monitors of :mod:`shared.monitors` during fit."""

from __future__ import annotations

import math

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn

from ..monitors import (
    MonitorThresholds,
    attention_entropies,
    enable_attention_monitoring,
    grad_norm_ratios,
    monitor_issues,
)

__all__ = ["HybridMonitorCallback"]


class HybridMonitorCallback(pl.Callback):
    """Logs attention entropy and conv/attention gradient ratios every ``every_n_steps`` steps.

    Entropy is recorded during the regular training forward of the monitored step (no extra
    forward pass). Values go to the Lightning logger as ``monitor/entropy/<layer>`` (nats),
    ``monitor/entropy_norm/<layer>`` (entropy / ln N, N the keys each query attends over) and
    ``monitor/grad_ratio/<block>``. An out-of-range value raises a ``UserWarning`` once per layer
    and kind of problem (collapse, near-uniform, gradient ratio); see :mod:`shared.monitors` for
    the bands.
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
        self._warned: set[tuple[str, str]] = set()

    def _due(self, trainer: pl.Trainer) -> bool:
        return trainer.global_step % self.every_n_steps == 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: D102
        enable_attention_monitoring(pl_module, self._due(trainer))

    def on_after_backward(self, trainer, pl_module) -> None:  # noqa: D102
        if not self._due(trainer):
            return
        entropies = attention_entropies(pl_module)
        ratios = grad_norm_ratios(pl_module)
        metrics = {f"monitor/entropy/{k}": v.nats for k, v in entropies.items()}
        metrics |= {
            f"monitor/entropy_norm/{k}": v.normalised
            for k, v in entropies.items()
            if not math.isnan(v.normalised)
        }
        metrics |= {f"monitor/grad_ratio/{k}": v for k, v in ratios.items()}
        self.latest = metrics
        if metrics:
            pl_module.log_dict(metrics, on_step=True, on_epoch=False)
        issues = monitor_issues(entropies, ratios, self.thresholds, trainer.global_step)
        for issue in issues:
            if (issue.layer, issue.kind) not in self._warned:
                self._warned.add((issue.layer, issue.kind))
                rank_zero_warn(issue.message, category=UserWarning)

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: D102
        enable_attention_monitoring(pl_module, False)
