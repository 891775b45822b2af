"""A toy 2D classification task on the engine, for tests and the engine benchmark.

Images are 3x32x32 noise with one bright square; the class is the quadrant holding it. Data is
generated from the seed, or read from a folder ``<root>/<class>/<name>.npy`` (ImageFolder-like)
so tests can exercise real file input. Run ``python -m shared.toy --help``. It sits above the
CLI chassis (it builds one), so it lives beside ``shared/cli.py``, not inside the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from .classifier import HybridClassifier
from .cli import TaskSpec, build_cli
from .engine import (
    HybridTask,
    InputError,
    RunConfig,
    TaskDataModule,
    Vertical,
    evaluation_loader,
    resumable_loader,
)

NUM_CLASSES = 4


@dataclass
class ToyDataConfig:
    """Synthetic quadrant images, or a folder of .npy arrays."""

    root: str | None = None
    """Folder with <class>/<name>.npy arrays of shape (3, H, W); unset: generate data."""
    num_train: int = 256
    num_val: int = 64
    image_size: int = 32


@dataclass
class ToyModelConfig:
    """The classifier."""

    preset: str = "hybrid_tiny"


def make_quadrant_images(count: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` noisy images with a bright square in the labelled quadrant."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (count,), generator=generator)
    images = 0.3 * torch.randn(count, 3, size, size, generator=generator)
    half, box = size // 2, size // 4
    for index, label in enumerate(labels.tolist()):
        top = (label // 2) * half + box // 2
        left = (label % 2) * half + box // 2
        images[index, :, top : top + box, left : left + box] += 1.5
    return images, labels


def _read_folder(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise InputError(f"{root}: no class folders (expected <root>/<class>/<name>.npy)")
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).glob("*.npy")):
            try:
                array = np.load(file)
            except (OSError, ValueError) as err:
                raise InputError(f"{file}: unreadable .npy array ({err})") from None
            if array.ndim != 3:
                raise InputError(f"{file}: expected a (C, H, W) array, got shape {array.shape}")
            images.append(torch.from_numpy(array).float())
            labels.append(label)
    if not images:
        raise InputError(f"{root}: no .npy files in the class folders")
    return torch.stack(images), torch.tensor(labels)


class ToyDataModule(TaskDataModule):
    """Train/val split of the toy data."""

    def __init__(self, cfg: ToyDataConfig, batch_size: int, seed: int, num_workers: int = 0):
        super().__init__(batch_size, seed, num_workers)
        self.cfg = cfg

    def setup(self, stage: str | None = None) -> None:  # noqa: D102
        if self.cfg.root:
            images, labels = _read_folder(Path(self.cfg.root))
            split = max(1, len(labels) // 5)
            self.train_set = TensorDataset(images[split:], labels[split:])
            self.val_set = TensorDataset(images[:split], labels[:split])
        else:
            size = self.cfg.image_size
            self.train_set = TensorDataset(
                *make_quadrant_images(self.cfg.num_train, size, self.seed)
            )
            self.val_set = TensorDataset(
                *make_quadrant_images(self.cfg.num_val, size, self.seed + 1)
            )

    def train_dataloader(self) -> DataLoader:  # noqa: D102
        return resumable_loader(
            self.train_set,
            self.batch_size,
            drop_last=True,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:  # noqa: D102
        return evaluation_loader(self.val_set, self.batch_size, num_workers=self.num_workers)


@dataclass
class ToyPlan:
    """What inference needs: the classifier and its input size."""

    preset: str
    image_size: int
    num_classes: int = NUM_CLASSES


def build_network(plan: ToyPlan, drop_path_rate: float = 0.0) -> HybridClassifier:
    """The untrained classifier of a plan."""
    return HybridClassifier(
        plan.preset, num_classes=plan.num_classes, in_chans=3, drop_path_rate=drop_path_rate
    )


TOY = Vertical(name="toy", prog="hv-toy", plan_type=ToyPlan, schema=1, build_network=build_network)


def build(cfg: RunConfig, plan: ToyPlan | None = None) -> tuple[HybridTask, ToyDataModule]:
    """Module and data for a run config (and a trained run's plan, when evaluating)."""
    plan = plan or ToyPlan(cfg.model.preset, cfg.data.image_size)
    model = build_network(plan, cfg.regularization.drop_path_rate)
    metrics = MetricCollection(
        {
            "acc": MulticlassAccuracy(NUM_CLASSES),
            "macro_f1": MulticlassF1Score(NUM_CLASSES, average="macro"),
        }
    )
    module = HybridTask(
        model,
        nn.CrossEntropyLoss(label_smoothing=cfg.regularization.label_smoothing),
        metrics,
        cfg.optim,
        cfg.regularization,
        num_classes=NUM_CLASSES,
        vertical=TOY,
        plan=plan,
    )
    data = ToyDataModule(
        cfg.data, cfg.trainer.batch_size, cfg.trainer.seed, cfg.trainer.num_workers
    )
    return module, data


def validate(cfg: RunConfig) -> None:
    """One-line errors for toy data values."""
    if cfg.data.root and not Path(cfg.data.root).is_dir():
        raise InputError(f"--data.root {cfg.data.root}: folder not found")
    if cfg.data.image_size < 16 or cfg.data.num_train < 2:
        raise InputError("--data.image_size must be >= 16 and --data.num_train >= 2")


class NpyFiles(Dataset):
    """``(C, H, W)`` arrays from ``.npy`` files (each its own size) for the toy tasks' predict."""

    def __init__(self, files: list[Path], channels: int = 3) -> None:
        self.files = files
        self.channels = channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        file = self.files[index]
        try:
            image = torch.from_numpy(np.load(file)).float()
        except (OSError, ValueError) as err:
            raise InputError(f"{file}: unreadable .npy array ({err})") from None
        if image.ndim != 3 or image.shape[0] != self.channels:
            raise InputError(
                f"{file}: expected a ({self.channels}, H, W) array, got {tuple(image.shape)}"
            )
        return {"image": image, "path": str(file)}


def _write_prediction(output: torch.Tensor, source: Path, target: Path) -> None:
    probabilities = output.float().softmax(-1)
    np.save(target.open("wb"), probabilities.numpy())


SPEC = TaskSpec(
    prog="hv-toy",
    description="Toy quadrant classification: exercises the shared engine end to end.",
    data_config=ToyDataConfig,
    model_config=ToyModelConfig,
    build=build,
    vertical=TOY,
    headline="val/macro_f1",
    mode="max",
    path_fields=("data.root",),
    validate=validate,
    predict_dataset=lambda files, cfg: NpyFiles(files),
    write_prediction=_write_prediction,
    prediction_suffix=".npy",
    example_input=lambda plan: torch.randn(2, 3, plan.image_size, plan.image_size),
)

main = build_cli(SPEC)

if __name__ == "__main__":
    raise SystemExit(main())
