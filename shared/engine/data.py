"""The data-module contract every task follows, and the loader that makes resume exact.

A task's data module is a ``LightningDataModule`` whose batches are either ``(inputs, targets)``
tuples or MONAI-style ``{"image": ..., "label": ...}`` dicts (:func:`shared.engine.split_batch`
reads both). Its training loader should come from :func:`resumable_loader`: Lightning saves a
stateful loader's position in checkpoints, so ``--resume`` continues mid-epoch with exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

__all__ = ["TaskDataModule", "resumable_loader"]


def resumable_loader(dataset: Dataset, batch_size: int, **kwargs: Any) -> StatefulDataLoader:
    """A shuffling training loader whose position survives a checkpoint.

    Arguments are passed by keyword only: Lightning rebuilds loaders (to add a
    ``DistributedSampler`` under DDP) from their keyword arguments.
    """
    kwargs.setdefault("shuffle", True)
    return StatefulDataLoader(dataset, batch_size=batch_size, **kwargs)


class TaskDataModule(pl.LightningDataModule):
    """Base for task data modules: ``setup`` builds datasets, loaders follow the contract above.

    Subclasses implement ``setup``, ``train_dataloader`` (via :func:`resumable_loader`) and
    ``val_dataloader``; ``prepare_data`` is for one-off work on rank 0 (e.g. preprocessing).
    """

    def __init__(self, batch_size: int, seed: int, num_workers: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
