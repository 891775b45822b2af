"""Registers the presets in timm: ``timm.create_model("hybrid_small", in_chans=13)`` works.

Importing :mod:`shared` runs this registration. No pretrained weights exist and every model starts
from random initialisation: ``pretrained=True`` raises a ``ValueError``.
"""

from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .classifier import HybridClassifier

__all__ = ["create_hybrid_classifier"]


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.95,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "backbone.stem.0",
        "classifier": "head",
        "license": "apache-2.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {"hybrid_tiny": _cfg(), "hybrid_small": _cfg(), "hybrid_base": _cfg()}
)


def create_hybrid_classifier(variant: str, pretrained: bool = False, **kwargs: Any):
    """Build a registered preset through timm's builder (features_only etc. supported)."""
    if pretrained:
        raise ValueError(
            f"{variant}: no pretrained weights are published for hybridvision presets; "
            "create the model with pretrained=False and load your own checkpoint"
        )
    return build_model_with_cfg(
        HybridClassifier,
        variant,
        pretrained=False,
        config=variant,
        feature_cfg={"feature_cls": "getter", "out_indices": (0, 1, 2, 3, 4)},
        **kwargs,
    )


@register_model
def hybrid_tiny(pretrained: bool = False, **kwargs: Any) -> HybridClassifier:
    """hybrid_tiny: CCHH, widths 32-256 (about 2.1 M parameters with a 1000-class head)."""
    return create_hybrid_classifier("hybrid_tiny", pretrained, **kwargs)


@register_model
def hybrid_small(pretrained: bool = False, **kwargs: Any) -> HybridClassifier:
    """hybrid_small: CCHH, widths 64-448, ResNet-18-like cost."""
    return create_hybrid_classifier("hybrid_small", pretrained, **kwargs)


@register_model
def hybrid_base(pretrained: bool = False, **kwargs: Any) -> HybridClassifier:
    """hybrid_base: CCHH, widths 96-768, depths 2-2-4-2."""
    return create_hybrid_classifier("hybrid_base", pretrained, **kwargs)
