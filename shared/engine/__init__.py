"""Shared training engine on Lightning: task modules, run folders, resume, precision, DDP, and
the inference contract (one plan per checkpoint, one loader)."""

from .config import (
    HalfOpenUnitInterval,
    OptimConfig,
    RegularizationConfig,
    RunConfig,
    RunFolderConfig,
    TrainerConfig,
    reject_regularization,
    validate_common,
)
from .contract import (
    CHECKPOINT_KEY,
    Vertical,
    load_for_inference,
    network_state_dict,
    read_checkpoint,
)
from .data import TaskDataModule, evaluation_loader, resumable_loader
from .image_task import ImageToImageTask
from .io import InputError, atomic_write, atomic_write_json, file_stem, load_checkpoint
from .module import HybridTask, split_batch, warmup_cosine
from .monitoring import HybridMonitorCallback
from .trainer import build_inference_trainer, build_trainer, fit

__all__ = [
    "HybridMonitorCallback",
    "CHECKPOINT_KEY",
    "Vertical",
    "load_for_inference",
    "network_state_dict",
    "read_checkpoint",
    "HalfOpenUnitInterval",
    "HybridTask",
    "ImageToImageTask",
    "InputError",
    "OptimConfig",
    "RegularizationConfig",
    "RunConfig",
    "RunFolderConfig",
    "TaskDataModule",
    "TrainerConfig",
    "atomic_write",
    "atomic_write_json",
    "build_inference_trainer",
    "build_trainer",
    "file_stem",
    "fit",
    "load_checkpoint",
    "reject_regularization",
    "evaluation_loader",
    "resumable_loader",
    "split_batch",
    "validate_common",
    "warmup_cosine",
]
