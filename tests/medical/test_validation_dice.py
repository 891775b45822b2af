"""Validation Dice of the segmentation task: exact values, per class and under the right name.

A stub network turns its input (the predicted class index at every voxel) into confident
logits, so the prediction is known exactly; the task's own validation step, epoch-end logic and
logging run through a Lightning ``validate``. The expected values are counted by hand below.

A class empty in the reference follows ``hv-med evaluate`` (nnU-Net): predicted anyway it
scores 0 for that case; empty in the prediction too it is NaN and left out of the means.
"""

from __future__ import annotations

import math

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


def _validate(cases: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    task = SegmentationTask(
        PredictionFromInput(), NAMES, SHAPE, sw_batch_size=1, sw_overlap=0.25,
        optim=OptimConfig(),
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(cases, batch_size=1)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    return trainer.validate(task, dataloaders=loader, verbose=False)[0]


def test_validation_dice_per_class_is_exact_and_named_right() -> None:
    metrics = _validate(_cases())

    # Per class: the mean over cases of each case's Dice (nnU-Net's convention).
    expected = {"liver": (0.8 + 1.0) / 2, "tumour": (0.5 + 2 / 3) / 2}
    for name, value in expected.items():
        assert metrics[f"val/dice_{name}"] == pytest.approx(value, abs=1e-6), name
    # The headline: the mean over the foreground classes, the background left out.
    assert metrics["val/dice"] == pytest.approx((0.9 + 7 / 12) / 2, abs=1e-6)
    logged = {k for k in metrics if k.startswith("val/dice_")}
    assert logged == {"val/dice_liver", "val/dice_tumour"}, "one value per foreground class"


def _liver_only(tumour_predicted: bool) -> dict[str, torch.Tensor]:
    """Liver x in [0, 4) predicted exactly; no tumour in the reference; 8 voxels predicted
    tumour (outside the liver) when ``tumour_predicted``."""
    label = torch.zeros(SHAPE)
    label[0:4] = 1
    pred = label.clone()
    if tumour_predicted:
        pred[6:8, 6:8, 6:8] = 2
    return {"image": pred[None], "label": label[None]}


def test_false_positive_on_an_absent_class_counts_as_zero() -> None:
    # Case 1: tumour absent from the reference but predicted: Dice 0 (MONAI's ignore_empty=True
    # said NaN and hid it). Case 2: tumour empty in both: NaN, left out. Tumour = mean(0) = 0.
    metrics = _validate([_liver_only(True), _liver_only(False)])
    assert metrics["val/dice_liver"] == pytest.approx(1.0)
    assert metrics["val/dice_tumour"] == pytest.approx(0.0)
    assert metrics["val/dice"] == pytest.approx(0.5), "the false positive costs the headline"


def test_class_empty_in_both_everywhere_is_left_out() -> None:
    # Empty in both in every case: NaN (not 1, MONAI's value with ignore_empty=False), and the
    # headline is the mean over the classes that have a value, as in hv-med evaluate.
    metrics = _validate([_liver_only(False), _liver_only(False)])
    assert metrics["val/dice_liver"] == pytest.approx(1.0)
    assert math.isnan(metrics["val/dice_tumour"])
    assert metrics["val/dice"] == pytest.approx(1.0)
