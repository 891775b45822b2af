"""Build a Lightning ``Trainer`` for a run folder, and train / resume a task in it.

Run folder ``<runs_dir>/<name>/``: ``config.yaml``, ``checkpoints/{best,last}.ckpt``,
``logs/attempt-<k>/`` (raw Lightning CSV logs of each start or resume), ``metrics.csv`` (all
attempts joined), ``summary.json`` and ``plots/``. Only global rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import (
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only

from ..attention import SpatialSelfAttention
from .callbacks import LoaderPositionCallback, RNGStateCallback, RunSummaryCallback
from .config import TrainerConfig
from .io import InputError, atomic_write_json, load_checkpoint
from .monitoring import HybridMonitorCallback

__all__ = [
    "build_inference_trainer",
    "build_trainer",
    "fit",
    "set_attention_precision",
    "parse_devices",
]


def parse_devices(devices: str) -> int | str | list[int]:
    """Lightning's ``devices`` from a CLI string: ``"2"`` -> 2, ``"0,1"`` -> [0, 1], ``"auto"``."""
    text = str(devices).strip()
    if text == "auto":
        return "auto"
    try:
        if "," in text:
            return [int(part) for part in text.split(",") if part]
        return int(text)
    except ValueError:
        raise InputError(
            f"--trainer.devices must be a count, a list like 0,1 or auto; got {devices!r}"
        ) from None


def set_attention_precision(model: pl.LightningModule, fp32: bool) -> int:
    """Keep (or stop keeping) every attention layer in fp32 under autocast; returns the count."""
    layers = [m for m in model.modules() if isinstance(m, SpatialSelfAttention)]
    for layer in layers:
        layer.attention_fp32 = fp32
    return len(layers)


def _lightning_trainer(**kwargs: Any) -> pl.Trainer:
    """``pl.Trainer(**kwargs)``; a setting Lightning refuses becomes a one-line ``InputError``."""
    try:
        return pl.Trainer(**kwargs)
    except (MisconfigurationException, ValueError) as err:
        # e.g. more devices than the machine has, an unknown strategy or accelerator name.
        raise InputError("--trainer settings: " + " ".join(str(err).split())) from None


def _check_sync_batchnorm(cfg: TrainerConfig, trainer: pl.Trainer) -> None:
    # After Lightning resolved 'auto': SyncBatchNorm needs a process group of GPUs.
    if not cfg.sync_batchnorm:
        return
    if isinstance(trainer.accelerator, CPUAccelerator):
        raise InputError(
            "--trainer.sync_batchnorm needs GPUs (PyTorch's SyncBatchNorm does not run on CPU)"
        )
    if trainer.world_size < 2:
        raise InputError(
            "--trainer.sync_batchnorm has no effect on one device; use several with "
            "--trainer.devices N --trainer.strategy ddp"
        )


def apply_threads(cfg: TrainerConfig) -> None:
    """Set torch's CPU thread count from ``--trainer.threads`` (0 leaves torch's default)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)


def build_inference_trainer(
    cfg: TrainerConfig, callbacks: list[pl.Callback] | None = None
) -> pl.Trainer:
    """A Trainer for validate/predict on the run's devices, without logs or checkpoints."""
    apply_threads(cfg)
    return _lightning_trainer(
        accelerator=cfg.accelerator,
        devices=parse_devices(cfg.devices),
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=cfg.precision,
        logger=False,
        callbacks=callbacks or [],
        limit_val_batches=cfg.limit_val_batches,
        enable_progress_bar=cfg.progress,
        enable_model_summary=False,
    )


def _next_attempt(run_dir: Path) -> int:
    # Both the attempt folders and their start markers (attempt-<k>.json) count.
    existing = [
        int(p.name.split("-")[1].split(".")[0]) for p in (run_dir / "logs").glob("attempt-*")
    ]
    return max(existing, default=-1) + 1


def build_trainer(
    cfg: TrainerConfig,
    run_dir: Path,
    headline: str,
    mode: str,
    grad_clip: float = 0.0,
    extra_callbacks: list[pl.Callback] | None = None,
) -> pl.Trainer:
    """A Trainer writing into ``run_dir`` with best/last checkpoints, CSV logs and a summary."""
    checkpoint_dir = run_dir / "checkpoints"
    best = ModelCheckpoint(
        dirpath=checkpoint_dir,
        filename="best",
        monitor=headline,
        mode=mode,
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    last = ModelCheckpoint(
        dirpath=checkpoint_dir,
        save_top_k=0,
        save_last=True,
        every_n_train_steps=cfg.checkpoint_every_n_steps or None,
        enable_version_counter=False,
    )
    callbacks: list[pl.Callback] = [
        best,
        last,
        RNGStateCallback(),
        LoaderPositionCallback(),
        RunSummaryCallback(run_dir, headline, mode),
        LearningRateMonitor(logging_interval="step"),
        *(extra_callbacks or []),
    ]
    if cfg.monitor_every_n_steps > 0:
        callbacks.append(HybridMonitorCallback(every_n_steps=cfg.monitor_every_n_steps))
    if cfg.ema_decay > 0:
        callbacks.append(EMAWeightAveraging(decay=cfg.ema_decay))
    if cfg.progress:
        callbacks.append(RichProgressBar(leave=True))
    attempt = _next_attempt(run_dir)
    logger = CSVLogger(
        save_dir=run_dir,
        name="logs",
        version=f"attempt-{attempt}",
        flush_logs_every_n_steps=cfg.log_every_n_steps,
    )
    return _lightning_trainer(
        default_root_dir=run_dir,
        max_epochs=cfg.max_epochs,
        max_steps=cfg.max_steps,
        precision=cfg.precision,
        accelerator=cfg.accelerator,
        devices=parse_devices(cfg.devices),
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        gradient_clip_val=grad_clip or None,
        deterministic=cfg.deterministic,
        callbacks=callbacks,
        logger=logger,
        log_every_n_steps=cfg.log_every_n_steps,
        check_val_every_n_epoch=cfg.val_every_n_epochs,
        val_check_interval=cfg.val_check_interval,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        sync_batchnorm=cfg.sync_batchnorm,
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches,
        enable_progress_bar=cfg.progress,
        enable_model_summary=False,
    )


@rank_zero_only
def _mark_attempt_start(trainer: pl.Trainer, step: int) -> None:
    # Beside (not inside) the attempt's log folder: Lightning's CSV logger wants it empty.
    log_dir = Path(trainer.logger.log_dir)
    atomic_write_json(log_dir.with_name(f"{log_dir.name}.json"), {"start_step": step})


def fit(
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    cfg: TrainerConfig,
    run_dir: Path,
    headline: str,
    mode: str,
    grad_clip: float = 0.0,
    resume: bool = False,
    extra_callbacks: list[pl.Callback] | None = None,
) -> pl.Trainer:
    """Train ``module`` (or resume from ``run_dir/checkpoints/last.ckpt``); returns the trainer."""
    ckpt_path: str | None = None
    start_step = 0
    if resume:
        last = run_dir / "checkpoints" / "last.ckpt"
        checkpoint: dict[str, Any] = load_checkpoint(last)  # clear error if missing/corrupt
        start_step = int(checkpoint.get("global_step", 0))
        ckpt_path = str(last)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    apply_threads(cfg)
    if cfg.precision != "32-true":
        set_attention_precision(module, cfg.attention_fp32)
    trainer = build_trainer(cfg, run_dir, headline, mode, grad_clip, extra_callbacks)
    _check_sync_batchnorm(cfg, trainer)
    _mark_attempt_start(trainer, start_step)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except ValueError as err:
        # Only known once the loader exists: an int interval beyond the epoch's batch count.
        if "val_check_interval" not in str(err):
            raise
        raise InputError(
            f"--trainer.val_check_interval {cfg.val_check_interval}: more than the "
            f"{trainer.num_training_batches} training batches of an epoch"
        ) from None
    if trainer.num_training_batches == 0:
        # Lightning only warns ("Total length ... is zero") and skips its fit loop, leaving a
        # run without a step or a metric: the training split is smaller than one batch.
        raise InputError(
            f"no training batch: the training split is smaller than --trainer.batch_size "
            f"{cfg.batch_size} (the last partial batch is dropped); lower the batch size or add "
            "data"
        )
    return trainer
