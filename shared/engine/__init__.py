"""Shared training engine on Lightning: task module, run folders, resume, precision, DDP."""

from .config import OptimConfig, RegularizationConfig, RunFolderConfig, TrainerConfig
from .data import TaskDataModule, resumable_loader
from .io import InputError, atomic_write, atomic_write_json, load_checkpoint
from .module import HybridTask, split_batch, warmup_cosine
from .trainer import build_trainer, fit

__all__ = [
    "HybridTask",
    "InputError",
    "OptimConfig",
    "RegularizationConfig",
    "RunFolderConfig",
    "TaskDataModule",
    "TrainerConfig",
    "atomic_write",
    "atomic_write_json",
    "build_trainer",
    "fit",
    "load_checkpoint",
    "resumable_loader",
    "split_batch",
    "warmup_cosine",
]
