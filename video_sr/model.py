"""Spatiotemporal hybrid video super-resolution network, its 2D variant and its 3D-CNN control.

Input ``(N, 3, T, h, w)`` LR frames in [0, 1] (``T`` odd), output the centre frame
``(N, 3, s*h, s*w)``. Layout (REFERENCE.md section 4, "strong designs"):

- shallow: a (1, 3, 3) stem, then residual blocks ``x + conv(3,3,3)(ReLU(conv(1,3,3)(x)))``
  (spatial first, then temporal mixing; EDSR-style, no norm);
- deep: :class:`shared.HybridBlock` with ``spatial_dims=3`` and shifted spatiotemporal
  windows (global attention over T*H*W does not scale), the brief's gated fusion and residual;
- temporal fusion: a (T, 1, 1) conv collapses the frames into the centre frame's features;
- reconstruction (``reconstruct_blocks``): 2D residual blocks on the fused centre frame, depth
  at a fifth of a 3D block's cost for T = 5;
- pixel-shuffle upsampling, plus the bicubic-upsampled centre LR frame as a skip. The last conv
  starts at zero, so the untrained network is exactly the bicubic upscaler.

The attention window's time extent decides what "attention as implicit alignment" can align.
The first presets use ``(2, 8, 8)``: on T = 5 frames the axis pads to 6 and the windows are
[0, 1] [2, 3] [4, pad], shifted [1, 2] [3, 4] [pad, 0], so the centre frame attends to one
neighbour per block and never to the window's outer frames (``tests/video_sr/test_model.py``
shows it). ``vsr_small`` (the shipped weights) uses ``(7, 8, 8)``, which covers T = 5 or 7
whole (a window never exceeds its axis, and a window covering its axis is not shifted), drops
the ReLU after each hybrid block's residual sum (it clips the residual stream, which EDSR-style
SR keeps linear), gives attention the full width (``attention_ratio=1.0``: 16 channels, two
heads of 8, instead of 8 channels in heads of 4) and adds the 2D reconstruction trunk.

No batch norm anywhere: SR networks train on small crops and run on whole frames, where batch
statistics do not carry over and normalisation removes the absolute intensities SR must keep
(EDSR removed it for this reason). The shared blocks build a norm after every conv, so we swap
their batch norms for identities (:func:`_drop_batch_norm`); the core should offer ``norm=None``.

Variants at matched parameter counts: ``dims=2`` (single frame: the same blocks in 2D on the
centre frame) and ``pure_cnn=True`` (the deep hybrid blocks replaced by residual 3D conv
blocks, widened until the parameter count matches).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from shared.blocks import HybridBlock
from shared.layers import count_parameters
from shared.matching import match_width_scale

__all__ = ["PRESETS", "VSRConfig", "VideoSRNet", "build_vsr_model", "matched_cnn"]


@dataclass
class VSRConfig:
    """Architecture of :class:`VideoSRNet`."""

    width: int = 32
    shallow_blocks: int = 2
    """Residual conv blocks ((1,3,3) then (3,3,3) convs) before the hybrid blocks."""
    hybrid_blocks: int = 2
    """Hybrid blocks (conv + windowed attention + gate), every second one shifted."""
    num_heads: int = 2
    window: tuple[int, int, int] = (2, 8, 8)
    """Attention window (frames, height, width) in LR pixels; 2D variants use the last two."""
    residual_strength: float = 1.0
    """Weight of the hybrid blocks' identity shortcut. 1.0, not the brief's 0.7-0.3: SR passes
    the input through nearly unchanged, and a damped identity slowed learning here (overfitting
    one batch for 150 steps: loss 0.97x bicubic's at 0.5, 0.86x at 1.0)."""
    dims: int = 3
    """3: spatiotemporal; 2: the single-frame variant on the centre frame."""
    pure_cnn: bool = False
    """Replace the hybrid blocks with residual conv blocks (the control)."""
    cnn_width: int = 0
    """Width of the pure-CNN control (0: ``width``; :func:`matched_cnn` sets it)."""
    attention_ratio: float = 0.5
    """Attention channels per conv channel in the hybrid blocks (the brief's 2:1 is 0.5)."""
    block_relu: bool = True
    """ReLU after the hybrid block's residual sum (ResNet's, the brief's block)."""
    reconstruct_blocks: int = 0
    """2D residual blocks on the fused centre-frame features, before upsampling."""
    drop_path_rate: float = 0.0
    """Stochastic depth (training only): the residual branch of the i-th of the N body blocks
    is dropped per sample with probability ``drop_path_rate * i / (N - 1)``, as SwinIR does."""


PRESETS: dict[str, VSRConfig] = {
    # Tests and the CPU demo: ~0.1 M parameters.
    "vsr_tiny": VSRConfig(width=16, shallow_blocks=1, hybrid_blocks=2, num_heads=2),
    "vsr_cpu": VSRConfig(width=32, shallow_blocks=2, hybrid_blocks=2, num_heads=2),
    "vsr_gpu": VSRConfig(width=64, shallow_blocks=4, hybrid_blocks=6, num_heads=4),
    # The shipped x4 BI weights (configs/video_sr/x4_bi_release.yaml): tiny's width and 3D depth,
    # attention over every frame of the window, no ReLU on the residual stream, full-width
    # attention and a 2D reconstruction trunk on the fused centre frame.
    "vsr_small": VSRConfig(
        width=16, shallow_blocks=1, hybrid_blocks=2, num_heads=2, window=(7, 8, 8),
        attention_ratio=1.0, block_relu=False, reconstruct_blocks=4,
    ),
}


def _drop_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every batch norm inside ``module`` with an identity (see the module docstring)."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            _drop_batch_norm(child)
    return module


class _OneDNNConv3d(nn.Conv3d):
    """``nn.Conv3d`` that always takes oneDNN's kernel on the CPU in fp32.

    PyTorch picks its kernel by a heuristic written for 2D shapes (batch > 1 or N*C*D*H > 20480
    for oneDNN); one clip at inference, or a small tile, falls to ``slow_conv3d``: measured
    1.4-3x slower for a 7-frame 64x64 window here, equal for larger ones (the machine is
    shared, numbers vary). Same parameters and results (the tests compare); GPU, autocast,
    export and other dtypes take the normal path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)
            and torch.backends.mkldnn.is_available()
            and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling()
        ):
            return torch.mkldnn_convolution(
                x.contiguous(), self.weight, self.bias, self.padding, self.stride,
                self.dilation, self.groups,
            )  # fmt: skip
        return super().forward(x)


def _use_onednn(module: nn.Module) -> nn.Module:
    """Switch every ``nn.Conv3d`` inside ``module`` to :class:`_OneDNNConv3d` (same weights)."""
    for layer in module.modules():
        if type(layer) is nn.Conv3d:
            layer.__class__ = _OneDNNConv3d
    return module


def _conv(dims: int, cin: int, cout: int, kernel: tuple[int, int, int]) -> nn.Module:
    """A same-padded conv; in 2D the temporal kernel size is dropped."""
    if dims == 2:
        return nn.Conv2d(cin, cout, kernel[1:], padding=tuple(k // 2 for k in kernel[1:]))
    return nn.Conv3d(cin, cout, kernel, padding=tuple(k // 2 for k in kernel))


class ResidualBlockNoNorm(nn.Module):
    """``x + conv(3,3,3)(ReLU(conv(1,3,3)(x)))``: EDSR's block with a temporal second conv.

    Written here because :class:`shared.ResidualConvBlock` uses one isotropic kernel and a norm.
    ``drop_path`` drops the residual branch per sample while training (stochastic depth).
    """

    def __init__(self, dims: int, width: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(dims, width, width, (1, 3, 3)),
            nn.ReLU(inplace=True),
            _conv(dims, width, width, (3, 3, 3)),
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual output."""
        return x + self.drop_path(self.body(x))


class VideoSRNet(nn.Module):
    """Multi-frame SR: ``(N, 3, T, h, w)`` -> centre frame ``(N, 3, s*h, s*w)``."""

    def __init__(self, cfg: VSRConfig, scale: int = 4, num_frames: int = 5) -> None:
        super().__init__()
        if num_frames < 1 or num_frames % 2 == 0:
            raise ValueError(f"num_frames must be odd, got {num_frames}")
        self.cfg, self.scale, self.num_frames = cfg, scale, num_frames
        dims = cfg.dims
        width = cfg.cnn_width or cfg.width if cfg.pure_cnn else cfg.width
        self.stem = _conv(dims, 3, width, (1, 3, 3))
        depth = cfg.shallow_blocks + cfg.hybrid_blocks
        rates = torch.linspace(0, cfg.drop_path_rate, depth).tolist() if depth else []
        shallow = [ResidualBlockNoNorm(dims, width, rates[i]) for i in range(cfg.shallow_blocks)]
        rates = rates[cfg.shallow_blocks :]
        if cfg.pure_cnn:
            deep = [ResidualBlockNoNorm(dims, width, rates[i]) for i in range(cfg.hybrid_blocks)]
        else:
            window = cfg.window if dims == 3 else cfg.window[1:]
            deep = [
                _drop_batch_norm(
                    HybridBlock(
                        dims,
                        width,
                        width,
                        num_heads=cfg.num_heads,
                        attention_ratio=cfg.attention_ratio,
                        residual_strength=cfg.residual_strength,
                        window_size=window,
                        shift=index % 2 == 1,
                        drop_path=rates[index],
                    )
                )
                for index in range(cfg.hybrid_blocks)
            ]
        if not cfg.block_relu:
            for block in deep:
                if isinstance(block, HybridBlock):
                    block.act = nn.Identity()
        self.body = nn.Sequential(*shallow, *deep)
        frames = num_frames if dims == 3 else 1
        # Collapse time: one (T, 1, 1) conv weighs each frame's features for the centre frame.
        self.fuse = (
            nn.Conv3d(width, width, (frames, 1, 1)) if dims == 3 else nn.Conv2d(width, width, 1)
        )
        self.reconstruct = nn.Sequential(
            *[ResidualBlockNoNorm(2, width) for _ in range(cfg.reconstruct_blocks)]
        )
        self.upsample = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 3 * scale**2, 3, padding=1),
            nn.PixelShuffle(scale),
        )
        nn.init.zeros_(self.upsample[2].weight)
        nn.init.zeros_(self.upsample[2].bias)
        _use_onednn(self)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Centre frame upscaled by ``scale``."""
        if frames.ndim != 5 or frames.shape[2] != self.num_frames:
            raise ValueError(
                f"expected (N, 3, {self.num_frames}, h, w) frames, got {tuple(frames.shape)}"
            )
        centre = frames[:, :, self.num_frames // 2]
        x = frames if self.cfg.dims == 3 else centre
        features = self.fuse(self.body(self.stem(x)))
        if self.cfg.dims == 3:
            features = features.squeeze(2)
        features = self.reconstruct(features)
        skip = F.interpolate(centre, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return skip + self.upsample(features)


def build_vsr_model(
    preset: str | VSRConfig, scale: int, num_frames: int, **overrides: object
) -> VideoSRNet:
    """The network of a preset name (or config) with field ``overrides`` applied."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    return VideoSRNet(replace(preset, **overrides), scale, num_frames)


def matched_cnn(cfg: VSRConfig, scale: int, num_frames: int) -> VSRConfig:
    """The pure-CNN control config whose parameter count is closest to ``cfg``'s hybrid
    (:func:`shared.matching.match_width_scale` over whole channel counts); a run's plan
    stores the result, so prediction never searches."""
    target = count_parameters(VideoSRNet(replace(cfg, pure_cnn=False), scale, num_frames))

    def control(width_scale: float) -> VSRConfig:
        return replace(cfg, pure_cnn=True, cnn_width=max(1, round(cfg.width * width_scale)))

    match = match_width_scale(lambda s: VideoSRNet(control(s), scale, num_frames), target)
    return control(match.scale)
