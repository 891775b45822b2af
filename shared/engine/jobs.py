"""Run one job per input file on Lightning's predict loop, shared among processes.

Every command that runs a trained model over a folder of inputs (``hv-med predict`` on scans,
``hv-rs predict`` on scenes or chips, ``hv-vsr upscale`` on clips) hands its jobs to
:func:`run_over_inputs`: with ``--trainer.devices N --trainer.num_nodes M --trainer.strategy ddp``
Lightning gives each of the N x M processes a disjoint share (its predict sampler does not pad
with repeats), so every output is written exactly once, by the job itself, atomically. One
process without a strategy runs them all in order. The network is a submodule of the
:class:`JobRunner`, so Lightning moves it to each rank's device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .config import TrainerConfig
from .trainer import build_inference_trainer

__all__ = ["JobRunner", "gather_results", "run_over_inputs"]


class _Jobs(Dataset):
    """Jobs by index: the predict sampler splits the indexes among ranks."""

    def __init__(self, jobs: Sequence[Any]) -> None:
        self.jobs = list(jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.jobs[index]


def _one(batch: list[tuple[int, Any]]) -> tuple[int, Any]:
    # Batch size 1 and no stacking: a job is a description (paths, names), read inside the step.
    return batch[0]


class JobRunner(pl.LightningModule):
    """``predict_step`` runs ``run(job)`` for one job; its results are kept per index."""

    def __init__(self, network: nn.Module | None, run: Callable[[Any], Any]) -> None:
        super().__init__()
        self.network = network
        self.run = run
        self.results: dict[int, Any] = {}

    def predict_step(self, batch: tuple[int, Any], batch_idx: int) -> int:
        """Run one job and keep what it returns (this rank's share only); the job's index."""
        index, job = batch
        self.results[index] = self.run(job)
        return index


def run_over_inputs(
    jobs: Sequence[Any],
    run: Callable[[Any], Any],
    trainer_cfg: TrainerConfig,
    network: nn.Module | None = None,
) -> tuple[pl.Trainer, dict[int, Any]]:
    """Run ``run(job)`` for every job, shared among the processes ``trainer_cfg`` asks for.

    Returns the trainer (``is_global_zero``, ``strategy.barrier()`` for a step after all ranks
    finished) and this rank's results by job index. ``network`` (moved to the rank's device
    first) is what ``run`` calls; pass it so multi-GPU runs put it on each rank's GPU.
    """
    runner = JobRunner(network, run)
    loader = DataLoader(_Jobs(jobs), batch_size=1, collate_fn=_one)
    trainer = build_inference_trainer(trainer_cfg)
    trainer.predict(runner, dataloaders=loader, return_predictions=False)
    return trainer, runner.results


def gather_results(results: dict[int, Any]) -> dict[int, Any] | None:
    """Every rank's results by job index on global rank 0 (``None`` on the others).

    For outputs that several jobs fill together (one CSV row per chip): each rank returns its
    rows, rank 0 writes the file once. Without a process group this rank's results come back.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(results)
    gathered: list[dict[int, Any] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, results)
    if dist.get_rank() != 0:
        return None
    merged: dict[int, Any] = {}
    for part in gathered:
        merged.update(part or {})
    return merged
