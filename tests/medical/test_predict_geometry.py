"""``hv-med predict`` maps the prediction back to the input's own grid: resampling and crop undone.

The scan is stored at 1 x 1 x 2.5 mm with a flipped first axis, the run was prepared at 2 mm
isotropic, and the scan's foreground is a small off-centre box, so preprocessing reorients,
resamples (down in-plane, up across slices) and crops to a strict sub-box. The network is
replaced by a fixed rule on the normalised intensity, so the expected label map is known without
relying on training: background where the scan is zero, class 1 on the dim half of the box,
class 2 on the bright half. The output must have the input's exact shape and affine, and each
class must sit where it is in the input, up to the blur of resampling at its borders; the
probability map likewise, a distribution at every voxel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from medical.cli import main as hv_med
from medical.task import SegmentationTask

SHAPE = (40, 36, 16)
SPACING = (1.0, 1.0, 2.5)
# First axis flipped (stored left to right), origin away from zero.
AFFINE = np.array([[-1.0, 0, 0, 30.0], [0, 1.0, 0, -12.0], [0, 0, 2.5, -20.0], [0, 0, 0, 1.0]])
# The nonzero part, 20 x 18 x 7 voxels, far from every edge and nearer one side than the other
# on each axis, so a crop undone at the wrong offset moves it by more than the tolerance below.
BOX = (slice(6, 26), slice(14, 32), slice(6, 13))
BRIGHT = (slice(6, 16), slice(14, 32), slice(6, 13))  # its first half along x, value 300
DIM = (slice(16, 26), slice(14, 32), slice(6, 13))


def _scan() -> tuple[np.ndarray, np.ndarray]:
    """Image (zero outside BOX; 100, and 300 on the half BRIGHT) and its true label map."""
    image = np.zeros(SHAPE, np.float32)
    image[BOX] = 100.0
    image[BRIGHT] = 300.0
    label = np.zeros(SHAPE, np.uint8)
    label[BOX] = 1
    label[BRIGHT] = 2
    return image, label


def _threshold_infer(self, image: torch.Tensor) -> torch.Tensor:
    """Logits of the rule: exactly 0 -> background, below it -> 1, above -> 2.

    The scan's tissue voxels are half 100 and half 300 (mean 200, std 100), so the per-image
    z-score of the preparation maps them to about -1 and +1, and sets the background (outside
    the tissue mask) to exactly 0.
    """
    x = image[:, :1]
    return 10.0 * torch.cat([x.abs() < 0.5, x <= -0.5, x >= 0.5], dim=1).float()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A raw dataset of two such scans, prepared at 2 mm and trained for one step."""
    root = tmp_path_factory.mktemp("geometry")
    raw = root / "Dataset002_Geometry"
    for folder in ("imagesTr", "labelsTr"):
        (raw / folder).mkdir(parents=True)
    image, label = _scan()
    for index in range(2):
        case = f"case{index}"
        nib.save(nib.Nifti1Image(image, AFFINE), str(raw / "imagesTr" / f"{case}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(label, AFFINE), str(raw / "labelsTr" / f"{case}.nii.gz"))
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1"}, "labels": {"background": 0, "dim": 1, "bright": 2},
        "numTraining": 2, "file_ending": ".nii.gz",
    }))  # fmt: skip
    prepared = root / "prepared"
    assert hv_med(["prepare", str(raw), "-o", str(prepared), "--spacing", "2,2,2",
                   "--workers", "1"]) == 0  # fmt: skip
    assert hv_med([
        "train", "--data.prepared", str(prepared), "--data.patch_size", "[32, 32, 32]",
        "--trainer.batch_size", "1", "--trainer.max_steps", "1", "--trainer.progress", "false",
        "--run.runs_dir", str(root / "runs"), "--run.name", "geo",
    ]) == 0  # fmt: skip
    return root


def test_prepared_grid_differs_from_the_scan(run: Path) -> None:
    """The premise: preparation resampled and cropped, so predict has both to undo."""
    meta = json.loads(next((run / "prepared" / "cases").glob("*/meta.json")).read_text())
    assert meta["spacing"] == [2.0, 2.0, 2.0] and meta["original_spacing"] == list(SPACING)
    image = np.load(next((run / "prepared" / "cases").glob("*/image.npy")))
    # Resampled full field of view: 20 x 18 x 20 voxels; the crop keeps about 14 x 13 x 14.
    assert all(c < f for c, f in zip(image.shape[1:], (20, 18, 20), strict=True)), image.shape


def test_predict_undoes_crop_and_resampling(run: Path, tmp_path: Path, monkeypatch) -> None:
    image, truth = _scan()
    scans = tmp_path / "scans"
    scans.mkdir()
    nib.save(nib.Nifti1Image(image, AFFINE), str(scans / "probe.nii.gz"))
    monkeypatch.setattr(SegmentationTask, "infer", _threshold_infer)
    checkpoint = run / "runs" / "geo" / "checkpoints" / "last.ckpt"
    out = tmp_path / "pred"
    assert hv_med(["predict", str(scans), "-o", str(out), "--checkpoint", str(checkpoint),
                   "--probabilities"]) == 0  # fmt: skip

    written = nib.load(str(out / "probe.nii.gz"))
    assert written.shape == SHAPE
    np.testing.assert_allclose(written.affine, AFFINE, atol=1e-5)
    labels = np.asarray(written.dataobj)
    # Away from class borders every voxel is right; near them resampling may move a border by
    # up to one 2 mm voxel (2 input voxels in-plane, 1 across slices) plus rounding.
    near = np.ones((7, 7, 3), bool)

    def mask(box: tuple[slice, ...]) -> np.ndarray:
        inside = np.zeros(SHAPE, bool)
        inside[box] = True
        return inside

    foreground = mask(BOX)
    # Each class where it may appear: blurred borders of the bright half read as dim.
    regions = {0: ~foreground, 1: mask(DIM), 2: mask(BRIGHT)}
    allowed = {0: ~foreground, 1: foreground, 2: mask(BRIGHT)}
    for value, region in regions.items():
        predicted = labels == value
        inner = ndimage.binary_erosion(region, near, border_value=1)
        outer = ndimage.binary_dilation(allowed[value], near)
        assert predicted[inner].all(), f"class {value}: {np.sum(~predicted[inner])} voxels lost"
        assert not predicted[~outer].any(), f"class {value}: {np.sum(predicted[~outer])} misplaced"
    assert np.mean(labels == truth) > 0.9, "overall the map is nearly the truth"

    # The probability map: same grid, a distribution at every voxel (outside the crop too, where
    # undoing the crop pads with zeros), and it agrees with the label map.
    probabilities = nib.load(str(out / "probe_probs.nii.gz"))
    assert probabilities.shape == (*SHAPE, 3)
    np.testing.assert_allclose(probabilities.affine, AFFINE, atol=1e-5)
    probs = np.asarray(probabilities.dataobj)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-3)
    outside = ~ndimage.binary_dilation(foreground, near)
    np.testing.assert_allclose(probs[outside, 0], 1.0, atol=1e-3)
    assert np.mean(probs.argmax(-1) == labels) > 0.95


def test_predict_from_another_folder_without_the_prepared_data(
    run: Path, tmp_path: Path, monkeypatch
) -> None:
    """The checkpoint alone is enough: run elsewhere with the prepared folder gone, and a config
    flag before the inputs (read by the one parser, not taken for an input) is honoured."""
    image, _ = _scan()
    scan = tmp_path / "probe.nii.gz"
    nib.save(nib.Nifti1Image(image, AFFINE), str(scan))
    seen = []
    real_infer = SegmentationTask.infer

    def recording_infer(self, x: torch.Tensor) -> torch.Tensor:
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
        return real_infer(self, x)

    monkeypatch.setattr(SegmentationTask, "infer", recording_infer)
    checkpoint = (run / "runs" / "geo" / "checkpoints" / "last.ckpt").resolve()
    prepared, hidden = run / "prepared", run / "prepared_moved_away"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    prepared.rename(hidden)
    try:
        code = hv_med(["predict", "--trainer.precision", "bf16-mixed", str(scan), "-o", "pred",
                       "--checkpoint", str(checkpoint)])  # fmt: skip
    finally:
        hidden.rename(prepared)
    assert code == 0
    assert nib.load(str(elsewhere / "pred" / "probe.nii.gz")).shape == SHAPE
    assert seen == [torch.bfloat16], "windows ran under bf16 autocast"


def test_predict_input_checks(run: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """Channel count: a one-line error naming the file. Spacing far from the training scans'
    and a normalised intensity range unlike the training data's: warnings naming the file."""
    monkeypatch.setattr(SegmentationTask, "infer", _threshold_infer)
    checkpoint = str(run / "runs" / "geo" / "checkpoints" / "last.ckpt")
    image, _ = _scan()
    two = tmp_path / "two"
    two.mkdir()
    for c in range(2):
        nib.save(nib.Nifti1Image(image, AFFINE), str(two / f"duo_{c:04d}.nii.gz"))
    assert hv_med(["predict", str(two), "-o", str(tmp_path / "p2"), "--checkpoint",
                   checkpoint]) == 2  # fmt: skip
    error = capsys.readouterr().err.strip()
    assert "duo_0000.nii.gz: 2 channel(s), the model expects 1" in error
    assert len(error.splitlines()) == 1

    odd = image.copy()
    odd[6, 14:32, 6:13] = 1e5  # a thin bright sheet: the normalised 99.5 percentile jumps
    coarse = AFFINE.copy()
    coarse[:3, :3] *= 3.0  # 3 x 3 x 7.5 mm: training scans were 1 x 1 x 2.5 mm
    nib.save(nib.Nifti1Image(odd, coarse), str(tmp_path / "odd.nii.gz"))
    assert hv_med(["predict", str(tmp_path / "odd.nii.gz"), "-o", str(tmp_path / "p3"),
                   "--checkpoint", checkpoint]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "odd.nii.gz: spacing (3.0, 3.0, 7.5) mm is far from the training" in err
    # The sheet's extreme values push the rest of the scan below the tissue level.
    assert re.search(r"odd\.nii\.gz: channel 0 \(T1\) is \d+% tissue after normalisation", err)

    nib.save(nib.Nifti1Image(image, AFFINE), str(tmp_path / "fine.nii.gz"))
    assert hv_med(["predict", str(tmp_path / "fine.nii.gz"), "-o", str(tmp_path / "p4"),
                   "--checkpoint", checkpoint]) == 0  # fmt: skip
    assert "warning" not in capsys.readouterr().err, "a scan like the training data is quiet"


def test_tta_flag_averages_the_three_flips_mapped_back(
    run: Path, tmp_path: Path, monkeypatch
) -> None:
    """``--tta`` runs the network on the scan and its flips along each of the three axes, and
    flips each prediction back before averaging: with a voxel-wise rule (flip-equivariant) the
    averaged map is the plain one exactly; a flip not undone would move the off-centre box."""
    image, _ = _scan()
    scans = tmp_path / "scans"
    scans.mkdir()
    nib.save(nib.Nifti1Image(image, AFFINE), str(scans / "probe.nii.gz"))
    calls: list[torch.Tensor] = []

    def recording_infer(self, x: torch.Tensor) -> torch.Tensor:
        calls.append(x.clone())
        return _threshold_infer(self, x)

    monkeypatch.setattr(SegmentationTask, "infer", recording_infer)
    checkpoint = str(run / "runs" / "geo" / "checkpoints" / "last.ckpt")
    outputs = {}
    for name, flags in (("plain", []), ("tta", ["--tta"])):
        out = tmp_path / name
        assert hv_med(["predict", str(scans), "-o", str(out), "--checkpoint", checkpoint,
                       "--probabilities", *flags]) == 0  # fmt: skip
        outputs[name] = (np.asarray(nib.load(str(out / "probe.nii.gz")).dataobj),
                         np.asarray(nib.load(str(out / "probe_probs.nii.gz")).dataobj))  # fmt: skip
    assert len(calls) == 1 + 4, "plain: one pass; --tta: the scan and its three flips"
    scan = calls[1]
    assert not torch.equal(scan, scan.flip(2)), "the premise: flips change this scan"
    for axis, call in zip((2, 3, 4), calls[2:], strict=True):
        assert torch.equal(call, scan.flip(axis))
    np.testing.assert_array_equal(outputs["tta"][0], outputs["plain"][0])
    np.testing.assert_allclose(outputs["tta"][1], outputs["plain"][1], atol=1e-5)
