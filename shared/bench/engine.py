"""``python -m shared.bench engine``: the toy task trained by the engine vs a bare PyTorch loop.

Both train the same model on the same data for the same number of optimiser steps with the same
optimiser, parameter groups, schedule, clipping and per-epoch validation metrics. The engine also
writes its run folder (checkpoints, CSV logs, summary, plots): that is part of what it costs.
Runs alternate (bare, engine, bare, engine, ...) and the median of each is compared.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import lightning.pytorch as pl
import torch
from timm.optim import param_groups_weight_decay
from torch import nn

from ..engine import (
    OptimConfig,
    RegularizationConfig,
    RunConfig,
    RunFolderConfig,
    TrainerConfig,
    fit,
    warmup_cosine,
)
from ..toy import SPEC, ToyDataConfig, ToyModelConfig
from .report import Report, Section, Table

__all__ = ["BATCH_SIZE", "TARGET", "build_report", "measure_engine_overhead"]

TARGET = 1.10
"""The engine may take at most this many times the bare loop's wall time."""
BATCH_SIZE = 16


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
    # The engine's parameter groups: timm's split, no decay on norms, biases and 1-D params.
    groups = param_groups_weight_decay(model, cfg.optim.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr)
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
    epochs: int = 3, num_train: int = 256, batch_size: int = BATCH_SIZE, repeats: int = 3
) -> dict[str, Any]:
    """Median seconds of both loops over ``repeats`` alternating runs, and their ratio."""
    bare, engine = [], []
    with tempfile.TemporaryDirectory() as runs_dir:
        for index in range(repeats):
            cfg = _config(epochs, num_train, batch_size, runs_dir)
            bare.append(_bare_loop(cfg))
            cfg.run.name = f"overhead-{index}"
            engine.append(_engine(cfg))
    return {
        "steps": epochs * (num_train // batch_size),
        "bare_seconds": statistics.median(bare),
        "engine_seconds": statistics.median(engine),
        "ratio": statistics.median(engine) / statistics.median(bare),
        "bare_all": bare,
        "engine_all": engine,
    }


def build_report(result: dict[str, Any], command: str, threads: int) -> Report:
    """The engine report: both loops' run times, the ratio and its verdict."""
    verdict = "PASS" if result["ratio"] < TARGET else "MISS"
    rows = [
        [
            name,
            f"{result[f'{name}_seconds']:.2f}",
            ", ".join(f"{v:.2f}" for v in result[f"{name}_all"]),
        ]
        for name in ("bare", "engine")
    ]
    section = Section(
        f"Engine overhead ({result['steps']} optimiser steps per run)",
        text=[
            f"Toy task (hybrid_tiny, 32x32, batch {BATCH_SIZE}), same optimiser steps, schedule, "
            "clipping and per-epoch validation metrics; the engine also writes its run folder."
        ],
        table=Table(["loop", "median s", "runs s"], rows, text_columns=1),
        notes=[f"**engine / bare = {result['ratio']:.3f}** ({verdict}, target < {TARGET})"],
    )

    def plot(figure: Any) -> None:
        ax = figure.add_subplot(1, 1, 1)
        for index, name in enumerate(("bare", "engine")):
            runs = result[f"{name}_all"]
            ax.scatter([index] * len(runs), runs, color="tab:gray", zorder=3)
            ax.bar(index, result[f"{name}_seconds"], color="tab:red" if index else "tab:blue")
        ax.set_xticks([0, 1], ["bare PyTorch loop", "engine"])
        ax.set_ylabel("wall seconds per run (bar: median, dots: runs)")
        ax.set_title(f"engine / bare = {result['ratio']:.3f} (target < {TARGET})")

    return Report(
        name="engine",
        title="Engine overhead",
        command=command,
        sections=[section],
        data={**result, "verdict": verdict, "threads": threads},
        plot=plot,
        facts={"Torch threads": str(threads)},
    )
