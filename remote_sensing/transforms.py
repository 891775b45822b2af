"""Augmentation and normalisation for multispectral chips (albumentations 2.0.8, any band count).

Inputs are ``(H, W, C)`` float32 arrays already divided by the reflectance scale
(:func:`remote_sensing.data.read_pixels`): uint16 input would break albumentations' value
ranges. Only transforms correct for more than 3 bands are used (D4, arbitrary-angle Rotate,
Affine, RandomResizedCrop, Resize, per-band Normalize; REFERENCE.md section 3 lists the ones
that fail).
Normalize is always given one mean and std per band: without them albumentations applies the
first band's values to every band.
"""

from __future__ import annotations

import albumentations as A
import cv2

from .data import Preprocessing

__all__ = ["ZOOM_RANGE", "eval_transform", "train_transform"]

ZOOM_RANGE = (0.5, 2.0)
"""Scale jitter of training: from half to twice the ground scale, about the centre."""


def _normalize(pre: Preprocessing) -> A.Normalize:
    return A.Normalize(mean=pre.mean, std=pre.std, max_pixel_value=1.0, p=1.0)


def eval_transform(pre: Preprocessing) -> A.Compose:
    """Validation, test and prediction: resize to the chip size (a no-op at that size), normalise.

    A chip of another size (an odd scene edge, another sensor's chips) is resampled with area
    averaging, the same way in evaluation and prediction.
    """
    size = pre.chip_size
    return A.Compose([A.Resize(size, size, interpolation=cv2.INTER_AREA), _normalize(pre)])


def train_transform(pre: Preprocessing, rotate: bool = True, multiscale: bool = True,
                    zoom_out: bool = True) -> A.Compose:  # fmt: skip
    """Training: scale jitter, the D4 group plus arbitrary-angle rotation with reflected borders
    (imagery has no "up"), then per-band normalisation.

    Scale jitter zooms about the chip's centre by a factor between 1/2 and 2, half the time in
    and half the time out (``balanced_scale``), with reflected borders: the ground scales of the
    0.5x and 2x evaluation views (:func:`remote_sensing.model.zoom`). The centre stays put, so a
    chip labelled by its centre pixel keeps its label. ``zoom_out=False`` is the scale jitter
    before it (the ablation): zoom-in crops only (RandomResizedCrop, 35-100 % of the area at a
    random place), which never showed a network a shrunk scene, nor one magnified 2x.
    """
    size = pre.chip_size
    steps: list = []
    if multiscale and not zoom_out:
        steps.append(A.RandomResizedCrop((size, size), scale=(0.35, 1.0), ratio=(0.8, 1.25), p=1.0))
    else:
        steps.append(A.Resize(size, size, interpolation=cv2.INTER_AREA))
    if multiscale and zoom_out:
        steps.append(A.Affine(scale=ZOOM_RANGE, keep_ratio=True, balanced_scale=True,
                              border_mode=cv2.BORDER_REFLECT_101, p=1.0))  # fmt: skip
    if rotate:
        steps += [A.D4(p=1.0), A.Rotate(limit=180, border_mode=cv2.BORDER_REFLECT_101, p=0.5)]
    else:
        steps.append(A.HorizontalFlip(p=0.5))
    steps.append(_normalize(pre))
    return A.Compose(steps)
