"""Clinical preprocessing on tiny synthetic datasets: geometry, normalisation, caching, crashes."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medical.prepare import load_prepared, prepare_dataset
from shared.engine.io import InputError

SHAPE = (24, 20, 16)
# LPS-oriented and anisotropic (1, 1, 2.5) mm, so reorientation and resampling both matter.
AFFINE = np.array([[-1.0, 0, 0, 12], [0, -1.0, 0, 10], [0, 0, 2.5, -20], [0, 0, 0, 1]])
MR_BOX = (slice(3, 21), slice(3, 17), slice(2, 14))


def _save(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, AFFINE), str(path))
    return path


def _mr(seed: int) -> np.ndarray:
    """Zero background, foreground box N(100 + 10*seed, 20): per-image z-score must undo it."""
    image = np.zeros(SHAPE, np.float32)
    image[MR_BOX] = np.random.default_rng(seed).normal(100 + 10 * seed, 20, (18, 14, 12))
    return image


def _label() -> np.ndarray:
    label = np.zeros(SHAPE, np.uint8)
    label[4:9, 6:12, 5:10] = 1  # off-centre, so a wrong flip moves it in world space
    return label


def make_msd_mr(root: Path, cases: int = 2) -> Path:
    """MSD: 4D T1/T2 images."""
    training = []
    for i in range(cases):
        name = f"case_{i:03d}.nii.gz"
        _save(root / "imagesTr" / name, np.stack([_mr(2 * i), _mr(2 * i + 1)], axis=-1))
        _save(root / "labelsTr" / name, _label())
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {
        "name": "SyntheticMR",
        "modality": {"0": "T1", "1": "T2"},
        "labels": {"0": "background", "1": "lesion"},
        "training": training,
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def make_nnunet_mr(root: Path, cases: int = 3) -> Path:
    """nnU-Net v2 raw: two 3D channel files per case."""
    for i in range(cases):
        for c in range(2):
            _save(root / "imagesTr" / f"case_{i:03d}_{c:04d}.nii.gz", _mr(2 * i + c))
        _save(root / "labelsTr" / f"case_{i:03d}.nii.gz", _label())
    meta = {
        "channel_names": {"0": "T1", "1": "T2"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": cases,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def _world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    ijk = np.argwhere(mask).mean(axis=0)
    return affine[:3, :3] @ ijk + affine[:3, 3]


def test_prepare_msd_outputs_geometry_and_mr_zscore(tmp_path: Path) -> None:
    root, out = make_msd_mr(tmp_path / "raw"), tmp_path / "out"
    report = prepare_dataset(root, out, target_spacing=(1.5, 1.5, 1.5), workers=1)
    assert (report.prepared, report.cached) == (2, 0)
    assert report.target_spacing == (1.5, 1.5, 1.5)

    fingerprint = json.loads((out / "fingerprint.json").read_text())
    assert fingerprint["median_spacing"] == [1.0, 1.0, 2.5]
    assert fingerprint["cases"]["case_000"]["spacing"] == [1.0, 1.0, 2.5]
    assert fingerprint["cases"]["case_000"]["shape"] == list(SHAPE)
    t1 = fingerprint["intensity"][0]
    assert t1["modality"] == "T1" and 60 < t1["mean"] < 140 and t1["percentile_99_5"] > t1["mean"]

    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["layout"] == "msd" and manifest["modalities"] == ["T1", "T2"]
    assert [c["case"] for c in manifest["cases"]] == ["case_000", "case_001"]
    assert {n["scheme"] for n in manifest["normalization"]} == {"zscore"}
    assert {"path", "size", "mtime_ns"} <= set(manifest["cases"][0]["inputs"][0])

    items = load_prepared(out)
    assert [i["case"] for i in items] == ["case_000", "case_001"]
    image, label = np.load(items[0]["image"]), np.load(items[0]["label"])
    meta = json.loads(Path(items[0]["meta"]).read_text())
    assert image.dtype == np.float32 and image.shape[0] == 2 and label.dtype == np.uint8
    assert label.shape == (1, *image.shape[1:]) and set(np.unique(label)) == {0, 1}
    assert meta["spacing"] == [1.5, 1.5, 1.5]
    affine = np.array(meta["affine"])
    np.testing.assert_allclose(np.diag(affine)[:3], [1.5, 1.5, 1.5])  # RAS: positive diagonal
    # The field of view is resampled: ~24 mm along R becomes ~16 voxels (before cropping).
    assert meta["original_shape"] == list(SHAPE) and meta["original_spacing"] == [1.0, 1.0, 2.5]
    assert image.shape[3] > SHAPE[2]  # 16 slices of 2.5 mm -> ~27 of 1.5 mm
    # Reorientation kept anatomy in place: the lesion's world centroid is unchanged.
    before = _world_centroid(_label() > 0, AFFINE)
    after = _world_centroid(label[0] > 0, affine)
    np.testing.assert_allclose(after, before, atol=0.8)
    # Per-image z-score, statistics over the tissue (the box, not the zero background), per
    # channel; outside the tissue the input is set to exactly 0, as nnU-Net does.
    assert {n["mask"] for n in manifest["normalization"]} == {"tissue"}
    for channel in image:
        background = channel == 0
        assert 0.05 < background.mean() < 0.95, "the zero background must stay exactly 0"
        tissue = channel[~background]
        assert abs(tissue.mean()) < 0.05 and abs(tissue.std() - 1) < 0.05


def _make_ct(root: Path, cases: int = 3) -> Path:
    """MSD CT: air (-1000) around a body of soft tissue with bright outliers inside the label."""
    training = []
    for i in range(cases):
        rng = np.random.default_rng(i)
        image = np.full(SHAPE, -1000.0, np.float32)
        image[2:22, 2:18, 1:15] = rng.normal(40, 30, (20, 16, 14))
        image[6:10, 6:10, 5:9] = rng.normal(300, 80, (4, 4, 4))
        image[7, 7, 6] = 3000.0  # outlier the 99.5 percentile clip must remove
        label = np.zeros(SHAPE, np.uint8)
        label[4:14, 4:14, 3:11] = 1
        name = f"ct_{i}.nii.gz"
        _save(root / "imagesTr" / name, image)
        _save(root / "labelsTr" / name, label)
        training.append({"image": f"imagesTr/{name}", "label": f"labelsTr/{name}"})
    meta = {"modality": {"0": "CT"}, "labels": {"0": "background", "1": "organ"}}
    (root / "dataset.json").write_text(json.dumps({**meta, "training": training}))
    return root


def test_ct_clipping_uses_dataset_foreground_percentiles(tmp_path: Path) -> None:
    root, out = _make_ct(tmp_path / "raw"), tmp_path / "out"
    # Original spacing as target: resampling is the identity, so values can be compared exactly.
    prepare_dataset(root, out, target_spacing=(1.0, 1.0, 2.5), workers=1)
    manifest = json.loads((out / "dataset.json").read_text())
    plan = manifest["normalization"][0]
    stats = json.loads((out / "fingerprint.json").read_text())["intensity"][0]
    assert plan["scheme"] == "ct"
    assert plan["clip"] == [stats["percentile_00_5"], stats["percentile_99_5"]]
    assert plan["mean"] == stats["mean"] and plan["std"] == stats["std"]
    # Dataset statistics come from foreground (label > 0) voxels only: no air in them.
    assert -200 < stats["percentile_00_5"] < 40 < stats["percentile_99_5"] < 3000
    low, high = ((np.array(plan["clip"]) - plan["mean"]) / plan["std"]).tolist()
    for item in load_prepared(out):
        image = np.load(item["image"])
        assert image.min() == pytest.approx(low, abs=1e-4)  # air clipped at the 0.5 percentile
        assert image.max() == pytest.approx(high, abs=1e-4)  # the 3000 HU outlier clipped


def test_rerun_cached_changed_input_and_force(tmp_path: Path) -> None:
    root, out = make_nnunet_mr(tmp_path / "raw"), tmp_path / "out"
    first = prepare_dataset(root, out, workers=1)
    assert (first.prepared, first.cached) == (3, 0)
    assert first.target_spacing == (1.0, 1.0, 2.5)  # default: the fingerprint's median spacing
    before = _mtimes(out)

    again = prepare_dataset(root, out, workers=1)
    assert (again.prepared, again.cached) == (0, 3)
    assert _mtimes(out) == before  # nothing rewritten, nothing added or removed

    _save(root / "imagesTr" / "case_001_0001.nii.gz", _mr(42))  # new content, size and mtime
    changed = prepare_dataset(root, out, workers=1)
    assert (changed.prepared, changed.cached) == (1, 2)
    after = _mtimes(out)
    for case in ("case_000", "case_002"):
        key = f"cases/{case}/image.npy"
        assert after[key] == before[key]
    assert after["cases/case_001/image.npy"] != before["cases/case_001/image.npy"]

    forced = prepare_dataset(root, out, workers=1, force=True)
    assert (forced.prepared, forced.cached) == (3, 0)

    # A case dropped from the dataset leaves the manifest and its folder is removed.
    for path in [*root.glob("imagesTr/case_002_*"), root / "labelsTr" / "case_002.nii.gz"]:
        path.unlink()
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**meta, "numTraining": 2}))
    shrunk = prepare_dataset(root, out, workers=1)
    assert (shrunk.prepared, shrunk.cached) == (0, 2)
    assert not (out / "cases" / "case_002").exists()
    assert [i["case"] for i in load_prepared(out)] == ["case_000", "case_001"]


def test_interrupted_run_is_redone_not_trusted(tmp_path: Path) -> None:
    root, out = make_nnunet_mr(tmp_path / "raw", cases=2), tmp_path / "out"
    prepare_dataset(root, out, workers=1)
    good = np.load(out / "cases" / "case_001" / "image.npy")
    # Simulate a crash: a half-written temp folder, and a case renamed into place (here with a
    # damaged file) whose manifest update never happened.
    leftover = out / "cases" / ".case_000.tmp-abcd1234"
    leftover.mkdir()
    (leftover / "image.npy").write_bytes(b"partial")
    manifest_path = out / "dataset.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["cases"] = [c for c in manifest["cases"] if c["case"] != "case_001"]
    manifest_path.write_text(json.dumps(manifest))
    (out / "cases" / "case_001" / "image.npy").write_bytes(b"damaged")

    report = prepare_dataset(root, out, workers=1)
    assert (report.prepared, report.cached) == (1, 1)
    assert not leftover.exists()
    np.testing.assert_array_equal(np.load(out / "cases" / "case_001" / "image.npy"), good)
    assert [i["case"] for i in load_prepared(out)] == ["case_000", "case_001"]


def test_two_workers_match_one(tmp_path: Path) -> None:
    root = make_nnunet_mr(tmp_path / "raw", cases=2)
    serial = prepare_dataset(root, tmp_path / "one", target_spacing=(1.5, 1.5, 2.0), workers=1)
    parallel = prepare_dataset(root, tmp_path / "two", target_spacing=(1.5, 1.5, 2.0), workers=2)
    assert serial.prepared == parallel.prepared == 2
    for a, b in zip(load_prepared(tmp_path / "one"), load_prepared(tmp_path / "two"), strict=True):
        np.testing.assert_allclose(np.load(a["image"]), np.load(b["image"]), atol=1e-5)
        np.testing.assert_array_equal(np.load(a["label"]), np.load(b["label"]))


def test_bad_case_stops_prepare_with_input_error(tmp_path: Path) -> None:
    root, out = make_nnunet_mr(tmp_path / "raw", cases=2), tmp_path / "out"
    bad = root / "labelsTr" / "case_001.nii.gz"
    label = _label()
    label[0, 0, 0] = 5
    _save(bad, label)
    with pytest.raises(InputError, match="case_001.nii.gz: label values 5"):
        prepare_dataset(root, out, workers=1)
    assert not (out / "cases" / "case_001").exists()
    with pytest.raises(InputError, match="output folder must differ"):
        prepare_dataset(root, root, workers=1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("someone else's")
    with pytest.raises(InputError, match="foreign: not empty and not a prepared folder"):
        prepare_dataset(root, foreign, workers=1)
    with pytest.raises(InputError, match="dataset.json: not found"):
        load_prepared(tmp_path / "nothing")
