"""Engine callbacks: RNG state in checkpoints, and the run summary + plots at the end of fit."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from .io import atomic_write, atomic_write_json

__all__ = [
    "LoaderPositionCallback",
    "RNGStateCallback",
    "RunSummaryCallback",
    "merge_metric_logs",
    "plot_curves",
]


class RNGStateCallback(pl.Callback):
    """Saves Python, NumPy and torch RNG states in checkpoints and restores them on resume.

    Stored as tensors and plain ints so the checkpoint still loads with ``weights_only=True``.
    The states are put back just before the first training batch after the resume, not when the
    checkpoint is read: building the loaders in between draws from the global RNG (sampler and
    loader seeds), and a run resumed mid-epoch would otherwise drop paths and augment
    differently from the uninterrupted run.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:  # noqa: D102
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:  # noqa: D102
        self._pending = checkpoint.get("rng_states") or None

    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:  # noqa: D102
        states, self._pending = self._pending, None
        if not states:
            return
        torch.set_rng_state(states["torch"])
        kind, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))


class LoaderPositionCallback(pl.Callback):
    """Puts a resumable training loader back at its checkpointed position on resume.

    Lightning restores a stateful loader's position only if it builds the loader after reading
    the checkpoint. A ``configure_optimizers`` that asks ``trainer.estimated_stepping_batches``
    (ours does, for the LR schedule) makes it build the loader first, and the saved position is
    then silently dropped: a resumed run restarts the epoch's shuffle from a fresh generator and
    sees other batches than an uninterrupted run (Lightning issue #20550). At train start, after
    the checkpoint is read, this loads the pending position and restarts the loader's iterator,
    as Lightning's own resume path would have.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        loop = trainer.fit_loop
        if not getattr(loop, "_combined_loader_states_to_load", None):
            return  # nothing pending: a fresh run, or Lightning already restored the loader
        if loop.epoch_loop._num_ready_batches_reached():
            # Saved after the epoch's last batch: the position is "exhausted". Loading it would
            # make the next epoch's loader yield nothing and lose a whole epoch of steps.
            loop._combined_loader_states_to_load = []
            return
        loop._load_combined_loader_states()
        if loop._data_fetcher is not None:
            iter(loop._data_fetcher)  # the iterator made before the restore is stale


def merge_metric_logs(attempt_files: list[Path], start_steps: list[int]) -> list[dict[str, str]]:
    """Join the metrics of successive attempts of one run into one continuous log.

    Rows of attempt ``i`` at or after the step attempt ``i+1`` resumed from are dropped: those
    steps were redone after the resume.
    """
    rows: list[dict[str, str]] = []
    for index, path in enumerate(attempt_files):
        if not path.is_file():
            continue
        limit = start_steps[index + 1] if index + 1 < len(start_steps) else math.inf
        with path.open(newline="") as handle:
            rows += [row for row in csv.DictReader(handle) if int(row["step"]) < limit]
    return rows


def _series(rows: list[dict[str, str]], key: str, x_key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        if row.get(key) not in (None, "") and row.get(x_key) not in (None, ""):
            xs.append(float(row[x_key]))
            ys.append(float(row[key]))
    return xs, ys


def plot_curves(rows: list[dict[str, str]], plot_dir: Path) -> list[Path]:
    """``loss.png`` (train/val loss) and ``metrics.png`` (val metrics by epoch) from log rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    keys = sorted({k for row in rows for k, v in row.items() if v not in (None, "")})
    figures = {
        "loss.png": [("train/loss_step", "step"), ("val/loss", "step")],
        "metrics.png": [(k, "epoch") for k in keys if k.startswith("val/") and k != "val/loss"],
    }
    for filename, series in figures.items():
        series = [(k, x) for k, x in series if k in keys]
        if not series:
            continue
        figure, axis = plt.subplots(figsize=(6, 4))
        for key, x_key in series:
            xs, ys = _series(rows, key, x_key)
            axis.plot(xs, ys, marker="o" if len(xs) < 30 else None, label=key)
        axis.set_xlabel(series[0][1])
        axis.legend()
        axis.grid(alpha=0.3)
        figure.tight_layout()
        path = atomic_write(
            plot_dir / filename, lambda tmp, fig=figure: fig.savefig(tmp, format="png")
        )
        plt.close(figure)
        written.append(path)
    return written


class RunSummaryCallback(pl.Callback):
    """At the end of ``fit`` (rank 0 only) writes ``metrics.csv``, ``summary.json``, ``plots/``."""

    def __init__(self, run_dir: Path, headline: str, mode: str) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.headline = headline
        self.mode = mode
        self._start = time.perf_counter()

    def on_fit_start(self, trainer, pl_module) -> None:  # noqa: D102
        self._start = time.perf_counter()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.save()
        write_run_outputs(
            self.run_dir, trainer, self.headline, self.mode, time.perf_counter() - self._start
        )


def _attempts(run_dir: Path) -> tuple[list[Path], list[int]]:
    folders = sorted(
        (p for p in (run_dir / "logs").glob("attempt-*") if p.is_dir()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    starts = [
        json.loads(f.with_name(f"{f.name}.json").read_text())["start_step"]
        if f.with_name(f"{f.name}.json").is_file()
        else 0
        for f in folders
    ]
    return [f / "metrics.csv" for f in folders], starts


def write_run_outputs(
    run_dir: Path, trainer: pl.Trainer, headline: str, mode: str, seconds: float
) -> dict[str, Any]:
    """Merge logs into ``metrics.csv``, draw ``plots/``, write ``summary.json``; returns it."""
    files, starts = _attempts(run_dir)
    rows = merge_metric_logs(files, starts)
    if rows:
        fields = sorted({k for row in rows for k in row})

        def write_csv(tmp: Path) -> None:
            with tmp.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(run_dir / "metrics.csv", write_csv)
    plots = plot_curves(rows, run_dir / "plots")
    best = None
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "monitor", None) == headline and callback.best_model_path:
            best = callback
    final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    summary = {
        "headline_metric": headline,
        "mode": mode,
        "best_value": float(best.best_model_score)
        if best and best.best_model_score is not None
        else final.get(headline),
        "best_checkpoint": os.path.relpath(best.best_model_path, run_dir) if best else None,
        "last_checkpoint": "checkpoints/last.ckpt",
        "final_metrics": final,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "attempts": len(files),
        "seconds_this_attempt": round(seconds, 2),
        "plots": [str(p.relative_to(run_dir)) for p in plots],
    }
    atomic_write_json(run_dir / "summary.json", summary)
    return summary
