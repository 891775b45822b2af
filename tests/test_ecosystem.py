"""timm and segmentation_models_pytorch integration, and the README's Python examples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import timm
import torch

import shared  # noqa: F401  (registers the presets in timm and smp)

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("in_chans", [1, 3, 13])
def test_timm_features_only(in_chans: int) -> None:
    model = timm.create_model("hybrid_small", features_only=True, in_chans=in_chans)
    assert model.feature_info.channels() == [32, 64, 128, 256, 448]
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32]
    features = model(torch.randn(1, in_chans, 64, 64))
    assert [f.shape[1] for f in features] == model.feature_info.channels()
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4, 2]


def test_timm_classifier_contract() -> None:
    model = timm.create_model("hybrid_tiny", num_classes=7, in_chans=13, drop_path_rate=0.1)
    x = torch.randn(2, 13, 64, 64)
    assert model(x).shape == (2, 7)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 256)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    final, intermediates = model.forward_intermediates(x, indices=[1, 3])
    assert [f.shape[1] for f in intermediates] == [32, 128] and final.shape[1] == 256
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("hybrid_tiny", pretrained=True)


@pytest.mark.parametrize("encoder", ["hybrid_tiny", "tu-hybrid_tiny"])
def test_smp_unet_trains_with_13_bands(encoder: str) -> None:
    model = smp.Unet(encoder, encoder_weights=None, in_channels=13, classes=4)
    images = torch.randn(4, 13, 64, 64)
    # A learnable target: the class is the quadrant of the image.
    target = torch.zeros(4, 64, 64, dtype=torch.long)
    target[:, :32, 32:], target[:, 32:, :32], target[:, 32:, 32:] = 1, 2, 3
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(images), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert model(images).shape == (4, 4, 64, 64)
    assert losses[-1] < 0.7 * losses[0], losses


def test_smp_encoder_rejects_dilation() -> None:
    with pytest.raises(ValueError, match="output_stride=16"):
        smp.DeepLabV3Plus("hybrid_tiny", encoder_weights=None, encoder_output_stride=16)


def _readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_examples() -> None:
    assert len(_readme_python_blocks()) >= 3


@pytest.mark.parametrize("index", range(len(_readme_python_blocks())))
def test_readme_example_runs(index: int) -> None:
    exec(compile(_readme_python_blocks()[index], f"README.md[python block {index}]", "exec"), {})


def test_readme_parameter_counts_match_the_models() -> None:
    rows = re.findall(r"^\| `(hybrid_\w+)` \|.*\| ([\d.]+) M \|$", README.read_text(), re.M)
    assert len(rows) == 3
    for name, documented in rows:
        model = timm.create_model(name)
        count = sum(p.numel() for p in model.parameters()) / 1e6
        assert round(count, 2) == float(documented), name
