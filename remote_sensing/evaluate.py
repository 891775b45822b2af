"""Scoring a classifier on a split, plain and under rotation and ground-scale change.

Views act on normalised ``(B, C, S, S)`` batches, so every model sees the same pixels:
``d4`` pools predictions over all 8 elements of the dihedral group, ``rotate`` turns each chip
by its own seeded arbitrary angle (borders reflected, as in training), ``scale0.5`` /
``scale2`` change the ground scale (:func:`remote_sensing.model.zoom`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .metrics import classification_scores
from .model import tta_logits, zoom

__all__ = ["VIEWS", "evaluate_views", "rotate_batch"]

VIEWS = ("plain", "rotate", "d4", "scale0.5", "scale2")


def rotate_batch(x: torch.Tensor, angles_deg: torch.Tensor) -> torch.Tensor:
    """Rotate each chip by its angle about the centre, reflecting at the borders.

    ``grid_sample`` with ``padding_mode="reflection"``: torchvision's rotate fills corners with
    a constant, which would be a cue no real scene has.
    """
    theta = angles_deg.to(x) * math.pi / 180
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    matrix = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(matrix, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _d4_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    probs = 0
    for flip in (False, True):
        view = x.flip(-1) if flip else x
        for turns in range(4):
            probs = probs + model(torch.rot90(view, turns, dims=(-2, -1))).softmax(-1)
    return probs / 8


@torch.no_grad()
def evaluate_views(
    model: nn.Module,
    dataset: Dataset,
    class_names: list[str],
    views: tuple[str, ...] = ("plain",),
    batch_size: int = 64,
    tta: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, dict]:
    """Scores (:func:`~remote_sensing.metrics.classification_scores`) per view."""
    model.eval()
    device = next(model.parameters()).device
    predict: Callable[[torch.Tensor], torch.Tensor] = (
        (lambda x: tta_logits(model, x)) if tta else model
    )
    generator = torch.Generator().manual_seed(seed)
    targets: list[np.ndarray] = []
    predictions: dict[str, list[np.ndarray]] = {view: [] for view in views}
    loader = DataLoader(dataset, batch_size=batch_size)
    for batch in track(loader, description="evaluating", transient=True, disable=not progress):
        x = batch["image"].to(device)
        targets.append(batch["label"].numpy())
        for view in views:
            if view == "plain":
                logits = predict(x)
            elif view == "rotate":
                angles = torch.rand(x.shape[0], generator=generator) * 360
                logits = predict(rotate_batch(x, angles))
            elif view == "d4":
                logits = _d4_probs(predict, x)
            elif view.startswith("scale"):
                logits = predict(zoom(x, 1 / float(view.removeprefix("scale"))))
            else:
                raise ValueError(f"unknown view {view!r}; choose from {', '.join(VIEWS)}")
            predictions[view].append(logits.argmax(-1).cpu().numpy())
    truth = np.concatenate(targets) if targets else np.zeros(0, dtype=int)
    return {
        view: classification_scores(truth, np.concatenate(preds), class_names)
        for view, preds in predictions.items()
    }
