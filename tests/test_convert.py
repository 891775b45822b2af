"""Progressive conversion of torchvision / timm ResNets into hybrids."""

from __future__ import annotations

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
    assert converted.conv.conv1.weight is conv_weight, "conv weights must be kept, not copied"
    assert not any(isinstance(b, HybridBlock) for b in model.layer3)


def test_fully_closed_gate_reproduces_the_original_network() -> None:
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    reference = _stage_outputs(model, x)["logits"]
    # sigmoid(100) == 1.0 in fp32: the converted blocks output exactly their conv path.
    hybridize_resnet(model, num_stages=2, num_heads=4, gate_bias_init=100.0).eval()
    torch.testing.assert_close(_stage_outputs(model, x)["logits"], reference)


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
