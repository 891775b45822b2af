"""Dataset discovery and validation on tiny synthetic MSD / nnU-Net datasets (CPU, seconds)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medical.data import (
    check_case,
    check_dataset,
    discover_dataset,
    ras_spacing_and_shape,
    read_dicom_series,
)
from medical.phantom import write_dicom_series
from shared.engine.io import InputError

SHAPE = (24, 20, 16)
# LPS-oriented, anisotropic (1, 1, 2.5) mm: the common DICOM-converted geometry.
AFFINE = np.array([[-1.0, 0, 0, 12], [0, -1.0, 0, 10], [0, 0, 2.5, -20], [0, 0, 0, 1]])


def _save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _volume(seed: int) -> np.ndarray:
    image = np.zeros(SHAPE, np.float32)
    image[3:21, 3:17, 2:14] = np.random.default_rng(seed).normal(100, 20, (18, 14, 12))
    return image


def _label() -> np.ndarray:
    label = np.zeros(SHAPE, np.uint8)
    label[8:14, 7:12, 5:10] = 1
    label[10:12, 8:10, 6:8] = 2
    return label


def make_msd(root: Path, cases: int = 2, modalities: tuple[str, ...] = ("T1", "T2")) -> Path:
    """MSD layout: one 4D file per case (channels on the last axis), paths relative to JSON."""
    root.mkdir(parents=True, exist_ok=True)
    training = []
    for i in range(cases):
        name = f"case_{i:03d}.nii.gz"
        image = np.stack([_volume(10 * i + c) for c in range(len(modalities))], axis=-1)
        _save(root / "imagesTr" / name, image if len(modalities) > 1 else image[..., 0])
        _save(root / "labelsTr" / name, _label())
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {
        "name": "Synthetic",
        "modality": {str(i): m for i, m in enumerate(modalities)},
        "labels": {"0": "background", "1": "tumour", "2": "core"},
        "numTraining": cases,
        "training": training,
        "test": [],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def make_nnunet(root: Path, cases: int = 2, channels: tuple[str, ...] = ("CT", "T2")) -> Path:
    """nnU-Net v2 raw layout: one 3D file per channel, labels name -> int."""
    for i in range(cases):
        for c in range(len(channels)):
            _save(root / "imagesTr" / f"case_{i:03d}_{c:04d}.nii.gz", _volume(10 * i + c))
        _save(root / "labelsTr" / f"case_{i:03d}.nii.gz", _label())
    for c in range(len(channels)):
        _save(root / "imagesTs" / f"test_000_{c:04d}.nii.gz", _volume(99 + c))
    meta = {
        "channel_names": {str(i): m for i, m in enumerate(channels)},
        "labels": {"background": 0, "tumour": 1, "core": 2},
        "numTraining": cases,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _raises(fn, *fragments: str) -> str:
    with pytest.raises(InputError) as err:
        fn()
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---------------------------------------------------------------- discovery


def test_discover_msd_4d_two_modalities(tmp_path: Path) -> None:
    dataset = discover_dataset(make_msd(tmp_path))
    assert dataset.layout == "msd" and dataset.name == "Synthetic"
    assert dataset.modalities == ["T1", "T2"]
    assert dataset.labels == {0: "background", 1: "tumour", 2: "core"}
    assert [c.case_id for c in dataset.cases] == ["case_000", "case_001"]
    case = dataset.cases[0]
    assert case.images == [tmp_path / "imagesTr" / "case_000.nii.gz"]
    assert case.channels_in_file == 2 and case.label == tmp_path / "labelsTr" / "case_000.nii.gz"
    item = dataset.datalist()[0]
    assert item == {
        "image": str(case.images[0]),
        "label": str(case.label),
        "case": "case_000",
    }
    check_dataset(dataset, workers=2)  # thread pool path


def test_discover_nnunet_channels_and_test_cases(tmp_path: Path) -> None:
    dataset = discover_dataset(make_nnunet(tmp_path))
    assert dataset.layout == "nnunet" and dataset.modalities == ["CT", "T2"]
    assert dataset.labels == {0: "background", 1: "tumour", 2: "core"}  # reversed to int -> name
    case = dataset.cases[1]
    assert case.case_id == "case_001" and case.channels_in_file == 1
    assert [p.name for p in case.images] == ["case_001_0000.nii.gz", "case_001_0001.nii.gz"]
    assert dataset.datalist()[1]["image"] == [str(p) for p in case.images]
    assert [c.case_id for c in dataset.test_cases] == ["test_000"]
    assert dataset.test_cases[0].label is None
    check_dataset(dataset)


def test_ras_spacing_follows_reorientation() -> None:
    # Axes permuted (first voxel axis runs S-I): spacing is reported along R, A, S.
    affine = np.array([[0, 0, 1.0, 0], [0, 0.8, 0, 0], [-3.0, 0, 0, 0], [0, 0, 0, 1]])
    spacing, shape = ras_spacing_and_shape(affine, (5, 6, 7))
    assert spacing == [1.0, 0.8, 3.0] and shape == [7, 6, 5]


# ---------------------------------------------------------------- discovery errors


def test_missing_or_unknown_dataset_json(tmp_path: Path) -> None:
    _raises(lambda: discover_dataset(tmp_path), "dataset.json", "not found")
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "x", "labels": {}}))
    _raises(lambda: discover_dataset(tmp_path), "dataset.json", "unknown dataset layout")
    (tmp_path / "dataset.json").write_text("{not json")
    _raises(lambda: discover_dataset(tmp_path), "dataset.json", "not readable JSON")


def test_empty_datasets(tmp_path: Path) -> None:
    msd = make_msd(tmp_path / "msd", cases=0)
    _raises(lambda: discover_dataset(msd), "dataset.json", "no training cases")
    nnunet = tmp_path / "nn"
    (nnunet / "imagesTr").mkdir(parents=True)
    (nnunet / "labelsTr").mkdir()
    (nnunet / "dataset.json").write_text(
        json.dumps(
            {"channel_names": {"0": "CT"}, "labels": {"background": 0}, "file_ending": ".nii.gz"}
        )
    )
    _raises(lambda: discover_dataset(nnunet), "dataset.json", "no training cases")


def test_missing_image_and_label_files(tmp_path: Path) -> None:
    msd = make_msd(tmp_path / "msd")
    (msd / "labelsTr" / "case_001.nii.gz").unlink()
    _raises(lambda: discover_dataset(msd), "case_001.nii.gz", "label file not found")
    (msd / "imagesTr" / "case_000.nii.gz").unlink()
    _raises(lambda: discover_dataset(msd), "case_000.nii.gz", "image file not found")
    nnunet = make_nnunet(tmp_path / "nn")
    (nnunet / "labelsTr" / "case_001.nii.gz").unlink()
    _raises(lambda: discover_dataset(nnunet), "labelsTr/case_001.nii.gz", "label file not found")


def test_nnunet_missing_channel_names_expected_file(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path)
    (root / "imagesTr" / "case_001_0001.nii.gz").unlink()
    _raises(
        lambda: discover_dataset(root),
        "imagesTr/case_001_0001.nii.gz",
        "missing channel 1 (T2) of case case_001",
    )


# ---------------------------------------------------------------- check_case errors


def test_truncated_and_garbage_nifti(tmp_path: Path) -> None:
    root = make_nnunet(tmp_path, cases=1)
    path = root / "imagesTr" / "case_000_0001.nii.gz"
    path.write_bytes(path.read_bytes()[:100])
    dataset = discover_dataset(root)
    _raises(lambda: check_case(dataset.cases[0], dataset), str(path), "unreadable NIfTI")
    path.write_bytes(gzip.compress(np.random.default_rng(0).bytes(2000)))
    _raises(lambda: check_dataset(dataset), str(path), "unreadable NIfTI (truncated or corrupt)")


def test_shape_and_affine_mismatch_name_case_and_files(tmp_path: Path) -> None:
    root = make_msd(tmp_path, cases=1)
    label = root / "labelsTr" / "case_000.nii.gz"
    image = root / "imagesTr" / "case_000.nii.gz"
    _save(label, np.zeros((24, 20, 15), np.uint8))
    dataset = discover_dataset(root)
    _raises(lambda: check_case(dataset.cases[0], dataset), "case_000", str(image), str(label))
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.5
    _save(label, _label(), shifted)
    _raises(lambda: check_case(dataset.cases[0], dataset), "different affines", str(label))


def test_label_values_outside_dataset_labels_and_non_integer(tmp_path: Path) -> None:
    root = make_msd(tmp_path, cases=1)
    label_path = root / "labelsTr" / "case_000.nii.gz"
    label = _label()
    label[0, 0, 0], label[1, 0, 0] = 7, 9
    _save(label_path, label)
    dataset = discover_dataset(root)
    _raises(lambda: check_case(dataset.cases[0], dataset), str(label_path), "7, 9", "not in")
    fractional = _label().astype(np.float32)
    fractional[0, 0, 0] = 0.5
    _save(label_path, fractional)
    _raises(lambda: check_case(dataset.cases[0], dataset), str(label_path), "non-integer", "0.5")
    whole = _label().astype(np.float32)  # float storage of whole numbers is fine
    _save(label_path, whole)
    check_case(dataset.cases[0], dataset)


def test_unexpected_4d_images(tmp_path: Path) -> None:
    nnunet = make_nnunet(tmp_path / "nn", cases=1)
    channel = nnunet / "imagesTr" / "case_000_0000.nii.gz"
    _save(channel, np.zeros((*SHAPE, 2), np.float32))
    dataset = discover_dataset(nnunet)
    _raises(lambda: check_case(dataset.cases[0], dataset), str(channel), "expected a 3D image")
    msd = make_msd(tmp_path / "msd", cases=1)
    image = msd / "imagesTr" / "case_000.nii.gz"
    _save(image, np.zeros((*SHAPE, 3), np.float32))  # 3 channels, dataset.json lists 2
    dataset = discover_dataset(msd)
    _raises(lambda: check_case(dataset.cases[0], dataset), str(image), "2 channels on the last")


# ---------------------------------------------------------------- DICOM


def _write_dicom_series(folder: Path, slices: int = 3) -> np.ndarray:
    volume = np.arange(slices * 5 * 4, dtype=np.int16).reshape(slices, 5, 4)  # (slice, row, col)
    # write_dicom_series takes (X=column, Y=row, Z=slice) and spacing (column, row, slice).
    write_dicom_series(volume.transpose(2, 1, 0), folder, spacing=(0.7, 0.8, 2.0))
    # Reverse the file names: the reader must sort by InstanceNumber, not by file name.
    files = sorted(folder.glob("*.dcm"))
    for index, file in enumerate(files):
        file.rename(folder / f"tmp_{len(files) - index}.dcm")
    return volume


def test_read_dicom_series(tmp_path: Path) -> None:
    volume = _write_dicom_series(tmp_path / "series")
    (tmp_path / "series" / "README.txt").write_text("not DICOM")
    array, affine = read_dicom_series(tmp_path / "series")
    # MONAI's layout: (column, row, slice), like NIfTI from dcm2niix.
    assert array.shape == (4, 5, 3)
    np.testing.assert_array_equal(array, volume.transpose(2, 1, 0))
    # LPS -> RAS flips the first two axes; spacing (column 0.7, row 0.8, slice 2.0).
    np.testing.assert_allclose(np.diag(affine)[:3], [-0.7, -0.8, 2.0], atol=1e-6)
    (tmp_path / "empty").mkdir()
    _raises(lambda: read_dicom_series(tmp_path / "empty"), "empty", "no DICOM files")
    _raises(lambda: read_dicom_series(tmp_path / "nowhere"), "nowhere", "not found")
