"""Declarative configuration of the hybrid backbone and its named presets.

A stage is data (depth, width, block kind, stride, heads), as in timm's ``MaxxVitCfg``; the
topology decides how a stage's kind turns into blocks (see :mod:`shared.backbone`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .attention import ATTENTION_KINDS, check_heads, check_window
from .blocks import attention_width
from .layers import NormLike, StrideLike, as_stride, check_norm, check_spatial_dims

__all__ = [
    "ATTENTION_INITS",
    "BLOCK_KINDS",
    "TOPOLOGIES",
    "StageConfig",
    "BackboneConfig",
    "PRESETS",
    "make_stages",
    "preset_config",
    "pure_cnn_config",
]

BLOCK_KINDS = ("C", "H", "T")
"""``C`` residual conv block, ``H`` hybrid block (conv + attention + gate), ``T`` transformer."""

ATTENTION_INITS = ("trunc_normal", "xavier")
"""How attention projections start: timm ViT's truncated normal (std 0.02) or Xavier-uniform."""

TOPOLOGIES = ("serial", "parallel", "interleaved")
"""How an ``H`` stage is wired (``C`` and ``T`` stages are the same in every topology).
``serial``: each block is the brief's hybrid block, attention reading the conv path's output
(with stage kinds ``CCHH``: a CNN backbone, then hybrid stages). ``parallel``: each block runs the
conv path and the attention branch side by side on the block input, gate-fused. ``interleaved``
(deep fusion): every depth holds a residual conv unit followed by a gated attention unit, so conv
and attention alternate even in a depth-1 stage. Every gated unit has the residual strength."""


@dataclass
class StageConfig:
    """One backbone stage: ``depth`` blocks of ``kind`` at ``channels`` width.

    ``stride`` may be per axis, e.g. ``(1, 2, 2)`` keeps the time axis of a video volume.
    ``attention`` is ``global`` or ``window`` (windows of ``window_size`` positions per axis, an
    int or one per axis such as ``(2, 8, 8)``; with ``shift`` every second block of the stage
    shifts its windows by half a window, as Swin does).
    """

    depth: int
    channels: int
    kind: str = "C"
    stride: StrideLike = 2
    num_heads: int = 8
    attention: str = "global"
    window_size: int | tuple[int, ...] = 7
    shift: bool = True


@dataclass
class BackboneConfig:
    """Everything that defines a :class:`shared.backbone.HybridBackbone`.

    ``residual_strength`` is the (shallowest, deepest) strength of the hybrid blocks' residual,
    linear over the hybrid (gated) blocks from the first to the last (design brief: 0.7 shallow
    to 0.3 deep); ``residual_strength_per_stage`` instead gives one value per stage (entries of
    stages without gated blocks are ignored). ``attention_ratio`` is attention channels per conv
    channel (0.5: the brief's conv:attention 2:1). ``norm`` is a MONAI norm for every conv-path
    norm: batch for classification, instance or group for 3D segmentation at batch 1-2.

    Initialisation and block details (not the brief's formula, which they leave unchanged):
    ``zero_init_last`` sets the weight of the last norm of every conv path to zero, so each
    residual block starts as its shortcut (timm/torchvision ResNet ``zero_init_last``; the
    hybrid block then starts as its gated attention plus ``s * shortcut``). ``gate_bias_init``
    is the gates' initial bias (0: ``w = 0.5``). ``post_activation`` is the ReLU after a hybrid
    block's residual sum (ResNet's). ``conv_shortcut`` gives the hybrid block's conv path a
    shortcut of its own, ``conv = ReLU(body(x) + shortcut(x))``, as the core-v1 block had (the
    block then adds ``s * shortcut(x)`` a second time); it exists for the medical ablation.
    ``attention_init`` initialises the attention layers' q/k/v and output projections:
    ``trunc_normal`` (std 0.02, timm's ViT init) or ``xavier`` (Xavier-uniform, PyTorch's
    ``nn.MultiheadAttention`` init: about 7x larger at 48 channels, so attention starts
    selective and its branch visible instead of uniform and about 3% of its unit's output).
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
    attention_ratio: float = 0.5
    residual_strength: tuple[float, float] = (0.7, 0.3)
    residual_strength_per_stage: tuple[float, ...] | None = None
    norm: NormLike = "batch"
    mlp_ratio: float = 2.0
    drop_path_rate: float = 0.0
    attn_drop: float = 0.0
    proj_drop: float = 0.0
    attention_fp32: bool = False
    zero_init_last: bool = False
    gate_bias_init: float = 0.0
    post_activation: bool = True
    conv_shortcut: bool = False
    attention_init: str = "trunc_normal"

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
        self.residual_strength = tuple(float(v) for v in self.residual_strength)
        per_stage = self.residual_strength_per_stage
        if per_stage is not None:
            if len(per_stage) != len(self.stages) or min(per_stage) < 0:
                raise ValueError(
                    f"residual_strength_per_stage must be {len(self.stages)} non-negative floats "
                    f"(one per stage), got {per_stage}"
                )
            self.residual_strength_per_stage = tuple(float(v) for v in per_stage)
        if not math.isfinite(self.gate_bias_init):
            raise ValueError(f"gate_bias_init must be finite, got {self.gate_bias_init}")
        self.gate_bias_init = float(self.gate_bias_init)
        if self.attention_init not in ATTENTION_INITS:
            raise ValueError(
                f"attention_init must be one of {ATTENTION_INITS}, got {self.attention_init!r}"
            )
        self.norm = check_norm(self.norm, self.spatial_dims)
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
        if stage.attention not in ATTENTION_KINDS:
            raise ValueError(
                f"{where}: attention must be one of {ATTENTION_KINDS}, got {stage.attention!r}"
            )
        try:
            if isinstance(stage.window_size, list):
                stage.window_size = tuple(stage.window_size)
            check_window(stage.window_size, self.spatial_dims)
            attention_width(stage.channels, self.attention_ratio, stage.num_heads)
            if stage.kind == "T":
                check_heads(stage.channels, stage.num_heads)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None

    def residual_strengths(self) -> list[list[float]]:
        """Residual strength of every gated block, per stage (empty for stages without gates).

        Only ``H`` stages have gated blocks (one per depth in every topology).
        """
        counts = [stage.depth if stage.kind == "H" else 0 for stage in self.stages]
        if self.residual_strength_per_stage is not None:
            return [
                [value] * count
                for value, count in zip(self.residual_strength_per_stage, counts, strict=True)
            ]
        first, last = self.residual_strength
        total = sum(counts)
        values = [
            first + (last - first) * i / (total - 1) if total > 1 else first for i in range(total)
        ]
        out = []
        for count in counts:
            out.append(values[:count])
            values = values[count:]
        return out

    def replace(self, **changes: object) -> BackboneConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def make_stages(
    depths: Sequence[int],
    channels: Sequence[int],
    kinds: str,
    heads: Sequence[int] = (8, 8, 8, 8),
    **common: object,
) -> tuple[StageConfig, ...]:
    """Stage configs from per-stage columns; ``common`` fields (e.g. ``attention``) go to all."""
    return tuple(
        StageConfig(depth=d, channels=c, kind=k, num_heads=h, **common)
        for d, c, k, h in zip(depths, channels, kinds, heads, strict=True)
    )


PRESETS: dict[str, BackboneConfig] = {
    # Parameter counts (ImageNet-style 1000-class head, 3 input channels) are listed in README.
    "hybrid_tiny": BackboneConfig(
        stem_channels=24, stages=make_stages((1, 1, 2, 1), (32, 64, 128, 256), "CCHH", (4, 4, 4, 8))
    ),
    "hybrid_small": BackboneConfig(
        stem_channels=32, stages=make_stages((2, 2, 2, 2), (64, 128, 256, 448), "CCHH")
    ),
    "hybrid_base": BackboneConfig(
        stem_channels=48, stages=make_stages((2, 2, 4, 2), (96, 192, 384, 768), "CCHH")
    ),
}


def preset_config(name: str, **overrides: object) -> BackboneConfig:
    """The named preset's config with field overrides (e.g. ``spatial_dims=3``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)


def pure_cnn_config(config: BackboneConfig, width_scale: float = 1.0) -> BackboneConfig:
    """``config`` with every stage a residual conv stage (kind ``C``): the attention-free control.

    Stages that had attention (``H``/``T``) are widened by ``width_scale``, rounded to a multiple
    of 8 channels (group norm with 8 groups must divide them); conv stages keep their width, so
    the comparison changes only the stages that lost attention. Verticals search the scale that
    matches their hybrid's parameter count.
    """
    if width_scale <= 0:
        raise ValueError(f"width_scale must be positive, got {width_scale}")
    stages = tuple(
        dataclasses.replace(
            stage,
            kind="C",
            channels=stage.channels
            if stage.kind == "C"
            else max(8, 8 * round(stage.channels * width_scale / 8)),
        )
        for stage in config.stages
    )
    return config.replace(stages=stages)
