"""Macro-F1 is the headline, never micro-F1 (which equals accuracy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from remote_sensing.metrics import classification_scores, write_confusion


def test_macro_f1_differs_from_accuracy_on_imbalanced_classes(tmp_path: Path) -> None:
    targets = np.array([0] * 8 + [1, 2])
    predictions = np.array([0] * 8 + [0, 2])
    scores = classification_scores(targets, predictions, ["big", "small", "other"])
    # Per class: big 16/17, small 0, other 1 -> macro (16/17 + 0 + 1) / 3.
    assert abs(scores["macro_f1"] - (16 / 17 + 1) / 3) < 1e-9
    assert scores["accuracy"] == 0.9 and scores["per_class_f1"]["small"] == 0.0
    assert scores["confusion"][1] == [1, 0, 0]
    files = write_confusion(scores, ["big", "small", "other"], tmp_path, "test")
    assert files[0].read_text().splitlines()[2] == "small,1,0,0"
    assert files[1].read_bytes()[:4] == b"\x89PNG"
