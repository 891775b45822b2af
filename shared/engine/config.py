"""Run configuration shared by every task: optimiser, trainer, regularisation, run folder.

Tasks add their own ``data`` and ``model`` dataclasses; :class:`RunConfig` holds the whole tree,
which :mod:`shared.cli` turns into command-line flags (``--optim.lr 1e-4``) and a YAML file
(``--config run.yaml``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from jsonargparse.typing import restricted_number_type

from .io import InputError

__all__ = [
    "PRECISIONS",
    "HalfOpenUnitInterval",
    "OptimConfig",
    "TrainerConfig",
    "RegularizationConfig",
    "RunFolderConfig",
    "RunConfig",
    "plain_values",
    "reject_regularization",
    "validate_common",
]

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")

HalfOpenUnitInterval = restricted_number_type(
    "HalfOpenUnitInterval", float, [(">=", 0), ("<", 1)], join="and"
)
"""A float in [0, 1) for config fields (overlaps, shares): the parser refuses others in one line.
jsonargparse registers restricted types globally, once per restriction: define it only here."""


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay, stepped every optimiser step."""

    lr: float = 3e-4
    """Peak learning rate; default a third of a ViT's usual 1e-3, as the brief advises."""
    weight_decay: float = 0.05
    """Decoupled weight decay (not applied to norms, biases, positional encodings)."""
    warmup_fraction: float = 0.05
    """Fraction of all optimiser steps spent warming up linearly from 0."""
    min_lr_ratio: float = 0.01
    """Final learning rate as a fraction of the peak."""
    grad_clip: float = 1.0
    """Gradient-norm clipping threshold (0 disables)."""


@dataclass
class TrainerConfig:
    """Lightning trainer settings: length, precision, devices, reproducibility."""

    max_epochs: int = 10
    max_steps: int = -1
    """Stop after this many optimiser steps (-1: run all epochs)."""
    batch_size: int = 16
    """Per-device batch size (the brief suggests twice a pure transformer's)."""
    num_workers: int = 0
    precision: str = "32-true"
    """One of 32-true, bf16-mixed, 16-mixed."""
    attention_fp32: bool = True
    """Under mixed precision keep attention in fp32 (conv in low precision)."""
    accelerator: str = "auto"
    devices: str = "1"
    """Devices per node: a count, a list like '0,1', or 'auto'."""
    num_nodes: int = 1
    strategy: str = "auto"
    """auto, ddp, ddp_spawn, fsdp ... passed through to Lightning."""
    seed: int = 42
    deterministic: bool = False
    """Deterministic algorithms (slower; bitwise-reproducible runs on one machine)."""
    ema_decay: float = 0.0
    """Exponential moving average of weights (e.g. 0.999); 0 disables."""
    val_every_n_epochs: int = 1
    checkpoint_every_n_steps: int = 0
    """Also save last.ckpt every N optimiser steps (0: at each epoch end only)."""
    log_every_n_steps: int = 10
    monitor_every_n_steps: int = 0
    """Log attention entropy and conv/attention gradient ratios every N steps (0: off)."""
    limit_train_batches: int | float = 1.0
    """Batches per epoch: an int is a count, a float in (0, 1] a fraction."""
    limit_val_batches: int | float = 1.0
    val_check_interval: int | float = 1.0
    """Validate inside an epoch too: a float in (0, 1] is a fraction of the epoch, an int a
    count of training batches (1.0: once, at the end of the epoch)."""
    accumulate_grad_batches: int = 1
    """Add up the gradients of N batches per optimiser step (effective batch: N x batch_size x
    devices); max_steps, warmup and checkpoint_every_n_steps count optimiser steps."""
    sync_batchnorm: bool = False
    """Under DDP on several GPUs, batch-norm statistics over all devices (SyncBatchNorm)."""
    progress: bool = True
    """Show a rich progress bar."""
    threads: int = 0
    """CPU threads for torch's kernels (0: torch's default, one per core). 1 when other jobs
    hold the cores: threads then wait on each other and steps can stall."""


@dataclass
class RegularizationConfig:
    """The brief's small-data regularisers (MixUp + CutMix via timm, smoothing, drop path)."""

    label_smoothing: float = 0.0
    """Cross-entropy label smoothing in [0, 1) (classification and segmentation)."""
    mixup_alpha: float = 0.0
    """MixUp Beta(alpha, alpha) mixing of image pairs (classification only; 0: off)."""
    cutmix_alpha: float = 0.0
    """CutMix Beta(alpha, alpha) box mixing of image pairs (classification only; 0: off)."""
    mix_prob: float = 1.0
    """Probability that a batch is mixed when MixUp or CutMix is on."""
    drop_path_rate: float = 0.0
    """Stochastic depth: drop rate of the deepest block, rising linearly from 0."""


@dataclass
class RunFolderConfig:
    """Where a run writes: ``<runs_dir>/<name>/``."""

    name: str = "run"
    runs_dir: str = "runs"
    overwrite: bool = False
    """Allow training into an existing run folder (otherwise use --resume or a new name)."""


@dataclass
class RunConfig:
    """The resolved configuration of one run: task sections plus the shared engine sections."""

    data: Any
    model: Any
    optim: OptimConfig
    trainer: TrainerConfig
    regularization: RegularizationConfig
    run: RunFolderConfig

    @property
    def run_dir(self) -> Path:
        """``<runs_dir>/<name>``."""
        return Path(self.run.runs_dir) / self.run.name


def _plain(value: Any) -> Any:
    # bool before int: bool is an int subclass, and the restricted types subclass int/float too.
    if isinstance(value, bool) or value is None or type(value) in (int, float, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, tuple | list):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def plain_values(config: Any) -> Any:
    """``config`` (a config dataclass) with every value of a restricted type made plain.

    Config fields may be typed ``jsonargparse.typing.PositiveInt`` and the like, which the parser
    checks; the values it builds are instances of those ``int``/``float`` subclasses, which
    ``torch.load(weights_only=True)`` refuses inside checkpoints and ``yaml.safe_dump`` cannot
    write. Changes ``config`` in place and returns it.
    """
    if is_dataclass(config) and not isinstance(config, type):
        for item in fields(config):
            setattr(config, item.name, _plain(getattr(config, item.name)))
    return config


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def _check_batches(value: int | float, flag: str) -> None:
    # Lightning's convention for batch limits and intervals: an int counts, a float is a share.
    if isinstance(value, int):
        _check(value >= 1, f"--trainer.{flag} must be a count >= 1 or a fraction in (0, 1]")
    else:
        _check(0 < value <= 1, f"--trainer.{flag} must be a count >= 1 or a fraction in (0, 1]")


def reject_regularization(
    regularization: RegularizationConfig, task: str, names: Iterable[str]
) -> None:
    """``InputError`` for the first of ``names`` set away from its default: ``task`` ignores it.

    A task calls this from its ``validate`` for each regulariser it cannot apply, so a flag is
    either honoured or refused, never silently dropped.
    """
    defaults = RegularizationConfig()
    known = {f.name for f in fields(RegularizationConfig)}
    for name in names:
        if name not in known:
            raise ValueError(f"RegularizationConfig has no field {name!r}")
        value = getattr(regularization, name)
        if value != getattr(defaults, name):
            raise InputError(f"--regularization.{name} {value}: not supported by {task}")


def validate_common(
    optim: OptimConfig, trainer: TrainerConfig, regularization: RegularizationConfig
) -> None:
    """Raise :class:`InputError` with a one-line message for an invalid value."""
    _check(optim.lr > 0, f"--optim.lr must be > 0, got {optim.lr}")
    _check(optim.weight_decay >= 0, f"--optim.weight_decay must be >= 0, got {optim.weight_decay}")
    _check(0 <= optim.warmup_fraction < 1, "--optim.warmup_fraction must be in [0, 1)")
    _check(0 <= optim.min_lr_ratio <= 1, "--optim.min_lr_ratio must be in [0, 1]")
    _check(optim.grad_clip >= 0, f"--optim.grad_clip must be >= 0, got {optim.grad_clip}")
    _check(
        trainer.precision in PRECISIONS,
        f"--trainer.precision must be one of {', '.join(PRECISIONS)}; got {trainer.precision!r}",
    )
    _check(trainer.batch_size >= 1, f"--trainer.batch_size must be >= 1, got {trainer.batch_size}")
    _check(trainer.max_epochs >= 1, f"--trainer.max_epochs must be >= 1, got {trainer.max_epochs}")
    _check(
        trainer.max_steps == -1 or trainer.max_steps >= 1,
        f"--trainer.max_steps must be -1 (off) or >= 1, got {trainer.max_steps}",
    )
    _check(trainer.num_workers >= 0, "--trainer.num_workers must be >= 0")
    _check(trainer.threads >= 0, f"--trainer.threads must be >= 0, got {trainer.threads}")
    _check(trainer.num_nodes >= 1, f"--trainer.num_nodes must be >= 1, got {trainer.num_nodes}")
    _check(0 <= trainer.ema_decay < 1, "--trainer.ema_decay must be in [0, 1)")
    _check(trainer.val_every_n_epochs >= 1, "--trainer.val_every_n_epochs must be >= 1")
    _check(trainer.checkpoint_every_n_steps >= 0, "--trainer.checkpoint_every_n_steps must be >= 0")
    _check(trainer.log_every_n_steps >= 1, "--trainer.log_every_n_steps must be >= 1")
    _check(trainer.monitor_every_n_steps >= 0, "--trainer.monitor_every_n_steps must be >= 0")
    for flag in ("limit_train_batches", "limit_val_batches", "val_check_interval"):
        _check_batches(getattr(trainer, flag), flag)
    _check(
        trainer.accumulate_grad_batches >= 1,
        f"--trainer.accumulate_grad_batches must be >= 1, got {trainer.accumulate_grad_batches}",
    )
    # PyTorch's SyncBatchNorm raises on CPU tensors once a process group exists.
    _check(
        not (trainer.sync_batchnorm and trainer.accelerator == "cpu"),
        "--trainer.sync_batchnorm needs GPUs (PyTorch's SyncBatchNorm does not run on CPU)",
    )
    _check(0 <= regularization.label_smoothing < 1, "--regularization.label_smoothing in [0, 1)")
    _check(regularization.mixup_alpha >= 0, "--regularization.mixup_alpha must be >= 0")
    _check(regularization.cutmix_alpha >= 0, "--regularization.cutmix_alpha must be >= 0")
    _check(0 <= regularization.mix_prob <= 1, "--regularization.mix_prob must be in [0, 1]")
    _check(
        regularization.mix_prob == 1
        or regularization.mixup_alpha > 0
        or regularization.cutmix_alpha > 0,
        "--regularization.mix_prob needs --regularization.mixup_alpha or cutmix_alpha > 0",
    )
    _check(
        0 <= regularization.drop_path_rate < 1, "--regularization.drop_path_rate must be in [0, 1)"
    )
