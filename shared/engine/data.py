"""The data-module contract every task follows, and the loader that makes resume exact.

A task's data module is a ``LightningDataModule`` whose batches are either ``(inputs, targets)``
tuples or MONAI-style ``{"image": ..., "label": ...}`` dicts (:func:`shared.engine.split_batch`
reads both). Its training loader should come from :func:`resumable_loader`: Lightning saves a
stateful loader's position in checkpoints, so ``--resume`` continues mid-epoch with exactly the
batches an uninterrupted run would have seen. Its validation loader should come from
:func:`evaluation_loader`, so that under DDP every item is scored once.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

__all__ = ["TaskDataModule", "evaluation_loader", "resumable_loader"]


def resumable_loader(dataset: Dataset, batch_size: int, **kwargs: Any) -> StatefulDataLoader:
    """A shuffling training loader whose position survives a checkpoint.

    Arguments are passed by keyword only: Lightning rebuilds loaders (to add a
    ``DistributedSampler`` under DDP) from their keyword arguments.
    """
    kwargs.setdefault("shuffle", True)
    return StatefulDataLoader(dataset, batch_size=batch_size, **kwargs)


def evaluation_loader(dataset: Dataset, batch_size: int, **kwargs: Any) -> DataLoader:
    """A validation loader that scores every item exactly once, also under DDP.

    Lightning's default ``DistributedSampler`` pads the ranks' shares with repeated items so
    every rank runs as many batches; a metric gathered over ranks then counts those items twice
    (7 validation chips on 2 ranks score 8). Under a process group this loader gives each rank a
    disjoint share without repeats (Lightning's ``UnrepeatedDistributedSampler``, as its predict
    loop uses): validation reduces only at epoch end, and DDP syncs buffers only before the
    first no-grad forward, so shares one item apart are safe. With fewer items than ranks a rank
    would get none and hang at the reduction: then the padding stays.
    """
    if dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
        if 1 < world <= len(dataset):
            kwargs["sampler"] = UnrepeatedDistributedSampler(
                dataset, num_replicas=world, rank=dist.get_rank(), shuffle=False
            )
    return DataLoader(dataset, batch_size=batch_size, **kwargs)


class TaskDataModule(pl.LightningDataModule):
    """Base for task data modules: ``setup`` builds datasets, loaders follow the contract above.

    Subclasses implement ``setup``, ``train_dataloader`` (via :func:`resumable_loader`) and
    ``val_dataloader`` (via :func:`evaluation_loader`); ``prepare_data`` is for one-off work on
    rank 0 (e.g. preprocessing).
    """

    def __init__(self, batch_size: int, seed: int, num_workers: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
