"""BI against a MATLAB ``imresize`` port, BD's blur and sampling, crops and augmentations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from video_sr.transforms import (
    augment_clip,
    bd_downsample,
    bi_downsample,
    bicubic_upscale,
    mod_crop,
)


def _cubic(x: float) -> float:
    a = abs(x)
    if a <= 1:
        return 1.5 * a**3 - 2.5 * a**2 + 1
    return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2 if a <= 2 else 0.0


def _resize_axis(padded: np.ndarray, pad: int, in_length: int, out_length: int) -> np.ndarray:
    """One axis of MATLAB's bicubic resize, output pixel by output pixel (axis 0)."""
    factor = out_length / in_length
    stretch = 1 / factor if factor < 1 else 1.0  # antialiasing widens the kernel to shrink
    rows = []
    for x in range(1, out_length + 1):
        u = x / factor + 0.5 * (1 - 1 / factor)  # 1-based input coordinate of output pixel x
        left = math.floor(u - 2 * stretch)
        taps = range(left, left + math.ceil(4 * stretch) + 2)
        weights = np.array([_cubic((u - j) / stretch) / stretch for j in taps])
        samples = np.stack([padded[j - 1 + pad] for j in taps])
        rows.append(np.tensordot(weights / weights.sum(), samples, axes=1))
    return np.stack(rows)


def matlab_imresize_loop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An independent port of MATLAB ``imresize(im, [height width], 'bicubic')``, uint8 RGB.

    Loop-based like BasicSR's ``matlab_functions.imresize``: pad each axis symmetrically
    (``np.pad(mode="symmetric")`` is MATLAB's symmetric padding), then weigh the taps of
    every output pixel; height first, then width; uint8 rounding halves away from zero.
    """
    work = image.astype(np.float64)
    for axis, size in ((0, height), (1, width)):
        moved = np.moveaxis(work, axis, 0)
        pad = 4 * max(1, moved.shape[0] // size)
        padded = np.pad(moved, [(pad, pad)] + [(0, 0)] * (moved.ndim - 1), mode="symmetric")
        work = np.moveaxis(_resize_axis(padded, pad, moved.shape[0], size), 0, axis)
    return np.clip(np.floor(work + 0.5), 0, 255).astype(np.uint8)


def matlab_bicubic_down(image: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(im, 1/scale, 'bicubic')`` by the loop port."""
    return matlab_imresize_loop(image, image.shape[0] // scale, image.shape[1] // scale)


@pytest.mark.parametrize("scale", [2, 4])
def test_bicubic_baseline_matches_matlab_upscaling(scale: int) -> None:
    lq = data.astronaut()[100:118, 150:175]
    reference = matlab_imresize_loop(lq, 18 * scale, 25 * scale)
    np.testing.assert_array_equal(bicubic_upscale(lq, scale), reference)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bi_matches_matlab_imresize_on_a_real_image(scale: int) -> None:
    image = mod_crop(data.astronaut()[100:172, 150:250], scale)  # real photo, edges included
    ours = bi_downsample(image, scale).astype(int)
    reference = matlab_bicubic_down(image, scale).astype(int)
    assert ours.shape == reference.shape == (72 // scale, 100 // scale, 3)
    assert np.abs(ours - reference).max() == 0
    # Kernels that look alike are not it: PIL's bicubic (other borders), torch's (a = -0.75).
    pil = np.asarray(Image.fromarray(image).resize(ours.shape[1::-1], Image.BICUBIC)).astype(int)
    assert np.abs(pil - reference).max() > 1
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].double()
    torch_bicubic = torch.nn.functional.interpolate(
        tensor, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False
    )
    other = torch_bicubic[0].permute(1, 2, 0).round().clamp(0, 255).numpy()
    assert np.abs(other - reference).max() > 1


def test_bi_crops_to_a_multiple_of_the_scale() -> None:
    frame = np.zeros((37, 50, 3), np.uint8)
    assert bi_downsample(frame, 4).shape == (9, 12, 3)
    assert mod_crop(frame, 4).shape == (36, 48, 3)


def test_bd_blurs_then_keeps_every_scale_th_pixel_from_offset_one() -> None:
    flat = np.full((32, 32, 3), 77, np.uint8)
    assert np.all(bd_downsample(flat, 4) == 77)  # a normalised blur keeps flat regions
    impulse = np.zeros((40, 40, 3), np.uint8)
    impulse[21, 21] = 255  # pixel (21, 21) is kept: offset 1, step 4
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
