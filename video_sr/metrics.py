"""PSNR and SSIM with BasicSR's conventions, and folder-against-folder evaluation.

PSNR (``basicsr/metrics/psnr_ssim.py``): images in [0, 255] as float64, optional
``crop_border`` pixels removed on every side, ``10 * log10(255^2 / MSE)``; on the Y channel,
``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` with RGB scaled to [0, 1] (BT.601, not
rounded; computed in float32, as BasicSR's ``to_y_channel`` does, so our numbers match its
to 1e-6 dB). Means: per frame, then over the frames of a clip, then over clips. SSIM: Wang et
al.'s MATLAB settings (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, valid region, mean
over channels) via scikit-image.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

__all__ = ["clip_mean", "psnr", "rgb_to_y", "ssim"]


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


def clip_mean(per_clip: dict[str, list[float]]) -> float:
    """Mean over clips of each clip's mean over its frames (BasicSR's averaging order)."""
    return float(np.mean([np.mean(values) for values in per_clip.values()]))
