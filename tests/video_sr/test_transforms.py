"""BI, bicubic upscaling and BD against golden output of BasicSR 1.4.2; crops, augmentations.

The golden arrays (``tests/golden/basicsr_reference.npz``, provenance in the README there) are
BasicSR's unrounded float output. Our frames are uint8 as MATLAB's ``imresize`` returns them
(rounded to nearest), so each pixel must lie within 0.5 of the reference clipped to [0, 255];
the extra 1e-3 covers BasicSR's float32 arithmetic.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from video_sr.transforms import (
    augment_clip,
    bd_downsample,
    bi_downsample,
    bicubic_upscale,
    mod_crop,
)

GOLDEN = np.load(Path(__file__).parents[1] / "golden" / "basicsr_reference.npz")
ROUNDING = 0.5 + 1e-3


def _error(ours: np.ndarray, reference: np.ndarray) -> float:
    assert ours.dtype == np.uint8 and ours.shape == reference.shape
    return float(np.abs(ours.astype(np.float64) - np.clip(reference, 0, 255)).max())


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bi_matches_basicsr_matlab_imresize(scale: int) -> None:
    image = GOLDEN["down_input"]  # a real photo crop with edges, 36x48 (a multiple of 2, 3, 4)
    reference = GOLDEN[f"bi_x{scale}"]
    assert _error(bi_downsample(image, scale), reference) <= ROUNDING
    # The tolerance tells kernels that look alike apart: PIL's bicubic and torch's antialiased
    # bicubic differ from MATLAB's at the borders by several grey levels.
    size = reference.shape[1::-1]
    pil = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
    assert _error(pil, reference) > 2
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].double()
    other = torch.nn.functional.interpolate(
        tensor, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False
    )
    other = other[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
    assert _error(other, reference) > 2


@pytest.mark.parametrize("scale", [2, 4])
def test_bicubic_baseline_matches_basicsr_matlab_upscaling(scale: int) -> None:
    assert _error(bicubic_upscale(GOLDEN["up_input"], scale), GOLDEN[f"up_x{scale}"]) <= ROUNDING


def test_bd_matches_basicsr_duf_downsample() -> None:
    ours = bd_downsample(GOLDEN["down_input"], 4)
    assert _error(ours, GOLDEN["bd_x4"]) <= ROUNDING
    # A one-pixel sampling offset is far outside the tolerance (the golden data can fail).
    shifted = bd_downsample(GOLDEN["down_input"][1:, 1:], 4)
    assert _error(shifted, GOLDEN["bd_x4"][: shifted.shape[0], : shifted.shape[1]]) > 5


def test_bi_crops_to_a_multiple_of_the_scale() -> None:
    frame = np.zeros((37, 50, 3), np.uint8)
    assert bi_downsample(frame, 4).shape == (9, 12, 3)
    assert mod_crop(frame, 4).shape == (36, 48, 3)


def test_bd_blurs_then_keeps_every_scale_th_pixel_from_the_first() -> None:
    flat = np.full((32, 32, 3), 77, np.uint8)
    assert np.all(bd_downsample(flat, 4) == 77)  # a normalised blur keeps flat regions
    impulse = np.zeros((40, 40, 3), np.uint8)
    impulse[20, 20] = 255  # pixel (20, 20) is kept: offset 0, step 4
    out = bd_downsample(impulse, 4)
    assert out.shape == (10, 10, 3)
    peak = 255 / (2 * math.pi * 1.6**2)  # Gaussian sigma 1.6 centre weight (13x13 ~ exact)
    assert abs(int(out[5, 5, 0]) - peak) <= 1
    assert out[5, 5, 0] == out.max()


def test_augmentations_move_lr_and_gt_together() -> None:
    gt = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 8, 8)
    lq = torch.nn.functional.avg_pool2d(gt[None], 2)[0][None].repeat(3, 1, 1, 1)
    lq[0] += 1000  # first frame marked: temporal reversal moves it last
    for seed in range(8):
        a, b = augment_clip(lq, gt, torch.Generator().manual_seed(seed))
        pooled = torch.nn.functional.avg_pool2d(b[None], 2)[0]
        assert torch.allclose(a[1], pooled)  # the middle frame still matches the GT
        assert (a[0, 0, 0, 0] > 500) or (a[-1, 0, 0, 0] > 500)
