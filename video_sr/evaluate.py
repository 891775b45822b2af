"""``hv-vsr evaluate PRED GT``: BasicSR-convention scores of predicted frames against references.

PRED and GT are each a clip folder, a folder of clip folders (BasicSR ``gt/``-style) or a video
file. Clips pair by name, frames by order. GT frames get the documented mod-crop to the scale
(:func:`video_sr.transforms.mod_crop`). Writes ``metrics.json`` (per frame, per clip, mean over
clips), ``metrics.csv`` (one row per frame), ``psnr_per_frame.png`` and ``crops.png`` (a crop of
the first clip's middle frame: bicubic / ours / GT; bicubic from ``--lq`` frames or from BI
degradation of the GT).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from shared.engine import InputError, atomic_write, atomic_write_json

from .io import clip_sources, open_source
from .metrics import frames_by_clip, mean_over_clips, psnr, ssim
from .transforms import bi_downsample, bicubic_upscale, mod_crop

__all__ = ["evaluate_folders"]

SSIM_WINDOW = 11
"""Side of skimage's SSIM window with gaussian weights, sigma 1.5: 2 * int(3.5 * 1.5 + 0.5) + 1."""


def _pairs(pred: Path, gt: Path) -> list[tuple[str, Path, Path]]:
    preds, gts = clip_sources(pred), clip_sources(gt)
    if len(preds) == 1 and len(gts) == 1:  # one clip each: pair them whatever their names
        return [(next(iter(gts)), next(iter(preds.values())), next(iter(gts.values())))]
    missing = sorted(set(gts) - set(preds))
    if missing:
        raise InputError(f"{pred}: no prediction for clip {missing[0]!r} of {gt}")
    return [(name, preds[name], gts[name]) for name in gts]


def evaluate_folders(
    pred: Path,
    gt: Path,
    out: Path,
    scale: int = 4,
    crop_border: int | None = None,
    lq: Path | None = None,
    with_ssim: bool = True,
) -> dict:
    """Score every frame; write the JSON, CSV and figures under ``out``; return the summary."""
    border = scale if crop_border is None else crop_border
    lq_clips = clip_sources(lq) if lq is not None else {}
    rows: list[dict] = []
    crop_frames = None
    for name, pred_path, gt_path in _pairs(pred, gt):
        pred_frames, gt_frames = iter(open_source(pred_path)), iter(open_source(gt_path))
        for index, reference in enumerate(gt_frames):
            reference = mod_crop(reference, scale)
            output = next(pred_frames, None)
            if output is None:
                raise InputError(f"{pred_path}: fewer frames than {gt_path} (ends at {index})")
            if output.shape != reference.shape:
                raise InputError(
                    f"{pred_path} (frame {index}): size {output.shape[1]}x{output.shape[0]}, "
                    f"GT (cropped to a multiple of {scale}) {reference.shape[1]}x"
                    f"{reference.shape[0]}"
                )
            _check_scored_area(gt_path, index, reference.shape, border, with_ssim)
            row = {
                "clip": name,
                "frame": index,
                "psnr_y": psnr(output, reference, border, y_channel=True),
                "psnr_rgb": psnr(output, reference, border),
            }
            if with_ssim:
                row["ssim_y"] = ssim(output, reference, border, y_channel=True)
            rows.append(row)
        if crop_frames is None and rows and rows[-1]["clip"] == name:
            crop_frames = (name, (rows[-1]["frame"] + 1) // 2, pred_path, gt_path)
    if not rows:
        raise InputError(f"{gt}: no frames to score")

    def column(key: str) -> list:
        return [row[key] for row in rows]

    # One aggregation for evaluate and training's val/psnr_y: frame -> clip mean -> clip mean.
    clips, frames = column("clip"), column("frame")
    per_clip_y = frames_by_clip(clips, frames, column("psnr_y"))
    per_clip_rgb = frames_by_clip(clips, frames, column("psnr_rgb"))
    summary = {
        "convention": f"BasicSR: 8-bit frames, float64, crop_border={border}, Y = BT.601 "
        "(not rounded); mean over frames, then over clips",
        "pred": str(pred),
        "gt": str(gt),
        "psnr_y": mean_over_clips(clips, frames, column("psnr_y")),
        "psnr_rgb": mean_over_clips(clips, frames, column("psnr_rgb")),
        "per_clip": {
            name: {
                "psnr_y": float(np.mean(per_clip_y[name])),
                "psnr_rgb": float(np.mean(per_clip_rgb[name])),
            }
            for name in per_clip_y
        },
        "frames": rows,
    }
    if with_ssim:
        summary["ssim_y"] = mean_over_clips(clips, frames, column("ssim_y"))
    atomic_write_json(out / "metrics.json", summary)
    atomic_write(out / "metrics.csv", lambda tmp: _write_csv(tmp, rows))
    _plot_per_frame(out / "psnr_per_frame.png", per_clip_y)
    _side_by_side(out / "crops.png", crop_frames, scale, lq_clips)
    return summary


def _check_scored_area(
    gt_path: Path, index: int, shape: tuple[int, ...], border: int, with_ssim: bool
) -> None:
    """Refuse a crop border that leaves nothing to score (or less than SSIM's window)."""
    height, width = shape[0] - 2 * border, shape[1] - 2 * border
    needed = SSIM_WINDOW if with_ssim else 1
    if min(height, width) < needed:
        raise InputError(
            f"{gt_path} (frame {index}): --crop-border {border} leaves {max(width, 0)}x"
            f"{max(height, 0)} of a {shape[1]}x{shape[0]} frame; scoring needs {needed}x{needed}"
            + (" (SSIM's window; --no-ssim needs 1x1)" if with_ssim else "")
        )


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _save_figure(path: Path, figure) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def _plot_per_frame(path: Path, per_clip: dict[str, list[float]]) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3))
    axis = figure.add_subplot(1, 1, 1)
    for name, values in per_clip.items():
        axis.plot(values, label=name)
    axis.set_xlabel("frame")
    axis.set_ylabel("PSNR-Y (dB)")
    axis.legend(fontsize="small")
    _save_figure(path, figure)


def _nth(path: Path, index: int) -> np.ndarray:
    for i, frame in enumerate(open_source(path)):
        if i == index:
            return frame
    raise InputError(f"{path}: no frame {index}")


def _side_by_side(path: Path, which, scale: int, lq_clips: dict[str, Path]) -> None:
    from matplotlib.figure import Figure

    name, index, pred_path, gt_path = which
    reference = mod_crop(_nth(gt_path, index), scale)
    lq = _nth(lq_clips[name], index) if name in lq_clips else bi_downsample(reference, scale)
    panels = {"bicubic": bicubic_upscale(lq, scale), "ours": _nth(pred_path, index),
              "GT": reference}  # fmt: skip
    height, width = reference.shape[:2]
    size = min(height, width, 192)
    top, left = (height - size) // 2, (width - size) // 2
    figure = Figure(figsize=(9, 3.4))
    for k, (title, image) in enumerate(panels.items()):
        axis = figure.add_subplot(1, 3, k + 1)
        axis.imshow(image[top : top + size, left : left + size])
        label = title if title == "GT" else f"{title} {psnr(image, reference, scale, True):.2f} dB"
        axis.set_title(label, fontsize=9)
        axis.axis("off")
    _save_figure(path, figure)
