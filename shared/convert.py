"""Progressive conversion: turn a trained ResNet into a hybrid, keeping its conv weights.

Following the design brief, the deepest stage is converted first, then earlier ones. Each residual
block of a converted stage becomes the conv path of a :class:`HybridBlock`; the attention path and
gate are new. The gate bias starts high (``sigmoid(3) = 0.95``) so the converted network starts
close to the original and fine-tuning can open the attention path gradually.
"""

from __future__ import annotations

from torch import nn

from .blocks import HybridBlock

__all__ = ["hybridize_resnet", "resnet_stage_names"]

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


def hybridize_resnet(
    model: nn.Module,
    num_stages: int = 1,
    num_heads: int = 8,
    attention_ratio: float = 1 / 3,
    gate_bias_init: float = 3.0,
    attention_fp32: bool = False,
) -> nn.Module:
    """Convert the last ``num_stages`` stages of a ResNet to hybrid blocks, in place.

    Works on torchvision ``resnet*`` and timm ``resnet*`` models. Earlier stages, the stem and the
    head are untouched, and every converted block keeps its trained conv weights as the conv path.
    Returns the same model object for chaining.
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
            stage[index] = HybridBlock(
                2,
                in_channels,
                out_channels,
                num_heads=num_heads,
                attention_ratio=attention_ratio,
                # The wrapped block already carries its own residual shortcut.
                residual_strength=0.0,
                attention_fp32=attention_fp32,
                gate_bias_init=gate_bias_init,
                conv_block=block,
            )
    return model
