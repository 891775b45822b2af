"""Run preparation jobs on a process pool with one progress bar (``prepare`` and fingerprint)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from .data import make_progress

__all__ = ["run_jobs"]


def _worker_init() -> None:
    """One torch thread per worker process: workers already use the cores, and OpenMP pools
    inherited through fork are not safe to reuse (PyTorch's DataLoader does the same)."""
    import torch

    torch.set_num_threads(1)


def run_jobs(
    work: Callable[[Any], Any],
    jobs: list[Any],
    workers: int,
    description: str,
    on_result: Callable[[Any], None],
) -> None:
    """Run ``work(job)`` for every job (processes when ``workers > 1``) with a progress bar.

    ``on_result`` runs in this process as each job finishes. The first error cancels the
    remaining jobs and is re-raised.
    """
    if not jobs:
        return
    if workers <= 1 or len(jobs) == 1:
        with make_progress() as progress:
            task = progress.add_task(description, total=len(jobs))
            for job in jobs:
                on_result(work(job))
                progress.advance(task)
        return
    # fork: workers start in milliseconds with MONAI already imported (spawn re-imports it,
    # which takes many seconds); all jobs are submitted before the progress thread starts.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(min(workers, len(jobs)), context, _worker_init) as pool:
        pending = {pool.submit(work, job) for job in jobs}
        with make_progress() as progress:
            task = progress.add_task(description, total=len(jobs))
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        on_result(future.result())
                        progress.advance(task)
            finally:
                for future in pending:
                    future.cancel()
