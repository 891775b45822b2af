"""The macro-F1 headline: one rule (classes present in targets or predictions), one code path
for validation (``val/macro_f1``) and ``hv-rs evaluate``, checked against scikit-learn."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.classification import MulticlassF1Score

from remote_sensing.data import Preprocessing
from remote_sensing.evaluate import evaluate_views
from remote_sensing.metrics import (
    MacroF1,
    classification_scores,
    format_f1,
    macro_f1_from_confusion,
)
from remote_sensing.plan import NetworkPlan, SceneClassifierPlan
from remote_sensing.task import SceneTask
from shared.engine.config import OptimConfig

NAMES = ["a", "b", "c", "d", "e"]
# a: TP 2, FP 1, FN 1 -> 2/3; b: only in the targets (never predicted) -> 0;
# c: TP 2, FP 1, FN 1 -> 2/3; d: only predicted (never true) -> 0; e: absent from both -> n/a.
TARGETS = np.array([0, 0, 0, 1, 1, 2, 2, 2])
PREDICTIONS = np.array([0, 0, 3, 0, 2, 2, 2, 3])
GOLDEN_MACRO = (2 / 3 + 0 + 2 / 3 + 0) / 4  # e left out; sklearn's zero_division=0 gives 4/15


def test_golden_macro_f1_leaves_out_only_the_class_absent_from_both() -> None:
    scores = classification_scores(TARGETS, PREDICTIONS, NAMES)
    present = [0, 1, 2, 3]
    reference = f1_score(TARGETS, PREDICTIONS, labels=present, average="macro")
    assert scores["macro_f1"] == pytest.approx(GOLDEN_MACRO, abs=1e-12)
    assert scores["macro_f1"] == pytest.approx(reference, abs=1e-12)
    per_class = f1_score(TARGETS, PREDICTIONS, labels=present, average=None)
    assert [scores["per_class_f1"][n] for n in NAMES[:4]] == pytest.approx(per_class, abs=1e-12)
    assert scores["per_class_f1"]["b"] == 0.0 and scores["per_class_f1"]["d"] == 0.0
    assert scores["per_class_f1"]["e"] is None
    assert json.loads(json.dumps(scores))["per_class_f1"]["e"] is None  # null, not NaN or 0
    assert format_f1(scores["per_class_f1"]["e"]) == "n/a" and format_f1(2 / 3) == "0.667"
    assert scores["accuracy"] == pytest.approx(4 / 8)
    assert scores["confusion"][4] == [0] * 5 and [row[4] for row in scores["confusion"]] == [0] * 5


def test_rule_matches_sklearn_and_torchmetrics_on_random_splits_with_missing_classes() -> None:
    rng = np.random.default_rng(0)
    for case in range(40):
        num_classes = int(rng.integers(3, 9))
        used_targets, used_preds = (
            rng.choice(num_classes, size=int(rng.integers(1, num_classes)), replace=False)
            for _ in range(2)
        )
        size = int(rng.integers(1, 30))
        targets, predictions = rng.choice(used_targets, size), rng.choice(used_preds, size)
        present = sorted(set(targets.tolist()) | set(predictions.tolist()))
        names = [f"class{k}" for k in range(num_classes)]
        scores = classification_scores(targets, predictions, names)
        reference = f1_score(targets, predictions, labels=present, average="macro")
        assert scores["macro_f1"] == pytest.approx(reference, abs=1e-12), case
        absent = [names[k] for k in range(num_classes) if k not in present]
        assert [n for n, v in scores["per_class_f1"].items() if v is None] == absent, case
        # torchmetrics' own macro F1 follows the same rule (checked on torchmetrics 1.9).
        torchmetrics_macro = MulticlassF1Score(num_classes, average="macro")(
            torch.as_tensor(predictions), torch.as_tensor(targets)
        )
        assert float(torchmetrics_macro) == pytest.approx(reference, abs=1e-6), case


def test_an_empty_confusion_matrix_has_no_macro_f1() -> None:
    macro, per_class = macro_f1_from_confusion(torch.zeros(3, 3, dtype=torch.long))
    assert torch.isnan(macro) and torch.isnan(per_class).all()


def test_macro_f1_metric_accumulates_batches_of_logits() -> None:
    metric = MacroF1(len(NAMES))
    logits = nn.functional.one_hot(torch.as_tensor(PREDICTIONS), len(NAMES)).float()
    for start in range(0, len(TARGETS), 3):
        metric.update(logits[start : start + 3], torch.as_tensor(TARGETS[start : start + 3]))
    assert float(metric.compute()) == pytest.approx(GOLDEN_MACRO, abs=1e-12)


class _Chips(Dataset):
    """Chips whose first pixel, band by band, is a one-hot of the class the stub model picks."""

    def __init__(self, targets: np.ndarray, predictions: np.ndarray, classes: int) -> None:
        self.targets, self.predictions, self.classes = targets, predictions, classes

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict:
        image = torch.zeros(self.classes, 16, 16)
        image[int(self.predictions[index]), 0, 0] = 1.0
        return {"image": image, "label": int(self.targets[index])}


class _PickFirstPixel(nn.Module):
    """Logits = the chip's first pixel: predictions chosen by the dataset, exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(5.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, 0, 0] * self.gain


def test_validation_macro_f1_equals_evaluate_on_the_same_predictions() -> None:
    classes = len(NAMES)
    pre = Preprocessing([f"B{k}" for k in range(classes)], list(range(1, classes + 1)), 1.0,
                        [0.0] * classes, [1.0] * classes, 16, NAMES, classes)  # fmt: skip
    plan = SceneClassifierPlan(pre, NetworkPlan())
    task = SceneTask(_PickFirstPixel(), plan, nn.CrossEntropyLoss(), optim=OptimConfig())
    dataset = _Chips(TARGETS, PREDICTIONS, classes)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    # Batches of 3 over 8 chips: the metric must accumulate, not average batch scores.
    trainer.validate(task, dataloaders=DataLoader(dataset, batch_size=3), verbose=False)
    validation = float(trainer.callback_metrics["val/macro_f1"])
    evaluated = evaluate_views(task.model, dataset, NAMES, batch_size=5, progress=False)["plain"]
    assert validation == evaluated["macro_f1"]  # the same code path: equal, not close
    assert validation == pytest.approx(GOLDEN_MACRO, abs=1e-12)
