"""Validation Dice of the segmentation task: exact values, per class and under the right name.

A stub network turns its input (the predicted class index at every voxel) into confident
logits, so the prediction is known exactly; the task's own validation step, epoch-end logic and
logging run through a Lightning ``validate``. The expected values are counted by hand below.

Only classes present in every case are tested here: the rule for a class empty in the
reference (and in the prediction) is issue 8's to settle, and its tests go with it.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from medical.task import SegmentationTask
from shared.engine.config import OptimConfig

SHAPE = (8, 8, 8)
NAMES = ["liver", "tumour"]  # label 1 and label 2; 0 is the background


class PredictionFromInput(nn.Module):
    """Logits 10 for the class whose index the input holds, 0 for the others (voxel-wise)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.classes = classes
        self.anchor = nn.Parameter(torch.zeros(()))  # the task reads the device from parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        index = x[:, 0].round().long().clamp(0, self.classes - 1)
        onehot = nn.functional.one_hot(index, self.classes).movedim(-1, 1).float()
        return 10.0 * onehot + 0.0 * self.anchor


def _cases() -> list[dict[str, torch.Tensor]]:
    """Two cases, both foreground classes present in each, with hand-countable overlaps."""
    # Case 1. Reference: liver x in [0, 4) (256 voxels); tumour x = 4, y in [0, 4) (32 voxels).
    label1 = torch.zeros(SHAPE)
    label1[0:4] = 1
    label1[4, 0:4] = 2
    # Prediction: liver x in [1, 4) (192, all right) plus x = 4, y in [4, 8) (32, wrong):
    # Dice 2 * 192 / (224 + 256) = 0.8. Tumour x = 4, y in [0, 2) (16, right) plus x = 0,
    # y in [0, 2) (16, inside the reference liver): Dice 2 * 16 / (32 + 32) = 0.5.
    pred1 = torch.zeros(SHAPE)
    pred1[1:4] = 1
    pred1[4, 4:8] = 1
    pred1[4, 0:2] = 2
    pred1[0, 0:2] = 2
    # Case 2. Liver x in [4, 8), predicted exactly: Dice 1. Tumour the cube [0, 2)^3 (8 voxels),
    # predicted on its half z = 0 (4 voxels): Dice 2 * 4 / (4 + 8) = 2/3.
    label2 = torch.zeros(SHAPE)
    label2[4:8] = 1
    label2[0:2, 0:2, 0:2] = 2
    pred2 = label2.clone()
    pred2[0:2, 0:2, 1] = 0
    return [
        {"image": pred[None], "label": label[None]}
        for pred, label in ((pred1, label1), (pred2, label2))
    ]


def test_validation_dice_per_class_is_exact_and_named_right() -> None:
    task = SegmentationTask(
        PredictionFromInput(), NAMES, SHAPE, sw_batch_size=1, sw_overlap=0.25,
        optim=OptimConfig(),
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(_cases(), batch_size=1)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    metrics = trainer.validate(task, dataloaders=loader, verbose=False)[0]

    # Per class: the mean over cases of each case's Dice (nnU-Net's convention).
    expected = {"liver": (0.8 + 1.0) / 2, "tumour": (0.5 + 2 / 3) / 2}
    for name, value in expected.items():
        assert metrics[f"val/dice_{name}"] == pytest.approx(value, abs=1e-6), name
    # The headline: the mean over the foreground classes, the background left out.
    assert metrics["val/dice"] == pytest.approx((0.9 + 7 / 12) / 2, abs=1e-6)
    logged = {k for k in metrics if k.startswith("val/dice_")}
    assert logged == {"val/dice_liver", "val/dice_tumour"}, "one value per foreground class"
