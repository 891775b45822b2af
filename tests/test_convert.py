"""Progressive conversion of torchvision / timm ResNets into hybrids."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torchvision
from torch import nn

from shared import HybridBlock, hybridize_resnet


def _stage_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    outputs: dict[str, torch.Tensor] = {}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: outputs.__setitem__(name, out.detach().clone())
        )
        for name in ("layer1", "layer2", "layer3", "layer4")
    ]
    with torch.no_grad():
        logits = model(x)
    for hook in hooks:
        hook.remove()
    outputs["logits"] = logits
    return outputs


@pytest.mark.parametrize(
    "factory",
    [lambda: torchvision.models.resnet18(num_classes=10), lambda: timm.create_model("resnet26")],
    ids=["torchvision-resnet18", "timm-resnet26"],
)
def test_converting_last_stage_keeps_untouched_stages_identical(factory) -> None:
    model = factory().eval()
    x = torch.randn(2, 3, 64, 64)
    before = _stage_outputs(model, x)
    conv_weight = model.layer4[0].conv1.weight
    hybridize_resnet(model, num_stages=1, num_heads=4).eval()
    after = _stage_outputs(model, x)
    for name in ("layer1", "layer2", "layer3"):
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    assert not torch.equal(after["layer4"], before["layer4"])
    converted = model.layer4[0]
    assert isinstance(converted, HybridBlock)
    assert converted.conv.block.conv1.weight is conv_weight, "conv weights must be kept, not copied"
    assert not any(isinstance(b, HybridBlock) for b in model.layer3)


def test_fully_closed_gate_reproduces_the_original_network() -> None:
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    reference = _stage_outputs(model, x)["logits"]
    # sigmoid(100) == 1.0 in fp32: the converted blocks output exactly their conv path.
    hybridize_resnet(model, num_stages=2, num_heads=4, gate_bias_init=100.0).eval()
    torch.testing.assert_close(_stage_outputs(model, x)["logits"], reference)


def test_strided_blocks_keep_their_strided_shortcut() -> None:
    model = torchvision.models.resnet18(num_classes=10)
    downsample = model.layer4[0].downsample
    hybridize_resnet(model, num_stages=1, num_heads=4)
    block = model.layer4[0]
    assert block.shortcut is downsample and downsample[0].stride == (2, 2)
    assert isinstance(model.layer4[1].shortcut, nn.Identity)
    assert block(torch.randn(1, 256, 8, 8)).shape == (1, 512, 4, 4)


def test_default_gate_bias_leans_towards_the_conv_path() -> None:
    model = torchvision.models.resnet18(num_classes=10).eval()
    hybridize_resnet(model, num_stages=1, num_heads=4)
    block = model.layer4[0]
    assert torch.all(block.fusion.gate.bias == 3.0)
    assert block.residual_strength == 1.0  # the ResNet's own identity path, unscaled
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    # sigmoid(3) = 0.953; the small random gate weights spread it a little around that.
    assert float(block.last_gate.mean()) == pytest.approx(1 / (1 + math.exp(-3)), abs=0.03)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_new_modules_take_the_models_dtype(dtype: torch.dtype) -> None:
    model = torchvision.models.resnet18(num_classes=3).to(dtype).eval()
    hybridize_resnet(model, num_stages=2, num_heads=4)
    assert {p.dtype for p in model.parameters()} == {dtype}
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64, dtype=dtype)).dtype == dtype


def test_progressive_conversion_goes_from_deep_to_shallow_and_trains() -> None:
    model = torchvision.models.resnet18(num_classes=4)
    hybridize_resnet(model, num_stages=1, num_heads=4)
    hybridize_resnet(model, num_stages=3, num_heads=4)
    kinds = [isinstance(model.__getattr__(f"layer{i}")[0], HybridBlock) for i in range(1, 5)]
    assert kinds == [False, True, True, True]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 64, 64)), torch.tensor([0, 3]))
    loss.backward()
    optimizer.step()
    assert model.layer2[0].attention.qkv.weight.grad is not None


def test_non_resnet_is_rejected_clearly() -> None:
    with pytest.raises(ValueError, match="not a torchvision/timm ResNet"):
        hybridize_resnet(torchvision.models.mobilenet_v3_small())
    with pytest.raises(ValueError, match="num_stages must be in 1..4"):
        hybridize_resnet(torchvision.models.resnet18(), num_stages=5)
