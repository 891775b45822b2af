"""nnU-Net's 2d configuration: ``--model.spatial_dims 2`` trains a 2D network on slices across
the through-plane axis and predicts volumes slice by slice (MONAI ``SliceInferer``)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medical.cli import main as hv_med
from medical.model import build_medical_model
from medical.phantom import PhantomConfig, write_phantom_dataset
from medical.plan import MEDICAL
from medical.predict import _probabilities
from medical.task import SegmentationTask, slice_axis
from shared.engine import read_checkpoint
from shared.engine.config import OptimConfig

# Strongly anisotropic (4 mm slices, 1 mm in-plane), as the data the 2d configuration is for.
THICK = PhantomConfig(shape=(48, 48, 10), spacing=(1.0, 1.0, 4.0))


def test_slice_axis_is_the_coarsest() -> None:
    assert slice_axis([1.0, 1.0, 4.0]) == 2
    assert slice_axis([5.0, 0.8, 0.8]) == 0
    assert slice_axis([1.0, 1.0, 1.0]) == 2  # isotropic: axial slices


@pytest.mark.parametrize("axis", [0, 2])
def test_slice_inference_equals_the_2d_net_on_each_slice(axis: int) -> None:
    torch.manual_seed(0)
    model = build_medical_model(2, 1, 3, "med_cpu").eval()
    shape = [32, 64]
    shape.insert(axis, 3)
    volume = torch.randn(1, 1, *shape)
    # The window covers a whole slice: every output voxel comes from one window, no blending.
    task = SegmentationTask(model, ["a", "b"], (32, 64), 3, 0.5, slice_axis=axis,
                            optim=OptimConfig())  # fmt: skip
    with torch.inference_mode():
        logits = task.infer(volume)
        by_hand = torch.stack([model(volume.select(axis + 2, i)) for i in range(3)], dim=axis + 2)
    assert logits.shape == (1, 3, *shape)
    torch.testing.assert_close(logits, by_hand, atol=1e-4, rtol=1e-4)


def test_2d_training_predicts_volumes_in_the_input_geometry(tmp_path: Path) -> None:
    raw = write_phantom_dataset(tmp_path / "Thick", num_cases=2, cfg=THICK)
    prepared = tmp_path / "prepared"
    assert hv_med(["prepare", str(raw), "-o", str(prepared), "--workers", "1"]) == 0
    assert hv_med([
        "train", "--data.prepared", str(prepared), "--model.spatial_dims", "2",
        "--data.patch_size", "[32, 32, 32]", "--data.samples_per_case", "4",
        "--trainer.batch_size", "1", "--trainer.max_steps", "3", "--trainer.progress", "false",
        # One validation after the last step, its 40 slice windows in 2 network calls: on a
        # busy CPU each small call costs far more than its arithmetic.
        "--trainer.val_every_n_epochs", "3", "--data.sw_batch_size", "20",
        "--run.runs_dir", str(tmp_path / "runs"), "--run.name", "flat",
    ]) == 0  # fmt: skip
    run = tmp_path / "runs" / "flat"
    assert "val/dice" in json.loads((run / "summary.json").read_text())["final_metrics"]
    checkpoint = run / "checkpoints" / "last.ckpt"
    _, plan = read_checkpoint(checkpoint, MEDICAL)
    assert plan.network.spatial_dims == 2 and plan.slice_axis == 2
    assert plan.patch_size == (32, 32)
    source = raw / "imagesTr" / "phantom_001.nii.gz"
    out = tmp_path / "pred"
    assert hv_med(["predict", str(source), "-o", str(out), "--checkpoint", str(checkpoint),
                   "--trainer.progress", "false"]) == 0  # fmt: skip
    scan, label = nib.load(str(source)), nib.load(str(out / "phantom_001.nii.gz"))
    assert label.shape == scan.shape and np.allclose(label.affine, scan.affine)
    assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1, 2}


def test_spatial_dims_other_than_2_or_3_is_one_line_exit_2(capsys) -> None:
    assert hv_med(["train", "--data.prepared", ".", "--model.spatial_dims", "4"]) == 2
    assert "--model.spatial_dims must be 2 or 3" in capsys.readouterr().err


def test_flip_tta_skips_the_slice_axis_of_2d_networks() -> None:
    calls = []

    class Slices:
        slice_axis = 2

        def infer(self, image: torch.Tensor) -> torch.Tensor:
            calls.append(image)
            return torch.cat([image, -image], 1)  # voxel-wise: every flip gives the same map

    image = torch.randn(1, 1, 4, 5, 6)
    probs = _probabilities(Slices(), image, flips=True)
    assert len(calls) == 3, "plain, flipped along x and along y; never along the slice axis"
    torch.testing.assert_close(probs, torch.cat([image, -image], 1).softmax(1))
