"""Scene-classification scores: macro-F1 (the headline), per-class F1, accuracy, confusion matrix.

Through scikit-learn. Never micro-F1: for single-label classification it equals accuracy
(torchgeo's ``ClassificationTask`` logs that under the name F1). A class with neither
reference nor predicted chips scores 0 (``zero_division=0``): a class missing from a small test
split lowers macro-F1 visibly instead of vanishing from the average.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from shared.engine import atomic_write
from shared.engine.io import atomic_write_bytes

__all__ = ["classification_scores", "write_confusion"]


def classification_scores(
    targets: np.ndarray, predictions: np.ndarray, class_names: list[str]
) -> dict:
    """``macro_f1``, ``accuracy``, ``per_class_f1`` {name: F1} and ``confusion`` (rows: truth)."""
    labels = list(range(len(class_names)))
    per_class = f1_score(targets, predictions, labels=labels, average=None, zero_division=0)
    return {
        "macro_f1": float(
            f1_score(targets, predictions, labels=labels, average="macro", zero_division=0)
        ),  # fmt: skip
        "accuracy": float(accuracy_score(targets, predictions)),
        "per_class_f1": {name: float(v) for name, v in zip(class_names, per_class, strict=True)},
        "confusion": confusion_matrix(targets, predictions, labels=labels).tolist(),
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
