"""Scene-classification scores: macro-F1 (the headline), per-class F1, accuracy, confusion matrix.

One rule, one code path for validation (``val/macro_f1``) and ``hv-rs evaluate``: both count a
confusion matrix with :class:`MacroF1` (torchmetrics' ``MulticlassConfusionMatrix``, summed
across DDP ranks) and score it with :func:`macro_f1_from_confusion`.

The rule: per-class F1 = 2 TP / (2 TP + FP + FN); macro-F1 is the mean over the dataset's
classes that occur in the targets or the predictions of the scored split. A class absent from
both has no F1 (``None``/null, shown as n/a) and is left out of the mean; a class predicted but
never true (or true but never predicted) scores 0 and counts. This equals scikit-learn's
``f1_score(y, p, labels=<classes present>, average="macro")`` and torchmetrics'
``MulticlassF1Score(average="macro")``. Never micro-F1: for single-label classification it
equals accuracy (torchgeo's ``ClassificationTask`` logs that under the name F1).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from shared.engine import atomic_write
from shared.engine.io import atomic_write_bytes

__all__ = [
    "MacroF1",
    "classification_scores",
    "format_f1",
    "macro_f1_from_confusion",
    "write_confusion",
]


def macro_f1_from_confusion(confusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(macro_f1, per_class_f1)`` of a confusion matrix (rows: truth), float64.

    A class with no reference and no predicted item gets NaN and is left out of the mean (the
    module's rule); the macro mean is NaN only when the matrix is empty. Hand-written because
    torchmetrics reports such a class's per-class F1 as 0 (and does not score a matrix).
    """
    confusion = confusion.double()
    true_positives = confusion.diagonal()
    # 2 TP + FP + FN = (row sum) + (column sum): 0 exactly when the class occurs nowhere.
    denominator = confusion.sum(dim=1) + confusion.sum(dim=0)
    per_class = torch.where(
        denominator > 0, 2 * true_positives / denominator.clamp(min=1), torch.nan
    )
    present = per_class[denominator > 0]
    macro = present.mean() if present.numel() else torch.tensor(torch.nan, dtype=torch.float64)
    return macro, per_class


class MacroF1(MulticlassConfusionMatrix):
    """Macro-F1 (the module's rule) of a confusion matrix accumulated over batches.

    ``update(preds, target)`` takes class indices or ``(N, C)`` logits (argmax), like
    ``MulticlassConfusionMatrix``, whose state (``confmat``) is summed across DDP ranks.
    """

    higher_is_better = True

    def compute(self) -> torch.Tensor:
        """The macro-F1 of the accumulated (and synchronised) confusion matrix."""
        return macro_f1_from_confusion(self.confmat)[0]


def format_f1(value: float | None, digits: int = 3) -> str:
    """An F1 for tables: ``n/a`` for a class absent from the split."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def classification_scores(
    targets: np.ndarray, predictions: np.ndarray, class_names: list[str]
) -> dict:
    """``macro_f1``, ``accuracy``, ``per_class_f1`` {name: F1 or None}, ``confusion`` (rows: truth).

    Through :class:`MacroF1`, as validation: the same numbers for the same predictions.
    """
    metric = MacroF1(len(class_names))
    metric.update(torch.as_tensor(np.asarray(predictions), dtype=torch.long),
                  torch.as_tensor(np.asarray(targets), dtype=torch.long))  # fmt: skip
    confusion = metric.confmat
    per_class = macro_f1_from_confusion(confusion)[1]
    total = int(confusion.sum())
    return {
        "macro_f1": float(metric.compute()),
        "accuracy": float(confusion.diagonal().sum()) / total if total else float("nan"),
        "per_class_f1": {
            name: None if torch.isnan(value) else float(value)
            for name, value in zip(class_names, per_class, strict=True)
        },
        "confusion": confusion.tolist(),
        "count": int(len(targets)),
    }


def write_confusion(scores: dict, class_names: list[str], out_dir: Path, stem: str) -> list[Path]:
    """``<stem>_confusion.csv`` and ``.png`` (rows: reference class, columns: predicted)."""
    matrix = np.asarray(scores["confusion"])

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["reference \\ predicted", *class_names])
            for name, row in zip(class_names, matrix, strict=True):
                writer.writerow([name, *row.tolist()])

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1.2 + 0.6 * len(class_names), 1.0 + 0.6 * len(class_names)))
    axes = figure.add_subplot()
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, str(value), ha="center", va="center",
                  color="white" if shares[i, j] > 0.5 else "black", fontsize=7)  # fmt: skip
    axes.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right", fontsize=7)
    axes.set_yticks(range(len(class_names)), class_names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("reference")
    axes.set_title(f"macro-F1 {scores['macro_f1']:.3f}, accuracy {scores['accuracy']:.3f}")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return [
        atomic_write(out_dir / f"{stem}_confusion.csv", write_csv),
        atomic_write_bytes(out_dir / f"{stem}_confusion.png", buffer.getvalue()),
    ]
