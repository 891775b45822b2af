"""``ImageToImageTask``: image in, image out (super-resolution, denoising, restoration).

The network returns an image; training minimises a pixel loss (Charbonnier, L1 or MSE) on crops;
validation runs whole images, in overlapping tiles when they are large (MONAI's
``sliding_window_inference``, which also stitches outputs larger than their inputs, as in
super-resolution), and reports PSNR (``val/psnr``, the headline) and SSIM from torchmetrics.
Images are expected in ``[0, data_range]``; metrics and predictions clamp to that range.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import sliding_window_inference
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from .config import OptimConfig, RegularizationConfig, reject_regularization
from .contract import Vertical
from .io import InputError
from .module import HybridTask

__all__ = ["PIXEL_LOSSES", "CharbonnierLoss", "ImageToImageTask", "pixel_loss"]

PIXEL_LOSSES = ("charbonnier", "l1", "mse")
# Regularisers that need class labels; an image target has none.
UNSUPPORTED_REGULARIZATION = ("label_smoothing", "mixup_alpha", "cutmix_alpha", "mix_prob")


class CharbonnierLoss(nn.Module):
    """``mean(sqrt((output - target)^2 + eps^2))``: L1 made smooth at zero (LapSRN, EDVR, BasicVSR).

    Written here because none of torch, timm, MONAI or torchmetrics ships it (kornia does, but
    one line does not justify the dependency).
    """

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.eps = eps

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean Charbonnier penalty over all elements."""
        return torch.sqrt((output - target).square() + self.eps**2).mean()


def pixel_loss(name: str) -> nn.Module:
    """The pixel loss called ``name``: ``charbonnier``, ``l1`` or ``mse``.

    ``mse`` minimises what PSNR measures; its gradient grows with the error, where L1-type
    losses give every pixel the same push whatever its error.
    """
    if name == "charbonnier":
        return CharbonnierLoss()
    if name == "l1":
        return nn.L1Loss()
    if name == "mse":
        return nn.MSELoss()
    raise InputError(f"pixel loss must be one of {', '.join(PIXEL_LOSSES)}; got {name!r}")


class ImageToImageTask(HybridTask):
    """Pixel-loss training, tiled validation with PSNR/SSIM, image predictions.

    Args:
        model: maps an input image ``(N, C, *spatial)`` to an output image (any size: an SR
            network returns ``scale`` times the input).
        optim: optimiser and schedule settings.
        loss: a :data:`PIXEL_LOSSES` name.
        data_range: images lie in ``[0, data_range]`` (1.0 for float images, 255 for 8-bit).
        spatial_dims: 2 for images (and video frames folded into the batch), 3 for volumes.
        tile: validation/prediction window in input pixels (an int or one per axis); ``None``
            runs whole images at once.
        tile_overlap: overlap of neighbouring windows (a fraction of the window).
        tile_batch_size: windows per forward pass.
        regularization: only ``drop_path_rate`` applies (to the model, by its builder); the
            label-based regularisers are refused with an :class:`InputError`.
        vertical, plan: the inference contract, as in :class:`HybridTask`.
    """

    def __init__(
        self,
        model: nn.Module,
        optim: OptimConfig,
        loss: str = "charbonnier",
        data_range: float = 1.0,
        spatial_dims: int = 2,
        tile: int | tuple[int, ...] | None = None,
        tile_overlap: float = 0.25,
        tile_batch_size: int = 4,
        regularization: RegularizationConfig | None = None,
        vertical: Vertical | None = None,
        plan: Any = None,
    ) -> None:
        if regularization is not None:
            reject_regularization(
                regularization, "image-to-image tasks", UNSUPPORTED_REGULARIZATION
            )
        if data_range <= 0:
            raise InputError(f"data_range must be > 0, got {data_range}")
        if not 0 <= tile_overlap < 1:
            raise InputError(f"tile overlap must be in [0, 1), got {tile_overlap}")
        # A (min, max) range makes torchmetrics clamp outputs to it, as a saved image would be.
        value_range = (0.0, float(data_range))
        per_image = tuple(range(1, spatial_dims + 2))  # PSNR per image, then the mean
        metrics = MetricCollection(
            {
                "psnr": PeakSignalNoiseRatio(data_range=value_range, dim=per_image),
                "ssim": StructuralSimilarityIndexMeasure(data_range=value_range),
            }
        )
        super().__init__(model, pixel_loss(loss), metrics, optim, regularization,
                         vertical=vertical, plan=plan)  # fmt: skip
        self.data_range = float(data_range)
        self.tile = (tile,) * spatial_dims if isinstance(tile, int) else tile
        self.tile_overlap, self.tile_batch_size = tile_overlap, tile_batch_size

    def infer(self, inputs: torch.Tensor) -> torch.Tensor:
        """The output image for whole inputs, window by window when ``tile`` is set."""
        if self.tile is None:
            return self.model(inputs)
        return sliding_window_inference(
            inputs,
            roi_size=self.tile,
            sw_batch_size=self.tile_batch_size,
            predictor=self.model,
            overlap=self.tile_overlap,
            mode="gaussian",  # blend seams: tile borders see less context
        )

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """The output image, clamped to ``[0, data_range]``."""
        return super().predict_step(batch, batch_idx, dataloader_idx).clamp(0, self.data_range)
