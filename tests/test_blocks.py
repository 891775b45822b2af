"""Blocks: shapes in 2D/3D, gate behaviour, gradients, attention paths and config errors."""

from __future__ import annotations

import itertools
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


def test_attention_width_is_half_the_conv_width_rounded_to_heads() -> None:
    assert attention_width(256, 0.5, 8) == 128
    assert attention_width(96, 0.5, 8) == 48
    assert attention_width(100, 0.5, 8) == 48
    assert attention_width(8, 0.5, 8) == 8  # never below one channel per head


@pytest.mark.parametrize("dims", [2, 3])
def test_conv_to_attention_channels_are_two_to_one(dims: int) -> None:
    block = HybridBlock(dims, 24, 48, num_heads=4)
    conv_out = block.conv[-2].out_channels  # last conv of the conv path
    assert conv_out == 48
    assert block.reduce[0].out_channels == block.attention.channels == 24
    assert block.fusion.align[0].in_channels == 24 and block.fusion.align[0].out_channels == 48
    assert block.fusion.gate.in_channels == 96 and block.fusion.gate.out_channels == 48


@pytest.mark.parametrize("dims", [2, 3])
def test_block_output_is_the_brief_formula_computed_by_hand(dims: int) -> None:
    """out = ReLU(w * conv + (1 - w) * align(MSA(reduce(conv))) + s * x), one residual."""
    torch.manual_seed(3)
    block = HybridBlock(dims, 8, 8, num_heads=2, residual_strength=0.7).eval()
    gate_bias = 0.4
    with torch.no_grad():
        block.fusion.gate.weight.zero_()  # w = sigmoid(0.4) everywhere
        block.fusion.gate.bias.fill_(gate_bias)
    x = torch.randn(2, 8, *([5] * dims))
    w = torch.sigmoid(torch.tensor(gate_bias))
    with torch.no_grad():
        # Every layer by hand from its weights (eval-mode norm = affine with running stats).
        conv = x
        layers = list(block.conv)
        for layer in layers:
            conv = layer(conv)
        reduced = block.reduce(conv)
        attended = block.attention(reduced)
        aligned = block.fusion.align(attended)
        expected = torch.relu(w * conv + (1 - w) * aligned + 0.7 * x)
        actual = block(x)
    assert isinstance(block.shortcut, torch.nn.Identity)
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)
    # The residual strength is the only identity path: s = 0 changes the output by s * x.
    block.residual_strength = 0.0
    with torch.no_grad():
        torch.testing.assert_close(
            block(x), torch.relu(w * conv + (1 - w) * aligned), atol=1e-6, rtol=0
        )


def test_strided_block_has_a_strided_projection_shortcut() -> None:
    block = HybridBlock(2, 8, 16, stride=2, num_heads=2)
    conv = block.shortcut[0]
    assert conv.stride == (2, 2) and conv.kernel_size == (1, 1)
    assert block(torch.randn(1, 8, 8, 8)).shape == (1, 16, 4, 4)


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


def test_window_attention_equals_global_attention_inside_each_window() -> None:
    torch.manual_seed(1)
    window = SpatialSelfAttention(2, 16, num_heads=4, window_size=4).eval()
    # The depthwise positional conv sees across window borders: take it out of the comparison.
    torch.nn.init.zeros_(window.pos_embed.weight)
    torch.nn.init.zeros_(window.pos_embed.bias)
    full = SpatialSelfAttention(2, 16, num_heads=4).eval()
    full.load_state_dict(window.state_dict())
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        out = window(x)
        for top in (0, 4):
            for left in (0, 4):
                crop = (slice(None), slice(None), slice(top, top + 4), slice(left, left + 4))
                torch.testing.assert_close(out[crop], full(x[crop]), atol=1e-5, rtol=0)


def _window_regions(shape, window, shift) -> list[tuple[slice, ...]]:
    """The (shifted) windows as crops of the map: along each axis, cuts at o + k * w (o = half a
    window when shifted), windows no larger than the axis, the last one ending at the edge."""
    axes = []
    for size, w in zip(shape, window, strict=True):
        w = min(w, size)
        offset = w // 2 if shift and w < size else 0
        cuts = sorted({0, size} | {c for c in range(offset, size, w) if 0 < c < size})
        axes.append([slice(a, b) for a, b in itertools.pairwise(cuts)])
    return list(itertools.product(*axes))


@pytest.mark.parametrize(
    ("shape", "window", "shift"),
    [
        ((5, 6), (4, 4), False),  # partial windows at the far edges, padded
        ((7, 9), (4, 4), True),  # padding and shift together
        ((3, 6, 7), (2, 4, 4), True),  # 3D, time x height x width
    ],
)
def test_padded_and_shifted_windows_equal_global_attention_on_their_crop(
    shape, window, shift
) -> None:
    """Each window, partial (padding masked) or wrapped by the shift (masked), gives exactly
    global attention over the crop it covers."""
    torch.manual_seed(4)
    windowed = SpatialSelfAttention(len(shape), 8, 2, window_size=window, shift=shift).eval()
    # The depthwise positional conv sees across window borders: take it out of the comparison.
    torch.nn.init.zeros_(windowed.pos_embed.weight)
    torch.nn.init.zeros_(windowed.pos_embed.bias)
    full = SpatialSelfAttention(len(shape), 8, 2).eval()
    full.load_state_dict(windowed.state_dict())
    x = torch.randn(2, 8, *shape)
    regions = _window_regions(shape, window, shift)
    assert any(  # the premise: some crop is smaller than a window (padded or wrapped)
        math.prod(r.stop - r.start for r in region) < math.prod(window) for region in regions
    )
    with torch.no_grad():
        out = windowed(x)
        for region in regions:
            crop = (slice(None), slice(None), *region)
            torch.testing.assert_close(out[crop], full(x[crop]), atol=1e-5, rtol=0)


def _influence(layer: SpatialSelfAttention, shape: tuple[int, ...]) -> torch.Tensor:
    """[a, b] True when perturbing position a changes the output at position b."""
    x = torch.randn(1, layer.channels, *shape)
    with torch.no_grad():
        base = layer(x)
        count = math.prod(shape)
        result = torch.zeros(count, count, dtype=torch.bool)
        for a in range(count):
            moved = x.clone()
            moved.view(1, layer.channels, -1)[0, :, a] += torch.randn(layer.channels)
            result[a] = (layer(moved) - base).abs().sum(1).flatten() > 1e-5
    return result


def _swin_regions(shape, window, shift) -> torch.Tensor:
    """Independent statement of (shifted) windows: same region iff same floor((c - s) / w)."""
    window = [min(w, s) for w, s in zip(window, shape, strict=True)]
    offsets = [w // 2 if shift and w < s else 0 for w, s in zip(window, shape, strict=True)]
    coords = list(itertools.product(*[range(s) for s in shape]))
    ids = [
        tuple((c - o) // w for c, o, w in zip(coord, offsets, window, strict=True))
        for coord in coords
    ]
    return torch.tensor([[a == b for b in ids] for a in ids])


@pytest.mark.parametrize(
    ("shape", "window", "shift"),
    [
        ((8, 8), (4, 4), False),
        ((8, 8), (4, 4), True),
        ((7, 9), (4, 4), True),  # padding and shift together
        ((5, 6), (4, 4), False),  # padding only
        ((3, 6, 7), (2, 4, 4), True),  # 3D, time x height x width
        ((4, 4), (7, 7), True),  # window larger than the map: exact global attention
    ],
)
def test_window_attention_sees_exactly_its_window(shape, window, shift) -> None:
    torch.manual_seed(0)
    layer = SpatialSelfAttention(len(shape), 8, 2, window_size=window, shift=shift).eval()
    # Without the positional conv, only attention mixes positions.
    torch.nn.init.zeros_(layer.pos_embed.weight)
    torch.nn.init.zeros_(layer.pos_embed.bias)
    assert torch.equal(_influence(layer, shape), _swin_regions(shape, window, shift))


@pytest.mark.parametrize("dims", [2, 3])
def test_window_return_attention_and_entropy(dims: int) -> None:
    layer = SpatialSelfAttention(dims, 16, num_heads=4, window_size=2, shift=True)
    x = _input(dims, size=4)
    out, probs = layer(x, return_attention=True)
    windows, tokens = 2**dims, 2**dims
    assert probs.shape == (2 * windows, 4, tokens, tokens)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2 * windows, 4, tokens))
    torch.testing.assert_close(out, layer(x))
    torch.nn.init.zeros_(layer.qkv.weight)
    torch.nn.init.zeros_(layer.qkv.bias)
    layer.monitor = True
    layer(_input(dims, size=2 * 3))  # 3 windows per axis, shifted: some masked regions
    assert layer.last_entropy is not None
    assert 0 < float(layer.last_entropy) <= math.log(tokens) + 1e-6


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


def test_windowed_model_exports_with_torch_export() -> None:
    from shared import HybridClassifier, make_stages

    stages = make_stages(
        (1, 1, 2, 1), (16, 32, 32, 64), "CCHH", (4, 4, 4, 4), attention="window", window_size=3
    )
    model = HybridClassifier("hybrid_tiny", num_classes=3, stages=stages).eval()
    x = torch.randn(1, 3, 80, 80)  # 5x5 map at reduction 16: padded, shifted windows
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))


def _norms(module: torch.nn.Module) -> list[torch.nn.Module]:
    return [
        m
        for m in module.modules()
        if isinstance(m, torch.nn.modules.batchnorm._NormBase | torch.nn.GroupNorm)
    ]


@pytest.mark.parametrize("norm", ["batch", ("group", {"num_groups": 4})])
def test_zero_init_last_zeroes_only_the_conv_paths_last_norm(norm) -> None:
    """timm's zero_init_last: the conv path's last norm weight is 0, every other norm keeps 1,
    so a residual conv block starts as ReLU(shortcut(x)) exactly."""
    torch.manual_seed(0)
    conv_block = ResidualConvBlock(3, 8, 16, stride=2, norm=norm)
    conv_block.zero_init_last()
    body_norms, shortcut_norms = _norms(conv_block.body), _norms(conv_block.shortcut)
    assert torch.equal(body_norms[-1].weight, torch.zeros(16))
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in body_norms[:-1])
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in shortcut_norms)
    x = _input(3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(conv_block(x), torch.relu(conv_block.shortcut(x)))
    hybrid = HybridBlock(3, 16, 16, num_heads=4, norm=norm)
    hybrid.zero_init_last()
    assert torch.equal(hybrid.conv[-1].weight, torch.zeros(16))
    others = [m for m in _norms(hybrid) if m is not hybrid.conv[-1]]
    assert others and all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in others)
    with torch.no_grad():  # the conv path outputs 0: conv = 0 everywhere
        assert torch.equal(hybrid.conv(_input(3, 16, 8)), torch.zeros(2, 16, 8, 8, 8))


def test_zero_init_last_refuses_a_conv_path_without_affine_norm() -> None:
    block = ResidualConvBlock(2, 8, 8, norm="instance")  # MONAI's instance norm: not affine
    with pytest.raises(ValueError, match="zero_init_last needs an affine norm"):
        block.zero_init_last()


def test_backbone_zero_init_last_reaches_every_residual_block() -> None:
    config = BackboneConfig(
        spatial_dims=2,
        in_channels=1,
        stem_channels=8,
        stages=(StageConfig(1, 16, "C", num_heads=4), StageConfig(1, 16, "H", num_heads=4)),
        zero_init_last=True,
    )
    from shared import HybridBackbone

    model = HybridBackbone(2, 1, config)
    conv_block, hybrid = model.stages[0][0], model.stages[1][0]
    assert torch.equal(conv_block.body[-1].weight, torch.zeros(16))
    assert torch.equal(hybrid.conv[-1].weight, torch.zeros(16))
    # The stem and the other norms keep weight 1; without the flag nothing is zeroed.
    assert torch.equal(model.stem[1].weight, torch.ones(4))
    plain = HybridBackbone(2, 1, config.replace(zero_init_last=False))
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in _norms(plain))


def test_block_options_keep_the_gate_formula_computed_by_hand() -> None:
    """Gate bias, no ReLU after the sum and the core-v1 conv shortcut change only what they
    name: w = sigmoid(bias), out = w * conv + (1 - w) * aligned + s * shortcut(x)."""
    torch.manual_seed(5)
    x = torch.randn(2, 8, 6, 6)
    # gate_bias_init: the gate starts at sigmoid(bias) where its weight is zero.
    block = HybridBlock(2, 8, 8, num_heads=2, residual_strength=0.3, gate_bias_init=2.0).eval()
    assert torch.equal(block.fusion.gate.bias, torch.full((8,), 2.0))
    with torch.no_grad():
        block.fusion.gate.weight.zero_()
        block(x)
    torch.testing.assert_close(block.last_gate, torch.full_like(block.last_gate, 0.8807970779))
    # post_activation=False: the same sum without the ReLU (negative values survive).
    plain = HybridBlock(2, 8, 8, num_heads=2, residual_strength=0.3, post_activation=False)
    plain.load_state_dict(block.state_dict())
    plain.eval()
    w = torch.sigmoid(torch.tensor(2.0))
    with torch.no_grad():
        conv = block.conv(x)
        aligned = block.fusion.align(block.attention(block.reduce(conv)))
        expected = w * conv + (1 - w) * aligned + 0.3 * x
        torch.testing.assert_close(plain(x), expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(block(x), torch.relu(expected), atol=1e-6, rtol=0)
        assert (plain(x) < 0).any()
    # Core v1: the conv path is a residual block, conv = ReLU(body(x) + shortcut(x)), and its
    # shortcut (shared, computed once) is added again with strength s; no ReLU after the sum.
    residual = ResidualConvBlock(2, 8, 16, stride=2)
    v1 = HybridBlock(2, 8, 16, stride=2, num_heads=2, residual_strength=0.4,
                     gate_bias_init=-1.0, conv_path=residual, shortcut=residual.shortcut,
                     post_activation=False)  # fmt: skip
    v1.eval()
    with torch.no_grad():
        v1.fusion.gate.weight.zero_()
        shortcut = residual.shortcut(x)
        conv = torch.relu(residual.body(x) + shortcut)
        aligned = v1.fusion.align(v1.attention(v1.reduce(conv)))
        w = torch.sigmoid(torch.tensor(-1.0))
        expected = w * conv + (1 - w) * aligned + 0.4 * shortcut
        torch.testing.assert_close(v1(x), expected, atol=1e-6, rtol=0)
