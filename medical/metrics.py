"""nnU-Net-style segmentation metrics: per-class Dice and HD95 of two 3D label maps.

Conventions (nnU-Net's, so numbers compare with its summary.json):

- Dice = 2TP / (2TP + FP + FN) per class on integer label maps. A class empty in both reference
  and prediction is NaN and left out of every mean (``nanmean``); a class empty in the reference
  but predicted scores 0.
- HD95 is MONAI's symmetric 95th-percentile Hausdorff distance in millimetres: the larger of the
  two directed 95th percentiles of edge-voxel distances (``torch.quantile``, linear). It is NaN
  when either side is empty, which is what MONAI 1.6.1 returns; a missed or spurious structure
  is already scored by its Dice of 0, and NaN keeps the JSON valid (``inf`` is not JSON).

What MONAI 1.6.1's ``compute_dice`` returns for a class empty in the reference (checked against
its source, ``DiceHelper.compute_channel``): with ``ignore_empty=True`` NaN whatever the
prediction (so a false positive would vanish from the mean); with ``ignore_empty=False`` 1.0 if
the prediction is empty too, else 0.0. We call it with ``ignore_empty=False`` and return NaN
for "empty in both" ourselves, without calling it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

__all__ = ["NAN_POLICY", "dice_per_class", "hd95_per_class"]

NAN_POLICY = (
    "dice: NaN (null) when a class is empty in both reference and prediction, 0 when empty in "
    "the reference but predicted; hd95 (mm, MONAI symmetric 95th percentile): NaN (null) when "
    "the class is empty in the reference or the prediction (a miss is scored by its Dice of 0); "
    "means are nanmeans over cases, foreground_mean is the nanmean over foreground classes of "
    "the per-class means"
)


def _label_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A CPU tensor of a label map (a view of native-byte-order numpy input, no copy)."""
    if isinstance(x, np.ndarray) and not x.dtype.isnative:
        # Big-endian NIfTI data arrives as such from nibabel; torch refuses it.
        x = x.astype(x.dtype.newbyteorder("="))
    return torch.as_tensor(x).cpu()


def _check_same_shape(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.shape != gt.shape:
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} != reference shape {tuple(gt.shape)}"
        )


def _union_box(pred: torch.Tensor, gt: torch.Tensor, margin: int = 0) -> tuple[slice, ...] | None:
    """Bounding box of ``pred | gt`` plus ``margin`` voxels (clipped); None if both are empty.

    Per-axis ``any`` reductions rather than ``nonzero()``, which would list every voxel.
    """
    union = pred | gt
    box = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        hits = union.any(dim=others) if others else union
        idx = hits.nonzero().flatten()
        if idx.numel() == 0:
            return None
        lo = max(int(idx[0]) - margin, 0)
        box.append(slice(lo, int(idx[-1]) + 1 + margin))
    return tuple(box)


def _monai_dice(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """MONAI Dice of one class from two binary masks, not both empty."""
    # Two-channel one-hot (background, class) as MONAI expects; background is not scored.
    # ignore_empty=False: an empty reference with a prediction gives 0 (nnU-Net), where
    # ignore_empty=True would give NaN and hide the false positive.
    pred_1h = torch.stack([~pred, pred])[None]
    gt_1h = torch.stack([~gt, gt])[None]
    return float(compute_dice(pred_1h, gt_1h, include_background=False, ignore_empty=False))


def dice_per_class(
    pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, class_ids: Sequence[int]
) -> dict[int, float]:
    """Dice per class of two integer label maps (nnU-Net convention; NaN when empty in both)."""
    pred_t, gt_t = _label_tensor(pred), _label_tensor(gt)
    _check_same_shape(pred_t, gt_t)
    result = {}
    for c in class_ids:
        p, g = pred_t == c, gt_t == c
        box = _union_box(p, g)
        # Empty in both: NaN by the nnU-Net rule (MONAI with ignore_empty=False would say 1.0).
        # Otherwise voxels outside the union's box are true negatives, which Dice ignores, so
        # cropping changes nothing but MONAI's run time (it scales with the voxels passed).
        result[int(c)] = math.nan if box is None else _monai_dice(p[box], g[box])
    return result


def _monai_hd95(pred: torch.Tensor, gt: torch.Tensor, spacing: Sequence[float]) -> float:
    """MONAI's symmetric HD95 in mm for two non-empty binary masks."""
    with warnings.catch_warnings():
        # MONAI 1.6.1 passes its own deprecated argument to get_mask_edges on every call.
        warnings.filterwarnings(
            "ignore", message=".*always_return_as_numpy", category=FutureWarning
        )
        hd = compute_hausdorff_distance(
            pred[None, None],
            gt[None, None],
            include_background=True,
            percentile=95,
            spacing=[float(s) for s in spacing],
        )
    return float(hd[0, 0])


def hd95_per_class(
    pred: np.ndarray | torch.Tensor,
    gt: np.ndarray | torch.Tensor,
    class_ids: Sequence[int],
    spacing: Sequence[float],
) -> dict[int, float]:
    """HD95 in mm per class (MONAI); NaN when the class is empty in prediction or reference.

    ``spacing`` is the voxel size along each array axis, in mm (e.g. the NIfTI zooms).
    """
    pred_t, gt_t = _label_tensor(pred), _label_tensor(gt)
    _check_same_shape(pred_t, gt_t)
    if len(spacing) != pred_t.ndim:
        raise ValueError(
            f"spacing {tuple(spacing)} has {len(spacing)} values for a {pred_t.ndim}D map"
        )
    result = {}
    for c in class_ids:
        p, g = pred_t == c, gt_t == c
        if not (p.any() and g.any()):
            # MONAI returns NaN here too (and warns); skipping the call avoids the warning.
            result[int(c)] = math.nan
            continue
        # MONAI crops to the same box (margin 1, so edges stay edges) but only after converting
        # the whole volume to float: cropping first keeps memory to the size of the structure.
        box = _union_box(p, g, margin=1)
        result[int(c)] = _monai_hd95(p[box], g[box], spacing)
    return result
