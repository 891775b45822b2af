"""``hv-vsr``: train, upscale, evaluate, degrade, bench and export video super-resolution.

Built on the shared CLI chassis (train / export, YAML configs, ``--resume``); ``upscale``,
``degrade`` and a BasicSR-convention ``evaluate PRED GT`` are video SR commands of their own.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from rich.console import Console

from shared.cli import OneLineArgumentParser, TaskSpec, build_cli, parse_inference_command
from shared.engine import InputError

from .io import FrameFolderWriter, clip_sources, open_source
from .plan import VIDEO_SR, VSRPlan
from .task import VSRDataConfig, VSRModelConfig, build_task, validate
from .transforms import DEGRADATIONS, SCALES, degrade, mod_crop

__all__ = ["SPEC", "degrade_main", "evaluate_main", "main", "upscale_main"]


def _upscale_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", type=str,
                        help="a video file or a folder of PNG/JPG frames; or several, or a folder "
                        "of clips (videos or frame folders)")  # fmt: skip
    parser.add_argument("-o", "--out", type=str, required=True,
                        help="one clip: output video (.mkv lossless FFV1, .mp4 H.264 CRF 17) or "
                        "frame folder; several clips: a folder (a video clip becomes "
                        "OUT/<clip>.mkv, a frame folder OUT/<clip>/)")  # fmt: skip
    parser.add_argument("--checkpoint", type=str, default=None,
                        help="hv-vsr checkpoint (default: the shipped x4 BI weights, "
                        "video_sr/weights/MODEL_CARD.md)")  # fmt: skip
    parser.add_argument("--scale", type=int, default=None,
                        help="check the checkpoint's scale (the shipped weights: 4 only)")
    parser.add_argument("--tile", type=int, default=128, help="LR tile size (0: whole frames)")
    parser.add_argument("--max-memory", type=float, default=None,
                        help="MiB: the largest tile whose measured peak RSS fits (replaces "
                        "--tile)")  # fmt: skip
    parser.add_argument("--tile-overlap", type=float, default=0.25, help="tile overlap fraction")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (attention fp32)")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of a frame folder")
    parser.add_argument("--device", type=str, default="auto",
                        help="cpu, cuda or cuda:N (auto: the --trainer flags, a GPU if present)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _upscale_jobs(inputs: list[Path], out: Path) -> list[tuple[Path, Path]]:
    """(clip, output) pairs: one clip to ``out`` itself, several to ``out/<clip>[.mkv]``."""
    clips: dict[str, Path] = {}
    for path in inputs:
        for name, clip in clip_sources(path).items():
            if name in clips:
                raise InputError(f"{clips[name]} and {clip}: two clips named {name!r}")
            clips[name] = clip
    if len(clips) == 1 and len(inputs) == 1:
        return [(next(iter(clips.values())), out)]
    if out.suffix:
        raise InputError(f"{out}: several clips need an output folder, not one file")
    return [(clip, out / (f"{name}.mkv" if clip.is_file() else name))
            for name, clip in clips.items()]  # fmt: skip


def upscale_main(argv: Sequence[str]) -> int:
    """``hv-vsr upscale VIDEO|FRAMES|CLIPS... -o OUT [--checkpoint CKPT]``.

    Upscale video files or frame folders with a trained checkpoint (which carries its scale and
    temporal window), by default the shipped x4 BI weights. Frames are streamed and windows run
    in overlapping tiles, so memory stays bounded for long and high-resolution videos; each
    output keeps its input's frame rate.
    With ``--trainer.devices N --trainer.num_nodes M --trainer.strategy ddp`` the clips are
    shared among the N x M processes, each output written once.
    """
    from shared.engine.contract import load_for_inference
    from shared.engine.jobs import gather_results, run_over_inputs

    from .pretrained import SHIPPED_SCALE, shipped_checkpoint
    from .upscale import tile_for_memory, upscale

    args, cfg = parse_inference_command(SPEC, "upscale", upscale_main.__doc__ or "", argv,
                                        _upscale_arguments)  # fmt: skip
    _check_upscale_args(args)
    jobs = _upscale_jobs([Path(p) for p in args.inputs], Path(args.out))
    if args.checkpoint is None:
        if args.scale is not None and args.scale != SHIPPED_SCALE:
            raise InputError(
                f"--scale {args.scale}: the shipped weights are x{SHIPPED_SCALE} only; train a "
                f"x{args.scale} model (hv-vsr train --data.scale {args.scale}) and pass "
                "--checkpoint"
            )
        args.checkpoint = str(shipped_checkpoint())
    model, plan = load_for_inference(args.checkpoint, VIDEO_SR)
    if args.scale is not None and args.scale != plan.scale:
        raise InputError(
            f"{args.checkpoint}: trained for x{plan.scale}, --scale {args.scale} asked"
        )
    if args.bf16:  # the precision policy: convolutions in bf16, attention in fp32
        from shared.attention import SpatialSelfAttention

        for layer in model.modules():
            if isinstance(layer, SpatialSelfAttention):
                layer.attention_fp32 = True
    console = Console()

    def run(job: tuple[Path, Path]) -> str:
        source, target = job
        tile = args.tile or None
        if args.max_memory is not None:
            tile = tile_for_memory(model, args.max_memory, open_source(source).size)
            console.print(f"{source.name}: --max-memory {args.max_memory:.0f} MiB: "
                          + (f"{tile}-pixel LR tiles" if tile else "whole frames fit"))  # fmt: skip
        device = str(next(model.parameters()).device)  # the rank's device
        report = upscale(model, source, target, tile, args.tile_overlap, args.bf16,
                         args.overwrite, args.fps, device, not args.no_progress)  # fmt: skip
        (h, w), (oh, ow) = report.input_size, report.output_size
        line = (
            f"hv-vsr upscale: {report.frames} frames {w}x{h} -> {ow}x{oh} (x{plan.scale}, "
            f"{plan.num_frames}-frame window) in {report.seconds:.1f} s "
            f"({report.frames / report.seconds:.2f} frames/s), peak RSS "
            f"{report.peak_rss_mib:.0f} MiB -> {report.output}"
        )
        if report.padded:
            line = (f"note: {source} has {report.frames} frames, fewer than the "
                    f"{plan.num_frames}-frame window: windows were filled by reflecting the "
                    f"clip\n{line}")  # fmt: skip
        return line

    cfg.trainer.progress = cfg.trainer.progress and not args.no_progress and len(jobs) > 1
    _, lines = run_over_inputs(jobs, run, cfg.trainer, model)
    for _, line in sorted((gather_results(lines) or {}).items()):
        console.print(line)
    return 0


def _check_upscale_args(args) -> None:
    """One-line refusals for upscale options out of range, before anything is loaded."""
    if args.tile and args.tile < 8:
        raise InputError(f"--tile must be 0 (whole frames) or >= 8, got {args.tile}")
    if not 0 <= args.tile_overlap < 1:
        raise InputError(f"--tile-overlap must be in [0, 1), got {args.tile_overlap}")
    if args.max_memory is not None and args.max_memory <= 0:
        raise InputError(f"--max-memory must be > 0 MiB, got {args.max_memory}")
    if args.fps is not None and not args.fps > 0:
        raise InputError(f"--fps must be > 0, got {args.fps}")
    if args.device == "auto":
        return
    try:
        device = torch.device(args.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise InputError(f"--device {args.device}: choose cpu, cuda or cuda:N")
    if device.type == "cuda" and (
        not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
    ):
        raise InputError(f"--device {args.device}: no such CUDA device on this machine")


def _write_clip(frames, folder: Path, overwrite: bool) -> int:
    """Write frames into ``folder`` through a hidden temporary folder renamed at the end."""
    with FrameFolderWriter(folder, overwrite) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.frames


def degrade_main(argv: Sequence[str]) -> int:
    """``hv-vsr degrade INPUT -o OUT``: write a BasicSR paired dataset (gt/ and lq/)."""
    parser = OneLineArgumentParser(
        prog="hv-vsr degrade",
        description="Make a BasicSR paired dataset OUT/gt/<clip>/%%08d.png + OUT/lq/<clip>/ "
        "from videos or frame folders. GT frames are cropped to a multiple of the scale "
        "(last rows/columns dropped); LR = BI (MATLAB-style bicubic) or BD (Gaussian sigma "
        "1.6, every scale-th pixel).",
    )
    parser.add_argument("input", type=Path, help="video, frame folder, or folder of clips")
    parser.add_argument("-o", "--out", type=Path, required=True, help="dataset root to write")
    parser.add_argument("--scale", type=int, choices=SCALES, default=4)
    parser.add_argument("--degradation", choices=DEGRADATIONS, default="BI")
    parser.add_argument("--max-frames", type=int, default=0, help="frames per clip (0: all)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing clips")
    args = parser.parse_args(list(argv))
    if args.max_frames < 0:
        raise InputError(f"--max-frames must be >= 0 (0: all), got {args.max_frames}")
    if args.out.resolve() == args.input.resolve():
        raise InputError(f"{args.out}: the dataset root must differ from the input")
    clips = clip_sources(args.input)
    for name in clips:
        for part in ("gt", "lq"):
            if (args.out / part / name).exists() and not args.overwrite:
                raise InputError(f"{args.out / part / name}: exists; pass --overwrite")
    console = Console()
    for name, path in clips.items():
        source = open_source(path)
        limit = args.max_frames or None

        def frames(source=source, limit=limit):
            for index, frame in enumerate(source):
                if limit is not None and index >= limit:
                    return
                yield mod_crop(frame, args.scale)

        gt_count = _write_clip(frames(), args.out / "gt" / name, args.overwrite)
        lq_frames = (degrade(f, args.scale, args.degradation) for f in frames())
        _write_clip(lq_frames, args.out / "lq" / name, args.overwrite)
        h, w = source.size
        cropped = "" if (h % args.scale, w % args.scale) == (0, 0) else (
            f" (cropped from {w}x{h} to {w - w % args.scale}x{h - h % args.scale})"
        )
        console.print(f"{name}: {gt_count} frames{cropped}, {args.degradation} x{args.scale}")
    console.print(f"hv-vsr degrade: {len(clips)} clips -> {args.out}/gt, {args.out}/lq")
    return 0


def evaluate_main(argv: Sequence[str]) -> int:
    """``hv-vsr evaluate PRED GT -o OUT``: PSNR-Y/RGB and SSIM, BasicSR conventions."""
    from .evaluate import evaluate_folders

    parser = OneLineArgumentParser(
        prog="hv-vsr evaluate",
        description="Score predicted frames against GT with BasicSR's conventions (8-bit, "
        "float64, crop_border = scale by default, Y = BT.601 unrounded; mean over frames then "
        "clips). Writes metrics.json, metrics.csv, psnr_per_frame.png and crops.png.",
    )
    parser.add_argument("pred", type=Path, help="predicted clip(s): folder(s) or video")
    parser.add_argument("gt", type=Path, help="reference clip(s): folder(s) or video")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--scale", type=int, choices=SCALES, default=4)
    parser.add_argument("--crop-border", type=int, default=None, help="default: the scale")
    parser.add_argument("--lq", type=Path, default=None, help="LR clips for the bicubic panel")
    parser.add_argument("--no-ssim", action="store_true", help="skip SSIM (faster)")
    args = parser.parse_args(list(argv))
    if args.crop_border is not None and args.crop_border < 0:
        raise InputError(f"--crop-border must be >= 0, got {args.crop_border}")
    summary = evaluate_folders(
        args.pred, args.gt, args.out, args.scale, args.crop_border, args.lq, not args.no_ssim
    )
    line = f"PSNR-Y {summary['psnr_y']:.3f} dB, PSNR-RGB {summary['psnr_rgb']:.3f} dB"
    if "ssim_y" in summary:
        line += f", SSIM-Y {summary['ssim_y']:.4f}"
    Console().print(f"hv-vsr evaluate: {line} over {len(summary['per_clip'])} clips -> {args.out}/")
    return 0


EXPORT_TILE = 64
"""LR tile (pixels) of an exported program: it runs on windows of this size, as upscale's tiles."""


def _example_input(plan: VSRPlan) -> torch.Tensor:
    return torch.rand(2, 3, plan.num_frames, EXPORT_TILE, EXPORT_TILE)


def _bench(argv: Sequence[str]) -> int:
    from .bench import main as bench_main

    return bench_main(argv)


SPEC = TaskSpec(
    prog="hv-vsr",
    description="Spatiotemporal hybrid CNN-Transformer video super-resolution, scored by "
    "BasicSR-convention PSNR.",
    data_config=VSRDataConfig,
    model_config=VSRModelConfig,
    build=build_task,
    vertical=VIDEO_SR,
    headline="val/psnr_y",
    mode="max",
    path_fields=("data.root", "data.cache_dir"),
    validate=validate,
    example_input=_example_input,
    bench=_bench,
    # SR recipe, not the classifier's: no weight decay (BasicSR's SR configs use none) and a
    # higher peak rate, which with the MSE loss learned within a few hundred CPU steps
    # (issue 10; the engine's 3e-4 is tuned for attention classifiers).
    defaults={"optim.lr": 1e-3, "optim.weight_decay": 0.0},
    commands={
        "upscale": ("upscale a video or frames: INPUT -o OUT [--checkpoint CKPT]", upscale_main),
        "degrade": ("write a BasicSR gt/ + lq/ dataset: INPUT -o OUT --scale 4", degrade_main),
        "evaluate": ("PSNR-Y/RGB, SSIM of predictions vs GT: PRED GT -o OUT", evaluate_main),
    },
)

main = build_cli(SPEC)

if __name__ == "__main__":
    sys.exit(main())
