"""Blocks: shapes in 2D/3D, gate behaviour, gradients, attention paths and config errors."""

from __future__ import annotations

import math

import pytest
import torch

from shared import (
    BackboneConfig,
    HybridBlock,
    ResidualConvBlock,
    SpatialSelfAttention,
    StageConfig,
    TransformerBlock,
)
from shared.blocks import attention_width


def _input(dims: int, channels: int = 16, size: int = 8, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, channels, *([size] * dims))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("block_cls", [ResidualConvBlock, HybridBlock, TransformerBlock])
def test_block_shapes_with_and_without_downsampling(dims: int, block_cls: type) -> None:
    kwargs = {} if block_cls is ResidualConvBlock else {"num_heads": 4}
    same = block_cls(dims, 16, 16, **kwargs)
    assert same(_input(dims)).shape == (2, 16, *([8] * dims))
    down = block_cls(dims, 16, 32, stride=2, **kwargs)
    assert down(_input(dims)).shape == (2, 32, *([4] * dims))


def test_per_axis_stride_keeps_time_axis() -> None:
    block = HybridBlock(3, 8, 16, stride=(1, 2, 2), num_heads=2)
    out = block(torch.randn(1, 8, 5, 8, 8))
    assert out.shape == (1, 16, 5, 4, 4)


@pytest.mark.parametrize("dims", [2, 3])
def test_gate_values_inside_unit_interval_and_not_constant(dims: int) -> None:
    block = HybridBlock(dims, 16, 24, num_heads=4)
    assert block.last_gate is None
    block(_input(dims))
    gate = block.last_gate
    assert gate is not None and gate.shape == (2, 24, *([8] * dims))
    assert gate.min() > 0 and gate.max() < 1
    assert gate.std() > 1e-3, "gate should vary over positions and channels"


def test_gradients_reach_conv_and_attention_paths() -> None:
    block = HybridBlock(2, 16, 24, num_heads=4)
    block(_input(2)).square().mean().backward()
    for name, params in (
        ("conv", list(block.conv_parameters())),
        ("attention", list(block.attention_parameters())),
    ):
        grads = [p.grad for p in params]
        assert all(g is not None for g in grads), f"{name} path has parameters without grad"
        assert sum(float(g.abs().sum()) for g in grads) > 0, f"no gradient reached {name}"
    qkv_grad = block.attention.qkv.weight.grad
    assert qkv_grad is not None and qkv_grad.abs().sum() > 0


def test_attention_width_is_a_third_rounded_to_heads() -> None:
    assert attention_width(256, 1 / 3, 8) == 88
    assert attention_width(96, 1 / 3, 8) == 32
    assert attention_width(16, 1 / 3, 8) == 8  # never below one channel per head


@pytest.mark.parametrize("dims", [2, 3])
def test_return_attention_gives_probabilities(dims: int) -> None:
    layer = SpatialSelfAttention(dims, 16, num_heads=4)
    x = _input(dims, size=4)
    out, probs = layer(x, return_attention=True)
    tokens = 4**dims
    assert out.shape == x.shape
    assert probs.shape == (2, 4, tokens, tokens)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, tokens))
    torch.testing.assert_close(out, layer(x))  # same output as the fused SDPA path


def test_attention_dropout_only_in_training() -> None:
    layer = SpatialSelfAttention(2, 16, num_heads=4, attn_drop=0.5)
    x = _input(2)
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))
    layer.train()
    assert not torch.allclose(layer(x), layer(x))


def test_uniform_attention_entropy_is_log_n() -> None:
    layer = SpatialSelfAttention(2, 16, num_heads=4, monitor_queries=10)
    torch.nn.init.zeros_(layer.qkv.weight)
    torch.nn.init.zeros_(layer.qkv.bias)  # q = k = 0: every query attends uniformly
    layer.monitor = True
    layer(_input(2, size=6))
    assert layer.last_entropy is not None
    assert float(layer.last_entropy) == pytest.approx(math.log(36), rel=1e-5)


def test_attention_fp32_under_bf16_autocast() -> None:
    layer = SpatialSelfAttention(2, 16, num_heads=4, attention_fp32=True)
    x = _input(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), layer(x), atol=0.1, rtol=0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spatial_dims": 4}, "spatial_dims must be 2 or 3"),
        ({"stages": (StageConfig(1, 30, "T", num_heads=8),)}, "num_heads=8 must be positive"),
        ({"stages": (StageConfig(1, 32, "X"),)}, "unknown block kind 'X'"),
        ({"topology": "diagonal"}, "topology must be one of"),
        ({"stages": (StageConfig(1, 32, "C", stride=(2, 2, 2)),)}, "stride must be"),
        ({"residual_strength": (0.7, -0.1)}, "residual_strength"),
    ],
)
def test_bad_config_raises_value_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BackboneConfig(**kwargs)


def test_block_level_errors() -> None:
    with pytest.raises(ValueError, match="must be positive and divide"):
        SpatialSelfAttention(2, 30, num_heads=8)
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        HybridBlock(1, 8, 8)
    with pytest.raises(ValueError, match="attention_ratio"):
        HybridBlock(2, 8, 8, attention_ratio=0.0)
