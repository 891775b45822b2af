"""BasicVSR as re-implemented for the bench's speed row: the paper's size, warping that moves
pixels where the flow says, and the upsampling path's shapes and skip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from video_sr.baselines import BasicVSR, SPyNet, flow_warp


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def test_parameter_count_is_the_papers_6_3_million() -> None:
    # Counted from the paper's description, layer by layer.
    spynet = 6 * sum(_conv(a, b, 7) for a, b in ((8, 32), (32, 64), (64, 32), (32, 16), (16, 2)))
    trunk = _conv(67, 64, 3) + 30 * 2 * _conv(64, 64, 3)
    upsampling = _conv(128, 64, 1) + 2 * _conv(64, 256, 3) + _conv(64, 64, 3) + _conv(64, 3, 3)
    model = BasicVSR()
    count = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in model.spynet.parameters()) == spynet == 1_440_300
    assert count == spynet + 2 * trunk + upsampling == 6_291_311
    assert count == pytest.approx(6.3e6, rel=0.01)


def test_flow_warp_moves_pixels_by_the_flow() -> None:
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).view(1, 2, 5, 6)
    zero = torch.zeros(1, 2, 5, 6)
    assert torch.allclose(flow_warp(x, zero), x, atol=1e-5)
    # Flow (+1, +2): output(y, x) samples input(y + 2, x + 1); beyond the border, zeros.
    flow = torch.stack([torch.ones(5, 6), 2 * torch.ones(5, 6)])[None]
    warped = flow_warp(x, flow)
    assert torch.allclose(warped[:, :, :3, :5], x[:, :, 2:, 1:], atol=1e-4)
    assert torch.all(warped[:, :, 3:] == 0) and torch.all(warped[:, :, :, 5:] == 0)
    # Half a pixel: the mean of the two neighbours (bilinear).
    half = flow_warp(x, torch.cat([0.5 * torch.ones(1, 1, 5, 6), torch.zeros(1, 1, 5, 6)], 1))
    assert torch.allclose(half[..., :5], (x[..., :5] + x[..., 1:]) / 2, atol=1e-4)


def test_spynet_refines_from_zero_flow_coarse_to_fine() -> None:
    torch.manual_seed(0)
    spynet = SPyNet()
    for level in spynet.levels:  # every basic module predicts no correction
        nn.init.zeros_(level[-1].weight)
        nn.init.zeros_(level[-1].bias)
    frames = torch.rand(2, 3, 32, 64)
    assert torch.equal(spynet(frames, frames.flip(0)), torch.zeros(2, 2, 32, 64))


def test_every_frame_upscaled_x4_with_the_bilinear_skip() -> None:
    torch.manual_seed(0)
    model = BasicVSR(width=8, blocks=2).eval()
    clip = torch.rand(1, 2, 3, 12, 20)
    with torch.no_grad():
        out = model(clip)
        assert out.shape == (1, 2, 3, 48, 80)
        nn.init.zeros_(model.conv_last.weight)
        nn.init.zeros_(model.conv_last.bias)
        skip = nn.functional.interpolate(clip[0], scale_factor=4, mode="bilinear")
        assert torch.allclose(model(clip)[0], skip, atol=1e-6)
