"""Streaming, tiled inference: upscale a video or frame folder with bounded memory.

Memory stays bounded in both directions:

- time: frames are decoded one at a time; only the frames of the current temporal window (plus
  the look-ahead it needs) are held, so a long video costs no more than a short one;
- space: each window is cut into overlapping LR tiles (:func:`video_sr.inference.tiled_forward`,
  MONAI's sliding window with gaussian blending, stitched on the CPU), so peak activation
  memory depends on ``tile``, not on the frame size. Only the output frame itself grows with
  the resolution.

Clip ends are reflected (frame -1 is frame 1), as in training. The checkpoint carries the scale,
the temporal window, the degradation and the architecture (its :class:`~video_sr.plan.VSRPlan`,
read by :func:`shared.engine.contract.load_for_inference`), so nothing else is needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from shared.engine import InputError
from shared.memory import current_rss_mib, peak_memory, peak_rss_mib

from .data import reflect_index
from .inference import tiled_forward
from .io import frame_writer, is_video_path, open_source
from .model import VideoSRNet

__all__ = [
    "UpscaleReport",
    "peak_rss_mib",
    "stream_windows",
    "tile_for_memory",
    "upscale",
]

PROBE_TILE = 32
"""LR tile size of the activation-memory probe (a multiple of the attention windows)."""
MEMORY_MARGIN = 1.5
"""Allowance on the probe's tensor bytes for allocator overhead and fragmentation."""
IO_ALLOWANCE_MIB = 96
"""Memory the run adds besides tensors: video encoder and decoder buffers, oneDNN kernel caches
for the tile shapes. Measured: without it, 720p runs peaked 71-85 MiB above the budget."""


def tile_for_memory(
    model: VideoSRNet, budget_mib: float, frame_size: tuple[int, int]
) -> int | None:
    """The largest LR tile (a multiple of 8) whose inference fits ``budget_mib`` of RSS.

    Measured, not guessed: one forward pass on a ``PROBE_TILE`` tile under the torch profiler
    gives the activation bytes per LR pixel (convolutions and windowed attention are linear in
    the pixel count), times ``MEMORY_MARGIN``. Fixed costs come first: this process's RSS now
    (libraries, weights), the whole-frame buffers of one window (the input frames, and the
    float32 output and blending weights the tiles are stitched into) and ``IO_ALLOWANCE_MIB``.
    ``None``: whole frames fit. Raises :class:`InputError` when not even an 8-pixel tile does.
    """
    height, width = frame_size
    frames, scale = model.num_frames, model.scale
    mib = 2**20
    # Probe first: the profiler's own memory then counts in the RSS read below.
    probe = torch.rand(1, 3, frames, PROBE_TILE, PROBE_TILE)
    with torch.inference_mode():
        per_pixel = peak_memory(lambda: model.eval()(probe)) / PROBE_TILE**2 * MEMORY_MARGIN
    buffers = (3 * frames * height * width + 2 * 3 * scale**2 * height * width) * 4 / mib
    buffers += IO_ALLOWANCE_MIB
    process = current_rss_mib()
    fixed = process + buffers
    if budget_mib <= fixed:
        raise InputError(
            f"--max-memory {budget_mib:.0f} MiB: the process ({process:.0f} MiB) and one "
            f"window's frame and I/O buffers ({buffers:.0f} MiB) already need {fixed:.0f} MiB"
        )
    if (budget_mib - fixed) * mib >= per_pixel * height * width:
        return None
    tile = int(((budget_mib - fixed) * mib / per_pixel) ** 0.5) // 8 * 8
    if tile < 8:
        raise InputError(
            f"--max-memory {budget_mib:.0f} MiB: not even an 8-pixel tile fits beside the "
            f"{fixed:.0f} MiB the process and frame buffers need"
        )
    return tile


def stream_windows(
    frames: Iterable[np.ndarray], num_frames: int
) -> Iterator[tuple[int, list[np.ndarray], int | None]]:
    """``(centre, window, known_length)`` for every frame, holding only about 2T frames.

    The window's frames are reflected at the clip ends; ``known_length`` is the number of frames
    once the source is exhausted (``None`` before).
    """
    half = num_frames // 2
    held: dict[int, np.ndarray] = {}
    source = iter(frames)
    read, length, centre = 0, None, 0
    while length is None or centre < length:
        while length is None and read <= centre + half:  # look ahead until the window is there
            frame = next(source, None)
            if frame is None:
                length = read
                break
            held[read] = frame
            read += 1
        if length is not None and centre >= length:
            break
        # Before the end is known only the start reflects; ``read`` frames suffice for it.
        size = length if length is not None else read
        reflect = [length is not None or centre + o < 0 for o in range(-half, half + 1)]
        indices = [
            reflect_index(centre + o, size) if r else centre + o
            for o, r in zip(range(-half, half + 1), reflect, strict=True)
        ]
        yield centre, [held[i] for i in indices], length
        for stale in [i for i in held if i < centre - num_frames]:
            del held[stale]
        centre += 1


@dataclass
class UpscaleReport:
    """What an upscale run did."""

    output: Path
    frames: int
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    seconds: float
    peak_rss_mib: float
    padded: bool
    """The clip had fewer frames than the window: windows were filled by reflection."""


def _check_paths(source: Path, target: Path, overwrite: bool) -> None:
    if target.resolve() == source.resolve():
        raise InputError(f"{target}: output would overwrite the input; choose another -o")
    if target.exists() and not overwrite:
        raise InputError(f"{target}: exists; pass --overwrite to replace it")
    if target.exists() and target.is_dir() != (not is_video_path(target)):
        raise InputError(f"{target}: exists and is of the other kind (file vs folder)")


def upscale(
    model: VideoSRNet,
    source_path: Path,
    target: Path,
    tile: int | None = 128,
    overlap: float = 0.25,
    bf16: bool = False,
    overwrite: bool = False,
    fps: float | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> UpscaleReport:
    """Upscale ``source_path`` (video or frame folder) into ``target`` (video file or folder)."""
    import time

    source_path, target = Path(source_path), Path(target)
    _check_paths(source_path, target, overwrite)
    source = open_source(source_path, fps)
    scale, frames = model.scale, model.num_frames
    model = model.to(device).eval()
    started, count, padded = time.perf_counter(), 0, False
    autocast = (
        torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext()
    )
    writer = frame_writer(target, source.fps, overwrite)
    try:
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task(f"upscale x{scale} {source_path.name}", total=source.count)
            for _, window, length in stream_windows(source, frames):
                stack = torch.from_numpy(np.stack(window)).to(device)
                lq = stack.permute(3, 0, 1, 2).unsqueeze(0).float() / 255.0  # (1, 3, T, h, w)
                with torch.inference_mode(), autocast:
                    out = tiled_forward(model, lq, tile, overlap)
                frame = (out[0].float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0)
                writer.write(frame.cpu().numpy())
                padded = padded or (length is not None and length < frames)
                count += 1
                bar.advance(task)
        writer.close()
    except BaseException:
        writer.abort()  # also on Ctrl-C: nothing half-written keeps the target's name
        raise
    height, width = source.size
    return UpscaleReport(
        target,
        count,
        (height, width),
        (height * scale, width * scale),
        time.perf_counter() - started,
        peak_rss_mib(),
        padded,
    )
