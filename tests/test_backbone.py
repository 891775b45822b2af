"""HybridBackbone: every topology and preset in 2D and 3D, feature_info, strides, channels."""

from __future__ import annotations

import pytest
import torch

from shared import PRESETS, TOPOLOGIES, HybridBackbone, StageConfig
from shared.backbone import stage_block_kinds
from shared.blocks import HybridBlock, ResidualConvBlock


def _check_features(model: HybridBackbone, x: torch.Tensor) -> list[torch.Tensor]:
    features = model(x)
    assert len(features) == len(model.feature_info) == 5
    for feature, info in zip(features, model.feature_info, strict=True):
        assert feature.shape[1] == info["num_chs"]
        expected = tuple(
            s // r for s, r in zip(x.shape[2:], info["reduction_per_axis"], strict=True)
        )
        assert tuple(feature.shape[2:]) == expected
    assert [info["reduction"] for info in model.feature_info] == [2, 4, 8, 16, 32]
    return features


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_topologies_shapes(dims: int, topology: str) -> None:
    model = HybridBackbone(dims, 2, "hybrid_tiny", topology=topology)
    _check_features(model, torch.randn(2, 2, *([32] * dims)))
    assert model.gate_values(), "hybrid stages must expose gates after a forward pass"


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_shapes(dims: int, preset: str) -> None:
    model = HybridBackbone(dims, 1, preset).eval()
    with torch.no_grad():
        _check_features(model, torch.randn(1, 1, *([32] * dims)))


@pytest.mark.parametrize("in_channels", [1, 3, 13])
def test_any_input_channel_count(in_channels: int) -> None:
    model = HybridBackbone(2, in_channels, "hybrid_tiny")
    _check_features(model, torch.randn(2, in_channels, 64, 64))
    with pytest.raises(ValueError, match=f"expected {in_channels} input channels"):
        model(torch.randn(2, in_channels + 1, 64, 64))
    with pytest.raises(ValueError, match="expected a 4-D input"):
        model(torch.randn(2, in_channels, 8, 64, 64))


def test_topologies_build_the_documented_structures() -> None:
    hybrid = StageConfig(depth=2, channels=32, kind="H")
    assert stage_block_kinds(hybrid, "serial") == ["H", "H"]
    assert stage_block_kinds(hybrid, "parallel") == ["P", "P"]
    assert stage_block_kinds(hybrid, "interleaved") == ["C", "A", "C", "A"]
    # Interleaved alternates at every depth: a depth-1 stage still holds one unit of each.
    assert stage_block_kinds(StageConfig(1, 32, "H"), "interleaved") == ["C", "A"]
    for kind in "CT":
        for topology in TOPOLOGIES:
            assert stage_block_kinds(StageConfig(2, 32, kind), topology) == [kind, kind]

    serial = HybridBackbone(2, 3, "hybrid_tiny", topology="serial")
    assert all(isinstance(b, HybridBlock) for b in serial.stages[3])
    assert all(b.attention_input == "conv" for b in serial.stages[3])
    parallel = HybridBackbone(2, 3, "hybrid_tiny", topology="parallel")
    assert all(b.attention_input == "input" for b in parallel.stages[2])
    interleaved = HybridBackbone(2, 3, "hybrid_tiny", topology="interleaved")
    units = list(interleaved.stages[3])  # hybrid_tiny's last stage has depth 1
    assert isinstance(units[0], ResidualConvBlock)
    assert isinstance(units[1], HybridBlock) and isinstance(units[1].conv, torch.nn.Identity)
    assert not isinstance(interleaved.stages[1][0], HybridBlock)  # conv stages stay conv


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_residual_strength_falls_from_0_7_to_0_3_over_hybrid_blocks(topology: str) -> None:
    model = HybridBackbone(2, 3, "hybrid_small", topology=topology)
    strengths = [b.residual_strength for b in model.modules() if isinstance(b, HybridBlock)]
    # CCHH with depths 2, 2: four gated blocks, the shallowest 0.7, the deepest 0.3.
    assert strengths == pytest.approx([0.7, 0.7 - 0.4 / 3, 0.3 + 0.4 / 3, 0.3], abs=1e-6)
    assert model.config.residual_strengths()[:2] == [[], []]


def test_residual_strength_per_stage_list() -> None:
    model = HybridBackbone(2, 3, "hybrid_small", residual_strength_per_stage=(0, 0, 0.6, 0.2))
    strengths = [b.residual_strength for b in model.modules() if isinstance(b, HybridBlock)]
    assert strengths == pytest.approx([0.6, 0.6, 0.2, 0.2])
    with pytest.raises(ValueError, match="one per stage"):
        HybridBackbone(2, 3, "hybrid_small", residual_strength_per_stage=(0.5, 0.5))


@pytest.mark.parametrize(
    ("norm", "layer"),
    [
        ("batch", torch.nn.BatchNorm3d),
        ("instance", torch.nn.InstanceNorm3d),
        (("group", {"num_groups": 4}), torch.nn.GroupNorm),
    ],
)
def test_norm_is_selectable_through_monai_factory(norm, layer: type) -> None:
    model = HybridBackbone(3, 1, "hybrid_tiny", norm=norm)
    norms = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._NormBase | torch.nn.GroupNorm)
    ]
    assert norms and all(isinstance(m, layer) for m in norms)
    _check_features(model, torch.randn(2, 1, 64, 64, 64))
    with pytest.raises(ValueError, match="not a MONAI norm"):
        HybridBackbone(3, 1, "hybrid_tiny", norm="sparkle")


def test_window_attention_stages_in_2d_and_3d() -> None:
    for dims, window in ((2, 4), (3, (2, 4, 4))):
        stages = tuple(
            StageConfig(1, c, k, num_heads=4, attention="window", window_size=window)
            for c, k in zip((16, 32, 32, 64), "CHHT", strict=True)
        )
        model = HybridBackbone(dims, 1, "hybrid_tiny", stages=stages)
        layers = model.attention_layers()
        assert layers and all(
            layer.window_size == ((window,) * 2 if dims == 2 else window)
            for layer in layers.values()
        )
        _check_features(model, torch.randn(1, 1, *([64] * dims)))
    with pytest.raises(ValueError, match="attention must be one of"):
        HybridBackbone(2, 1, "hybrid_tiny", stages=(StageConfig(1, 32, "H", attention="local"),))


def test_shift_alternates_within_a_stage() -> None:
    stages = (
        StageConfig(1, 16, "C"),
        StageConfig(3, 32, "H", num_heads=4, attention="window", window_size=4),
    )
    model = HybridBackbone(2, 1, "hybrid_tiny", stages=stages)
    assert [b.attention.shift for b in model.stages[1]] == [False, True, False]


def test_per_axis_strides_keep_video_time_resolution() -> None:
    stages = tuple(
        StageConfig(1, c, k, stride=(1, 2, 2), num_heads=4)
        for c, k in zip((16, 32, 32, 64), "CCHT", strict=True)
    )
    model = HybridBackbone(3, 3, "hybrid_tiny", stem_stride=(1, 2, 2), stages=stages)
    features = model(torch.randn(1, 3, 5, 64, 64))
    assert [tuple(f.shape[2:]) for f in features] == [
        (5, 32, 32),
        (5, 16, 16),
        (5, 8, 8),
        (5, 4, 4),
        (5, 2, 2),
    ]
    assert model.feature_info[-1]["reduction_per_axis"] == (1, 32, 32)


def test_grad_checkpointing_gives_identical_gradients() -> None:
    x = torch.randn(2, 3, 32, 32)
    reference = HybridBackbone(2, 3, "hybrid_tiny")
    checkpointed = HybridBackbone(2, 3, "hybrid_tiny")
    checkpointed.load_state_dict(reference.state_dict())
    checkpointed.set_grad_checkpointing(True)
    for model in (reference, checkpointed):
        model.forward_features(x).sum().backward()
    for (name, a), (_, b) in zip(
        reference.named_parameters(), checkpointed.named_parameters(), strict=True
    ):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_stochastic_depth_only_in_training() -> None:
    model = HybridBackbone(2, 3, "hybrid_tiny", drop_path_rate=0.5)
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    torch.testing.assert_close(model.forward_features(x), model.forward_features(x))


def test_unknown_preset_and_bad_config_type() -> None:
    with pytest.raises(ValueError, match="unknown preset 'hybrid_huge'"):
        HybridBackbone(2, 3, "hybrid_huge")
    with pytest.raises(ValueError, match="config must be a preset name"):
        HybridBackbone(2, 3, 42)  # type: ignore[arg-type]


def test_attention_init_xavier_or_vit_trunc_normal() -> None:
    """timm's ViT init (std 0.02) by default; Xavier-uniform (nn.MultiheadAttention's) on
    request: bound sqrt(6 / (fan_in + fan_out)), std bound / sqrt(3); nothing else changes."""
    import math

    torch.manual_seed(0)
    vit = HybridBackbone(3, 1, "hybrid_tiny")
    torch.manual_seed(0)
    xavier = HybridBackbone(3, 1, "hybrid_tiny", attention_init="xavier")
    layers = list(xavier.attention_layers().values())
    assert layers
    for layer in layers:
        for linear in (layer.qkv, layer.proj):
            bound = math.sqrt(6 / (linear.in_features + linear.out_features))
            assert linear.weight.abs().max() <= bound
            assert abs(linear.weight.std().item() / (bound / math.sqrt(3)) - 1) < 0.15
    for layer in vit.attention_layers().values():
        assert abs(layer.qkv.weight.std().item() - 0.02) < 0.004
    changed = {n for (n, a), b in zip(xavier.state_dict().items(), vit.state_dict().values(),
                                      strict=True) if not torch.equal(a, b)}  # fmt: skip
    assert changed and all(n.endswith(("qkv.weight", "proj.weight")) for n in changed)
    with pytest.raises(ValueError, match="attention_init must be one of"):
        HybridBackbone(3, 1, "hybrid_tiny", attention_init="zeros")
