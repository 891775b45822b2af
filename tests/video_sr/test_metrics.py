"""Our PSNR/SSIM against golden values of BasicSR 1.4.2's ``calculate_psnr``/``calculate_ssim``.

The golden values (``tests/golden/basicsr_reference.npz``, provenance in the README there) were
computed by BasicSR itself on a real photo crop and the same crop one pixel off.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from video_sr.metrics import clip_mean, psnr, rgb_to_y, ssim

GOLDEN = np.load(Path(__file__).parents[1] / "golden" / "basicsr_reference.npz")


def _pair() -> tuple[np.ndarray, np.ndarray]:
    pair = GOLDEN["metric_pair"]
    return pair[1:, 1:], pair[:-1, :-1]  # prediction, GT


@pytest.mark.parametrize("crop_border", [0, 4])
@pytest.mark.parametrize("y_channel", [False, True])
def test_psnr_and_ssim_equal_basicsr(crop_border: int, y_channel: bool) -> None:
    pred, gt = _pair()
    key = f"border{crop_border}_{'y' if y_channel else 'rgb'}"
    # 1e-9 dB: a float64 (not float32) luma already misses by 2.6e-7 dB on this pair.
    assert psnr(pred, gt, crop_border, y_channel) == pytest.approx(GOLDEN[f"psnr_{key}"], abs=1e-9)
    assert ssim(pred, gt, crop_border, y_channel) == pytest.approx(GOLDEN[f"ssim_{key}"], abs=1e-9)


def test_y_is_bt601_unrounded_and_not_rgb() -> None:
    white, black = np.full((1, 1, 3), 255, np.uint8), np.zeros((1, 1, 3), np.uint8)
    assert rgb_to_y(white)[0, 0] == pytest.approx(235.0, abs=1e-4)
    assert rgb_to_y(black)[0, 0] == pytest.approx(16.0, abs=1e-6)
    pure_red = np.array([[[255, 0, 0]]], np.uint8)
    assert rgb_to_y(pure_red)[0, 0] == pytest.approx(16 + 65.481, abs=1e-4)  # not rounded
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    pred = gt.copy()
    pred[..., 2] = 255 - pred[..., 2]  # blue errors weigh little in Y
    assert psnr(pred, gt, y_channel=True) > psnr(pred, gt) + 5


def test_identical_frames_give_infinite_psnr_and_ssim_one() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert psnr(frame, frame) == math.inf
    assert ssim(frame, frame, y_channel=True) == pytest.approx(1.0)


def test_ssim_uses_matlab_constants() -> None:
    # A constant offset only changes the luminance term: (2ab + C1) / (a^2 + b^2 + C1).
    a = np.full((32, 32, 3), 100, np.uint8)
    b = np.full((32, 32, 3), 120, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 120 + c1) / (100**2 + 120**2 + c1)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-9)


def test_mean_over_clips_weighs_clips_not_frames() -> None:
    assert clip_mean({"a": [30.0, 30.0, 30.0], "b": [20.0]}) == pytest.approx(25.0)
