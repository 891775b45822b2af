"""Intensity normalisation by modality: the plan decided once per dataset, and its transform.

:func:`normalization_plan` turns the dataset fingerprint into one scheme per channel (nnU-Net's
CT clip + dataset z-score, or a per-image z-score over the scan's tissue);
:class:`ModalityNormalized` applies it inside the preprocessing pipeline, identically in
``prepare``, training, validation and ``hv-med predict``. :func:`strided_sample` is the voxel
sample every intensity statistic of ``medical`` is taken on (normalisation, the fingerprint's
tissue share, the prepared and predicted intensity ranges).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from monai.transforms import Compose, MapTransform, NormalizeIntensity, ThresholdIntensity

from shared.engine.io import InputError

__all__ = [
    "STATS_VOXELS",
    "TISSUE_LEVEL",
    "USE_MASK_BELOW",
    "ModalityNormalized",
    "normalization_plan",
    "strided_sample",
    "tissue_mask",
    "zscore_statistics",
]

# Tissue, for normalisation statistics: voxels above this fraction of the way from the scan's
# 0.5 to its 99.5 intensity percentile. Unlike "nonzero", this is the same set of voxels whether a
# site stored the background as exact zeros (skull-stripped, masked) or as an offset with noise,
# and it is unchanged by any positive affine change of intensities (so it is the same set before
# and after normalisation).
TISSUE_LEVEL = 0.2
# nnU-Net's planner uses the mask for normalisation only when it leaves out a real background
# (its rule: median relative size after cropping < 3/4); we apply the rule to the tissue fraction.
USE_MASK_BELOW = 0.75
# Percentiles and statistics are taken on at most this many evenly strided voxels: exact for
# small scans, and a 512x512x300 CT neither sorts nor copies 79 M voxels to normalise.
STATS_VOXELS = 2_000_000


def strided_sample(channel: Any) -> np.ndarray:
    """At most ``STATS_VOXELS`` evenly strided voxels of one channel, as float64 numpy."""
    flat = np.asarray(channel).reshape(-1)
    step = max(1, flat.size // STATS_VOXELS)
    return flat[::step].astype(np.float64)


def tissue_mask(values: np.ndarray) -> np.ndarray:
    """The tissue voxels of ``values`` (one channel): above ``TISSUE_LEVEL`` of its robust range."""
    sample = strided_sample(values)
    low, high = np.percentile(sample, [0.5, 99.5])
    return values > low + TISSUE_LEVEL * (high - low)


def zscore_statistics(channel: Any, mask: str) -> tuple[float, float]:
    """Mean and std of one channel over its tissue (``mask="tissue"``) or all voxels."""
    sample = strided_sample(channel)
    if mask == "tissue":
        inside = sample[tissue_mask(sample)]
        sample = inside if inside.size else sample  # a constant scan has no tissue above range
    return float(sample.mean()), max(float(sample.std()), 1e-8)


class _ZScore:
    """Per-image z-score with statistics over the plan's mask.

    With the tissue mask, voxels outside it are set to 0 (the tissue mean) afterwards, as
    nnU-Net does with ``use_mask_for_norm``: a scan whose background is 0 and one whose
    background is 3 +- noise then get identical inputs there. Left at the z-scored background
    value instead (about -5 on the MNI demo), the background/tissue split dominated the
    network's first group-norm statistics and the held-out Dice after 4 demo epochs fell from
    0.63 to 0.42 (``python -m medical.demo --epochs 4``).
    """

    def __init__(self, mask: str) -> None:
        self.mask = mask

    def __call__(self, channel: Any) -> Any:
        mean, std = zscore_statistics(channel, self.mask)
        normalized = NormalizeIntensity(subtrahend=mean, divisor=std)(channel)
        if self.mask == "tissue":
            normalized[~tissue_mask(channel)] = 0.0
        return normalized


class ModalityNormalized(MapTransform):
    """Normalise each channel by its own scheme (MONAI has no per-channel scheme switch).

    ``plan[c]["scheme"]`` is ``"ct"`` (clip to ``clip`` then ``(x - mean) / std`` with dataset
    values) or ``"zscore"`` (per-image z-score, statistics over the voxels ``plan[c]["mask"]``
    names: ``"tissue"`` or ``"image"``). The per-channel operations are MONAI's
    ``ThresholdIntensity`` and ``NormalizeIntensity``; only the dispatch is ours. Channels are
    normalised in place, one at a time, so a large scan is never held twice.
    """

    def __init__(self, keys: Sequence[str], plan: list[dict[str, Any]]) -> None:
        super().__init__(keys)
        self.ops: list[Callable[[Any], Any]] = []
        for channel in plan:
            if channel["scheme"] == "ct":
                low, high = channel["clip"]
                self.ops.append(
                    Compose(
                        [
                            ThresholdIntensity(low, above=True, cval=low),
                            ThresholdIntensity(high, above=False, cval=high),
                            NormalizeIntensity(subtrahend=channel["mean"], divisor=channel["std"]),
                        ]
                    )
                )
            else:
                self.ops.append(_ZScore(channel.get("mask", "tissue")))

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        """Normalise ``data[key]`` (C x spatial) channel by channel."""
        out = dict(data)
        for key in self.key_iterator(out):
            image = out[key]
            if image.shape[0] != len(self.ops):
                raise ValueError(f"{key}: {image.shape[0]} channels, plan has {len(self.ops)}")
            plain = image.as_tensor() if hasattr(image, "as_tensor") else image
            if not plain.is_floating_point():
                image = image.float()
                plain = image.as_tensor() if hasattr(image, "as_tensor") else image
            for c, op in enumerate(self.ops):
                plain[c] = op(plain[c : c + 1])[0]
            out[key] = image
        return out


def normalization_plan(fingerprint: dict[str, Any]) -> list[dict[str, Any]]:
    """The dataset's normalisation, decided once from the fingerprint, per channel.

    CT: clip to the dataset's foreground 0.5/99.5 percentiles, z-score with its foreground
    mean/std (nnU-Net). Other modalities: per-image z-score applied to every voxel, with the
    statistics taken over the scan's tissue (:func:`tissue_mask`) when the dataset's scans have a
    background to leave out (median tissue fraction < ``USE_MASK_BELOW``, nnU-Net's
    ``use_mask_for_norm`` rule) and over the whole scan otherwise. nnU-Net's mask is "nonzero",
    which changes with how a site stores the background (exact zeros after skull stripping, or
    an offset with noise) and so gives test scans a different scale from training scans; the
    tissue mask does not.
    """
    plan = []
    for stats in fingerprint["intensity"]:
        channel, modality = stats["channel"], stats["modality"]
        if modality.strip().upper() != "CT":
            tissue = stats["median_tissue_fraction"]
            plan.append(
                {
                    "channel": channel,
                    "modality": modality,
                    "scheme": "zscore",
                    # Only the decision: the fraction itself (in fingerprint.json) moves with
                    # every added case and would make every cached case look stale.
                    "mask": "tissue" if tissue < USE_MASK_BELOW else "image",
                }
            )
            continue
        if not stats["samples"]:
            raise InputError(
                f"channel {channel} (CT): no foreground voxels (label > 0) in any case, cannot "
                "compute the CT intensity statistics"
            )
        plan.append(
            {
                "channel": channel,
                "modality": modality,
                "scheme": "ct",
                "clip": [stats["percentile_00_5"], stats["percentile_99_5"]],
                "mean": stats["mean"],
                "std": max(stats["std"], 1e-8),  # a constant foreground must not divide by 0
            }
        )
    return plan
