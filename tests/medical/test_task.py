"""Medical task end to end: phantom and MNI demo data, hv-med prepare/train, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medical.cli import main as hv_med
from medical.data import read_dicom_series
from medical.phantom import (
    PhantomConfig,
    make_phantom,
    write_dicom_series,
    write_mni_demo,
    write_phantom_dataset,
)

SMALL = PhantomConfig(shape=(48, 48, 24), spacing=(1.0, 1.0, 2.0))


def test_phantom_has_organs_texture_and_anisotropic_spacing(tmp_path: Path) -> None:
    image, label = make_phantom(SMALL, seed=1)
    assert image.shape == label.shape == SMALL.shape
    assert set(np.unique(label)) == {0, 1, 2}
    organ = image[label == 1]
    assert organ.std() > 0, "texture and noise: organs are not flat"
    assert abs(image[label == 1].mean() - image[label == 2].mean()) > 50
    root = write_phantom_dataset(tmp_path / "ph", num_cases=2, cfg=SMALL)
    header = nib.load(str(root / "imagesTr" / "phantom_000.nii.gz")).header
    assert tuple(float(z) for z in header.get_zooms()) == (1.0, 1.0, 2.0)
    manifest = json.loads((root / "dataset.json").read_text())
    assert manifest["numTraining"] == 2 and manifest["labels"]["2"] == "organ2"


@pytest.mark.parametrize(
    ("held_out", "validation"), [("top", ["mni_slab2"]), ("ends", ["mni_slab0", "mni_slab3"])]
)
def test_mni_demo_slabs_share_no_voxels(tmp_path: Path, held_out: str, validation: list) -> None:
    root = write_mni_demo(tmp_path / "mni", held_out=held_out)
    manifest = json.loads((root / "dataset.json").read_text())
    assert manifest["validation_cases"] == validation
    assert manifest["numTraining"] == 2 + len(validation)
    ranges = []
    for entry in manifest["training"]:
        label_file = nib.load(str(root / entry["label"]))
        labels = np.asarray(label_file.dataobj)
        assert set(np.unique(labels)) == {0, 1, 2}
        z0 = label_file.affine[2, 3]
        ranges.append((z0, z0 + label_file.affine[2, 2] * (labels.shape[2] - 1)))
    ranges.sort()
    for (_, top), (bottom, _) in zip(ranges, ranges[1:], strict=False):
        assert bottom > top, "slabs must not overlap"
    if held_out == "ends":  # the held-out slabs are the lowest and the highest
        ends = (manifest["training"][0], manifest["training"][-1])
        z = [nib.load(str(root / e["label"])).affine[2, 3] for e in ends]
        assert z == [ranges[0][0], ranges[-1][0]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Phantom dataset, prepared and trained for two short epochs (shared by tests)."""
    tmp_path = tmp_path_factory.mktemp("med")
    raw = write_phantom_dataset(tmp_path / "Phantoms", num_cases=3, cfg=SMALL)
    prepared = tmp_path / "prepared"
    assert hv_med(["prepare", str(raw), "-o", str(prepared), "--workers", "1"]) == 0
    code = hv_med([
        "train", "--data.prepared", str(prepared), "--data.patch_size", "[32, 32, 32]",
        "--trainer.batch_size", "1", "--trainer.max_epochs", "2", "--optim.lr", "3e-3",
        "--trainer.progress", "false", "--run.runs_dir", str(tmp_path / "runs"),
        "--run.name", "ph",
    ])  # fmt: skip
    assert code == 0
    return tmp_path


def test_prepare_and_train_on_phantoms(trained: Path) -> None:
    tmp_path = trained
    summary = json.loads((tmp_path / "runs" / "ph" / "summary.json").read_text())
    assert summary["headline_metric"] == "val/dice"
    metrics = summary["final_metrics"]
    assert {"val/dice", "val/dice_organ1", "val/dice_organ2"} <= set(metrics)
    assert 0.0 <= metrics["val/dice"] <= 1.0
    assert (tmp_path / "runs" / "ph" / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--data.dataset", "/no/such/dataset"], "/no/such/dataset: folder not found"),
        (["train"], "give --data.dataset"),
        (["train", "--data.prepared", ".", "--data.patch_size", "[40, 32, 32]"], "multiples of 32"),
        (["prepare", "/no/such/raw", "-o", "/tmp/x"], "/no/such/raw"),
        (["evaluate", "/no/pred", "/no/gt", "-o", "/tmp/x"], "/no/pred: folder not found"),
    ],
)
def test_cli_errors_are_one_line_exit_2(argv: list[str], message: str, capsys) -> None:
    assert hv_med(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_predict_writes_labels_in_the_input_geometry(trained: Path, tmp_path: Path) -> None:
    checkpoint = trained / "runs" / "ph" / "checkpoints" / "best.ckpt"
    source = trained / "Phantoms" / "imagesTr" / "phantom_002.nii.gz"
    ras = nib.load(str(source))
    # The same scan stored LPS: flip the first two axes and fix the affine to match.
    data = np.asarray(ras.dataobj)[::-1, ::-1].copy()
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [(data.shape[0] - 1), (data.shape[1] - 1)]
    lps_dir = tmp_path / "lps"
    lps_dir.mkdir()
    nib.save(nib.Nifti1Image(data, ras.affine @ flip), str(lps_dir / "phantom_lps.nii.gz"))
    out = tmp_path / "pred"
    assert hv_med(["predict", str(source), str(lps_dir), "-o", str(out),
                   "--checkpoint", str(checkpoint), "--tta"]) == 0  # fmt: skip
    first = nib.load(str(out / "phantom_002.nii.gz"))
    second = nib.load(str(out / "phantom_lps.nii.gz"))
    assert first.shape == ras.shape and np.allclose(first.affine, ras.affine)
    assert second.shape == data.shape and np.allclose(second.affine, ras.affine @ flip)
    labels = np.asarray(first.dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2}
    # Same anatomy, other storage order: the prediction must follow the voxels.
    np.testing.assert_array_equal(np.asarray(second.dataobj)[::-1, ::-1], labels)
    assert not list(out.glob("*.tmp"))


def test_predict_refuses_to_overwrite_inputs(trained: Path, capsys) -> None:
    images = trained / "Phantoms" / "imagesTr"
    checkpoint = trained / "runs" / "ph" / "checkpoints" / "best.ckpt"
    code = hv_med(["predict", str(images), "-o", str(images), "--checkpoint", str(checkpoint)])
    assert code == 2
    assert "would overwrite an input" in capsys.readouterr().err


def test_evaluate_folders_through_the_cli(trained: Path, tmp_path: Path, capsys) -> None:
    labels = trained / "Phantoms" / "labelsTr"
    code = hv_med(["evaluate", str(labels), str(labels), "-o", str(tmp_path / "ev"),
                   "--dataset-json", str(trained / "Phantoms" / "dataset.json")])  # fmt: skip
    assert code == 0
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["foreground_mean"]["dice"] == pytest.approx(1.0)


def test_predict_dicom_series_and_probability_maps(trained: Path, tmp_path: Path) -> None:
    checkpoint = trained / "runs" / "ph" / "checkpoints" / "best.ckpt"
    image, _ = make_phantom(SMALL, seed=7)
    series = write_dicom_series(image.astype(np.int16), tmp_path / "series_001", (1.0, 1.0, 2.0))
    expected_array, expected_affine = read_dicom_series(series)
    out = tmp_path / "pred"
    code = hv_med(["predict", str(series), "-o", str(out), "--checkpoint", str(checkpoint),
                   "--probabilities"])  # fmt: skip
    assert code == 0
    labels = nib.load(str(out / "series_001.nii.gz"))
    assert labels.shape == expected_array.shape
    np.testing.assert_allclose(labels.affine, expected_affine, atol=1e-5)
    probabilities = nib.load(str(out / "series_001_probs.nii.gz"))
    assert probabilities.shape == (*expected_array.shape, 3)
    np.testing.assert_allclose(np.asarray(probabilities.dataobj).sum(-1), 1.0, atol=1e-3)


def test_export_hybrid_unet(trained: Path, tmp_path: Path) -> None:
    import torch

    checkpoint = trained / "runs" / "ph" / "checkpoints" / "best.ckpt"
    target = tmp_path / "unet.pt2"
    assert hv_med(["export", "--checkpoint", str(checkpoint), "-o", str(target)]) == 0
    program = torch.export.load(target)
    assert program.module()(torch.randn(1, 1, 32, 32, 32)).shape == (1, 3, 32, 32, 32)


def test_predict_groups_nnunet_channel_files(tmp_path: Path) -> None:
    """A two-channel nnU-Net dataset: train briefly, then predict imagesTs channel files."""
    root = tmp_path / "Dataset001_Two"
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (root / folder).mkdir(parents=True)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    for index in range(3):
        image, label = make_phantom(SMALL, seed=20 + index)
        split = "imagesTs" if index == 2 else "imagesTr"
        for channel, data in enumerate((image, image[::-1].copy())):
            name = f"case{index}_{channel:04d}.nii.gz"
            nib.save(nib.Nifti1Image(data, affine), str(root / split / name))
        if split == "imagesTr":
            nib.save(nib.Nifti1Image(label, affine), str(root / "labelsTr" / f"case{index}.nii.gz"))
    labels = {"background": 0, "organ1": 1, "organ2": 2}
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1", "1": "T2"}, "labels": labels, "numTraining": 2,
        "file_ending": ".nii.gz",
    }))  # fmt: skip
    assert hv_med([
        "train", "--data.dataset", str(root), "--data.prepared", str(tmp_path / "prep"),
        "--data.patch_size", "[32, 32, 32]", "--data.val_fraction", "0.5",
        "--trainer.batch_size", "1", "--trainer.max_epochs", "1", "--trainer.progress", "false",
        "--run.runs_dir", str(tmp_path / "runs"), "--run.name", "two",
    ]) == 0  # fmt: skip
    checkpoint = tmp_path / "runs" / "two" / "checkpoints" / "last.ckpt"
    out = tmp_path / "pred"
    assert hv_med(["predict", str(root / "imagesTs"), "-o", str(out),
                   "--checkpoint", str(checkpoint)]) == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["case2.nii.gz"]
    assert nib.load(str(out / "case2.nii.gz")).shape == SMALL.shape
