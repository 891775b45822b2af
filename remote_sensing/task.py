"""Remote-sensing scene classification on the shared engine: configs, data module, task, build.

``build(cfg)`` scans the dataset (class folders or CSV manifest), checks one band count per
dataset (warning on mixed CRS), splits it (the dataset's split files, else seeded and
stratified), decides the :class:`~remote_sensing.data.Preprocessing` (bands, reflectance scale,
per-band statistics from the training split or ``stats.json``, chip size, class names) and
builds the model. The task writes the :class:`~remote_sensing.plan.SceneClassifierPlan`
(preprocessing and network) into every checkpoint through the engine's inference contract, so
``hv-rs predict`` and ``export`` need the checkpoint alone, and ``hv-rs evaluate`` reads only the
split from the dataset (no statistics pass, no width search).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jsonargparse.typing import OpenUnitInterval, PositiveFloat
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from shared import PRESETS
from shared.engine import (
    HalfOpenUnitInterval,
    HybridTask,
    InputError,
    RunConfig,
    TaskDataModule,
    evaluation_loader,
    reject_regularization,
    resumable_loader,
)

from .data import (
    ChipDataset,
    Preprocessing,
    Sample,
    check_consistency,
    compute_stats,
    default_scale,
    open_raster,
    read_stats,
    resolve_bands,
    scan_dataset,
    split_samples,
)
from .metrics import MacroF1
from .model import ARCHS, build_model, matched_cnn_scale
from .plan import REMOTE_SENSING, NetworkPlan, SceneClassifierPlan
from .transforms import eval_transform, train_transform

__all__ = [
    "BALANCE",
    "DatasetPlan",
    "RSDataConfig",
    "RSDataModule",
    "RSModelConfig",
    "SceneTask",
    "build_task",
    "plan_dataset",
]

BALANCE = ("none", "loss", "sampler")

# Choices and ranges as types: the parser refuses a bad value with one line naming the flag.
Arch = Literal[ARCHS]  # type: ignore[valid-type]
Preset = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
Balance = Literal[BALANCE]  # type: ignore[valid-type]


@dataclass
class RSDataConfig:
    """The labelled chips and how they are read."""

    root: str | None = None
    """EuroSAT-layout folder (<root>/<Class>/<Class>_<n>.tif), any class-folder tree of
    GeoTIFF/PNG/JPG, or a CSV manifest with path,label columns."""
    bands: list[int | str] | None = None
    """Bands in network order, by name (B04: the file's band descriptions, or EuroSAT's order for
    13 bands without them) or 1-based index (4); default all."""
    chip_size: int = 64
    """Network input size; chips of other sizes are resampled to it (area averaging)."""
    scale: PositiveFloat | None = None
    """Reflectance divisor; default by dtype (uint16: 10000, uint8: 255, float: 1)."""
    val_fraction: OpenUnitInterval = 0.15
    test_fraction: HalfOpenUnitInterval = 0.15
    """Shares per class for the seeded stratified split (when the dataset has no split files)."""
    rotate: bool = True
    """D4 and arbitrary-angle rotation augmentation (imagery has no 'up')."""
    multiscale: bool = True
    """Scale jitter: zoom in and out about the centre, up to 2x (the 0.5x / 2x views' range)."""
    zoom_out: bool = True
    """Scale jitter zooms out as well as in; false: zoom-in crops only (RandomResizedCrop, the
    jitter before v3; an ablation)."""
    balance: Balance = "none"
    """Class imbalance: none, loss (inverse-frequency weights) or sampler (balanced draws)."""


@dataclass
class RSModelConfig:
    """The classifier."""

    arch: Arch = "hybrid"
    """hybrid (ours), cnn (our pure-CNN control at matched parameters), resnet18,
    hybrid_resnet18, coatnet_nano, botnet26t (timm, adapted to the band count)."""
    preset: Preset = "hybrid_tiny"
    """Backbone preset for hybrid and cnn."""
    multiscale_head: bool = True
    """Pool the last three stages into the head (False: the deepest only)."""


@dataclass
class DatasetPlan:
    """A scanned dataset: its splits and the preprocessing decided for it."""

    splits: dict[str, list[Sample]]
    pre: Preprocessing
    band_count: int
    notes: list[str]


def plan_dataset(cfg: RSDataConfig, seed: int, pre: Preprocessing | None = None) -> DatasetPlan:
    """Scan, check, split and decide the preprocessing for ``cfg.root``.

    ``pre``: a trained run's preprocessing (evaluate): used as is, no statistics pass.
    """
    root = Path(cfg.root or "")
    samples, class_names = scan_dataset(root)
    band_count, dtype, notes = check_consistency(samples, root)
    splits, split_notes = split_samples(samples, root, cfg.val_fraction, cfg.test_fraction, seed)
    if pre is not None:
        return DatasetPlan(splits, pre, band_count, notes + split_notes)
    with open_raster(samples[0].path) as src:
        indexes, names = resolve_bands(src, cfg.bands, samples[0].path)
    scale = float(cfg.scale or default_scale(dtype))
    stats = read_stats(root, names, scale)
    if stats is None:
        stats = compute_stats([s.path for s in splits["train"]], indexes, scale)
    pre = Preprocessing(
        names, indexes, scale, stats[0], stats[1], cfg.chip_size, class_names, band_count
    )
    return DatasetPlan(splits, pre, band_count, notes + split_notes)


def class_weights(samples: list[Sample], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, mean 1 over classes present."""
    counts = np.bincount([s.label for s in samples], minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / num_classes, 0.0)
    return torch.tensor(weights, dtype=torch.float32)


class RSDataModule(TaskDataModule):
    """Chip datasets for train (augmented), val and test (resize + normalise only)."""

    def __init__(self, cfg: RSDataConfig, plan: DatasetPlan, batch_size: int, seed: int,
                 num_workers: int = 0) -> None:  # fmt: skip
        super().__init__(batch_size, seed, num_workers)
        self.cfg, self.plan = cfg, plan

    def dataset(self, split: str, augment: bool = False) -> ChipDataset:
        """The chips of one split with the training or evaluation pipeline."""
        pre = self.plan.pre
        transform = (
            train_transform(pre, self.cfg.rotate, self.cfg.multiscale, self.cfg.zoom_out)
            if augment
            else eval_transform(pre)
        )
        return ChipDataset(self.plan.splits[split], pre, transform, self.plan.band_count, augment)

    def setup(self, stage: str | None = None) -> None:  # noqa: D102
        self.train_set = self.dataset("train", augment=True)
        self.val_set = self.dataset("val")

    def train_dataloader(self) -> DataLoader:  # noqa: D102
        if self.cfg.balance == "sampler":
            labels = [s.label for s in self.plan.splits["train"]]
            weights = class_weights(self.plan.splits["train"], len(self.plan.pre.class_names))
            sampler = WeightedRandomSampler(
                weights[labels].double(),
                len(labels),
                generator=torch.Generator().manual_seed(self.seed),
            )
            return resumable_loader(self.train_set, self.batch_size, shuffle=False,
                                    sampler=sampler, drop_last=True,
                                    num_workers=self.num_workers)  # fmt: skip
        return resumable_loader(self.train_set, self.batch_size, drop_last=True,
                                num_workers=self.num_workers)  # fmt: skip

    def val_dataloader(self) -> DataLoader:  # noqa: D102
        return evaluation_loader(self.val_set, self.batch_size, num_workers=self.num_workers)


class SceneTask(HybridTask):
    """Cross-entropy classification; validation logs macro-F1 (headline) and accuracy.

    ``val/macro_f1`` is :class:`~remote_sensing.metrics.MacroF1`, the code ``hv-rs evaluate``
    scores with (:func:`~remote_sensing.metrics.classification_scores`).
    """

    def __init__(self, model: nn.Module, plan: SceneClassifierPlan, loss: nn.Module,
                 **kwargs: Any):  # fmt: skip
        pre = plan.preprocessing
        num_classes = len(pre.class_names)
        metrics = MetricCollection({
            "macro_f1": MacroF1(num_classes),
            "acc": MulticlassAccuracy(num_classes, average="micro"),
        })  # fmt: skip
        super().__init__(model, loss, metrics, num_classes=num_classes,
                         vertical=REMOTE_SENSING, plan=plan, **kwargs)  # fmt: skip
        self.pre = pre

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Cross-entropy (or the engine's MixUp/CutMix loss) on one batch of chips."""
        return super().training_step((batch["image"], batch["label"]), batch_idx)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Loss and metric update on one batch of validation chips."""
        super().validation_step((batch["image"], batch["label"]), batch_idx)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Class logits."""
        return self(batch["image"])


def make_loss(cfg: RunConfig, plan: DatasetPlan) -> nn.Module:
    """Cross-entropy, class-weighted when ``--data.balance loss``."""
    weight = None
    if cfg.data.balance == "loss":
        weight = class_weights(plan.splits["train"], len(plan.pre.class_names))
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.regularization.label_smoothing)


def build_task(
    cfg: RunConfig, plan: SceneClassifierPlan | None = None
) -> tuple[SceneTask, RSDataModule]:
    """Module and data module for a run config (the hv-rs CLI's ``build``).

    ``plan``: a trained run's plan (evaluate): its preprocessing and network are used as
    trained; the dataset is only scanned and split.
    """
    # Batches are dicts holding image, label and path: Lightning says it guesses the batch size
    # from them, and guesses right (the first tensor's length).
    warnings.filterwarnings("ignore", message=".*Trying to infer the `batch_size`.*")
    dataset = plan_dataset(cfg.data, cfg.trainer.seed, plan.preprocessing if plan else None)
    # Printed, not warnings.warn: Python shows a given warning once per process and Lightning's
    # log settings may hide it; the user of train/evaluate must see mixed CRS and split notes.
    if rank_zero_only.rank == 0:
        for note in dataset.notes:
            print(f"hv-rs: warning: {note}", file=sys.stderr)
    pre = dataset.pre
    if plan is None:
        model_cfg = cfg.model
        scale = None
        if model_cfg.arch == "cnn":  # searched once here; the plan keeps it for prediction
            scale = matched_cnn_scale(len(pre.bands), len(pre.class_names), model_cfg.preset,
                                      multiscale=model_cfg.multiscale_head)  # fmt: skip
        network = NetworkPlan(model_cfg.arch, model_cfg.preset, model_cfg.multiscale_head, scale)
        plan = SceneClassifierPlan(pre, network)
    net = plan.network
    model = build_model(net.arch, len(pre.bands), len(pre.class_names), pre.chip_size,
                        net.preset, net.multiscale_head, cfg.regularization.drop_path_rate,
                        cnn_width_scale=net.cnn_width_scale)  # fmt: skip
    task = SceneTask(model, plan, make_loss(cfg, dataset), optim=cfg.optim,
                     regularization=cfg.regularization)  # fmt: skip
    data = RSDataModule(cfg.data, dataset, cfg.trainer.batch_size, cfg.trainer.seed,
                        cfg.trainer.num_workers)  # fmt: skip
    return task, data


def validate(cfg: RunConfig) -> None:
    """One-line errors for remote-sensing config values."""
    data, model = cfg.data, cfg.model
    if not data.root:
        raise InputError("give --data.root DATASET (class folders) or a CSV manifest")
    if not Path(data.root).exists():
        raise InputError(f"--data.root {data.root}: not found")
    if data.chip_size < 16:
        raise InputError(f"--data.chip_size must be >= 16, got {data.chip_size}")
    if data.val_fraction + data.test_fraction >= 1:
        raise InputError(
            f"--data.val_fraction {data.val_fraction} and --data.test_fraction "
            f"{data.test_fraction} leave no training data (their sum must be < 1)"
        )
    if model.arch not in ("hybrid", "cnn"):
        # The timm models have their own fixed layout: these settings would be ignored.
        defaults = RSModelConfig()
        for name in ("preset", "multiscale_head"):
            value = getattr(model, name)
            if value != getattr(defaults, name):
                raise InputError(
                    f"--model.{name} {value}: applies to --model.arch hybrid and cnn only, not "
                    f"{model.arch}"
                )
    if model.arch == "hybrid_resnet18":
        # timm's resnet18 is built without stochastic depth before its last stage is converted.
        reject_regularization(
            cfg.regularization, "--model.arch hybrid_resnet18", ("drop_path_rate",)
        )
