"""Dimension-indexed layer helpers shared by every hybrid block.

Layers come from MONAI's factories (``Conv[Conv.CONV, dims]``, ``get_norm_layer``) so one code path
builds 2D and 3D networks. Only argument validation and stride handling live here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv, Pool
from monai.networks.layers.utils import get_norm_layer
from torch import nn

StrideLike = int | Sequence[int]
NormLike = str | tuple
"""A MONAI norm name (``"batch"``, ``"instance"``) or ``(name, kwargs)``, e.g.
``("group", {"num_groups": 8})``; MONAI's ``get_norm_layer`` fills in dims and channels."""

__all__ = [
    "StrideLike",
    "NormLike",
    "check_norm",
    "channels_last",
    "check_spatial_dims",
    "conv_layer",
    "count_parameters",
    "norm_layer",
    "global_avg_pool",
    "as_stride",
    "stride_is_one",
    "flatten_tokens",
    "unflatten_tokens",
]


def check_spatial_dims(spatial_dims: int) -> int:
    """Return ``spatial_dims`` if it is 2 or 3, else raise a ``ValueError`` saying so."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def as_stride(stride: StrideLike, spatial_dims: int) -> tuple[int, ...]:
    """Expand an int or per-axis sequence to one stride per spatial axis."""
    if isinstance(stride, int):
        values = (stride,) * spatial_dims
    else:
        values = tuple(int(s) for s in stride)
    if len(values) != spatial_dims or any(s < 1 for s in values):
        raise ValueError(
            f"stride must be a positive int or {spatial_dims} positive ints, got {stride!r}"
        )
    return values


def stride_is_one(stride: StrideLike) -> bool:
    """True when a stride leaves every axis unchanged."""
    return all(s == 1 for s in ((stride,) if isinstance(stride, int) else stride))


def conv_layer(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: StrideLike = 1,
    groups: int = 1,
    bias: bool = False,
) -> nn.Module:
    """A 'same'-padded convolution of the given dimensionality (per-axis stride allowed)."""
    conv_type = Conv[Conv.CONV, spatial_dims]
    return conv_type(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        stride=as_stride(stride, spatial_dims),
        padding=kernel_size // 2,
        groups=groups,
        bias=bias,
    )


def norm_layer(spatial_dims: int, channels: int, norm: NormLike = "batch") -> nn.Module:
    """A norm layer from MONAI's factory: batch by default (the design brief's conv-path norm).

    Instance or group norm suit 3D segmentation trained at batch 1-2, as MONAI and nnU-Net use.
    """
    return get_norm_layer(norm, spatial_dims=spatial_dims, channels=channels)


def check_norm(norm: NormLike, spatial_dims: int) -> NormLike:
    """Return ``norm`` if MONAI's factory can build it, else raise a ``ValueError`` naming it."""
    if isinstance(norm, list):  # YAML and jsonargparse give lists for tuples
        norm = tuple(norm)
    try:
        get_norm_layer(norm, spatial_dims=spatial_dims, channels=8)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"norm {norm!r} is not a MONAI norm (e.g. 'batch', 'instance', "
            f"('group', {{'num_groups': 8}})): {err}"
        ) from None
    return norm


def global_avg_pool(spatial_dims: int) -> nn.Module:
    """Adaptive average pooling to a single position, for classification heads."""
    return Pool[Pool.ADAPTIVEAVG, spatial_dims](1)


def flatten_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, *spatial)`` -> ``(B, N, C)`` tokens, N the number of spatial positions."""
    return x.flatten(2).transpose(1, 2)


def unflatten_tokens(tokens: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`flatten_tokens`."""
    batch, _, channels = tokens.shape
    return tokens.transpose(1, 2).reshape(batch, channels, *spatial_shape)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def channels_last(spatial_dims: int) -> torch.memory_format:
    """The channels-last memory format for 2D or 3D maps (``channels_last``/``channels_last_3d``).

    oneDNN's CPU convolutions run far faster on channels-last tensors when channels are few
    (the full-resolution levels of a 3D U-Net: 2x per training step measured here); the layout
    changes no value, only strides.
    """
    check_spatial_dims(spatial_dims)
    return torch.channels_last_3d if spatial_dims == 3 else torch.channels_last
