"""Monitors: entropy on known attention patterns, gradient ratios, warnings, Lightning callback."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from shared import (
    HybridBlock,
    HybridClassifier,
    HybridMonitorCallback,
    attention_entropies,
    attention_entropy,
    enable_attention_monitoring,
    grad_norm_ratios,
    monitor_warnings,
)


def test_entropy_of_known_patterns() -> None:
    n = 50
    uniform = torch.full((2, 8, 10, n), 1.0 / n)
    assert float(attention_entropy(uniform)) == pytest.approx(math.log(n), rel=1e-6)
    one_hot = torch.zeros(2, 8, 10, n)
    one_hot[..., 3] = 1
    assert float(attention_entropy(one_hot)) == pytest.approx(0.0, abs=1e-6)
    half = torch.zeros(1, 1, 1, n)
    half[..., :2] = 0.5
    assert float(attention_entropy(half)) == pytest.approx(math.log(2), rel=1e-6)


def test_monitoring_records_only_when_enabled() -> None:
    model = HybridClassifier("hybrid_tiny", num_classes=3)
    x = torch.randn(2, 3, 64, 64)
    model(x)
    assert attention_entropies(model) == {}
    assert enable_attention_monitoring(model) == 3  # hybrid_tiny: 2 + 1 hybrid blocks
    model(x)
    entropies = attention_entropies(model)
    assert len(entropies) == 3
    # stage 2 sees 4x4 = 16 tokens, stage 3 2x2 = 4 tokens: entropy is bounded by ln(tokens).
    for name, value in entropies.items():
        tokens = 16 if "stages.2" in name else 4
        assert 0 < value <= math.log(tokens) + 1e-5
    enable_attention_monitoring(model, False)
    assert attention_entropies(model) == {}


def test_grad_norm_ratio_matches_manual_computation() -> None:
    block = HybridBlock(2, 8, 16, num_heads=4)
    assert grad_norm_ratios(block) == {}  # no backward yet
    block(torch.randn(2, 8, 8, 8)).square().mean().backward()
    ratios = grad_norm_ratios(block)
    conv = torch.cat([p.grad.flatten() for p in block.conv_parameters()]).norm()
    attention = torch.cat([p.grad.flatten() for p in block.attention_parameters()]).norm()
    assert ratios == {"": pytest.approx(float(conv / attention), rel=1e-5)}


def test_monitor_warnings_use_brief_thresholds() -> None:
    warnings = monitor_warnings({"a": 3.0, "b": 1.2, "c": 4.1}, {"x": 1.4, "y": 2.0})
    assert len(warnings) == 3
    assert any("b" in w and "1.20" in w for w in warnings)
    assert any("c" in w for w in warnings)
    assert any("y" in w and "2.00" in w for w in warnings)


class _ToyModule(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = HybridClassifier("hybrid_tiny", num_classes=2)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = torch.nn.functional.cross_entropy(self.model(images), labels)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def test_lightning_callback_logs_monitors(tmp_path: Path) -> None:
    data = TensorDataset(torch.randn(8, 3, 64, 64), torch.randint(0, 2, (8,)))
    callback = HybridMonitorCallback(every_n_steps=1)
    trainer = pl.Trainer(
        max_steps=2,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(tmp_path, name="toy"),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    with pytest.warns(UserWarning, match="attention entropy|grad-norm ratio"):
        # 2x2 and 4x4 token maps cannot reach 2.8 nats, so the brief's warning must fire.
        trainer.fit(_ToyModule(), DataLoader(data, batch_size=4))
    assert any(k.startswith("monitor/entropy/") for k in callback.latest)
    assert any(k.startswith("monitor/grad_ratio/") for k in callback.latest)
    metrics_file = next(tmp_path.rglob("metrics.csv"))
    header = next(csv.reader(metrics_file.open()))
    assert any(col.startswith("monitor/entropy/model.backbone.stages.2") for col in header)
    with pytest.raises(ValueError, match="every_n_steps"):
        HybridMonitorCallback(every_n_steps=0)
