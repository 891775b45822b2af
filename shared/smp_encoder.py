"""Native segmentation_models_pytorch encoders for the presets.

After ``import shared``, ``smp.Unet("hybrid_small", encoder_weights=None, in_channels=13,
classes=4)`` builds a U-Net on our backbone (``"tu-hybrid_small"`` also works, through timm).
smp is 2D only; use :class:`shared.HybridBackbone` directly for 3D.
"""

from __future__ import annotations

import torch
from segmentation_models_pytorch.encoders import encoders as smp_encoders
from segmentation_models_pytorch.encoders._base import EncoderMixin
from torch import nn

from .backbone import HybridBackbone
from .config import PRESETS

__all__ = ["HybridSmpEncoder", "register_smp_encoders"]


class HybridSmpEncoder(nn.Module, EncoderMixin):
    """smp encoder contract: ``forward`` returns ``[x, f/2, f/4, f/8, f/16, f/32][: depth + 1]``."""

    # The attention layers use data-dependent shapes, which TorchScript cannot trace.
    _is_torch_scriptable = False

    def __init__(
        self, preset: str, depth: int = 5, output_stride: int = 32, in_channels: int = 3
    ) -> None:
        super().__init__()
        if not 1 <= depth <= 5:
            raise ValueError(f"{preset}: depth must be in 1..5, got {depth}")
        if output_stride != 32:
            raise ValueError(
                f"{preset}: output_stride={output_stride} (dilated encoder) is not supported; "
                "use 32"
            )
        self._preset = preset
        self._depth = depth
        self._output_stride = output_stride
        self._in_channels = in_channels
        self.backbone = HybridBackbone(2, in_channels, preset)
        self._out_channels = [in_channels, *self.backbone.out_channels]

    def set_in_channels(self, in_channels: int, pretrained: bool = True) -> None:
        """Rebuild the stem for ``in_channels`` (there are no pretrained weights to adapt)."""
        if in_channels == self._in_channels:
            return
        self._in_channels = in_channels
        self.backbone = HybridBackbone(2, in_channels, self._preset)
        self._out_channels = [in_channels, *self.backbone.out_channels]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Input plus the first ``depth`` feature maps."""
        features = self.backbone(x)
        return [x, *features][: self._depth + 1]


def register_smp_encoders() -> None:
    """Add every preset to smp's encoder registry (idempotent)."""
    for name in PRESETS:
        smp_encoders[name] = {
            "encoder": HybridSmpEncoder,
            "pretrained_settings": {},
            "params": {"preset": name},
        }
