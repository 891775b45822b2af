"""HybridUNet: 2D/3D shapes, deep supervision, gradients, sliding-window inference, size checks,
the matched pure-CNN control, presets against the module docstring, and a tiny training run."""

from __future__ import annotations

import re

import pytest
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DeepSupervisionLoss, DiceCELoss

from medical import model as medical_model
from medical.model import (
    MEDICAL_PRESETS,
    HybridUNet,
    build_medical_model,
    estimate_training_memory,
    matched_pure_cnn,
)
from shared import BackboneConfig, SpatialSelfAttention, StageConfig
from shared.layers import count_parameters


def _blob_batch(batch: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Noisy images of one bright sphere each, and the sphere's label map ``(B, 1, *spatial)``."""
    axis = torch.arange(size, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"))
    labels = []
    for _ in range(batch):
        center = torch.randint(10, size - 10, (3,), generator=generator).float()
        radius = 5 + 3 * torch.rand((), generator=generator)
        distance = ((grid - center.view(3, 1, 1, 1)) ** 2).sum(0).sqrt()
        labels.append((distance <= radius).float())
    label = torch.stack(labels).unsqueeze(1)
    image = label + 0.3 * torch.randn(label.shape, generator=generator)
    return image, label


@pytest.mark.parametrize(
    ("dims", "in_channels", "shape"),
    [(2, 3, (64, 64)), (2, 1, (32, 96)), (3, 2, (32, 32, 64))],
)
def test_logits_at_input_resolution(dims: int, in_channels: int, shape: tuple[int, ...]) -> None:
    model = HybridUNet(dims, in_channels, 4)
    logits = model(torch.randn(2, in_channels, *shape))
    assert logits.shape == (2, 4, *shape)
    assert model.total_reduction == (32,) * dims


def test_deep_supervision_list_in_training_single_tensor_in_eval() -> None:
    model = HybridUNet(3, 1, 3, deep_supervision=True)
    x = torch.randn(2, 1, 32, 32, 32)
    outputs = model.train()(x)
    # Full resolution first, then the auxiliary levels at reductions 2 and 4 (deep_supr_num=2).
    assert [tuple(o.shape) for o in outputs] == [
        (2, 3, 32, 32, 32),
        (2, 3, 16, 16, 16),
        (2, 3, 8, 8, 8),
    ]
    label = torch.randint(0, 3, (2, 1, 32, 32, 32)).float()
    loss = DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True))(outputs, label)
    loss.backward()
    assert all(head.conv.conv.weight.grad is not None for head in model.aux_heads)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 3, 32, 32, 32)
    deepest = HybridUNet(3, 1, 2, deep_supervision=True, deep_supr_num=4)
    assert [o.shape[2] for o in deepest(x)] == [32, 16, 8, 4, 2]
    assert not HybridUNet(3, 1, 2).aux_heads, "no auxiliary heads without deep supervision"


def test_gradients_reach_encoder_attention_and_decoder() -> None:
    model = HybridUNet(3, 1, 2)
    label = torch.randint(0, 2, (2, 1, 32, 32, 32)).float()
    DiceCELoss(to_onehot_y=True, softmax=True)(
        model(torch.randn(2, 1, 32, 32, 32)), label
    ).backward()
    attention = model.attention_layers()
    assert len(attention) == 2, "med_cpu has one hybrid block at reduction 16 and one at 32"
    for name, layer in attention.items():
        assert layer.qkv.weight.grad is not None and layer.qkv.weight.grad.abs().sum() > 0, name
    for name, module in [
        ("deepest decoder level", model.decoder[0].up.conv),
        ("full-resolution decoder level", model.decoder[-1].block.conv1.conv),
        ("input block", model.input_block.conv),
        ("head", model.head.conv.conv),
    ]:
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0, name


def test_sliding_window_inference_returns_full_volume() -> None:
    model = HybridUNet(3, 1, 2, deep_supervision=True).eval()
    volume = torch.randn(1, 1, 40, 48, 56)
    with torch.no_grad():
        logits = sliding_window_inference(volume, (32, 32, 32), 2, model, overlap=0.25)
    assert logits.shape == (1, 2, 40, 48, 56)
    assert torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="not divisible"):
        model(volume)


def test_invalid_size_error_names_valid_sizes() -> None:
    model = HybridUNet(3, 1, 2).eval()
    with pytest.raises(ValueError) as error:
        model(torch.randn(1, 1, 40, 64, 100))
    message = str(error.value)
    assert "multiples of (32, 32, 32)" in message
    assert "axis 0: 40 -> 32 or 64" in message and "axis 2: 100 -> 96 or 128" in message
    with pytest.raises(ValueError, match=r"axis 1: 48 -> 32 or 64"):
        HybridUNet(2, 1, 2)(torch.randn(1, 1, 64, 48))


def test_per_axis_strides_set_per_axis_valid_sizes() -> None:
    # Keep the first axis (e.g. a few thick slices) at full resolution throughout.
    stages = tuple(
        StageConfig(1, c, k, stride=(1, 2, 2), num_heads=4)
        for c, k in zip((16, 24, 32, 48), "CCHH", strict=True)
    )
    config = BackboneConfig(spatial_dims=3, stem_channels=8, stem_stride=(1, 2, 2), stages=stages)
    model = HybridUNet(3, 1, 2, config)
    assert model.total_reduction == (1, 32, 32)
    assert model(torch.randn(2, 1, 3, 32, 64)).shape == (2, 2, 3, 32, 64)
    with pytest.raises(ValueError, match=r"multiples of \(1, 32, 32\)"):
        model(torch.randn(2, 1, 3, 48, 64))


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"in_channels": 0}, "in_channels"),
        ({"out_channels": 0}, "out_channels"),
        ({"config": "med_nope"}, "config"),
        ({"config": 3}, "config"),
        ({"decoder_channels": (32, 16, 8)}, "decoder_channels"),
        ({"decoder_channels": (32, 16, 8, 8, 0)}, "decoder_channels"),
        ({"deep_supr_num": 5}, "deep_supr_num"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs: dict, argument: str) -> None:
    arguments = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, **kwargs}
    with pytest.raises(ValueError, match=argument):
        HybridUNet(**arguments)


def test_custom_decoder_channels_and_input_check() -> None:
    model = HybridUNet(2, 2, 3, decoder_channels=(32, 24, 16, 12, 8))
    assert model.decoder_channels == (32, 24, 16, 12, 8)
    assert model(torch.randn(1, 2, 64, 64)).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="expected 2 input channels"):
        model(torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize("dims", [2, 3])
def test_pure_cnn_has_no_attention_and_matches_parameters(dims: int) -> None:
    hybrid = HybridUNet(dims, 1, 2, deep_supervision=True)
    pure = HybridUNet(dims, 1, 2, deep_supervision=True, pure_cnn=True)
    assert any(isinstance(m, SpatialSelfAttention) for m in hybrid.modules())
    assert not any(isinstance(m, SpatialSelfAttention) for m in pure.modules())
    assert {stage.kind for stage in pure.config.stages} == {"C"}
    ratio = count_parameters(pure) / count_parameters(hybrid)
    assert abs(ratio - 1) <= 0.05, ratio
    # Only the stages that lost attention are widened; the decoder is the hybrid's.
    assert pure.decoder_channels == hybrid.decoder_channels
    for before, after in zip(hybrid.config.stages, pure.config.stages, strict=True):
        widened = after.channels > before.channels
        assert widened == (before.kind != "C"), (before, after)
    helper = matched_pure_cnn(dims, 1, 2, deep_supervision=True)
    assert helper.config == pure.config
    x = torch.randn(1, 1, *([32] * dims))
    assert pure.eval()(x).shape == (1, 2, *([32] * dims))


def _docstring_table() -> dict[str, list[str]]:
    rows = re.findall(r"^\| (med_\w+) \| (.+) \|$", medical_model.__doc__, flags=re.MULTILINE)
    return {name: [cell.strip() for cell in cells.split("|")] for name, cells in rows}


def test_presets_match_the_documented_table() -> None:
    table = _docstring_table()
    assert sorted(table) == sorted(MEDICAL_PRESETS)
    for name, (widths, depths, params, *memory) in table.items():
        config = MEDICAL_PRESETS[name]
        assert widths == f"{config.stem_channels} / " + " ".join(
            str(s.channels) for s in config.stages
        )
        assert depths == " ".join(str(s.depth) for s in config.stages)
        # Attention only at reductions 16 and 32 (the last two of four stride-2 stages).
        assert [s.kind for s in config.stages] == ["C", "C", "H", "H"]
        model = build_medical_model(3, 1, 2, name)
        assert params == f"{count_parameters(model) / 1e6:.2f} M", name
        estimates = []
        for size in (96, 128):
            estimate = estimate_training_memory(model, (2, 1, size, size, size))
            estimates += [estimate["activations"], estimate["total"]]
        assert [float(v) for v in memory] == pytest.approx(estimates, abs=0.015), name


def test_memory_estimate_scales_with_the_patch() -> None:
    model = HybridUNet(3, 1, 2)
    small = estimate_training_memory(model, (2, 1, 64, 64, 64))
    large = estimate_training_memory(model, (2, 1, 128, 128, 128))
    # Activations grow with the voxel count (8x); the saved weights, fixed, keep it a bit under.
    assert 7 < large["activations"] / small["activations"] <= 8
    assert small["states"] == large["states"] == pytest.approx(count_parameters(model) * 18 / 2**30)
    fp32 = estimate_training_memory(model, (2, 1, 64, 64, 64), dtype=torch.float32)
    assert fp32["activations"] == pytest.approx(2 * small["activations"], rel=0.02)


def test_build_medical_model_and_config_names() -> None:
    model = build_medical_model(3, 2, 3, "med_cpu", deep_supervision=True)
    assert isinstance(model, HybridUNet) and model.deep_supervision
    assert (model.in_channels, model.out_channels, model.spatial_dims) == (2, 3, 3)
    assert model.backbone.config.stem_channels == MEDICAL_PRESETS["med_cpu"].stem_channels
    shared_preset = build_medical_model(2, 1, 2, "hybrid_tiny")  # shared presets work too
    assert shared_preset.backbone.out_channels == [24, 32, 64, 128, 256]
    frozen = HybridUNet(2, 1, 2)
    total = count_parameters(frozen)
    frozen.backbone.requires_grad_(False)
    assert count_parameters(frozen) == total
    assert count_parameters(frozen, trainable_only=True) == total - count_parameters(
        frozen.backbone
    )


def test_training_steps_reduce_dice_ce_loss_on_blobs() -> None:
    generator = torch.Generator().manual_seed(0)
    image, label = _blob_batch(2, 32, generator)
    model = HybridUNet(3, 1, 2)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = loss_fn(model(image), label)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0], losses


@pytest.mark.parametrize("dims", [2, 3])
def test_task_trains_channels_last_with_the_same_values(dims: int) -> None:
    """The task keeps weights and inputs channels-last (CPU speed): the same logits and
    gradients as the channels-first network computed in float64, within float32 rounding.
    (Float64 is the reference: in 2D the channels-first float32 gradients of the stem are
    themselves 1.5% off float64 here, the channels-last ones 1e-6.)"""
    import copy

    from medical.task import SegmentationTask
    from shared.engine import OptimConfig

    torch.manual_seed(0)
    reference = HybridUNet(dims, 1, 3).train()
    task = SegmentationTask(copy.deepcopy(reference), ["a", "b"], (32,) * dims, 1, 0.5,
                            optim=OptimConfig())  # fmt: skip
    reference.double()
    layout = torch.channels_last_3d if dims == 3 else torch.channels_last
    conv = task.model.decoder[-1].block.conv1.conv.weight
    assert conv.is_contiguous(memory_format=layout) and not conv.is_contiguous()
    x = torch.randn(2, 1, *([32] * dims))
    # (Activation layouts are oneDNN's choice and differ with the thread count: not checked.)
    expected, actual = reference(x.double()), task(x)
    torch.testing.assert_close(actual.double(), expected, atol=1e-4, rtol=1e-4)
    expected.square().mean().backward()
    actual.square().mean().backward()
    # Absolute tolerance on the scale of the largest gradient: a bias before a norm has a zero
    # gradient in exact arithmetic, rounding noise in both.
    scale = max(p.grad.abs().max().item() for p in reference.parameters())
    for (name, a), b in zip(task.model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a.grad.double(), b.grad, atol=1e-5 * scale, rtol=1e-3,
                                   msg=name)  # fmt: skip
