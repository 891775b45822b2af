"""``python -m remote_sensing.demo``: the remote-sensing part of ``make demo``.

Draws a procedural 8-class scene set from the real Sentinel-2 pixels that xarray-spatial ships
(:mod:`remote_sensing.synthetic`), written in EuroSAT's layout, and runs it through ``hv-rs``
as a user's EuroSAT folder would go: ``stats``, ``train`` (hybrid, multiscale head, rotation and
scale augmentation), ``evaluate`` on the held-out test split plain, rotated by arbitrary angles
and over D4, then ``tile`` and ``predict`` the real georeferenced chip into a class-map GeoTIFF.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console

from .cli import main as hv_rs
from .synthetic import write_demo_dataset, write_scene


def run_demo(out: Path, per_class: int, epochs: int, chip: int) -> int:
    """Data, stats, train, evaluate, tile, predict; returns the first non-zero exit code."""
    console = Console()
    started = time.perf_counter()
    data = write_demo_dataset(out / "data" / "S2Procedural", per_class, chip)
    scene = write_scene(out / "scene" / "sentinel2_chip.tif")
    console.print(f"[bold]remote-sensing demo[/]: {per_class} chips/class x 8 classes, {chip} px, "
                  f"6 bands (real Sentinel-2 spectra) -> {data}")  # fmt: skip
    run = out / "runs" / "hybrid"
    checkpoint = run / "checkpoints" / "last.ckpt"
    steps = [
        ["stats", str(data)],
        ["train", "--data.root", str(data), "--data.chip_size", str(chip),
         "--trainer.max_epochs", str(epochs), "--trainer.batch_size", "32",
         "--optim.lr", "2e-3", "--optim.warmup_fraction", "0.1",
         "--run.runs_dir", str(out / "runs"), "--run.name", "hybrid", "--run.overwrite", "true",
         "--trainer.progress", "false"],
        ["evaluate", "--checkpoint", str(checkpoint), "--views", "plain", "rotate", "d4"],
        ["tile", str(scene), "-o", str(out / "scene_chips"), "--size", str(chip),
         "--stride", str(chip)],
        ["predict", str(scene), "-o", str(out / "sentinel2_classmap.tif"),
         "--checkpoint", str(checkpoint), "--probabilities"],
    ]  # fmt: skip
    for argv in steps:
        console.rule(f"hv-rs {argv[0]}")
        code = hv_rs(argv)
        if code:
            return code
    scores = json.loads((run / "evaluation_test.json").read_text())["scores"]
    console.print(
        f"[bold]test macro-F1 {scores['plain']['macro_f1']:.3f}[/], under arbitrary rotation "
        f"{scores['rotate']['macro_f1']:.3f}, D4 {scores['d4']['macro_f1']:.3f} "
        f"({scores['plain']['count']} held-out chips)\n"
        f"run: {run}/ (test_confusion.png, evaluation_test.json); class map: "
        f"{out / 'sentinel2_classmap.tif'} ({time.perf_counter() - started:.0f} s)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m remote_sensing.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/demo/remote_sensing"))
    parser.add_argument("--per-class", type=int, default=80)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--chip", type=int, default=32)
    args = parser.parse_args(argv)
    return run_demo(args.out, args.per_class, args.epochs, args.chip)


if __name__ == "__main__":
    sys.exit(main())
