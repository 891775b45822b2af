"""Declarative configuration of the hybrid backbone and its named presets.

A stage is data (depth, width, block kind, stride, heads), as in timm's ``MaxxVitCfg``; the
topology decides how a stage's kind turns into blocks (see :mod:`shared.backbone`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .attention import check_heads
from .blocks import attention_width
from .layers import StrideLike, as_stride, check_spatial_dims

__all__ = [
    "BLOCK_KINDS",
    "TOPOLOGIES",
    "StageConfig",
    "BackboneConfig",
    "PRESETS",
    "preset_config",
]

BLOCK_KINDS = ("C", "H", "T")
"""``C`` residual conv block, ``H`` hybrid block (conv + attention + gate), ``T`` transformer."""

TOPOLOGIES = ("serial", "parallel", "interleaved")
"""``serial``: blocks run in the order the stage kinds give (CNN stages then attention stages).
``parallel``: in each non-conv stage a conv branch and a transformer branch see the same input and
a gate fuses them. ``interleaved`` (deep fusion): non-conv stages alternate conv and attention
units."""


@dataclass
class StageConfig:
    """One backbone stage: ``depth`` blocks of ``kind`` at ``channels`` width.

    ``stride`` may be per axis, e.g. ``(1, 2, 2)`` keeps the time axis of a video volume.
    """

    depth: int
    channels: int
    kind: str = "C"
    stride: StrideLike = 2
    num_heads: int = 8


@dataclass
class BackboneConfig:
    """Everything that defines a :class:`shared.backbone.HybridBackbone`.

    ``residual_strength`` is the (shallowest, deepest) strength of the hybrid blocks' residual,
    interpolated linearly over the stages (design brief: 0.7 shallow to 0.3 deep).
    """

    spatial_dims: int = 2
    in_channels: int = 3
    stem_channels: int = 32
    stem_stride: StrideLike = 2
    stages: tuple[StageConfig, ...] = field(
        default_factory=lambda: (
            StageConfig(2, 64, "C"),
            StageConfig(2, 128, "C"),
            StageConfig(2, 256, "H"),
            StageConfig(2, 448, "H"),
        )
    )
    topology: str = "serial"
    attention_ratio: float = 1 / 3
    residual_strength: tuple[float, float] = (0.7, 0.3)
    mlp_ratio: float = 2.0
    drop_path_rate: float = 0.0
    attn_drop: float = 0.0
    proj_drop: float = 0.0
    attention_fp32: bool = False

    def __post_init__(self) -> None:
        check_spatial_dims(self.spatial_dims)
        self.stages = tuple(
            s if isinstance(s, StageConfig) else StageConfig(**s) for s in self.stages
        )
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.stem_channels < 2:
            raise ValueError(f"stem_channels must be >= 2, got {self.stem_channels}")
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, got {self.topology!r}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if len(self.residual_strength) != 2 or min(self.residual_strength) < 0:
            raise ValueError(
                f"residual_strength must be two non-negative floats, got {self.residual_strength}"
            )
        as_stride(self.stem_stride, self.spatial_dims)
        if not self.stages:
            raise ValueError("a backbone needs at least one stage")
        for index, stage in enumerate(self.stages):
            self._check_stage(index, stage)

    def _check_stage(self, index: int, stage: StageConfig) -> None:
        where = f"stage {index}"
        if stage.kind not in BLOCK_KINDS:
            raise ValueError(
                f"{where}: unknown block kind {stage.kind!r}; expected one of {BLOCK_KINDS}"
            )
        if stage.depth < 1 or stage.channels < 1:
            raise ValueError(f"{where}: depth and channels must be >= 1, got {stage}")
        as_stride(stage.stride, self.spatial_dims)
        if stage.kind == "C":
            return
        try:
            attention_width(stage.channels, self.attention_ratio, stage.num_heads)
            if stage.kind == "T" and self.topology != "parallel":
                check_heads(stage.channels, stage.num_heads)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None

    def residual_strengths(self) -> list[float]:
        """Per-stage residual strength, linear from shallow to deep."""
        first, last = self.residual_strength
        count = len(self.stages)
        if count == 1:
            return [first]
        return [first + (last - first) * i / (count - 1) for i in range(count)]

    def replace(self, **changes: object) -> BackboneConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _stages(
    depths: tuple[int, ...],
    channels: tuple[int, ...],
    kinds: str,
    heads: tuple[int, ...] = (8, 8, 8, 8),
) -> tuple[StageConfig, ...]:
    return tuple(
        StageConfig(depth=d, channels=c, kind=k, num_heads=h)
        for d, c, k, h in zip(depths, channels, kinds, heads, strict=True)
    )


PRESETS: dict[str, BackboneConfig] = {
    # Parameter counts (ImageNet-style 1000-class head, 3 input channels) are listed in README.
    "hybrid_tiny": BackboneConfig(
        stem_channels=24, stages=_stages((1, 1, 2, 1), (32, 64, 128, 256), "CCHH", (4, 4, 4, 8))
    ),
    "hybrid_small": BackboneConfig(
        stem_channels=32, stages=_stages((2, 2, 2, 2), (64, 128, 256, 448), "CCHH")
    ),
    "hybrid_base": BackboneConfig(
        stem_channels=48, stages=_stages((2, 2, 4, 2), (96, 192, 384, 768), "CCHH")
    ),
}


def preset_config(name: str, **overrides: object) -> BackboneConfig:
    """The named preset's config with field overrides (e.g. ``spatial_dims=3``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)
