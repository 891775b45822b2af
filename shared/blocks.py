"""Building blocks of the hybrid backbone: conv, hybrid (conv + attention + gate), transformer.

Every block takes ``spatial_dims`` first (as MONAI does) and builds its layers from the
dimension-indexed helpers in :mod:`shared.layers`, so one code path serves 2D and 3D.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from timm.layers import DropPath
from torch import nn

from .attention import SpatialSelfAttention, check_heads
from .layers import (
    NormLike,
    StrideLike,
    check_spatial_dims,
    conv_layer,
    flatten_tokens,
    norm_layer,
    stride_is_one,
    unflatten_tokens,
)

__all__ = [
    "ATTENTION_INPUTS",
    "ConvPath",
    "ResidualConvBlock",
    "GatedFusion",
    "HybridBlock",
    "TransformerBlock",
    "attention_width",
    "zero_last_norm",
]

ATTENTION_INPUTS = ("conv", "input")
"""What a hybrid block's attention reads: ``conv`` the conv path's output (the brief's serial
block: attention after the conv block), ``input`` the block input (parallel branches)."""


def attention_width(channels: int, attention_ratio: float, num_heads: int) -> int:
    """Attention channels for a conv path of ``channels``: ``channels * ratio``, rounded to heads.

    The design brief's conv:attention ratio 2:1 is ``attention_ratio = 0.5``: the conv path has
    ``C`` channels and attention ``C / 2``, i.e. a third of the block's conv + attention channels.
    """
    if not 0.0 < attention_ratio <= 1.0:
        raise ValueError(f"attention_ratio must be in (0, 1], got {attention_ratio}")
    if num_heads < 1:
        raise ValueError(f"num_heads must be positive, got {num_heads}")
    return max(num_heads, round(channels * attention_ratio / num_heads) * num_heads)


def _projection(
    spatial_dims: int, in_channels: int, out_channels: int, stride: StrideLike, norm: NormLike
) -> nn.Module:
    if in_channels == out_channels and stride_is_one(stride):
        return nn.Identity()
    return nn.Sequential(
        conv_layer(spatial_dims, in_channels, out_channels, 1, stride),
        norm_layer(spatial_dims, out_channels, norm),
    )


class ConvPath(nn.Sequential):
    """The brief's conv path without a shortcut: 3x3 conv + norm + ReLU, 3x3 conv + norm.

    The first conv carries the stride. The ReLU after the second norm is applied by the block
    that owns the residual sum, ResNet-style (``act(body + shortcut)``).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        stride: StrideLike = 1,
        norm: NormLike = "batch",
    ) -> None:
        check_spatial_dims(spatial_dims)
        super().__init__(
            conv_layer(spatial_dims, in_channels, out_channels, 3, stride),
            norm_layer(spatial_dims, out_channels, norm),
            nn.ReLU(inplace=True),
            conv_layer(spatial_dims, out_channels, out_channels, 3),
            norm_layer(spatial_dims, out_channels, norm),
        )

    def zero_init_last(self) -> None:
        """Zero the last norm's weight: the path outputs its norm's bias (zero) at first."""
        zero_last_norm(self)


def zero_last_norm(path: nn.Module) -> None:
    """Set the weight of the last affine norm layer in ``path`` to zero (timm's
    ``zero_init_last``); ``ValueError`` if ``path`` has no norm layer with a weight (e.g.
    MONAI's instance norm, which is not affine by default)."""
    norms = [m for m in path.modules() if isinstance(m, _NORMS)]
    if not norms or getattr(norms[-1], "weight", None) is None:
        raise ValueError(
            f"zero_init_last needs an affine norm as the last norm of the conv path, got "
            f"{norms[-1] if norms else 'none'}"
        )
    nn.init.zeros_(norms[-1].weight)


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
"""Norm layers (batch and instance norms share ``_NormBase``)."""


class ResidualConvBlock(nn.Module):
    """ResNet basic block: ``ReLU(ConvPath(x) + shortcut(x))``, projection on shape change."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        stride: StrideLike = 1,
        drop_path: float = 0.0,
        norm: NormLike = "batch",
    ) -> None:
        super().__init__()
        self.body = ConvPath(spatial_dims, in_channels, out_channels, stride, norm)
        self.shortcut = _projection(spatial_dims, in_channels, out_channels, stride, norm)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def zero_init_last(self) -> None:
        """Start as the shortcut: the body's last norm weight is zero (timm's convention)."""
        self.body.zero_init_last()

    def forward_with_shortcut(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block output and its shortcut branch (a hybrid block may reuse the latter)."""
        shortcut = self.shortcut(x)
        return self.act(self.drop_path(self.body(x)) + shortcut), shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual conv block output."""
        return self.forward_with_shortcut(x)[0]


class GatedFusion(nn.Module):
    """Fuse conv and attention features: ``w = sigmoid(conv1x1([conv, attn]))``.

    The attention features are first aligned to the conv width by a 1x1 conv + norm; the output
    is ``w * conv + (1 - w) * aligned``. The last gate tensor is kept (detached) in ``last_gate``
    so it can be inspected after a forward pass.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        attention_channels: int,
        gate_bias_init: float = 0.0,
        norm: NormLike = "batch",
    ) -> None:
        super().__init__()
        self.align = nn.Sequential(
            conv_layer(spatial_dims, attention_channels, channels, 1),
            norm_layer(spatial_dims, channels, norm),
        )
        self.gate = conv_layer(spatial_dims, 2 * channels, channels, 1, bias=True)
        self.gate_bias_init = float(gate_bias_init)
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
    """The design brief's hybrid module, with one residual.

    ``conv = ConvPath(x)`` (3x3 conv + norm + ReLU, 3x3 conv + norm; ``C`` channels);
    ``attn = MSA(reduce(conv))`` on ``C * attention_ratio`` channels (default 0.5: conv:attention
    channels 2:1, attention a third of the block's conv + attention channels; ``reduce`` is a
    1x1 conv + norm); ``aligned = align(attn)`` (1x1 conv + norm back to ``C``);
    ``w = sigmoid(conv1x1([conv, aligned]))``; and

        ``out = ReLU(w * conv + (1 - w) * aligned + s * shortcut(x))``

    with ``s = residual_strength`` and ``shortcut`` the identity, or a strided 1x1 conv + norm
    when the shape changes. The ReLU after the sum is ResNet's (``post_activation=False`` leaves
    it out, for the ablation). ``MSA`` is
    :class:`SpatialSelfAttention`, itself a pre-norm residual unit, global or windowed.

    ``attention_input="input"`` wires the branches in parallel instead: attention reads the
    block input (``reduce`` then carries the stride). ``conv_path`` replaces the conv path: a
    module (e.g. the body of a trained ResNet block, see :func:`shared.hybridize_resnet`) or
    ``"identity"`` (an attention unit after a separate conv unit, as in the interleaved
    topology; then ``conv = x``). ``shortcut`` likewise replaces the shortcut module.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        stride: StrideLike = 1,
        num_heads: int = 8,
        attention_ratio: float = 0.5,
        residual_strength: float = 0.5,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
        attention_fp32: bool = False,
        gate_bias_init: float = 0.0,
        attention_input: str = "conv",
        window_size: int | Sequence[int] | None = None,
        shift: bool = False,
        norm: NormLike = "batch",
        conv_path: nn.Module | str | None = None,
        shortcut: nn.Module | None = None,
        post_activation: bool = True,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if residual_strength < 0:
            raise ValueError(f"residual_strength must be >= 0, got {residual_strength}")
        if attention_input not in ATTENTION_INPUTS:
            raise ValueError(
                f"attention_input must be one of {ATTENTION_INPUTS}, got {attention_input!r}"
            )
        attn_channels = attention_width(out_channels, attention_ratio, num_heads)
        check_heads(attn_channels, num_heads)
        self.residual_strength = float(residual_strength)
        self.attention_input = attention_input
        if conv_path == "identity":
            if in_channels != out_channels or not stride_is_one(stride):
                raise ValueError(
                    "conv_path='identity' needs in_channels == out_channels and stride 1, got "
                    f"{in_channels} -> {out_channels}, stride {stride}"
                )
            self.conv: nn.Module = nn.Identity()
        elif isinstance(conv_path, nn.Module):
            self.conv = conv_path
        elif conv_path is None:
            self.conv = ConvPath(spatial_dims, in_channels, out_channels, stride, norm)
        else:
            raise ValueError(f"conv_path must be None, 'identity' or a module, got {conv_path!r}")
        self.shortcut = (
            shortcut
            if shortcut is not None
            else _projection(spatial_dims, in_channels, out_channels, stride, norm)
        )
        serial = attention_input == "conv"
        self.reduce = nn.Sequential(
            conv_layer(
                spatial_dims,
                out_channels if serial else in_channels,
                attn_channels,
                1,
                1 if serial else stride,
            ),
            norm_layer(spatial_dims, attn_channels, norm),
        )
        self.attention = SpatialSelfAttention(
            spatial_dims,
            attn_channels,
            num_heads,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            attention_fp32=attention_fp32,
            window_size=window_size,
            shift=shift,
        )
        self.fusion = GatedFusion(spatial_dims, out_channels, attn_channels, gate_bias_init, norm)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = nn.ReLU(inplace=True) if post_activation else nn.Identity()

    def zero_init_last(self) -> None:
        """Zero the last norm weight of the conv path (a :class:`ConvPath`, or a module given as
        ``conv_path`` that has norms): the block starts as gated attention plus its residual."""
        if hasattr(self.conv, "zero_init_last"):  # ConvPath, ResidualConvBlock
            self.conv.zero_init_last()
        elif not isinstance(self.conv, nn.Identity):
            zero_last_norm(self.conv)

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
        """``ReLU(w * conv + (1 - w) * aligned + s * shortcut(x))``."""
        if isinstance(self.conv, ResidualConvBlock) and self.shortcut is self.conv.shortcut:
            # The conv path's own shortcut is the block's (core v1): computed once.
            conv, shortcut = self.conv.forward_with_shortcut(x)
        else:
            conv, shortcut = self.conv(x), self.shortcut(x)
        attended = self.attention(self.reduce(conv if self.attention_input == "conv" else x))
        fused = self.drop_path(self.fusion(conv, attended))
        return self.act(fused + self.residual_strength * shortcut)


class TransformerBlock(nn.Module):
    """Transformer unit on a feature map: attention layer then a token MLP, both residual.

    A strided 3x3 conv + norm downsamples first when the stride or width changes. Attention is
    global, or windowed with ``window_size`` (shifted by half a window with ``shift``).
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
        window_size: int | Sequence[int] | None = None,
        shift: bool = False,
        norm: NormLike = "batch",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if in_channels == out_channels and stride_is_one(stride):
            self.downsample: nn.Module = nn.Identity()
        else:
            self.downsample = nn.Sequential(
                conv_layer(spatial_dims, in_channels, out_channels, 3, stride),
                norm_layer(spatial_dims, out_channels, norm),
            )
        self.attention = SpatialSelfAttention(
            spatial_dims,
            out_channels,
            num_heads,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            drop_path=drop_path,
            attention_fp32=attention_fp32,
            window_size=window_size,
            shift=shift,
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
