"""--model.arch: every benchmark network builds, runs at a patch size, and refuses what it lacks."""

from __future__ import annotations

from typing import get_args, get_type_hints

import pytest
import torch
from monai.networks.nets import SegResNet, SwinUNETR, UNet

from medical.model import ARCHS, HybridUNet, build_medical_model
from medical.task import MedicalModelConfig


@pytest.mark.parametrize(
    ("arch", "kind"),
    [("hybrid", HybridUNet), ("cnn", HybridUNet), ("unet", UNet), ("segresnet", SegResNet),
     ("swinunetr", SwinUNETR)],
)  # fmt: skip
def test_every_arch_builds_and_segments_a_patch(arch: str, kind: type) -> None:
    model = build_medical_model(3, 2, 3, "med_cpu", arch=arch)
    assert type(model) is kind
    if arch == "cnn":
        assert model.pure_cnn and not model.attention_layers()
    with torch.no_grad():
        # 64 x 64 x 32: SwinUNETR's instance norm needs more than one voxel at its deepest level.
        assert model(torch.zeros(1, 2, 64, 64, 32)).shape == (1, 3, 64, 64, 32)


def test_baselines_refuse_hybrid_only_options_and_unknown_names() -> None:
    with pytest.raises(ValueError, match="deep_supervision"):
        build_medical_model(3, 1, 2, arch="unet", deep_supervision=True)
    with pytest.raises(ValueError, match="arch must be one of"):
        build_medical_model(3, 1, 2, arch="resnet")


def test_config_default_is_ours_and_lists_every_arch() -> None:
    assert MedicalModelConfig().arch == "hybrid"
    assert set(get_args(get_type_hints(MedicalModelConfig)["arch"])) == set(ARCHS)
