"""The benchmarked models, as data: add a row to :data:`MODEL_SPECS` to add a model.

Our presets (2D as timm models, 3D as volume classifiers), timm's 2D peers, resnet18 (the CNN a
user compares against) and MONAI's 3D segmentation networks. Every builder makes random weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .report import OURS

__all__ = [
    "HEADLINE_BASELINES",
    "HEADLINE_MODEL",
    "HEADLINE_TRAIN_TARGET",
    "MODEL_SPECS",
    "REFERENCE_CNN",
    "THREE_D_CAVEAT",
    "ModelSpec",
]

HEADLINE_MODEL = "hybrid_small"
HEADLINE_BASELINES = ("botnet26t_256", "coatnet_nano_rw_224")
HEADLINE_TRAIN_TARGET = 1.3
"""``HEADLINE_MODEL`` must train at least this many times as fast as each headline baseline,
with no more parameters."""
REFERENCE_CNN = "resnet18"
"""The plain CNN every 2D preset is compared with, at one thread and at all cores."""


@dataclass(frozen=True)
class ModelSpec:
    """One benchmarked model.

    ``build`` takes the input side length, because some models (botnet) bake the image size
    into fixed positional embeddings. ``quick`` marks the models ``--quick`` runs.
    """

    name: str
    dims: int
    family: str
    build: Callable[[int], nn.Module]
    in_chans: int = 3
    quick: bool = False
    note: str = ""


def _timm(name: str, *, img_size: bool = False) -> Callable[[int], nn.Module]:
    """Builder for a timm model with random weights."""

    def build(size: int) -> nn.Module:
        # The hybrid_* names need no ``import shared``: this module lives in the package, so
        # shared/__init__ (which registers them in timm) has always run first.
        import timm

        kwargs: dict[str, Any] = {"img_size": size} if img_size else {}
        return timm.create_model(name, pretrained=False, **kwargs)

    return build


def _ours_3d(preset: str) -> Callable[[int], nn.Module]:
    """Builder for a preset as a 3D, 1-channel, 2-class volume classifier."""

    def build(size: int) -> nn.Module:
        from shared import HybridClassifier

        return HybridClassifier(config=preset, spatial_dims=3, in_chans=1, num_classes=2)

    return build


def _swin_unetr(size: int) -> nn.Module:
    """MONAI SwinUNETR, the usual BTCV-sized configuration at feature size 24."""
    # monai 1.6's SwinUNETR has no ``img_size`` argument: any side divisible by 32 works.
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=1, out_channels=2, feature_size=24)


def _monai_unet(size: int) -> nn.Module:
    """MONAI's residual 3D UNet, five levels of 16-256 channels (input size is free)."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        channels=(16, 32, 64, 128, 256),
        strides=(2, 2, 2, 2),
        num_res_units=2,
    )


_SEG_NOTE = "full segmentation net (encoder + decoder, per-voxel logits)"
_CLS_NOTE = "encoder + pooled 2-class head"

MODEL_SPECS: list[ModelSpec] = [
    ModelSpec("hybrid_tiny", 2, OURS, _timm("hybrid_tiny"), quick=True),
    ModelSpec("hybrid_small", 2, OURS, _timm("hybrid_small"), quick=True),
    ModelSpec("hybrid_base", 2, OURS, _timm("hybrid_base")),
    ModelSpec(REFERENCE_CNN, 2, "timm", _timm(REFERENCE_CNN), quick=True),
    ModelSpec("resnet50", 2, "timm", _timm("resnet50")),
    ModelSpec(
        "botnet26t_256",
        2,
        "timm",
        _timm("botnet26t_256", img_size=True),
        quick=True,
        note="built at the benchmark size (fixed positional embeddings)",
    ),
    ModelSpec("coatnet_nano_rw_224", 2, "timm", _timm("coatnet_nano_rw_224"), quick=True),
    ModelSpec("mobilevitv2_100", 2, "timm", _timm("mobilevitv2_100")),
    ModelSpec(
        "hybrid_tiny", 3, OURS, _ours_3d("hybrid_tiny"), in_chans=1, quick=True, note=_CLS_NOTE
    ),
    ModelSpec("hybrid_small", 3, OURS, _ours_3d("hybrid_small"), in_chans=1, note=_CLS_NOTE),
    ModelSpec("hybrid_base", 3, OURS, _ours_3d("hybrid_base"), in_chans=1, note=_CLS_NOTE),
    ModelSpec("SwinUNETR", 3, "monai", _swin_unetr, in_chans=1, note=_SEG_NOTE),
    ModelSpec("UNet", 3, "monai", _monai_unet, in_chans=1, quick=True, note=_SEG_NOTE),
]

THREE_D_CAVEAT = (
    "3D: our rows are an encoder with a global-average-pooled 2-class head; MONAI SwinUNETR and "
    "UNet are full encoder-decoder segmentation networks with per-voxel outputs, so they do "
    "strictly more work. These rows compare what our backbone costs against what those "
    "networks cost as a whole; they are not a like-for-like segmentation comparison."
)
