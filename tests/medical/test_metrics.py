"""Tests for medical.metrics (Dice/HD95 conventions) and medical.evaluate (folder evaluation)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from rich.console import Console

from medical.evaluate import evaluate_folders, format_summary_table
from medical.metrics import dice_per_class, hd95_per_class
from shared.engine.io import InputError

SHAPE = (12, 12, 10)
SPACING = (0.8, 1.25, 2.5)
AFFINE = np.diag([*SPACING, 1.0])


def _cube(start: tuple[int, int, int], size: int, label: int = 1) -> np.ndarray:
    """A label map with one ``size``-voxel cube of ``label`` starting at ``start``."""
    vol = np.zeros(SHAPE, dtype=np.uint8)
    x, y, z = start
    vol[x : x + size, y : y + size, z : z + size] = label
    return vol


def _save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


# --------------------------------------------------------------------------------------------
# Dice
# --------------------------------------------------------------------------------------------


def test_dice_of_offset_cubes_is_exact() -> None:
    gt = _cube((2, 2, 2), 4)
    pred = _cube((3, 3, 2), 4)  # overlap 3 x 3 x 4 = 36 voxels of 64 each
    dice = dice_per_class(pred, gt, [1])
    assert dice[1] == pytest.approx(2 * 36 / (64 + 64), abs=1e-6)


def test_dice_identical_maps_and_tensor_input() -> None:
    gt = _cube((1, 1, 1), 3, label=2) + _cube((6, 6, 5), 3, label=1)
    dice = dice_per_class(torch.as_tensor(gt), torch.as_tensor(gt), [1, 2])
    assert dice == {1: 1.0, 2: 1.0}


def test_dice_empty_class_rules() -> None:
    gt = _cube((1, 1, 1), 3, label=1)
    pred = gt.copy()
    pred[8:10, 8:10, 6:8] = 2  # class 2 predicted but absent from the reference
    dice = dice_per_class(pred, gt, [1, 2, 3])  # class 3: absent from both
    assert dice[1] == 1.0
    assert dice[2] == 0.0
    assert math.isnan(dice[3])
    assert np.nanmean(list(dice.values())) == pytest.approx(0.5)  # 3 is left out


def test_dice_reference_present_prediction_empty_is_zero() -> None:
    assert dice_per_class(np.zeros(SHAPE, np.uint8), _cube((1, 1, 1), 3), [1]) == {1: 0.0}


def test_monai_empty_reference_behaviour_we_build_on() -> None:
    """Pins MONAI's behaviour that dice_per_class corrects; fails if a MONAI update changes it."""
    empty = torch.zeros(1, 1, 4, 4, 4, dtype=torch.bool)
    predicted = empty.clone()
    predicted[..., :2] = True
    assert math.isnan(compute_dice(predicted, empty, ignore_empty=True).item())  # FP hidden
    assert compute_dice(predicted, empty, ignore_empty=False).item() == 0.0
    assert compute_dice(empty, empty, ignore_empty=False).item() == 1.0  # we turn this into NaN


def test_dice_shape_mismatch_is_value_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        dice_per_class(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), [1])


# --------------------------------------------------------------------------------------------
# HD95
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("axis", "shift"), [(0, 3), (1, 2), (2, 2)])
def test_hd95_of_shifted_cube_with_anisotropic_spacing(axis: int, shift: int) -> None:
    # A 5-voxel cube moved by `shift` voxels along one axis: the moved face (1/6 of the surface,
    # more than the top 5%) lies exactly shift * spacing from the other cube's face.
    gt = _cube((2, 2, 2), 5)
    pred = np.roll(gt, shift, axis=axis)
    hd = hd95_per_class(pred, gt, [1], SPACING)
    assert hd[1] == pytest.approx(shift * SPACING[axis], abs=1e-4)


def test_hd95_of_spheres_offset_matches_spacing() -> None:
    grid = np.indices((24, 24, 24)).astype(float)
    centre = np.array([11.5, 11.5, 11.5])[:, None, None, None]
    gt = (((grid - centre) ** 2).sum(0) <= 6**2).astype(np.uint8)
    pred = np.roll(gt, 2, axis=2)
    hd = hd95_per_class(pred, gt, [1], (1.0, 1.0, 3.0))[1]
    # The surfaces are 2 voxels x 3 mm apart at the poles, less elsewhere.
    assert 3.0 <= hd <= 6.0 + 1e-4


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI 1.6.1's own deprecated argument
def test_hd95_identical_is_zero_and_crop_matches_monai_uncropped() -> None:
    gt = _cube((0, 0, 0), 4) + _cube((7, 6, 5), 4, label=2)  # class 1 touches the border
    pred = np.roll(gt, 1, axis=1)
    ours = hd95_per_class(pred, gt, [1, 2], SPACING)
    reference = compute_hausdorff_distance(
        torch.nn.functional.one_hot(torch.as_tensor(pred).long(), 3).permute(3, 0, 1, 2)[None],
        torch.nn.functional.one_hot(torch.as_tensor(gt).long(), 3).permute(3, 0, 1, 2)[None],
        percentile=95,
        spacing=list(SPACING),
    )[0]
    assert [ours[1], ours[2]] == pytest.approx(reference.tolist(), abs=1e-5)
    assert hd95_per_class(gt, gt, [1, 2], SPACING) == {1: 0.0, 2: 0.0}


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI 1.6.1's own deprecated argument
def test_hd95_empty_cases_are_nan_like_monai() -> None:
    gt = _cube((2, 2, 2), 3)
    empty = np.zeros(SHAPE, np.uint8)
    for pred, ref in [(empty, empty), (gt, empty), (empty, gt)]:
        assert math.isnan(hd95_per_class(pred, ref, [1], SPACING)[1])
        with pytest.warns(UserWarning):  # MONAI warns and returns NaN; we return NaN silently
            monai_value = compute_hausdorff_distance(
                torch.as_tensor(pred)[None, None],
                torch.as_tensor(ref)[None, None],
                True,
                percentile=95,
            )
        assert math.isnan(monai_value.item())


def test_hd95_spacing_length_checked() -> None:
    with pytest.raises(ValueError, match="spacing"):
        hd95_per_class(np.zeros(SHAPE), np.zeros(SHAPE), [1], (1.0, 1.0))


# --------------------------------------------------------------------------------------------
# evaluate_folders
# --------------------------------------------------------------------------------------------


def _reject(constant: str) -> None:
    raise AssertionError(f"{constant} is not valid JSON")


def _two_case_dataset(root: Path) -> tuple[Path, Path]:
    """case_a: class 1 offset cubes, class 2 perfect; case_b: class 1 perfect, class 2 missed."""
    gt_a = _cube((1, 1, 1), 4, label=1) + _cube((7, 7, 5), 3, label=2)
    pred_a = _cube((2, 1, 1), 4, label=1) + _cube((7, 7, 5), 3, label=2)
    gt_b = _cube((1, 1, 1), 4, label=1) + _cube((7, 7, 5), 3, label=2)
    pred_b = _cube((1, 1, 1), 4, label=1)
    gt_dir, pred_dir = root / "gt", root / "pred"
    _save(gt_dir / "case_a.nii.gz", gt_a)
    _save(gt_dir / "case_b.nii.gz", gt_b)
    _save(pred_dir / "case_a.nii.gz", pred_a)
    _save(pred_dir / "case_b.nii", pred_b)  # .nii and .nii.gz both match by case name
    (pred_dir / "plans.json").write_text("{}")  # nnU-Net writes such files: ignored
    return pred_dir, gt_dir


def test_evaluate_folders_writes_summary_csv_and_overlay(tmp_path: Path) -> None:
    pred_dir, gt_dir = _two_case_dataset(tmp_path)
    image_dir = tmp_path / "images"
    for case in ("case_a", "case_b"):  # nnU-Net channel naming for images
        _save(image_dir / f"{case}_0000.nii.gz", np.random.rand(*SHAPE).astype(np.float32))
    out = tmp_path / "eval"
    labels = {0: "background", 1: "liver", 2: "tumour", 3: "vessel"}
    summary = evaluate_folders(pred_dir, gt_dir, out, labels=labels, image_dir=image_dir)

    dice_a_liver = 2 * 48 / (64 + 64)  # offset by one voxel along x: 3 x 4 x 4 overlap
    # Strict JSON: NaN/Infinity (Python's json extensions) would raise here.
    assert json.loads((out / "summary.json").read_text(), parse_constant=_reject) == summary
    per_case = {row["case"]: row for row in summary["metric_per_case"]}
    assert per_case["case_a"]["dice"] == {
        "liver": pytest.approx(dice_a_liver),
        "tumour": 1.0,
        "vessel": None,
    }
    assert per_case["case_a"]["hd95"]["liver"] == pytest.approx(SPACING[0])
    assert per_case["case_b"]["dice"] == {"liver": 1.0, "tumour": 0.0, "vessel": None}
    assert per_case["case_b"]["hd95"] == {"liver": 0.0, "tumour": None, "vessel": None}
    assert summary["mean"]["liver"]["dice"] == pytest.approx((dice_a_liver + 1) / 2)
    assert summary["mean"]["tumour"] == {"dice": 0.5, "hd95": 0.0}
    assert summary["mean"]["vessel"] == {"dice": None, "hd95": None}
    assert summary["foreground_mean"]["dice"] == pytest.approx(((dice_a_liver + 1) / 2 + 0.5) / 2)

    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3
    row = next(r for r in rows if r["case"] == "case_a" and r["class_name"] == "liver")
    assert float(row["dice"]) == pytest.approx(dice_a_liver) and row["class_id"] == "1"
    assert (out / "overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files

    console = Console(record=True, width=100)
    console.print(format_summary_table(summary))
    text = console.export_text()
    assert "liver" in text and "foreground mean" in text and "n/a" in text


def test_evaluate_folders_infers_labels_and_skips_overlay(tmp_path: Path) -> None:
    pred_dir, gt_dir = _two_case_dataset(tmp_path)
    summary = evaluate_folders(pred_dir, gt_dir, tmp_path / "out", num_overlays=0)
    assert summary["labels"] == {"1": "1", "2": "2"}
    assert summary["mean"]["2"]["dice"] == 0.5
    assert not (tmp_path / "out" / "overlay.png").exists()


def test_evaluate_folders_accepts_nnunet_dataset_folder(tmp_path: Path) -> None:
    _save(tmp_path / "Dataset001_X" / "labelsTr" / "c1.nii.gz", _cube((1, 1, 1), 3))
    _save(tmp_path / "pred" / "c1.nii.gz", _cube((1, 1, 1), 3))
    summary = evaluate_folders(
        tmp_path / "pred", tmp_path / "Dataset001_X", tmp_path / "out", num_overlays=1
    )
    assert summary["foreground_mean"] == {"dice": 1.0, "hd95": 0.0}
    assert (tmp_path / "out" / "overlay.png").is_file()  # no image_dir: reference shown


def test_missing_prediction_names_the_case(tmp_path: Path) -> None:
    pred_dir, gt_dir = _two_case_dataset(tmp_path)
    (pred_dir / "case_b.nii").unlink()
    with pytest.raises(InputError, match="no prediction for reference case 'case_b'"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out")


def test_extra_prediction_names_the_file(tmp_path: Path) -> None:
    pred_dir, gt_dir = _two_case_dataset(tmp_path)
    _save(pred_dir / "case_z.nii.gz", _cube((1, 1, 1), 3))
    with pytest.raises(InputError, match=r"case_z\.nii\.gz: prediction has no reference"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out")


def test_shape_mismatch_names_the_case(tmp_path: Path) -> None:
    pred_dir, gt_dir = _two_case_dataset(tmp_path)
    _save(pred_dir / "case_b.nii", np.zeros((12, 12, 9), np.uint8))
    with pytest.raises(InputError, match=r"case 'case_b': prediction shape \(12, 12, 9\)"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out")
    assert not (tmp_path / "out" / "summary.json").exists()  # checked before any output


def test_affine_mismatch_names_the_case(tmp_path: Path) -> None:
    pred_dir, gt_dir = _two_case_dataset(tmp_path)
    shifted = AFFINE.copy()
    shifted[0, 3] = 5.0
    _save(pred_dir / "case_a.nii.gz", _cube((1, 1, 1), 4), affine=shifted)
    with pytest.raises(InputError, match="case 'case_a': prediction affine differs"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out")


def test_non_integer_prediction_names_the_file(tmp_path: Path) -> None:
    pred_dir, gt_dir = _two_case_dataset(tmp_path)
    probabilities = _cube((1, 1, 1), 4).astype(np.float32) * 0.7
    _save(pred_dir / "case_a.nii.gz", probabilities)
    with pytest.raises(
        InputError, match=r"case_a\.nii\.gz: prediction for case 'case_a' has non-integer"
    ):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "out")


def test_integer_valued_float_prediction_is_accepted(tmp_path: Path) -> None:
    pred_dir, gt_dir = _two_case_dataset(tmp_path)
    _save(pred_dir / "case_b.nii", (_cube((1, 1, 1), 4) * 1.0).astype(np.float32))
    summary = evaluate_folders(pred_dir, gt_dir, tmp_path / "out", num_overlays=0)
    assert summary["metric_per_case"][1]["dice"]["1"] == 1.0


def test_big_endian_input_is_accepted() -> None:
    gt = _cube((1, 1, 1), 4).astype(">i2")  # nibabel hands over big-endian data as stored
    assert dice_per_class(gt, gt, [1]) == {1: 1.0}
    assert hd95_per_class(gt, gt, [1], SPACING) == {1: 0.0}
