"""Building blocks of the hybrid backbone: conv, hybrid (conv + attention + gate), transformer.

Every block takes ``spatial_dims`` first (as MONAI does) and builds its layers from the
dimension-indexed helpers in :mod:`shared.layers`, so one code path serves 2D and 3D.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from timm.layers import DropPath
from torch import nn

from .attention import SpatialSelfAttention, check_heads
from .layers import (
    StrideLike,
    check_spatial_dims,
    conv_layer,
    flatten_tokens,
    norm_layer,
    stride_is_one,
    unflatten_tokens,
)

__all__ = [
    "ResidualConvBlock",
    "GatedFusion",
    "HybridBlock",
    "TransformerBlock",
    "attention_width",
]


def attention_width(channels: int, attention_ratio: float, num_heads: int) -> int:
    """Channels given to attention: ``channels * ratio`` rounded to a multiple of ``num_heads``.

    The design brief's default conv:attention ratio 2:1 means ``attention_ratio = 1/3``.
    """
    if not 0.0 < attention_ratio <= 1.0:
        raise ValueError(f"attention_ratio must be in (0, 1], got {attention_ratio}")
    if num_heads < 1:
        raise ValueError(f"num_heads must be positive, got {num_heads}")
    return max(num_heads, round(channels * attention_ratio / num_heads) * num_heads)


def _projection(spatial_dims: int, in_channels: int, out_channels: int, stride: StrideLike):
    if in_channels == out_channels and stride_is_one(stride):
        return nn.Identity()
    return nn.Sequential(
        conv_layer(spatial_dims, in_channels, out_channels, 1, stride),
        norm_layer(spatial_dims, out_channels),
    )


class ResidualConvBlock(nn.Module):
    """ResNet basic block: (3x3 conv + BN + ReLU) x2 with a projection shortcut on shape change."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        stride: StrideLike = 1,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        self.body = nn.Sequential(
            conv_layer(spatial_dims, in_channels, out_channels, 3, stride),
            norm_layer(spatial_dims, out_channels),
            nn.ReLU(inplace=True),
            conv_layer(spatial_dims, out_channels, out_channels, 3),
            norm_layer(spatial_dims, out_channels),
        )
        self.shortcut = _projection(spatial_dims, in_channels, out_channels, stride)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward_with_shortcut(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the block output and its shortcut branch (reused by :class:`HybridBlock`)."""
        shortcut = self.shortcut(x)
        return self.act(self.drop_path(self.body(x)) + shortcut), shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual conv block output."""
        return self.forward_with_shortcut(x)[0]


class GatedFusion(nn.Module):
    """Fuse conv and attention features: ``w = sigmoid(conv1x1([conv, attn]))``.

    The attention features are first aligned to the conv width by a 1x1 conv + BN; the output is
    ``w * conv + (1 - w) * attn``. The last gate tensor is kept (detached) in ``last_gate`` so it
    can be inspected after a forward pass.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        attention_channels: int,
        gate_bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.align = nn.Sequential(
            conv_layer(spatial_dims, attention_channels, channels, 1),
            norm_layer(spatial_dims, channels),
        )
        self.gate = conv_layer(spatial_dims, 2 * channels, channels, 1, bias=True)
        nn.init.constant_(self.gate.bias, gate_bias_init)
        self.last_gate: torch.Tensor | None = None

    def forward(
        self, conv_features: torch.Tensor, attention_features: torch.Tensor
    ) -> torch.Tensor:
        """Gate-weighted sum of the conv features and the aligned attention features."""
        aligned = self.align(attention_features)
        gate = torch.sigmoid(self.gate(torch.cat([conv_features, aligned], dim=1)))
        if not torch.compiler.is_compiling():  # export/compile must not see attribute writes
            self.last_gate = gate.detach()
        return gate * conv_features + (1.0 - gate) * aligned


class HybridBlock(nn.Module):
    """The design brief's hybrid module: conv block, attention on a third of the width, gate.

    ``conv = ResidualConvBlock(x)``; attention runs on ``reduce(conv)`` (``attention_ratio`` of
    the channels, default 1/3 = conv:attention 2:1); :class:`GatedFusion` aligns and gates the
    two; the block adds ``residual_strength * shortcut(x)``. Passing ``conv_block`` wraps an
    existing trained block (e.g. a torchvision ResNet block) instead, keeping its weights.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        stride: StrideLike = 1,
        num_heads: int = 8,
        attention_ratio: float = 1 / 3,
        residual_strength: float = 0.5,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
        attention_fp32: bool = False,
        gate_bias_init: float = 0.0,
        conv_block: nn.Module | None = None,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if residual_strength < 0:
            raise ValueError(f"residual_strength must be >= 0, got {residual_strength}")
        attn_channels = attention_width(out_channels, attention_ratio, num_heads)
        check_heads(attn_channels, num_heads)
        self.residual_strength = float(residual_strength)
        self.conv = conv_block or ResidualConvBlock(
            spatial_dims, in_channels, out_channels, stride, drop_path
        )
        # A wrapped foreign block has its own shortcut inside; ours exposes it for reuse.
        self.owns_shortcut = isinstance(self.conv, ResidualConvBlock)
        self.shortcut = (
            None
            if self.owns_shortcut or residual_strength == 0
            else _projection(spatial_dims, in_channels, out_channels, stride)
        )
        self.reduce = nn.Sequential(
            conv_layer(spatial_dims, out_channels, attn_channels, 1),
            norm_layer(spatial_dims, attn_channels),
        )
        self.attention = SpatialSelfAttention(
            spatial_dims,
            attn_channels,
            num_heads,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            drop_path=drop_path,
            attention_fp32=attention_fp32,
        )
        self.fusion = GatedFusion(spatial_dims, out_channels, attn_channels, gate_bias_init)

    @property
    def last_gate(self) -> torch.Tensor | None:
        """Gate ``w`` (weight of the conv path) from the last forward pass."""
        return self.fusion.last_gate

    def conv_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the conv path (for the conv/attention gradient-ratio monitor)."""
        yield from self.conv.parameters()

    def attention_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the attention path: reduction, attention and channel alignment."""
        yield from self.reduce.parameters()
        yield from self.attention.parameters()
        yield from self.fusion.align.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Hybrid block output."""
        if self.owns_shortcut:
            conv, shortcut = self.conv.forward_with_shortcut(x)
        else:
            conv = self.conv(x)
            shortcut = self.shortcut(x) if self.shortcut is not None else None
        attended = self.attention(self.reduce(conv))
        fused = self.fusion(conv, attended)
        if shortcut is None or self.residual_strength == 0:
            return fused
        return fused + self.residual_strength * shortcut


class TransformerBlock(nn.Module):
    """Transformer unit on a feature map: attention layer then a token MLP, both residual.

    A strided 3x3 conv + BN downsamples first when the stride or width changes.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        stride: StrideLike = 1,
        num_heads: int = 8,
        mlp_ratio: float = 2.0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
        attention_fp32: bool = False,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if in_channels == out_channels and stride_is_one(stride):
            self.downsample: nn.Module = nn.Identity()
        else:
            self.downsample = nn.Sequential(
                conv_layer(spatial_dims, in_channels, out_channels, 3, stride),
                norm_layer(spatial_dims, out_channels),
            )
        self.attention = SpatialSelfAttention(
            spatial_dims,
            out_channels,
            num_heads,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            drop_path=drop_path,
            attention_fp32=attention_fp32,
        )
        hidden = int(out_channels * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.LayerNorm(out_channels),
            nn.Linear(out_channels, hidden),
            nn.GELU(),
            nn.Dropout(proj_drop),
            nn.Linear(hidden, out_channels),
            nn.Dropout(proj_drop),
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Transformer unit output, same layout as the input map."""
        x = self.attention(self.downsample(x))
        tokens = flatten_tokens(x)
        tokens = tokens + self.drop_path(self.mlp(tokens))
        return unflatten_tokens(tokens, x.shape[2:])
