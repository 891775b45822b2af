"""PSNR and SSIM with BasicSR's conventions, and folder-against-folder evaluation.

PSNR (``basicsr/metrics/psnr_ssim.py``): images in [0, 255] as float64, optional
``crop_border`` pixels removed on every side, ``10 * log10(255^2 / MSE)``; on the Y channel,
``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` with RGB scaled to [0, 1] (BT.601, not
rounded; computed in float32, as BasicSR's ``to_y_channel`` does, so our numbers match its
to 1e-6 dB). Means: per frame, then over the frames of a clip, then over clips
(:func:`mean_over_clips`, the one aggregation of ``hv-vsr evaluate`` and of training's
``val/psnr_y`` through :class:`ClipMean`). SSIM: Wang et al.'s MATLAB settings (11x11 Gaussian
window, sigma 1.5, K1 0.01, K2 0.03, valid region, mean over channels) via scikit-image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from skimage.metrics import structural_similarity
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = [
    "ClipMean",
    "clip_mean",
    "frames_by_clip",
    "mean_over_clips",
    "psnr",
    "rgb_to_y",
    "ssim",
]


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of an ``(H, W, 3)`` RGB image in [0, 255], in [16, 235], not rounded.

    The float32 steps are BasicSR's (``to_y_channel``: float32 [0, 1] input, the luma stored
    as float32 in [0, 1], then times 255), kept so published Y-PSNR tables compare exactly.
    """
    rgb = image.astype(np.float32) / np.float32(255.0)
    luma = (np.dot(rgb, [65.481, 128.553, 24.966]) + 16.0) / 255.0
    return luma.astype(np.float32) * np.float32(255.0)


def _prepare(image: np.ndarray, crop_border: int, y_channel: bool) -> np.ndarray:
    if crop_border:
        image = image[crop_border:-crop_border, crop_border:-crop_border]
    return (rgb_to_y(image) if y_channel else image).astype(np.float64)


def psnr(
    prediction: np.ndarray, target: np.ndarray, crop_border: int = 0, y_channel: bool = False
) -> float:
    """PSNR in dB of two ``(H, W, 3)`` RGB images in [0, 255] (BasicSR's ``calculate_psnr``)."""
    if prediction.shape != target.shape:
        raise ValueError(f"image shapes differ: {prediction.shape} vs {target.shape}")
    a, b = (_prepare(x, crop_border, y_channel) for x in (prediction, target))
    mse = np.mean((a - b) ** 2)
    return math.inf if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def ssim(
    prediction: np.ndarray, target: np.ndarray, crop_border: int = 0, y_channel: bool = False
) -> float:
    """SSIM of two ``(H, W, 3)`` RGB images in [0, 255], MATLAB settings, mean over channels."""
    a, b = (_prepare(x, crop_border, y_channel) for x in (prediction, target))
    return float(
        structural_similarity(
            a,
            b,
            data_range=255.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=None if y_channel else -1,
        )
    )


def clip_mean(per_clip: Mapping[Any, Sequence[float]]) -> float:
    """Mean over clips of each clip's mean over its frames (BasicSR's averaging order)."""
    return float(np.mean([np.mean(values) for values in per_clip.values()]))


def frames_by_clip(
    clips: Sequence[str | int], frames: Sequence[int], values: Sequence[float]
) -> dict[str | int, list[float]]:
    """Per-frame values grouped by clip, clips and frames in sorted order, one per frame.

    A repeated ``(clip, frame)`` keeps its first value: Lightning's ``DistributedSampler`` pads
    the validation set with repeated items so that every rank gets as many, and a repeated
    frame must not weigh twice. Sorting makes the sums, to the last bit, independent of the
    order in which ranks' frames arrive. Hand-written: no metric library de-duplicates.
    """
    grouped: dict[str | int, dict[int, float]] = {}
    for clip, frame, value in zip(clips, frames, values, strict=True):
        grouped.setdefault(clip, {}).setdefault(int(frame), float(value))
    return {
        clip: [grouped[clip][f] for f in sorted(grouped[clip])]
        for clip in sorted(grouped)  # clip names or clip indices, never a mix
    }


def mean_over_clips(
    clips: Sequence[str | int], frames: Sequence[int], values: Sequence[float]
) -> float:
    """The headline of per-frame scores: mean over each clip's frames, then over clips.

    E.g. clip A frames [30, 32] and clip B [40] give 35.5 (not 34.0, the mean over frames).
    """
    return clip_mean(frames_by_clip(clips, frames, values))


class ClipMean(Metric):
    """:func:`mean_over_clips` of per-frame scores gathered from every DDP rank.

    ``update(clips, frames, values)`` takes 1-D tensors (clip index, frame index, score). The
    triples are concatenated across ranks on ``compute`` (uneven counts allowed) and repeated
    ``(clip, frame)`` items counted once, so the value is the single-process one.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("clips", default=[], dist_reduce_fx="cat")
        self.add_state("frames", default=[], dist_reduce_fx="cat")
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def update(
        self, clips: torch.Tensor, frames: torch.Tensor, values: torch.Tensor | Sequence[float]
    ) -> None:
        """Add the scores of some frames (kept in float64, as the per-frame numbers are)."""
        self.clips.append(torch.as_tensor(clips, device=self.device).reshape(-1).long())
        self.frames.append(torch.as_tensor(frames, device=self.device).reshape(-1).long())
        self.values.append(
            torch.as_tensor(values, dtype=torch.float64, device=self.device).reshape(-1)
        )

    def compute(self) -> torch.Tensor:
        """Mean over clips of the per-clip frame means (NaN before any update)."""
        if isinstance(self.values, list) and not self.values:
            return torch.tensor(math.nan, dtype=torch.float64)
        # States are lists of tensors before a DDP sync, one gathered tensor after.
        columns = [dim_zero_cat(state).tolist() for state in (self.clips, self.frames, self.values)]
        return torch.tensor(mean_over_clips(*columns), dtype=torch.float64)
