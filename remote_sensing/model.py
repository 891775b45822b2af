"""Scene classifiers: the hybrid with a multiscale head, its pure-CNN control, timm baselines.

:class:`MultiscaleClassifier` pools the last three feature maps of a
:class:`shared.HybridBackbone` (reductions 8, 16, 32) and classifies their concatenation, so
texture seen at fine scale (crop rows, roof grids) reaches the head beside the coarse layout.
``multiscale=False`` keeps only the deepest map (the ablation). :func:`build_model` also makes
the attention-free control at matched parameters and timm models adapted to the band count.
Test-time augmentation (:func:`tta_logits`) averages the D4 group at two scales.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from shared import BackboneConfig, HybridBackbone, hybridize_resnet, preset_config
from shared.config import pure_cnn_config as shared_pure_cnn_config
from shared.layers import count_parameters
from shared.matching import match_width_scale

__all__ = [
    "ARCHS",
    "MultiscaleClassifier",
    "build_model",
    "matched_cnn_scale",
    "pure_cnn_config",
    "tta_logits",
    "zoom",
]

ARCHS = ("hybrid", "cnn", "resnet18", "hybrid_resnet18", "coatnet_nano", "botnet26t")
"""``hybrid`` (ours), ``cnn`` (ours without attention, matched parameters), timm baselines,
and ``hybrid_resnet18`` (timm resnet18 with its last stage hybridised, ``hybridize_resnet``)."""

_TIMM = {
    "resnet18": "resnet18",
    "coatnet_nano": "coatnet_nano_rw_224",
    "botnet26t": "botnet26t_256",
}


class MultiscaleClassifier(nn.Module):
    """Hybrid backbone, global average pooling of several stages, one linear classifier."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        config: str | BackboneConfig = "hybrid_tiny",
        multiscale: bool = True,
        drop_rate: float = 0.1,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = HybridBackbone(2, in_channels, config, drop_path_rate=drop_path_rate)
        count = len(self.backbone.feature_info)
        self.taps = list(range(count - 3, count)) if multiscale else [count - 1]
        width = sum(self.backbone.feature_info[i]["num_chs"] for i in self.taps)
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for ``(B, C, H, W)`` chips."""
        features = self.backbone(x)
        pooled = torch.cat([features[i].mean(dim=(2, 3)) for i in self.taps], dim=1)
        return self.head(self.drop(self.norm(pooled)))


def pure_cnn_config(config: str | BackboneConfig, width_scale: float) -> BackboneConfig:
    """:func:`shared.config.pure_cnn_config` of a preset name or a config."""
    cfg = preset_config(config) if isinstance(config, str) else config
    return shared_pure_cnn_config(cfg, width_scale)


def matched_cnn_scale(in_channels: int, num_classes: int, preset: str, **kwargs) -> float:
    """Width scale of the attention-free control whose parameter count matches the hybrid's
    (:func:`shared.matching.match_width_scale`); a run's plan stores it."""
    target = count_parameters(MultiscaleClassifier(in_channels, num_classes, preset, **kwargs))

    def build(scale: float) -> nn.Module:
        return MultiscaleClassifier(
            in_channels, num_classes, pure_cnn_config(preset, scale), **kwargs
        )

    return match_width_scale(build, target).scale


def build_model(
    arch: str,
    in_channels: int,
    num_classes: int,
    chip_size: int,
    preset: str = "hybrid_tiny",
    multiscale: bool = True,
    drop_path_rate: float = 0.0,
    cnn_width_scale: float | None = None,
) -> nn.Module:
    """A classifier by name (see :data:`ARCHS`), randomly initialised: nothing is downloaded.

    ``cnn_width_scale``: the ``cnn`` control's width scale (default: searched now with
    :func:`matched_cnn_scale`).
    """
    if arch == "hybrid":
        return MultiscaleClassifier(in_channels, num_classes, preset, multiscale,
                                    drop_path_rate=drop_path_rate)  # fmt: skip
    if arch == "cnn":
        if cnn_width_scale is None:
            cnn_width_scale = matched_cnn_scale(in_channels, num_classes, preset,
                                                multiscale=multiscale)  # fmt: skip
        return MultiscaleClassifier(in_channels, num_classes,
                                    pure_cnn_config(preset, cnn_width_scale), multiscale,
                                    drop_path_rate=drop_path_rate)  # fmt: skip
    if arch == "hybrid_resnet18":
        model = timm.create_model("resnet18", in_chans=in_channels, num_classes=num_classes)
        return hybridize_resnet(model, num_stages=1, num_heads=4)
    if arch in _TIMM:
        # Attention models with positional tables are built for the chip size.
        extra = {} if arch == "resnet18" else {"img_size": chip_size}
        return timm.create_model(_TIMM[arch], in_chans=in_channels, num_classes=num_classes,
                                 drop_path_rate=drop_path_rate, **extra)  # fmt: skip
    raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")


def zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Change the ground scale of ``(B, C, S, S)`` chips and keep their size.

    ``factor`` > 1 magnifies (centre crop of ``S / factor`` resampled up: finer ground sampling),
    ``factor`` < 1 shrinks (resampled down, borders reflected). The size stays ``S``, so
    fixed-size models (botnet, coatnet) take the result too.
    """
    size = x.shape[-1]
    if factor == 1:
        return x
    if factor > 1:
        crop = max(2, round(size / factor))
        start = (size - crop) // 2
        x = x[..., start : start + crop, start : start + crop]
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    small = max(2, round(size * factor))
    x = F.interpolate(x, size=(small, small), mode="area")
    before = (size - small) // 2
    pad = (before, size - small - before, before, size - small - before)
    # Reflection cannot pad more than the input's size; repeat it in steps.
    while x.shape[-1] < size:
        step = [min(p, x.shape[-1] - 1) for p in pad]
        x = F.pad(x, step, mode="reflect")
        pad = tuple(p - s for p, s in zip(pad, step, strict=True))
    return x


def tta_logits(
    model: nn.Module, x: torch.Tensor, scales: tuple[float, ...] = (1.0, 1.25)
) -> torch.Tensor:
    """Log of the mean softmax over the D4 group (4 rotations x flip) at each ground scale."""
    probs = torch.zeros((), device=x.device)
    count = 0
    for scale in scales:
        scaled = zoom(x, scale)
        for flip in (False, True):
            view = scaled.flip(-1) if flip else scaled
            for turns in range(4):
                probs = probs + model(torch.rot90(view, turns, dims=(-2, -1))).softmax(-1)
                count += 1
    return (probs / count).clamp_min(1e-8).log()
