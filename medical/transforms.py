"""MONAI transform pipelines for training and validation on prepared cases.

Prepared cases (see :mod:`medical.prepare`) are already in RAS orientation, resampled and
intensity-normalised, stored as ``image.npy`` (C, X, Y, Z) and ``label.npy`` (1, X, Y, Z). These
pipelines only load, sample patches balanced between foreground and background, and augment
(flips, 90-degree rotations in square planes, scaling, intensity scale/shift), as the standard
MONAI 3D recipe; for 2D networks the patches are slices of the 3D volumes.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.data import NumpyReader
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandZoomd,
    SpatialPadd,
    SqueezeDimd,
)

__all__ = ["load_transforms", "train_transforms", "val_transforms"]

KEYS = ("image", "label")


def load_transforms() -> list:
    """Load prepared channel-first ``.npy`` image and label with MONAI readers."""
    return [
        LoadImaged(keys="image", reader=NumpyReader(channel_dim=0), image_only=True),
        LoadImaged(keys="label", reader=NumpyReader(channel_dim=0), image_only=True),
        EnsureChannelFirstd(keys=KEYS, channel_dim=0),
    ]


def train_transforms(
    patch_size: Sequence[int], samples_per_case: int = 2, slice_axis: int | None = None
) -> Compose:
    """Patch sampling (pos:neg 1:1) and the augmentations of the standard MONAI recipe.

    With ``slice_axis`` (2D networks, nnU-Net's 2d configuration), ``patch_size`` is the 2D
    in-plane patch: patches one voxel thick across that axis of the 3D volume are drawn with the
    same foreground balance, then that axis is dropped.
    """
    spatial_axes = tuple(range(len(patch_size)))
    crop = list(patch_size)
    if slice_axis is not None:
        crop.insert(slice_axis, 1)
    slicing = [] if slice_axis is None else [SqueezeDimd(keys=KEYS, dim=slice_axis + 1)]
    return Compose(
        [
            *load_transforms(),
            # Cases smaller than a patch (thin slabs) are padded rather than rejected.
            SpatialPadd(keys=KEYS, spatial_size=crop),
            RandCropByPosNegLabeld(
                keys=KEYS,
                label_key="label",
                spatial_size=crop,
                pos=1,
                neg=1,
                num_samples=samples_per_case,
            ),
            *slicing,
            *[RandFlipd(keys=KEYS, prob=0.5, spatial_axis=axis) for axis in spatial_axes],
            *_rotations(patch_size),
            RandZoomd(
                keys=KEYS,
                prob=0.2,
                min_zoom=0.85,
                max_zoom=1.15,
                mode=("trilinear" if len(patch_size) == 3 else "bilinear", "nearest"),
                keep_size=True,
            ),
            RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
            EnsureTyped(keys=KEYS, track_meta=False),
        ]
    )


def _rotations(patch_size: Sequence[int]) -> list:
    """90-degree rotations in the first plane when the patch is square there, else none.

    A quarter turn of a non-square plane would change the patch's shape (a 64x32x32 patch
    becomes 32x64x32) and the batch could not be stacked; the half turn it leaves out is already
    drawn by the flips of both axes.
    """
    if patch_size[0] != patch_size[1]:
        return []
    return [RandRotate90d(keys=KEYS, prob=0.5, max_k=3, spatial_axes=(0, 1))]


def val_transforms() -> Compose:
    """Whole prepared volumes; validation runs sliding-window inference on them."""
    return Compose([*load_transforms(), EnsureTyped(keys=KEYS, track_meta=False)])
