"""Progressive conversion: turn a trained ResNet into a hybrid, keeping its conv weights.

Following the design brief, the deepest stage is converted first, then earlier ones. Each residual
block of a converted stage becomes a :class:`HybridBlock` whose conv path is the block's body
(its convs and norms, without the residual sum) and whose shortcut is the block's own shortcut
(identity, or its strided ``downsample``). The residual strength is 1 so that with the gate
closed the block computes exactly ``ReLU(body(x) + shortcut(x))``, the original; the gate bias
starts high (``sigmoid(3) = 0.95`` towards the conv path) so the converted network starts close
to the original and fine-tuning opens the attention path gradually.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import HybridBlock

__all__ = ["ResNetBody", "hybridize_resnet", "resnet_stage_names"]

_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")


def resnet_stage_names(model: nn.Module) -> list[str]:
    """Names of a torchvision/timm ResNet's four stages; ``ValueError`` if it is not one."""
    missing = [
        name for name in _RESNET_STAGES if not isinstance(getattr(model, name, None), nn.Sequential)
    ]
    if missing:
        raise ValueError(
            f"{type(model).__name__} is not a torchvision/timm ResNet: missing stage(s) {missing}"
        )
    return list(_RESNET_STAGES)


def _block_channels(block: nn.Module) -> tuple[int, int]:
    """(in, out) channels of a BasicBlock or Bottleneck (torchvision and timm name them alike)."""
    last_conv = getattr(block, "conv3", None) or getattr(block, "conv2", None)
    first_conv = getattr(block, "conv1", None)
    if not isinstance(last_conv, nn.Conv2d) or not isinstance(first_conv, nn.Conv2d):
        raise ValueError(f"cannot read channels of {type(block).__name__}: no conv1/conv2(/conv3)")
    return first_conv.in_channels, last_conv.out_channels


class ResNetBody(nn.Module):
    """The residual branch of a torchvision or timm BasicBlock/Bottleneck, without the sum.

    Reuses the block's own layers (so their trained weights), in the order the two libraries
    run them; the activation after the residual sum is left to :class:`HybridBlock`.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        _block_channels(block)  # fails clearly on anything that is not a ResNet block
        self.block = block

    def _part(self, name: str) -> nn.Module | None:
        return getattr(self.block, name, None)

    def _act(self, name: str) -> nn.Module:
        # timm names activations act1/act2/act3; torchvision shares one ``relu``.
        return self._part(name) or self.block.relu

    def _apply(self, x: torch.Tensor, *names: str) -> torch.Tensor:
        for name in names:
            layer = self._part(name)
            if layer is not None:
                x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Body output (before the residual sum and the final activation)."""
        if self._part("conv3") is not None:  # Bottleneck
            x = self._act("act1")(self._apply(x, "conv1", "bn1"))
            x = self._act("act2")(self._apply(x, "conv2", "bn2", "drop_block"))
            x = self._apply(x, "aa", "conv3", "bn3")
        else:  # BasicBlock
            x = self._act("act1")(self._apply(x, "conv1", "bn1", "drop_block"))
            x = self._apply(x, "aa", "conv2", "bn2")
        return self._apply(x, "se", "drop_path")


def hybridize_resnet(
    model: nn.Module,
    num_stages: int = 1,
    num_heads: int = 8,
    attention_ratio: float = 0.5,
    gate_bias_init: float = 3.0,
    attention_fp32: bool = False,
) -> nn.Module:
    """Convert the last ``num_stages`` stages of a ResNet to hybrid blocks, in place.

    Works on torchvision ``resnet*`` and timm ``resnet*`` models. Earlier stages, the stem and the
    head are untouched, every converted block keeps its trained conv weights as the conv path and
    its shortcut (strided where the block strides), and the new modules are created on the
    model's device and dtype. Returns the same model object for chaining.
    """
    stage_names = resnet_stage_names(model)
    if not 1 <= num_stages <= len(stage_names):
        raise ValueError(f"num_stages must be in 1..{len(stage_names)}, got {num_stages}")
    for stage_name in stage_names[len(stage_names) - num_stages :]:
        stage: nn.Sequential = getattr(model, stage_name)
        for index, block in enumerate(stage):
            if isinstance(block, HybridBlock):
                continue  # converting twice keeps the first conversion
            in_channels, out_channels = _block_channels(block)
            reference = next(block.parameters())
            shortcut = getattr(block, "downsample", None)
            hybrid = HybridBlock(
                2,
                in_channels,
                out_channels,
                num_heads=num_heads,
                attention_ratio=attention_ratio,
                residual_strength=1.0,
                attention_fp32=attention_fp32,
                gate_bias_init=gate_bias_init,
                conv_path=ResNetBody(block),
                shortcut=shortcut if shortcut is not None else nn.Identity(),
            )
            # Only the new modules move: the wrapped block's layers are already in place.
            stage[index] = hybrid.to(device=reference.device, dtype=reference.dtype)
    return model
