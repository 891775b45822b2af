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
