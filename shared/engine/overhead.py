"""Engine overhead: the toy task trained by the engine vs a bare PyTorch loop, same work.

Both train the same model on the same data for the same number of optimiser steps with the same
optimiser, schedule, clipping and per-epoch validation metrics. The engine also writes its run
folder (checkpoints, CSV logs, summary, plots): that is part of what it costs. Runs alternate
(bare, engine, bare, engine, ...) and the median of each is compared.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import lightning.pytorch as pl
import torch
from torch import nn

from ..cli import RunConfig
from .config import OptimConfig, RegularizationConfig, RunFolderConfig, TrainerConfig
from .module import warmup_cosine
from .toy import SPEC, ToyDataConfig, ToyModelConfig
from .trainer import fit

__all__ = ["measure_engine_overhead"]


def _config(epochs: int, num_train: int, batch_size: int, runs_dir: str) -> RunConfig:
    return RunConfig(
        data=ToyDataConfig(num_train=num_train, num_val=64),
        model=ToyModelConfig(),
        optim=OptimConfig(),
        trainer=TrainerConfig(
            max_epochs=epochs, batch_size=batch_size, progress=False, accelerator="cpu"
        ),
        regularization=RegularizationConfig(),
        run=RunFolderConfig(runs_dir=runs_dir),
    )


def _bare_loop(cfg: RunConfig) -> float:
    """The same training written as a plain PyTorch loop; returns seconds."""
    pl.seed_everything(cfg.trainer.seed, verbose=False)
    module, data = SPEC.build(cfg)
    data.setup("fit")
    model, metrics = module.model, module.val_metrics
    start = time.perf_counter()
    train_loader, val_loader = data.train_dataloader(), data.val_dataloader()
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.optim.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.optim.lr,
    )  # fmt: skip
    total = cfg.trainer.max_epochs * len(train_loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total, cfg.optim.warmup_fraction, cfg.optim.min_lr_ratio)
    )
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(cfg.trainer.max_epochs):
        model.train()
        for images, labels in train_loader:
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.inference_mode():
            for images, labels in val_loader:
                metrics.update(model(images), labels)
        metrics.compute()
        metrics.reset()
    return time.perf_counter() - start


def _engine(cfg: RunConfig) -> float:
    pl.seed_everything(cfg.trainer.seed, verbose=False)
    module, data = SPEC.build(cfg)
    start = time.perf_counter()
    fit(module, data, cfg.trainer, cfg.run_dir, SPEC.headline, SPEC.mode, cfg.optim.grad_clip)
    return time.perf_counter() - start


def measure_engine_overhead(
    epochs: int = 3, num_train: int = 256, batch_size: int = 16, repeats: int = 3
) -> dict[str, float]:
    """Median seconds of both loops over ``repeats`` alternating runs, and their ratio."""
    bare, engine = [], []
    with tempfile.TemporaryDirectory() as runs_dir:
        for index in range(repeats):
            cfg = _config(epochs, num_train, batch_size, runs_dir)
            bare.append(_bare_loop(cfg))
            cfg.run.name = f"overhead-{index}"
            engine.append(_engine(cfg))
    steps = epochs * (num_train // batch_size)
    return {
        "steps": steps,
        "bare_seconds": statistics.median(bare),
        "engine_seconds": statistics.median(engine),
        "ratio": statistics.median(engine) / statistics.median(bare),
        "bare_all": bare,
        "engine_all": engine,
    }


if __name__ == "__main__":
    print(measure_engine_overhead(repeats=1, epochs=1, num_train=64))
