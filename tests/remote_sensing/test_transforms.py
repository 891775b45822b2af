"""The augmentation pipeline on 13-band uint16 input keeps every band's own statistics."""

from __future__ import annotations

import numpy as np

from remote_sensing.data import Preprocessing
from remote_sensing.transforms import eval_transform, train_transform


def _pre(bands: int, size: int) -> Preprocessing:
    mean = [0.01 * (b + 1) for b in range(bands)]
    std = [0.002 * (b + 1) for b in range(bands)]
    return Preprocessing([f"B{b}" for b in range(bands)], list(range(1, bands + 1)), 10000.0,
                         mean, std, size, ["a", "b"], bands)  # fmt: skip


def test_full_training_pipeline_on_13_band_uint16_keeps_band_means() -> None:
    pre = _pre(13, 32)
    rng = np.random.default_rng(0)
    # Each band constant at its own value: every geometric transform keeps it constant, so the
    # output must be exactly (value - mean_b) / std_b per band, in the input's band order.
    values = np.array([150 * (b + 1) for b in range(13)], dtype=np.uint16)
    chip = np.broadcast_to(values, (40, 40, 13)).astype(np.uint16)
    scaled = chip.astype(np.float32) / pre.scale
    expected = (values / pre.scale - np.array(pre.mean)) / np.array(pre.std)
    for _ in range(5):
        out = train_transform(pre)(image=scaled)["image"]
        assert out.shape == (32, 32, 13) and out.dtype == np.float32
        np.testing.assert_allclose(out.mean(axis=(0, 1)), expected, rtol=1e-4, atol=1e-4)
        assert rng is not None


def test_eval_transform_resizes_odd_chips_the_same_way() -> None:
    pre = _pre(4, 32)
    odd = np.random.default_rng(1).random((37, 29, 4)).astype(np.float32)
    out = eval_transform(pre)(image=odd)["image"]
    assert out.shape == (32, 32, 4)
    same = eval_transform(pre)(image=odd)["image"]
    np.testing.assert_array_equal(out, same)


def test_scale_jitter_zooms_in_and_out_about_the_centre_up_to_2x() -> None:
    # A horizontal ramp (value = column - centre, all bands): zooming by s about the centre turns
    # the slope at the centre into 1 / s, and keeps the centre value (the chip's label pixel).
    scales, centres = _ramp_scales(zoom_out=True)
    assert np.abs(centres).max() < 0.6  # the centre stays where it was
    assert scales.min() >= 0.5 - 0.03 and scales.max() <= 2.0 + 0.05
    assert (scales < 0.7).sum() > 20 and (scales > 1.5).sum() > 20  # both views' ground scales
    assert abs(np.log(scales).mean()) < 0.15  # zoom-in and zoom-out equally often


def test_zoom_in_only_ablation_never_shrinks_nor_reaches_2x() -> None:
    scales, centres = _ramp_scales(zoom_out=False)
    assert scales.min() >= 0.97 and scales.max() < 1.95  # crops of 35-100 % of the area
    assert np.abs(centres).max() > 2  # and at a random place: the centre moves


def _ramp_scales(zoom_out: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scale factor and centre shift of 200 draws of the training pipeline (rotation off)."""
    pre = _pre(3, 32)
    pre.mean, pre.std = [0.0] * 3, [1.0] * 3
    columns = np.arange(32, dtype=np.float32) - 15.5
    ramp = np.broadcast_to(columns[None, :, None], (32, 32, 3)).astype(np.float32)
    transform = train_transform(pre, rotate=False, zoom_out=zoom_out)
    transform.set_random_seed(0)
    scales, centres = [], []
    for _ in range(200):
        out = transform(image=ramp)["image"][:, :, 0]
        centre_row = out[14:18, 12:20]
        slope = abs(np.polyfit(np.arange(12, 20), centre_row.mean(axis=0), 1)[0])
        scales.append(1 / slope)
        centres.append(centre_row.mean())
    return np.array(scales), np.array(centres)
