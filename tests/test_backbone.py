"""HybridBackbone: every topology and preset in 2D and 3D, feature_info, strides, channels."""

from __future__ import annotations

import pytest
import torch

from shared import PRESETS, TOPOLOGIES, HybridBackbone, ParallelStage, StageConfig
from shared.backbone import stage_block_kinds
from shared.blocks import HybridBlock, ResidualConvBlock, TransformerBlock


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
    stage = StageConfig(depth=3, channels=32, kind="T")
    assert stage_block_kinds(stage, "serial") == ["T", "T", "T"]
    assert stage_block_kinds(stage, "interleaved") == ["T", "C", "T"]
    assert stage_block_kinds(StageConfig(2, 32, "H"), "interleaved") == ["C", "H"]
    parallel = HybridBackbone(2, 3, "hybrid_tiny", topology="parallel")
    assert isinstance(parallel.stages[2], ParallelStage)
    assert all(isinstance(b, TransformerBlock) for b in parallel.stages[2].attention_branch)
    assert all(isinstance(b, ResidualConvBlock) for b in parallel.stages[2].conv_branch)
    serial = HybridBackbone(2, 3, "hybrid_tiny", topology="serial")
    assert all(isinstance(b, HybridBlock) for b in serial.stages[3])


def test_residual_strength_schedule_shallow_to_deep() -> None:
    model = HybridBackbone(2, 3, "hybrid_small")
    assert model.config.residual_strengths() == pytest.approx([0.7, 0.5667, 0.4333, 0.3], abs=1e-3)
    strengths = [b.residual_strength for b in model.modules() if isinstance(b, HybridBlock)]
    # CCHH: hybrid blocks live in stages 2 and 3, so they take the deeper two strengths.
    assert strengths == pytest.approx([0.4333, 0.4333, 0.3, 0.3], abs=1e-3)


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
