"""``HybridBackbone``: stem + stages of conv / hybrid / transformer blocks, 2D or 3D.

Returns multiscale features at reductions 2 (stem), 4, 8, 16 and 32 by default. The topology
(see :data:`shared.config.TOPOLOGIES`) maps each stage's block kind onto blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import SpatialSelfAttention
from .blocks import GatedFusion, HybridBlock, ResidualConvBlock, TransformerBlock
from .config import BackboneConfig, StageConfig, preset_config
from .layers import as_stride, conv_layer, norm_layer

__all__ = ["HybridBackbone", "stage_block_kinds"]


def stage_block_kinds(stage: StageConfig, topology: str) -> list[str]:
    """The units a stage runs in sequence: ``C`` conv, ``H`` hybrid, ``P`` parallel hybrid,
    ``A`` gated attention unit (interleaved), ``T`` transformer."""
    if stage.kind != "H" or topology == "serial":
        return [stage.kind] * stage.depth
    if topology == "parallel":
        return ["P"] * stage.depth
    return ["C", "A"] * stage.depth  # interleaved: a conv unit, then an attention unit


class HybridBackbone(nn.Module):
    """Hybrid CNN-Transformer feature extractor for 2D or 3D inputs.

    Args:
        spatial_dims: 2 or 3 (first, as in MONAI).
        in_channels: input channels (any count: 1 for CT, 13 for Sentinel-2, ...).
        config: a preset name (``hybrid_tiny``/``hybrid_small``/``hybrid_base``) or a
            :class:`BackboneConfig`.
        **overrides: fields of :class:`BackboneConfig` to change, e.g. ``topology="parallel"``.

    ``forward`` returns a list of feature maps, one per entry of ``feature_info`` (stem first).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        config: str | BackboneConfig = "hybrid_small",
        **overrides: object,
    ) -> None:
        super().__init__()
        changes = dict(overrides, spatial_dims=spatial_dims, in_channels=in_channels)
        if isinstance(config, str):
            cfg = preset_config(config, **changes)
        elif isinstance(config, BackboneConfig):
            cfg = config.replace(**changes)
        else:
            raise ValueError(f"config must be a preset name or BackboneConfig, got {config!r}")
        self.config = cfg
        self.spatial_dims = cfg.spatial_dims
        self.in_channels = cfg.in_channels
        self.stem = self._make_stem(cfg.in_channels)

        strides = [as_stride(cfg.stem_stride, cfg.spatial_dims)]
        self.feature_info: list[dict] = [self._info(cfg.stem_channels, strides, "stem")]
        total_blocks = sum(s.depth for s in cfg.stages)
        drop_rates = torch.linspace(0, cfg.drop_path_rate, total_blocks).tolist()
        strengths = cfg.residual_strengths()
        stages: list[nn.Module] = []
        width = cfg.stem_channels
        for index, stage in enumerate(cfg.stages):
            rates = drop_rates[: stage.depth]
            drop_rates = drop_rates[stage.depth :]
            stages.append(self._make_stage(stage, width, strengths[index], rates))
            width = stage.channels
            strides.append(as_stride(stage.stride, cfg.spatial_dims))
            self.feature_info.append(self._info(width, strides, f"stages.{index}"))
        self.stages = nn.ModuleList(stages)
        self.out_channels = [info["num_chs"] for info in self.feature_info]
        self._init_weights()

    def _info(self, channels: int, strides: list[tuple[int, ...]], module: str) -> dict:
        per_axis = tuple(int(torch.tensor(axis).prod()) for axis in zip(*strides, strict=True))
        return {
            "num_chs": channels,
            "reduction": per_axis[-1],
            "reduction_per_axis": per_axis,
            "module": module,
        }

    def _make_stem(self, in_channels: int) -> nn.Sequential:
        cfg = self.config
        mid = cfg.stem_channels // 2
        return nn.Sequential(
            conv_layer(cfg.spatial_dims, in_channels, mid, 3, cfg.stem_stride),
            norm_layer(cfg.spatial_dims, mid, cfg.norm),
            nn.ReLU(inplace=True),
            conv_layer(cfg.spatial_dims, mid, cfg.stem_channels, 3),
            norm_layer(cfg.spatial_dims, cfg.stem_channels, cfg.norm),
            nn.ReLU(inplace=True),
        )

    def _make_block(
        self,
        kind: str,
        in_channels: int,
        out_channels: int,
        stride: object,
        stage: StageConfig,
        strength: float,
        drop_path: float,
        shift: bool,
    ) -> nn.Module:
        cfg = self.config
        dims = cfg.spatial_dims
        if kind == "C":
            return ResidualConvBlock(dims, in_channels, out_channels, stride, drop_path, cfg.norm)
        common = dict(
            num_heads=stage.num_heads,
            attn_drop=cfg.attn_drop,
            proj_drop=cfg.proj_drop,
            drop_path=drop_path,
            attention_fp32=cfg.attention_fp32,
            window_size=stage.window_size if stage.attention == "window" else None,
            shift=shift,
            norm=cfg.norm,
        )
        if kind == "T":
            return TransformerBlock(
                dims, in_channels, out_channels, stride, mlp_ratio=cfg.mlp_ratio, **common
            )
        conv_path: nn.Module | str | None = "identity" if kind == "A" else None
        shortcut = None
        if cfg.conv_shortcut and kind != "A":
            # Core v1: the conv path is a whole residual block; its shortcut is reused as the
            # hybrid block's (one module, so both residuals share its weights as v1's did).
            conv_path = ResidualConvBlock(dims, in_channels, out_channels, stride, 0.0, cfg.norm)
            shortcut = conv_path.shortcut
        return HybridBlock(
            dims,
            in_channels,
            out_channels,
            stride,
            attention_ratio=cfg.attention_ratio,
            residual_strength=strength,
            attention_input="input" if kind == "P" else "conv",
            conv_path=conv_path,
            shortcut=shortcut,
            gate_bias_init=cfg.gate_bias_init,
            post_activation=cfg.post_activation,
            **common,
        )

    def _make_stage(
        self, stage: StageConfig, in_channels: int, strengths: list[float], rates: list[float]
    ) -> nn.Sequential:
        kinds = stage_block_kinds(stage, self.config.topology)
        per_unit = len(kinds) // stage.depth  # interleaved: two units per depth
        gated = iter(strengths)
        attention_index = 0
        blocks = []
        for i, kind in enumerate(kinds):
            stride = stage.stride if i == 0 else 1
            strength = next(gated) if kind in "HPA" else 0.0
            # Shifted windows on every second attention unit of the stage, as in Swin.
            shift = stage.shift and kind != "C" and attention_index % 2 == 1
            attention_index += kind != "C"
            blocks.append(
                self._make_block(
                    kind,
                    in_channels,
                    stage.channels,
                    stride,
                    stage,
                    strength,
                    rates[i // per_unit],
                    shift,
                )  # fmt: skip
            )
            in_channels = stage.channels
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # Kaiming init above overwrote the gate's constant bias; the gate weight stays kaiming.
        for module in self.modules():
            if isinstance(module, SpatialSelfAttention) and self.config.attention_init == "xavier":
                for linear in (module.qkv, module.proj):
                    nn.init.xavier_uniform_(linear.weight)
            if isinstance(module, GatedFusion):
                nn.init.constant_(module.gate.bias, module.gate_bias_init)
            elif self.config.zero_init_last and isinstance(
                module, ResidualConvBlock | HybridBlock
            ):
                module.zero_init_last()

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` if ``x`` is not ``(B, in_channels, *spatial)`` for this model."""
        if x.ndim != self.spatial_dims + 2:
            layout = "(B, C, D, H, W)" if self.spatial_dims == 3 else "(B, C, H, W)"
            raise ValueError(
                f"expected a {self.spatial_dims + 2}-D input {layout} for "
                f"spatial_dims={self.spatial_dims}, got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} input channels, got {x.shape[1]} "
                f"(input shape {tuple(x.shape)})"
            )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multiscale features, stem first, one per ``feature_info`` entry."""
        self.check_input(x)
        x = self.stem(x)
        features = [x]
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Deepest feature map only (skips keeping the intermediate list)."""
        self.check_input(x)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def gate_values(self) -> dict[str, torch.Tensor]:
        """Gate tensors ``w`` (conv weight, in (0, 1)) of every gated module, by module name."""
        return {
            name: module.last_gate
            for name, module in self.named_modules()
            if isinstance(module, GatedFusion) and module.last_gate is not None
        }

    def attention_layers(self) -> dict[str, SpatialSelfAttention]:
        """Every self-attention layer, by module name."""
        return {n: m for n, m in self.named_modules() if isinstance(m, SpatialSelfAttention)}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute attention in backward to save memory.

        Only attention sub-layers are checkpointed: recomputing BatchNorm layers would update
        their running statistics twice.
        """
        for layer in self.attention_layers().values():
            layer.grad_checkpointing = enable
