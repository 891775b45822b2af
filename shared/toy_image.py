"""A toy image-to-image task: x2 (or xN) super-resolution of synthetic images.

High-resolution images are smooth random gratings with a few bright boxes, in [0, 1]; the input
is their area-downsampled copy. The network (hybrid blocks at full resolution, sub-pixel
upsampling, a bilinear skip) trains on crops with a Charbonnier loss; validation runs whole
larger images in overlapping tiles and reports PSNR and SSIM. It exercises
:class:`shared.engine.ImageToImageTask` end to end, the path video SR plugs into. Run
``python -m shared.toy_image --help``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .blocks import HybridBlock
from .cli import TaskSpec, build_cli
from .engine import (
    InputError,
    RunConfig,
    TaskDataModule,
    Vertical,
    evaluation_loader,
    resumable_loader,
)
from .engine.image_task import PIXEL_LOSSES, ImageToImageTask
from .toy import NpyFiles


@dataclass
class ToyImageDataConfig:
    """Synthetic high-resolution images and their downsampled inputs."""

    num_train: int = 64
    num_val: int = 8
    scale: int = 2
    """Upscaling factor: inputs are the targets area-downsampled by it."""
    image_size: int = 32
    """Training crop size of the targets (a multiple of scale)."""
    val_size: int = 48
    """Size of the whole validation targets (a multiple of scale)."""
    tile: int = 16
    """Validation/prediction window in input pixels (0: whole images at once)."""
    tile_overlap: float = 0.25


@dataclass
class ToyImageModelConfig:
    """The upscaling network and its loss."""

    width: int = 24
    depth: int = 2
    """Hybrid blocks at the input resolution."""
    num_heads: int = 2
    loss: str = "charbonnier"
    """Pixel loss: charbonnier or l1."""


class ToyUpscaler(nn.Module):
    """Conv stem, hybrid blocks, conv + pixel shuffle; adds the bilinear upsampled input.

    The skip and the zero-initialised last conv make the untrained network the bilinear
    upscaler; the blocks learn only the missing detail.
    """

    def __init__(
        self,
        channels: int = 3,
        width: int = 24,
        depth: int = 2,
        scale: int = 2,
        num_heads: int = 2,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.Sequential(
            *(HybridBlock(2, width, width, num_heads=num_heads, drop_path=r) for r in rates)
        )
        self.upsample = nn.Sequential(
            nn.Conv2d(width, channels * scale**2, 3, padding=1), nn.PixelShuffle(scale)
        )
        # Zero last layer: the untrained network is exactly the bilinear upscaler.
        nn.init.zeros_(self.upsample[0].weight)
        nn.init.zeros_(self.upsample[0].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, C, scale*H, scale*W)``."""
        skip = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return skip + self.upsample(self.blocks(self.stem(x)))


def make_images(count: int, size: int, seed: int) -> torch.Tensor:
    """``count`` images ``(3, size, size)`` in [0, 1]: random gratings plus bright boxes."""
    generator = torch.Generator().manual_seed(seed)
    axis = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    images = torch.zeros(count, 3, size, size)
    for index in range(count):
        angle, freq, phase = torch.rand(3, generator=generator).tolist()
        wave = torch.sin(2 * math.pi * (2 + 6 * freq) * (xx * math.cos(3 * angle)
                         + yy * math.sin(3 * angle)) + 6 * phase)  # fmt: skip
        colour = torch.rand(3, 1, 1, generator=generator)
        images[index] = 0.5 + 0.3 * wave * colour
        for _ in range(2):
            top, left = torch.randint(0, size - size // 4, (2,), generator=generator).tolist()
            images[index, :, top : top + size // 4, left : left + size // 4] = torch.rand(
                3, 1, 1, generator=generator
            )
    return images.clamp(0, 1)


def degrade(targets: torch.Tensor, scale: int) -> torch.Tensor:
    """The low-resolution inputs: area (box) downsampling by ``scale``."""
    return F.avg_pool2d(targets, scale)


class ToyImageDataModule(TaskDataModule):
    """(input, target) pairs: training crops and larger whole validation images."""

    def __init__(
        self, cfg: ToyImageDataConfig, batch_size: int, seed: int, num_workers: int = 0
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        self.cfg = cfg

    def setup(self, stage: str | None = None) -> None:  # noqa: D102
        train = make_images(self.cfg.num_train, self.cfg.image_size, self.seed)
        val = make_images(self.cfg.num_val, self.cfg.val_size, self.seed + 1)
        self.train_set = TensorDataset(degrade(train, self.cfg.scale), train)
        self.val_set = TensorDataset(degrade(val, self.cfg.scale), val)

    def train_dataloader(self) -> DataLoader:  # noqa: D102
        return resumable_loader(
            self.train_set, self.batch_size, drop_last=True, num_workers=self.num_workers
        )

    def val_dataloader(self) -> DataLoader:  # noqa: D102
        return evaluation_loader(self.val_set, self.batch_size, num_workers=self.num_workers)


@dataclass
class ToyImagePlan:
    """What inference needs: the upscaler and its tiling."""

    width: int
    depth: int
    scale: int
    num_heads: int
    tile: int = 0
    tile_overlap: float = 0.25


def build_network(plan: ToyImagePlan, drop_path_rate: float = 0.0) -> ToyUpscaler:
    """The untrained upscaler of a plan."""
    return ToyUpscaler(width=plan.width, depth=plan.depth, scale=plan.scale,
                       num_heads=plan.num_heads, drop_path_rate=drop_path_rate)  # fmt: skip


TOY_IMAGE = Vertical(
    name="toy_image",
    prog="hv-toy-image",
    plan_type=ToyImagePlan,
    schema=1,
    build_network=build_network,
)


def build(
    cfg: RunConfig, plan: ToyImagePlan | None = None
) -> tuple[ImageToImageTask, ToyImageDataModule]:
    """Module and data for a run config (and a trained run's plan, when evaluating)."""
    net, data_cfg = cfg.model, cfg.data
    plan = plan or ToyImagePlan(net.width, net.depth, data_cfg.scale, net.num_heads,
                                data_cfg.tile, data_cfg.tile_overlap)  # fmt: skip
    model = build_network(plan, cfg.regularization.drop_path_rate)
    task = ImageToImageTask(
        model,
        cfg.optim,
        loss=cfg.model.loss,
        tile=cfg.data.tile or None,  # an inference setting: flags given now may change it
        tile_overlap=cfg.data.tile_overlap,
        regularization=cfg.regularization,
        vertical=TOY_IMAGE,
        plan=plan,
    )
    data = ToyImageDataModule(
        cfg.data, cfg.trainer.batch_size, cfg.trainer.seed, cfg.trainer.num_workers
    )
    return task, data


def validate(cfg: RunConfig) -> None:
    """One-line errors for toy values."""
    data, model = cfg.data, cfg.model
    if data.scale < 2:
        raise InputError(f"--data.scale must be >= 2, got {data.scale}")
    for flag in ("image_size", "val_size"):
        size = getattr(data, flag)
        if size % data.scale or size < 8 * data.scale:
            raise InputError(f"--data.{flag} must be a multiple of --data.scale and >= 8x it")
    if data.num_train < 2 or data.num_val < 1:
        raise InputError("--data.num_train must be >= 2 and --data.num_val >= 1")
    if data.tile and data.tile < 8:
        raise InputError(f"--data.tile must be 0 (whole images) or >= 8, got {data.tile}")
    if model.loss not in PIXEL_LOSSES:
        raise InputError(f"--model.loss must be one of {', '.join(PIXEL_LOSSES)}")


def _write_prediction(output: torch.Tensor, source: Path, target: Path) -> None:
    np.save(target.open("wb"), output.float().numpy())


SPEC = TaskSpec(
    prog="hv-toy-image",
    description="Toy x2 super-resolution: exercises the image-to-image engine path end to end.",
    data_config=ToyImageDataConfig,
    model_config=ToyImageModelConfig,
    build=build,
    vertical=TOY_IMAGE,
    headline="val/psnr",
    mode="max",
    validate=validate,
    predict_dataset=lambda files, cfg: NpyFiles(files),
    write_prediction=_write_prediction,
    prediction_suffix="_sr.npy",
    example_input=lambda plan: torch.rand(2, 3, plan.tile or 16, plan.tile or 16),
)

main = build_cli(SPEC)

if __name__ == "__main__":
    raise SystemExit(main())
