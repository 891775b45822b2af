"""BasicVSR, re-implemented from its paper, so ``hv-vsr bench`` measures its speed in the same run.

Chan, Wang, Yu, Dong, Loy, "BasicVSR: The Search for Essential Components in Video
Super-Resolution and Beyond", CVPR 2021. No BasicSR or MMagic is installed, and the bench only
times the network (random weights; it is never trained or scored here), so the architecture is
written from the paper's description:

- alignment: SPyNet optical flow (Ranjan and Black, CVPR 2017) between neighbouring LR frames:
  a 6-level average-pooling pyramid, coarse to fine, each level a basic module of five 7x7 convs
  (8 -> 32 -> 64 -> 32 -> 16 -> 2 channels) that refines the flow upsampled from the level below,
  given the reference frame, the warped supporting frame and that flow; frames normalised with
  the ImageNet mean and std and resized to a multiple of 32;
- propagation: bidirectional recurrence over the clip; at each frame the hidden state coming
  from the next (backward branch) or previous (forward branch) frame is warped by the flow, then
  concatenated with the LR frame and refined by a 3x3 conv and 30 residual blocks (conv, ReLU,
  conv, no normalisation) at 64 channels, one such trunk per branch;
- upsampling: a 1x1 conv fuses the two branches' features, two x2 pixel-shuffle stages, two 3x3
  convs, plus the bilinearly upsampled LR frame; LeakyReLU(0.1) between stages.

About 6.3 M parameters (1.44 M SPyNet, 2.25 M per propagation trunk, 0.34 M reconstruction), as
the paper reports. Input ``(N, T, 3, h, w)`` in [0, 1], output ``(N, T, 3, 4h, 4w)``: every frame
of the clip from one call (our :class:`~video_sr.model.VideoSRNet` returns one centre frame per
call, so frames/s compare per output frame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicVSR", "SPyNet", "flow_warp"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def flow_warp(x: torch.Tensor, flow: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """``x`` (N, C, H, W) sampled at each pixel plus ``flow`` (N, 2, H, W; x then y, in pixels).

    Bilinear, as the paper's warping; ``grid_sample`` with ``align_corners=True`` puts -1 and
    1 at the centres of the corner pixels, so integer flows move whole pixels.
    """
    _, _, height, width = x.shape
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=x.dtype, device=x.device),
        torch.arange(width, dtype=x.dtype, device=x.device),
        indexing="ij",
    )
    grid_x = 2 * (xs + flow[:, 0]) / max(width - 1, 1) - 1
    grid_y = 2 * (ys + flow[:, 1]) / max(height - 1, 1) - 1
    grid = torch.stack((grid_x, grid_y), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=True)


class _FlowLevel(nn.Sequential):
    """SPyNet's basic module: five 7x7 convs from (reference, warped frame, flow) to a residual
    flow."""

    def __init__(self) -> None:
        widths = (8, 32, 64, 32, 16, 2)
        layers: list[nn.Module] = []
        for index, (cin, cout) in enumerate(zip(widths, widths[1:], strict=False)):
            layers.append(nn.Conv2d(cin, cout, 7, padding=3))
            if index < len(widths) - 2:
                layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class SPyNet(nn.Module):
    """Spatial-pyramid optical flow: the flow that warps ``supporting`` onto ``reference``."""

    def __init__(self, levels: int = 6) -> None:
        super().__init__()
        self.levels = nn.ModuleList(_FlowLevel() for _ in range(levels))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def _pyramid(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Coarsest first: the image average-pooled by 2 once per level above the finest."""
        pyramid = [(image - self.mean) / self.std]
        for _ in range(len(self.levels) - 1):
            pyramid.append(F.avg_pool2d(pyramid[-1], 2))
        return pyramid[::-1]

    def forward(self, reference: torch.Tensor, supporting: torch.Tensor) -> torch.Tensor:
        """Flow (N, 2, H, W) in pixels; H and W must be multiples of 2^(levels - 1)."""
        refs, sups = self._pyramid(reference), self._pyramid(supporting)
        flow = refs[0].new_zeros(refs[0].shape[0], 2, *refs[0].shape[2:])
        for level, (ref, sup) in enumerate(zip(refs, sups, strict=True)):
            if level:  # a finer level: twice the size, so twice the displacement in pixels
                flow = 2 * F.interpolate(flow, size=ref.shape[2:], mode="bilinear",
                                         align_corners=True)  # fmt: skip
            warped = flow_warp(sup, flow, padding="border")
            flow = flow + self.levels[level](torch.cat((ref, warped, flow), dim=1))
        return flow


class _ResidualBlock(nn.Module):
    """conv 3x3, ReLU, conv 3x3, plus the input (no normalisation)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x + self.conv2(F.relu(self.conv1(x)))


def _trunk(width: int, blocks: int) -> nn.Sequential:
    """One propagation branch: LR frame + warped hidden state -> refined hidden state."""
    return nn.Sequential(
        nn.Conv2d(3 + width, width, 3, padding=1),
        nn.LeakyReLU(0.1, inplace=True),
        *(_ResidualBlock(width) for _ in range(blocks)),
    )


class BasicVSR(nn.Module):
    """Bidirectional recurrent x4 video SR with flow-warped propagation (the paper's BasicVSR)."""

    def __init__(self, width: int = 64, blocks: int = 30) -> None:
        super().__init__()
        self.width = width
        self.spynet = SPyNet()
        self.backward_trunk = _trunk(width, blocks)
        self.forward_trunk = _trunk(width, blocks)
        self.fuse = nn.Conv2d(2 * width, width, 1)
        self.up1 = nn.Conv2d(width, 4 * width, 3, padding=1)
        self.up2 = nn.Conv2d(width, 4 * width, 3, padding=1)
        self.conv_hr = nn.Conv2d(width, width, 3, padding=1)
        self.conv_last = nn.Conv2d(width, 3, 3, padding=1)
        self.act = nn.LeakyReLU(0.1, inplace=True)

    def _flows(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flows (N, T-1, 2, h, w) from each frame to the next and from each to the previous."""
        n, t, c, h, w = frames.shape
        # SPyNet's pyramid halves the size five times: run it at the next multiple of 32.
        side_h, side_w = -(-h // 32) * 32, -(-w // 32) * 32
        resized = F.interpolate(frames.reshape(n * t, c, h, w), size=(side_h, side_w),
                                mode="bilinear", align_corners=False)  # fmt: skip
        resized = resized.view(n, t, c, side_h, side_w)
        current = resized[:, :-1].reshape(-1, c, side_h, side_w)
        following = resized[:, 1:].reshape(-1, c, side_h, side_w)
        scale = torch.tensor([w / side_w, h / side_h], device=frames.device).view(1, 2, 1, 1)

        def at_input_size(flow: torch.Tensor) -> torch.Tensor:
            flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False) * scale
            return flow.view(n, t - 1, 2, h, w)

        to_next = at_input_size(self.spynet(current, following))
        to_previous = at_input_size(self.spynet(following, current))
        return to_next, to_previous

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, T, 3, h, w)`` LR frames -> ``(N, T, 3, 4h, 4w)`` SR frames."""
        n, t, _, h, w = frames.shape
        to_next, to_previous = self._flows(frames) if t > 1 else (None, None)
        state = frames.new_zeros(n, self.width, h, w)
        backward: list[torch.Tensor] = [state] * t
        for i in range(t - 1, -1, -1):
            if i < t - 1:
                state = flow_warp(state, to_next[:, i])  # the next frame's state, aligned to i
            state = self.backward_trunk(torch.cat((frames[:, i], state), dim=1))
            backward[i] = state
        state, outputs = frames.new_zeros(n, self.width, h, w), []
        for i in range(t):
            if i > 0:
                state = flow_warp(state, to_previous[:, i - 1])
            state = self.forward_trunk(torch.cat((frames[:, i], state), dim=1))
            x = self.act(self.fuse(torch.cat((backward[i], state), dim=1)))
            x = self.act(F.pixel_shuffle(self.up1(x), 2))
            x = self.act(F.pixel_shuffle(self.up2(x), 2))
            x = self.conv_last(self.act(self.conv_hr(x)))
            skip = F.interpolate(frames[:, i], scale_factor=4, mode="bilinear",
                                 align_corners=False)  # fmt: skip
            outputs.append(x + skip)
        return torch.stack(outputs, dim=1)
