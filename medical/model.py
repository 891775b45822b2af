"""``HybridUNet``: U-shaped 2D/3D segmentation network on the shared hybrid backbone.

Encoder: :class:`shared.HybridBackbone` (features at reductions 2, 4, 8, 16, 32). Decoder, one
level per encoder level: a transposed conv (kernel = stride = that encoder stage's stride, so
per-axis strides work), concatenation with the skip, and a MONAI ``UnetResBlock`` with instance
norm (see :data:`DECODER_NORM`). The last skip is a one-conv path on the input itself, so the
logits come out at the input resolution. Heads are MONAI ``UnetOutBlock`` 1x1 convs. Inputs
must be divisible by the total reduction per axis (32 by default).

Presets (:data:`MEDICAL_PRESETS`), all ``CCHH``: attention only at reductions 16 and 32 (at a
128^3 patch 8^3 = 512 and 4^3 = 64 tokens). Parameters: 3D, 1 input channel, 2 classes, no deep
supervision. Memory in GiB for one training step at batch 2 in bf16 from
:func:`estimate_training_memory` ("act": saved activations; "total": activations, backward
buffers and 18 B/param of fp32 weights, gradients, AdamW moments and autocast weight copies).
The tests rebuild this table and fail if it drifts.

| preset | stem / stage widths | depths | params | act 96^3 | total 96^3 | act 128^3 | total 128^3 |
|---|---|---|---|---|---|---|---|
| med_cpu | 16 / 24 48 96 192 | 1 1 1 1 | 3.44 M | 0.34 | 0.50 | 0.79 | 1.10 |
| med_12gb | 80 / 128 192 288 384 | 2 2 2 2 | 44.17 M | 1.74 | 3.01 | 4.02 | 6.01 |
| med_24gb | 128 / 160 256 384 480 | 2 2 3 2 | 83.81 M | 2.77 | 5.02 | 6.38 | 9.79 |

How the memory was estimated (no GPU was available): the estimator runs the forward pass on
PyTorch's ``meta`` device (shapes only) and sums the storages autograd saves for backward. At
32^3 it matched real CPU autocast-bf16 saved tensors (med_12gb: 146.3 vs 146.5 MiB). These
checks and the CPU speeds below were measured with the core-v1 block (batch-norm encoder, about
1% fewer parameters); the table above is rebuilt by the tests from today's models. Against
the measured CPU peak (RSS growth over three fp32 AdamW steps, estimator in fp32 at 12 B/param):
med_12gb 64^3 batch 2: 1.87 GiB measured vs 1.95 estimated; 96^3 batch 1: 2.87 vs 2.83;
med_24gb 64^3 batch 2: 2.94 vs 3.28. (med_cpu is under-estimated, 0.53 vs 0.31 GiB: fixed
overheads dominate a small model.) Not included: CUDA context (~0.5 GiB), cuDNN workspaces and
caching-allocator fragmentation, for which the totals leave half of the card (12 and 24 GiB).
Activation memory is dominated by the full- and half-resolution levels (decoder widths
``stem / 2`` and ``stem``), not by the parameter count.

CPU speed (2 cores, fp32, medians of 5 after one warm-up, three runs on a shared machine):
``med_cpu`` at 64^3, forward + backward: 0.7-1.1 s at batch 1, 1.0-1.35 s at batch 2 (0.75-1.0 s
with ``torch.channels_last_3d`` model and input); eval forward 0.2-0.3 s. The medical task now
trains and infers channels-last (:class:`medical.task.SegmentationTask`): one thread, batch 2 of
64x64x32, a step took 1.15 s channels-first and 0.55 s channels-last on an idle core
(``docs/benchmarks/medical_train_speed.md`` measures it against MONAI UNet in one process).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.blocks.dynunet_block import UnetOutBlock, UnetResBlock, get_conv_layer
from torch import nn

from shared import PRESETS, BackboneConfig, HybridBackbone, SpatialSelfAttention, make_stages
from shared.config import pure_cnn_config as shared_pure_cnn_config
from shared.layers import count_parameters
from shared.matching import match_width_scale

__all__ = [
    "ABLATION_PRESETS",
    "ARCHS",
    "DECODER_NORM",
    "ENCODER_NORM",
    "MEDICAL_PRESETS",
    "HybridUNet",
    "build_medical_model",
    "estimate_training_memory",
    "matched_pure_cnn",
    "pure_cnn_config",
    "resolve_config",
]

_ACT = ("leakyrelu", {"inplace": True, "negative_slope": 0.01})  # MONAI UnetResBlock's default

DECODER_NORM = ("instance", {"affine": True})
"""Decoder norm: instance norm with affine parameters, MONAI ``DynUNet``/nnU-Net's default.

Chosen over batch norm because 3D segmentation trains at batch 1-2: per-sample statistics do not
depend on the batch, and train/eval behave the same (no running statistics), which matters for
sliding-window inference over patches that look unlike the training crops.
"""

ENCODER_NORM = ("group", {"num_groups": 8})
"""Encoder norm of the medical presets (``BackboneConfig.norm``): group norm, as MONAI SegResNet.

Batch-independent like the decoder's instance norm, and unlike instance norm it still works at
the deepest level of a small patch (32^3 -> 1 voxel at reduction 32), where instance norm has no
spatial extent to normalise over. The shared core's default stays batch norm (classification).
Every encoder width is a multiple of 8 for it (the pure-CNN control rounds its widths so too).
"""


# Attention only at reductions 16 and 32 ("CCHH"): at a 128^3 patch that is 8^3 = 512 and
# 4^3 = 64 tokens; reduction 8 would already be 16^3 = 4096 tokens per attention call.
MEDICAL_PRESETS: dict[str, BackboneConfig] = {
    "med_cpu": BackboneConfig(
        spatial_dims=3,
        in_channels=1,
        norm=ENCODER_NORM,
        stem_channels=16,
        stages=make_stages((1, 1, 1, 1), (24, 48, 96, 192), "CCHH", (4, 4, 4, 4)),
    ),
    "med_12gb": BackboneConfig(
        spatial_dims=3,
        in_channels=1,
        norm=ENCODER_NORM,
        stem_channels=80,
        stages=make_stages((2, 2, 2, 2), (128, 192, 288, 384), "CCHH", (4, 4, 4, 8)),
    ),
    "med_24gb": BackboneConfig(
        spatial_dims=3,
        in_channels=1,
        norm=ENCODER_NORM,
        stem_channels=128,
        stages=make_stages((2, 2, 3, 2), (160, 256, 384, 480), "CCHH", (4, 4, 8, 8)),
    ),
}
"""Medical backbone presets (3D, one input channel; both are overridden by the model's arguments).

Parameter counts and memory estimates are in the module docstring."""


def _core_v1(config: BackboneConfig) -> BackboneConfig:
    """``config`` with the core-v1 hybrid block and encoder (commit 2c3624f, the block that
    learned the demo fastest): batch norm everywhere in the encoder, attention on a third of the
    conv width, the conv path a whole residual block (``ReLU(body(x) + shortcut(x))``), the
    block output ``w * conv + (1 - w) * aligned + s * shortcut(x)`` without a ReLU after the sum,
    and ``s`` linear over all four stages (0.7, 0.567, 0.433, 0.3: the hybrid stages get the
    last two) instead of over the hybrid blocks only."""
    count = len(config.stages)
    first, last = 0.7, 0.3
    return config.replace(
        norm="batch",
        attention_ratio=1 / 3,
        conv_shortcut=True,
        post_activation=False,
        residual_strength_per_stage=tuple(
            first + (last - first) * i / (count - 1) for i in range(count)
        ),
    )


_CORE_V2 = BackboneConfig(
    spatial_dims=3,
    in_channels=1,
    norm=ENCODER_NORM,
    stem_channels=16,
    stages=make_stages((1, 1, 1, 1), (24, 48, 96, 192), "CCHH", (4, 4, 4, 4)),
)
"""``med_cpu`` as core v2 shipped it (the brief's block, group-norm encoder, default init)."""

ABLATION_PRESETS: dict[str, BackboneConfig] = {
    "med_cpu-core_v2": _CORE_V2,
    "med_cpu-core_v1": _core_v1(_CORE_V2),
    "med_cpu-residual_1.0": _CORE_V2.replace(residual_strength=(1.0, 1.0)),
    "med_cpu-batch_norm": _CORE_V2.replace(norm="batch"),
    "med_cpu-instance_norm": _CORE_V2.replace(norm=("instance", {"affine": True})),
    "med_cpu-no_relu_after_sum": _CORE_V2.replace(post_activation=False),
    "med_cpu-gate_bias_2": _CORE_V2.replace(gate_bias_init=2.0),
    "med_cpu-zero_init_last": _CORE_V2.replace(zero_init_last=True),
    "med_cpu-attention_third": _CORE_V2.replace(attention_ratio=1 / 3),
    "med_cpu-conv_shortcut": _CORE_V2.replace(conv_shortcut=True, post_activation=False),
    # The default med_cpu with attention from reduction 8 on ("CHHH"): at a 64x64x32 patch
    # 8x8x4 = 256 tokens, where a 3x3x3 conv path still sees a small part of the map (at
    # reductions 16 and 32 the maps are 4x4x2 and 2x2x1: the conv path already sees all of it).
    "med_cpu-attention_from_r8": MEDICAL_PRESETS["med_cpu"].replace(
        stages=make_stages((1, 1, 1, 1), (24, 48, 96, 192), "CHHH", (4, 4, 4, 4))
    ),
    # The same with attention initialised as PyTorch's nn.MultiheadAttention (Xavier): trained
    # 300 steps from timm's std-0.02 init, the reduction-16 layer of med_cpu stayed uniform
    # (entropy / ln N = 0.999) and its branch about 3% of its unit's output.
    "med_cpu-attention_from_r8_xavier": MEDICAL_PRESETS["med_cpu"].replace(
        stages=make_stages((1, 1, 1, 1), (24, 48, 96, 192), "CHHH", (4, 4, 4, 4)),
        attention_init="xavier",
    ),
}
"""The core-v2 ``med_cpu`` and variants of it with one difference each (``core_v1``: all of the
core-v1 block's differences), for ``hv-med bench --ablation``, which isolates why the core-v2
block learned the demo more slowly than the core-v1 block. Usable as ``--model.preset``."""


def resolve_config(config: str | BackboneConfig) -> BackboneConfig:
    """A :data:`MEDICAL_PRESETS`, :data:`ABLATION_PRESETS` or :data:`shared.PRESETS` name, or a
    config, as a config."""
    if isinstance(config, BackboneConfig):
        return config
    if isinstance(config, str):
        if config in MEDICAL_PRESETS:
            return MEDICAL_PRESETS[config]
        if config in ABLATION_PRESETS:
            return ABLATION_PRESETS[config]
        if config in PRESETS:
            return PRESETS[config]
        raise ValueError(
            f"config: unknown preset {config!r}; available: "
            f"{sorted(MEDICAL_PRESETS)} (medical) and {sorted(PRESETS)} (shared)"
        )
    raise ValueError(f"config must be a preset name or a BackboneConfig, got {config!r}")


def pure_cnn_config(config: str | BackboneConfig, width_scale: float = 1.0) -> BackboneConfig:
    """:func:`shared.config.pure_cnn_config` of a medical or shared preset name, or a config."""
    return shared_pure_cnn_config(resolve_config(config), width_scale)


class _UpLevel(nn.Module):
    """One decoder level: transposed-conv upsampling, concatenation with the skip, residual block.

    Composed from MONAI pieces (``get_conv_layer(is_transposed=True)`` + ``UnetResBlock``)
    rather than ``UnetUpBlock`` because that block requires the skip to have the decoder's width
    and uses a non-residual ``UnetBasicBlock``; our skips have the encoder's widths.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        up_factor: tuple[int, ...],
        norm_name: str | tuple,
    ) -> None:
        super().__init__()
        # kernel == stride: each input voxel maps to a disjoint output block (no checkerboard).
        self.up = get_conv_layer(
            spatial_dims,
            in_channels,
            out_channels,
            kernel_size=up_factor,
            stride=up_factor,
            conv_only=True,
            is_transposed=True,
        )
        self.block = UnetResBlock(
            spatial_dims, out_channels + skip_channels, out_channels, 3, 1, norm_name
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` to the skip's resolution and fuse them."""
        return self.block(torch.cat([self.up(x), skip], dim=1))


class HybridUNet(nn.Module):
    """U-shaped segmentation network: hybrid encoder, residual conv decoder, full-res skip.

    Args:
        spatial_dims: 2 or 3 (first, as in MONAI).
        in_channels: input channels (modalities).
        out_channels: output channels (classes, background included).
        config: a :data:`MEDICAL_PRESETS` name, a :data:`shared.PRESETS` name or a
            :class:`shared.BackboneConfig`; its ``spatial_dims``/``in_channels`` are overridden.
        deep_supervision: in training mode also return auxiliary logits (see ``forward``).
        decoder_channels: widths of the decoder levels, deepest first, one per encoder level
            (5 by default: reductions 16, 8, 4, 2 and 1). The last is also the width of the
            full-resolution input block. Default: each level takes the width of its encoder skip
            and the full-resolution level half the stem width (at least 8).
        pure_cnn: build the attention-free control: every stage kind ``C``, the formerly
            attention stages widened so the parameter count matches the hybrid's (within
            ``match_tolerance``); the decoder is the hybrid's. See :func:`matched_pure_cnn`.
        deep_supr_num: number of auxiliary outputs (decoder levels at reductions 2, 4, ...).
        norm_name: decoder norm, a MONAI norm name or ``(name, kwargs)``; see
            :data:`DECODER_NORM` for why instance norm is the default.
        match_tolerance: relative parameter mismatch allowed for ``pure_cnn``.
        cnn_width_scale: for ``pure_cnn``, the width scale of a previous search (a run's plan
            stores it): the network is built at that scale without searching again. The scale
            used is :attr:`cnn_width_scale` after construction.

    Inputs must be divisible by :attr:`total_reduction` per axis (32 by default). The encoder's
    batch norm needs more than one value per channel in training: at batch 1 use patches of at
    least two deepest-level voxels (e.g. 64 along one axis).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        config: str | BackboneConfig = "med_cpu",
        deep_supervision: bool = False,
        decoder_channels: Sequence[int] | None = None,
        pure_cnn: bool = False,
        deep_supr_num: int = 2,
        norm_name: str | tuple = DECODER_NORM,
        match_tolerance: float = 0.05,
        cnn_width_scale: float | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels}")
        cfg = resolve_config(config)
        num_levels = len(cfg.stages) + 1
        if not 1 <= deep_supr_num < num_levels:
            raise ValueError(
                f"deep_supr_num must be in [1, {num_levels - 1}] for {num_levels} decoder "
                f"levels, got {deep_supr_num}"
            )
        self.cnn_width_scale: float | None = None
        if pure_cnn:
            cfg, decoder_channels, self.cnn_width_scale = _match_pure_cnn(
                spatial_dims,
                in_channels,
                out_channels,
                cfg,
                deep_supervision,
                decoder_channels,
                deep_supr_num,
                norm_name,
                match_tolerance,
                cnn_width_scale,
            )
        self.backbone = HybridBackbone(spatial_dims, in_channels, cfg)
        self.config = self.backbone.config
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.pure_cnn = pure_cnn
        self.deep_supervision = deep_supervision
        self.deep_supr_num = deep_supr_num
        encoder_channels = list(self.backbone.out_channels)
        self.decoder_channels = self._decoder_widths(decoder_channels, encoder_channels)
        reductions = [(1,) * spatial_dims] + [
            tuple(info["reduction_per_axis"]) for info in self.backbone.feature_info
        ]
        self.total_reduction: tuple[int, ...] = reductions[-1]

        full_res = self.decoder_channels[-1]
        # The full-resolution skip: one conv + norm + act on the raw input, so the last decoder
        # level sees input-resolution detail that the stride-2 stem has already discarded. One
        # conv, not a residual block: full resolution dominates the memory and time.
        self.input_block = Convolution(
            spatial_dims, in_channels, full_res, kernel_size=3, act=_ACT, norm=norm_name
        )
        skip_channels = [full_res, *encoder_channels[:-1]]
        levels = []
        width = encoder_channels[-1]
        for i, out_ch in enumerate(self.decoder_channels):
            level = num_levels - 1 - i  # index into reductions of the skip this level joins
            factor = tuple(
                a // b for a, b in zip(reductions[level + 1], reductions[level], strict=True)
            )
            levels.append(
                _UpLevel(spatial_dims, width, skip_channels[level], out_ch, factor, norm_name)
            )
            width = out_ch
        self.decoder = nn.ModuleList(levels)
        self.head = UnetOutBlock(spatial_dims, full_res, out_channels)
        # Auxiliary heads on the next-coarser decoder levels (reductions 2, 4, ...).
        self.aux_heads = nn.ModuleList(
            UnetOutBlock(spatial_dims, self.decoder_channels[-2 - k], out_channels)
            for k in range(deep_supr_num if deep_supervision else 0)
        )
        for module in (self.input_block, self.decoder, self.head, self.aux_heads):
            module.apply(_init_decoder_weights)

    @staticmethod
    def _decoder_widths(
        decoder_channels: Sequence[int] | None, encoder_channels: list[int]
    ) -> tuple[int, ...]:
        if decoder_channels is None:
            # Classic U-Net: each decoder level as wide as the skip it joins.
            full_res = max(8, encoder_channels[0] // 2)
            return (*encoder_channels[-2::-1], full_res)
        widths = tuple(decoder_channels)
        if len(widths) != len(encoder_channels) or any(
            not isinstance(w, int) or w < 1 for w in widths
        ):
            raise ValueError(
                f"decoder_channels must be {len(encoder_channels)} positive ints (deepest "
                f"first, one per encoder level), got {decoder_channels!r}"
            )
        return widths

    def attention_layers(self) -> dict[str, SpatialSelfAttention]:
        """Every self-attention layer of the encoder, by module name."""
        return self.backbone.attention_layers()

    def valid_sizes(self, size: Sequence[int]) -> list[tuple[int, int]]:
        """Per axis, the nearest valid sizes (multiples of the reduction) below and above."""
        out = []
        for s, r in zip(size, self.total_reduction, strict=True):
            below = max(r, (s // r) * r)
            out.append((below, math.ceil(s / r) * r))
        return out

    def check_spatial_size(self, size: Sequence[int]) -> None:
        """Raise ``ValueError`` unless every axis of ``size`` is divisible by its reduction."""
        size = tuple(int(s) for s in size)
        if all(s > 0 and s % r == 0 for s, r in zip(size, self.total_reduction, strict=True)):
            return
        hints = ", ".join(
            f"axis {axis}: {s} -> {lo} or {hi}" if lo != hi else f"axis {axis}: {s} -> {lo}"
            for axis, (s, (lo, hi)) in enumerate(zip(size, self.valid_sizes(size), strict=True))
        )
        raise ValueError(
            f"spatial size {size} is not divisible by the total reduction "
            f"{self.total_reduction}; valid sizes are positive multiples of "
            f"{self.total_reduction} per axis (nearest: {hints}). Pad the input (e.g. MONAI "
            f"DivisiblePad(k={list(self.total_reduction)})) or use sliding-window inference "
            f"with such an roi_size."
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Segmentation logits ``(B, out_channels, *spatial)`` at the input resolution.

        With ``deep_supervision`` and in training mode, returns a list instead: the full
        resolution logits first, then ``deep_supr_num`` auxiliary logits at their own decoder
        resolution (reductions 2, 4, ...), highest resolution first. MONAI's
        ``DeepSupervisionLoss`` takes this list directly (it resizes the target to each output
        with nearest-exact interpolation; weight 1, 0.5, 0.25, ... in its default ``exp`` mode).
        In eval mode the full resolution logits alone are returned, so sliding-window
        inference works unchanged.
        """
        self.backbone.check_input(x)
        self.check_spatial_size(x.shape[2:])
        features = self.backbone(x)
        skips = [self.input_block(x), *features[:-1]]
        y = features[-1]
        outputs = []
        for level, skip in zip(self.decoder, reversed(skips), strict=True):
            y = level(y, skip)
            outputs.append(y)
        logits = self.head(outputs[-1])
        if not (self.deep_supervision and self.training):
            return logits
        return [logits] + [head(outputs[-2 - k]) for k, head in enumerate(self.aux_heads)]


def _init_decoder_weights(module: nn.Module) -> None:
    # MONAI DynUNet's initialisation for its (leaky-ReLU) conv blocks.
    if isinstance(module, nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.ConvTranspose3d):
        nn.init.kaiming_normal_(module.weight, a=0.01)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _match_pure_cnn(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    config: BackboneConfig,
    deep_supervision: bool,
    decoder_channels: Sequence[int] | None,
    deep_supr_num: int,
    norm_name: str | tuple,
    tolerance: float,
    width_scale: float | None,
) -> tuple[BackboneConfig, tuple[int, ...], float]:
    """Pure-conv config, decoder widths and width scale whose ``HybridUNet`` matches the
    hybrid's size; a given ``width_scale`` (a run's plan) is used as is, without a search."""
    # The decoder stays the hybrid's (also when it was derived from the encoder widths).
    encoder = [config.stem_channels, *(stage.channels for stage in config.stages)]
    widths = HybridUNet._decoder_widths(decoder_channels, encoder)
    if width_scale is not None:
        return pure_cnn_config(config, width_scale), widths, width_scale

    def build(cfg: BackboneConfig) -> HybridUNet:
        return HybridUNet(
            spatial_dims,
            in_channels,
            out_channels,
            cfg,
            deep_supervision,
            widths,
            deep_supr_num=deep_supr_num,
            norm_name=norm_name,
        )

    target = count_parameters(build(config))
    match = match_width_scale(lambda scale: build(pure_cnn_config(config, scale)), target,
                              tolerance)  # fmt: skip
    if match.error > tolerance:
        raise ValueError(
            f"match_tolerance: could not match the hybrid's {target} parameters within "
            f"{tolerance:.1%} (best {match.error:.1%}); pass a larger match_tolerance"
        )
    return pure_cnn_config(config, match.scale), widths, match.scale


def matched_pure_cnn(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    config: str | BackboneConfig = "med_cpu",
    **kwargs: object,
) -> HybridUNet:
    """The attention-free ``HybridUNet`` with the hybrid's parameter count (``pure_cnn=True``)."""
    return HybridUNet(spatial_dims, in_channels, out_channels, config, pure_cnn=True, **kwargs)


ARCHS = ("hybrid", "cnn", "unet", "segresnet", "swinunetr")
"""Networks ``build_medical_model`` (and ``--model.arch``) can build: ours (``hybrid``), our
attention-free control at matched parameters (``cnn``), and the MONAI baselines a user would
compare against, at the sizes the benchmark uses (:func:`monai_baseline`)."""


def monai_baseline(arch: str, spatial_dims: int, in_channels: int, num_classes: int) -> nn.Module:
    """A MONAI baseline network: ``unet``, ``segresnet`` or ``swinunetr`` (feature size 24).

    UNet: 5 levels, widths 16-256, 2 residual units (MONAI's tutorial network); SegResNet: 16
    initial filters (MONAI's default); SwinUNETR: feature size 24, the smaller of the paper's.
    """
    from monai.networks.nets import SegResNet, SwinUNETR, UNet

    if arch == "unet":
        channels, strides = (16, 32, 64, 128, 256), (2, 2, 2, 2)
        return UNet(spatial_dims, in_channels, num_classes, channels, strides, num_res_units=2)
    if arch == "segresnet":
        return SegResNet(
            spatial_dims, init_filters=16, in_channels=in_channels, out_channels=num_classes
        )
    if arch == "swinunetr":
        return SwinUNETR(
            in_channels=in_channels,
            out_channels=num_classes,
            feature_size=24,
            spatial_dims=spatial_dims,
        )
    raise ValueError(f"arch: {arch!r} is not a MONAI baseline; choose unet, segresnet, swinunetr")


def build_medical_model(
    spatial_dims: int = 3,
    in_channels: int = 1,
    num_classes: int = 2,
    preset: str | BackboneConfig = "med_cpu",
    deep_supervision: bool = False,
    drop_path_rate: float | None = None,
    arch: str = "hybrid",
    **kwargs: object,
) -> nn.Module:
    """The network named by ``arch`` (:data:`ARCHS`); ``num_classes`` counts the background.

    ``hybrid`` and ``cnn`` (``pure_cnn=True``) are :class:`HybridUNet` from ``preset``;
    ``drop_path_rate`` (stochastic depth of the encoder's deepest block) overrides the preset's.
    The MONAI baselines (:func:`monai_baseline`) take neither a preset nor deep supervision.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    if arch not in ("hybrid", "cnn"):
        if deep_supervision or kwargs.get("pure_cnn") or drop_path_rate:
            raise ValueError(
                f"arch {arch!r}: deep_supervision, pure_cnn and drop_path_rate apply to the "
                "hybrid and cnn networks only"
            )
        return monai_baseline(arch, spatial_dims, in_channels, num_classes)
    if arch == "cnn":
        kwargs["pure_cnn"] = True
    config = resolve_config(preset)
    if drop_path_rate is not None:
        config = config.replace(drop_path_rate=drop_path_rate)
    return HybridUNet(
        spatial_dims, in_channels, num_classes, config, deep_supervision=deep_supervision, **kwargs
    )


def estimate_training_memory(
    model: nn.Module,
    input_shape: Sequence[int],
    dtype: torch.dtype = torch.bfloat16,
    state_bytes_per_param: int = 18,
) -> dict[str, float]:
    """Estimate the memory of one training step, in GiB, without running it.

    A copy of ``model`` on PyTorch's ``meta`` device (shapes only, no data, no compute) in
    ``dtype`` runs a forward pass under ``saved_tensors_hooks``; the distinct storages autograd
    keeps for backward are the activation memory. ``state_bytes_per_param`` covers fp32 weights,
    gradients and two AdamW moments (16 B) plus autocast's low-precision weight copies (2 B).

    Returns ``activations`` (saved for backward), ``largest_activation`` (the biggest single
    saved tensor; backward holds a few such gradient buffers at once), ``states`` and
    ``total = activations + 2 * largest_activation + states``. Not included: the CUDA context
    (~0.5 GiB), cuDNN workspaces and allocator fragmentation.
    """
    meta = copy.deepcopy(model).to(device="meta", dtype=dtype).train()
    sizes: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        # _cdata identifies the storage (meta tensors have no data pointer to compare).
        sizes[storage._cdata] = max(sizes.get(storage._cdata, 0), storage.nbytes())
        return tensor

    x = torch.empty(*input_shape, device="meta", dtype=dtype)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        meta(x)
    gib = 2.0**30
    activations = sum(sizes.values()) / gib
    largest = max(sizes.values(), default=0) / gib
    states = count_parameters(model) * state_bytes_per_param / gib
    return {
        "activations": activations,
        "largest_activation": largest,
        "states": states,
        "total": activations + 2 * largest + states,
    }
