"""Our PSNR/SSIM against BasicSR's conventions on fixed arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from video_sr.metrics import clip_mean, psnr, rgb_to_y, ssim


def basicsr_psnr(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y: bool) -> float:
    """BasicSR's ``calculate_psnr`` (HWC, uint8 in [0, 255]), restated step by step.

    to_y_channel: float32 / 255, ``dot([65.481, 128.553, 24.966]) + 16`` (RGB order), / 255 and
    back to float32, times 255; then float64 and ``10 log10(255^2 / mse)``.
    """
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border]
    if test_y:
        def to_y(x: np.ndarray) -> np.ndarray:
            x = x.astype(np.float32) / 255.0
            y = (np.dot(x, [65.481, 128.553, 24.966]) + 16.0) / 255.0
            return y.astype(np.float32)[..., None] * 255.0

        img, img2 = to_y(img), to_y(img2)
    mse = np.mean((img.astype(np.float64) - img2.astype(np.float64)) ** 2)
    return float(10.0 * np.log10(255.0 * 255.0 / mse))


@pytest.mark.parametrize("crop_border", [0, 4])
@pytest.mark.parametrize("test_y", [False, True])
def test_psnr_equals_basicsr_to_1e9_db(crop_border: int, test_y: bool) -> None:
    rng = np.random.default_rng(7)
    gt = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    noise = rng.integers(-9, 10, gt.shape)
    pred = np.clip(gt.astype(int) + noise, 0, 255).astype(np.uint8)
    ours = psnr(pred, gt, crop_border, y_channel=test_y)
    # 1e-9, tighter than the 1e-6 asked: a float64 luma would already miss by ~6e-7 dB.
    assert abs(ours - basicsr_psnr(pred, gt, crop_border, test_y)) < 1e-9


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
