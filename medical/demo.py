"""``python -m medical.demo``: the medical part of ``make demo``.

Writes the embedded MNI152 T1 brain (nilearn's copy, real MRI) as an MSD dataset, prepares it,
trains a small hybrid U-Net briefly on CPU and prints the validation Dice per class. The
validation slab shares no voxels with the training slabs (see :mod:`medical.phantom`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .cli import main as hv_med
from .phantom import MNI_THRESHOLD, write_mni_demo


def run_demo(out: Path, epochs: int, steps_per_epoch: int) -> int:
    """Build the dataset, prepare, train; returns the CLI's exit code."""
    console = Console()
    started = time.perf_counter()
    dataset = write_mni_demo(out / "data" / "MNI152Brain")
    console.print(
        f"[bold]medical demo[/]: MNI152 T1 (nilearn), grey/white matter where the probability "
        f">= {MNI_THRESHOLD}, 2 mm, 2 training slabs + 1 held-out slab -> {dataset}"
    )
    code = hv_med([
        "prepare", str(dataset), "-o", str(out / "prepared"), "--workers", "1",
    ])  # fmt: skip
    if code:
        return code
    code = hv_med([
        "train", "--data.prepared", str(out / "prepared"), "--data.patch_size", "[64, 64, 32]",
        "--data.samples_per_case", "4", "--trainer.batch_size", "2",
        "--trainer.max_epochs", str(epochs), "--trainer.limit_train_batches", str(steps_per_epoch),
        "--optim.lr", "2e-3", "--optim.warmup_fraction", "0.1",
        "--run.runs_dir", str(out / "runs"), "--run.name", "mni", "--run.overwrite", "true",
        "--trainer.progress", "false",
    ])  # fmt: skip
    if code:
        return code
    summary = json.loads((out / "runs" / "mni" / "summary.json").read_text())
    table = Table(title="MNI152 held-out slab: Dice per class (sliding window)")
    table.add_column("class")
    table.add_column("Dice", justify="right")
    for key, value in summary["final_metrics"].items():
        if key.startswith("val/dice_"):
            table.add_row(key.removeprefix("val/dice_"), f"{value:.3f}")
    table.add_row("[bold]foreground mean", f"[bold]{summary['final_metrics']['val/dice']:.3f}")
    console.print(table)
    console.print(
        f"best val/dice {summary['best_value']:.3f}; run folder {out / 'runs' / 'mni'}/ "
        f"({time.perf_counter() - started:.0f} s)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m medical.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/demo/medical"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps-per-epoch", type=int, default=10)
    args = parser.parse_args(argv)
    return run_demo(args.out, args.epochs, args.steps_per_epoch)


if __name__ == "__main__":
    sys.exit(main())
