"""Degradations (BI, BD) and the clip augmentations used in training.

BI: MATLAB's ``imresize(frame, 1/scale, 'bicubic')`` (Keys cubic, a = -0.5, kernel widened by
the scale, symmetric borders, rounded to uint8) after cropping to a multiple of the scale.
Hand-written (as separable weight matrices) because no installed library matches it: PIL's
bicubic uses the same kernel but other borders (measured up to 14 grey levels apart at frame
edges, 2-4 inside), torch's uses a = -0.75; BasicSR's own port would pull in BasicSR.
``tests/video_sr/test_transforms.py`` checks it against BasicSR's port's output
(``tests/golden``) to the uint8 rounding.

BD: Gaussian blur with sigma 1.6 (13x13 kernel), borders mirrored without repeating the edge
pixel, then every ``scale``-th pixel starting at the first: at x4 this is DUF's official BD, as
BasicSR 1.4.2 ports it (``basicsr.data.data_util.duf_downsample``); ``tests/golden`` holds its
output. (``duf_downsample`` uses sigma ``0.4 * scale``; at x2 and x3 we keep sigma 1.6.)

The crop rule, identical for training, validation, ``degrade`` and ``evaluate``: a frame whose
height or width is not a multiple of the scale loses its last rows/columns (bottom and right),
as BasicSR's ``mod_crop`` does.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from scipy import sparse
from scipy.ndimage import convolve

__all__ = [
    "DEGRADATIONS",
    "SCALES",
    "augment_clip",
    "bd_downsample",
    "bi_downsample",
    "bicubic_upscale",
    "degrade",
    "matlab_imresize",
    "mod_crop",
    "random_crop_pair",
]

DEGRADATIONS = ("BI", "BD")
SCALES = (2, 3, 4)
BD_SIGMA = 1.6
BD_KERNEL = 13


def mod_crop(frame: np.ndarray, scale: int) -> np.ndarray:
    """Drop the last rows/columns so height and width are multiples of ``scale``."""
    height, width = frame.shape[:2]
    return frame[: height - height % scale, : width - width % scale]


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    a = np.abs(x)
    near = (1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1)
    return near + (-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) * ((a > 1) & (a <= 2))


@lru_cache(maxsize=16)
def matlab_resize_matrix(in_length: int, out_length: int) -> sparse.csr_matrix:
    """``(out_length, in_length)`` sparse weights of MATLAB's bicubic ``imresize`` along one axis.

    MATLAB's ``contributions``: output pixel ``x`` (1-based) sits at input
    ``u = x / f + 0.5 * (1 - 1 / f)`` for the factor ``f = out / in``; when shrinking the kernel
    is stretched by ``1 / f`` (antialiasing); weights are normalised per output pixel; taps
    beyond the edges fold back symmetrically.
    """
    factor = out_length / in_length
    u = np.arange(1, out_length + 1) / factor + 0.5 * (1 - 1 / factor)
    stretch = 1 / factor if factor < 1 else 1.0
    taps = math.ceil(4 * stretch) + 2
    first = np.floor(u - 2 * stretch)
    indices = first[:, None] + np.arange(taps)[None, :]
    weights = _cubic((u[:, None] - indices) / stretch) / stretch
    weights /= weights.sum(axis=1, keepdims=True)
    zero_based = indices.astype(int) - 1
    folded = np.where(zero_based < 0, -zero_based - 1, zero_based)
    folded = np.where(folded >= in_length, 2 * in_length - folded - 1, folded)
    rows = np.repeat(np.arange(out_length), taps)
    # COO sums duplicate entries: taps folded onto the same pixel add up, as in MATLAB.
    return sparse.coo_matrix(
        (weights.ravel(), (rows, folded.ravel())), shape=(out_length, in_length)
    ).tocsr()


def matlab_imresize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """MATLAB ``imresize(frame, [height width], 'bicubic')`` of a uint8 ``(H, W, 3)`` frame."""
    rows = matlab_resize_matrix(frame.shape[0], height)
    cols = matlab_resize_matrix(frame.shape[1], width)
    in_height, in_width, channels = frame.shape
    # Sparse products: each output pixel has at most 4 * stretch taps (dense is 50x slower).
    out = rows @ frame.astype(np.float64).reshape(in_height, in_width * channels)
    out = out.reshape(height, in_width, channels).transpose(1, 0, 2).reshape(in_width, -1)
    out = (cols @ out).reshape(width, height, channels).transpose(1, 0, 2)
    # MATLAB's uint8 conversion rounds halves away from zero (values here are >= 0).
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def bi_downsample(frame: np.ndarray, scale: int) -> np.ndarray:
    """BI: MATLAB ``imresize(frame, 1/scale, 'bicubic')`` of a mod-cropped uint8 frame."""
    frame = mod_crop(frame, scale)
    return matlab_imresize(frame, frame.shape[0] // scale, frame.shape[1] // scale)


def bicubic_upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline of SR tables: MATLAB ``imresize(frame, scale, 'bicubic')``."""
    return matlab_imresize(frame, frame.shape[0] * scale, frame.shape[1] * scale)


def _gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    axis = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma**2))
    return kernel / kernel.sum()


def bd_downsample(frame: np.ndarray, scale: int, sigma: float = BD_SIGMA) -> np.ndarray:
    """BD: Gaussian blur (sigma 1.6, mirrored borders), keep every ``scale``-th pixel from 0."""
    frame = mod_crop(frame, scale).astype(np.float64)
    kernel = _gaussian_kernel(BD_KERNEL, sigma)[..., None]  # size 1 on channels: each alone
    # scipy's "mirror" is torch's "reflect" padding (d c b | a b c d), which DUF's code uses.
    blurred = convolve(frame, kernel, mode="mirror")
    return np.clip(np.round(blurred[::scale, ::scale]), 0, 255).astype(np.uint8)


def degrade(frame: np.ndarray, scale: int, kind: str = "BI") -> np.ndarray:
    """The low-resolution frame for a uint8 ``(H, W, 3)`` ground-truth frame."""
    if kind == "BI":
        return bi_downsample(frame, scale)
    if kind == "BD":
        return bd_downsample(frame, scale)
    raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {kind!r}")


def random_crop_pair(
    lq: torch.Tensor, gt: torch.Tensor, size: int, scale: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random crop of every frame: ``size`` LR pixels, ``size * scale`` GT pixels.

    ``lq`` is ``(T, C, h, w)``, ``gt`` ``(C, H, W)`` (the centre frame) or ``(T, C, H, W)``.
    """
    height, width = lq.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"crop {size} larger than the LR frames ({height}x{width})")
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    lq = lq[..., top : top + size, left : left + size]
    gt = gt[..., top * scale : (top + size) * scale, left * scale : (left + size) * scale]
    return lq, gt


def augment_clip(
    lq: torch.Tensor, gt: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips, rot90 and temporal reversal, the same on all frames.

    As in BasicSR's ``augment``, rot90 is a transpose; with both flips it covers all eight
    rotations and reflections.

    ``lq`` is ``(T, C, h, w)``; ``gt`` the centre frame ``(C, H, W)``, which temporal reversal
    leaves unchanged (the centre of a reversed odd window is the same frame).
    """
    flip_h, flip_v, rotate, reverse = (torch.rand(4, generator=generator) < 0.5).tolist()
    if flip_h:
        lq, gt = lq.flip(-1), gt.flip(-1)
    if flip_v:
        lq, gt = lq.flip(-2), gt.flip(-2)
    if rotate:
        lq, gt = lq.transpose(-1, -2), gt.transpose(-1, -2)
    if reverse:
        lq = lq.flip(0)
    return lq.contiguous(), gt.contiguous()
