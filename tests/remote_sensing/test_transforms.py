"""Augmentation on 13-band uint16 chips through the task's own data path: rotations really rotate
(a chip with no symmetry comes out as its rotated and reflected versions), every band keeps its
own normalisation, and ``--data.rotate false`` only flips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from remote_sensing.data import Preprocessing
from remote_sensing.task import RSDataConfig, RSDataModule, plan_dataset
from remote_sensing.transforms import eval_transform, train_transform

BANDS, SIZE, DRAWS = 13, 32, 48

# The eight elements of D4 on (C, H, W) arrays, written out; the names say what they are.
D4 = {
    "identity": lambda a: a,
    "flip_w": lambda a: a[:, :, ::-1],
    "flip_h": lambda a: a[:, ::-1, :],
    "rot180": lambda a: a[:, ::-1, ::-1],
    "transpose": lambda a: a.transpose(0, 2, 1),
    "rot90": lambda a: a.transpose(0, 2, 1)[:, :, ::-1],
    "rot270": lambda a: a.transpose(0, 2, 1)[:, ::-1, :],
    "anti_transpose": lambda a: a.transpose(0, 2, 1)[:, ::-1, ::-1],
}


def _chip(offset: int) -> np.ndarray:
    """``(13, 32, 32)`` uint16: every pixel of every band different, so no D4 element fixes it."""
    ramp = np.arange(SIZE * SIZE, dtype=np.int64).reshape(SIZE, SIZE)
    bands = [ramp * (b + 1) % 997 + 1000 * b + offset for b in range(BANDS)]
    return np.stack(bands).astype(np.uint16)


def _draws(tmp_path: Path, rasters, rotate: bool) -> tuple[list[np.ndarray], np.ndarray]:
    """``DRAWS`` augmented versions of one training chip, and that chip normalised by hand."""
    root = tmp_path / "ds"
    for label, name in enumerate(("Forest", "River")):
        for n in range(4):
            rasters.write_tif(root / name / f"{name}_{n}.tif", _chip(100 * n + 50 * label))
    cfg = RSDataConfig(root=str(root), chip_size=SIZE, rotate=rotate, multiscale=False)
    plan = plan_dataset(cfg, seed=0)
    dataset = RSDataModule(cfg, plan, batch_size=2, seed=0).dataset("train", augment=True)
    sample = dataset.samples[0]
    raw = _chip(100 * int(sample.path.stem.split("_")[1]) + 50 * sample.label)
    pre = plan.pre
    mean, std = np.array(pre.mean)[:, None, None], np.array(pre.std)[:, None, None]
    expected = (raw / pre.scale - mean) / std
    return [dataset[0]["image"].numpy() for _ in range(DRAWS)], expected


def _which_d4(image: np.ndarray, expected: np.ndarray) -> str | None:
    for name, element in D4.items():
        if np.allclose(image, element(expected), rtol=0, atol=1e-4):
            return name
    return None


def test_training_with_rotation_rotates_a_chip_without_symmetry(tmp_path: Path, rasters) -> None:
    draws, expected = _draws(tmp_path, rasters, rotate=True)
    views = [np.asarray(element(expected)) for element in D4.values()]
    assert all(not np.allclose(a, b) for i, a in enumerate(views) for b in views[i + 1 :])
    found = [_which_d4(image, expected) for image in draws]
    d4_seen = {name for name in found if name is not None}
    # D4 always, then an arbitrary-angle rotation half the time: about half the draws are exact
    # D4 elements of the normalised chip (band by band, so normalisation kept each band's own
    # mean and std), the rest turned by other angles.
    assert len(d4_seen - {"identity"}) >= 5, d4_seen
    assert {"rot90", "rot270"} & d4_seen, "no quarter turn among the draws"
    arbitrary = [image for image, name in zip(draws, found, strict=True) if name is None]
    assert len(arbitrary) >= DRAWS // 4
    for image in arbitrary:  # still the chip's bands, each near its own normalised range
        assert image.shape == expected.shape
        assert np.all(np.abs(image.mean(axis=(1, 2)) - expected.mean(axis=(1, 2))) < 0.5)


def test_without_rotation_training_only_flips(tmp_path: Path, rasters) -> None:
    draws, expected = _draws(tmp_path, rasters, rotate=False)
    found = {_which_d4(image, expected) for image in draws}
    assert found == {"identity", "flip_w"}


def _pre(bands: int, size: int) -> Preprocessing:
    mean = [0.01 * (b + 1) for b in range(bands)]
    std = [0.002 * (b + 1) for b in range(bands)]
    return Preprocessing([f"B{b}" for b in range(bands)], list(range(1, bands + 1)), 10000.0,
                         mean, std, size, ["a", "b"], bands)  # fmt: skip


def test_eval_transform_resizes_odd_chips_the_same_way() -> None:
    pre = _pre(4, 32)
    odd = np.random.default_rng(1).random((37, 29, 4)).astype(np.float32)
    out = eval_transform(pre)(image=odd)["image"]
    assert out.shape == (32, 32, 4)
    same = eval_transform(pre)(image=odd)["image"]
    np.testing.assert_array_equal(out, same)


@pytest.mark.parametrize("bands", [4, 13])
def test_eval_transform_normalises_each_band_with_its_own_statistics(bands: int) -> None:
    pre = _pre(bands, 16)
    pixels = np.random.default_rng(2).random((16, 16, bands)).astype(np.float32)
    out = eval_transform(pre)(image=pixels)["image"]
    expected = (pixels - np.array(pre.mean)) / np.array(pre.std)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


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
