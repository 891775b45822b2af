"""The SR networks: shapes, bicubic at initialisation, matched parameters, oneDNN convs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from shared.blocks import HybridBlock
from shared.layers import count_parameters
from video_sr.model import PRESETS, VideoSRNet, build_vsr_model, matched_cnn


@pytest.mark.parametrize("scale", [2, 4])
def test_untrained_network_is_the_bicubic_upscaler(scale: int) -> None:
    model = build_vsr_model("vsr_tiny", scale, 5).eval()
    frames = torch.rand(1, 3, 5, 12, 17)  # sizes the (2, 8, 8) window does not divide
    with torch.no_grad():
        out = model(frames)
    bicubic = F.interpolate(frames[:, :, 2], scale_factor=scale, mode="bicubic")
    assert out.shape == (1, 3, 12 * scale, 17 * scale)
    torch.testing.assert_close(out, bicubic)


def test_hybrid_uses_windowed_3d_attention_without_batch_norm() -> None:
    model = build_vsr_model("vsr_tiny", 4, 7)
    blocks = [m for m in model.modules() if isinstance(m, HybridBlock)]
    assert len(blocks) == 2 and [b.attention.shift for b in blocks] == [False, True]
    assert blocks[0].attention.window_size == (2, 8, 8) and blocks[0].attention.spatial_dims == 3
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_multi_frame_output_depends_on_neighbours_and_2d_variant_does_not() -> None:
    torch.manual_seed(0)
    for dims, should_change in ((3, True), (2, False)):
        model = build_vsr_model("vsr_tiny", 2, 3, dims=dims).eval()
        torch.nn.init.normal_(model.upsample[2].weight, std=0.1)
        frames = torch.rand(1, 3, 3, 8, 8)
        changed = frames.clone()
        changed[:, :, 0] = torch.rand(1, 3, 8, 8)
        with torch.no_grad():
            delta = (model(frames) - model(changed)).abs().max()
        assert (delta > 1e-4) == should_change


@pytest.mark.parametrize("preset", ["vsr_cpu", "vsr_small"])
def test_cnn_control_matches_the_hybrid_parameter_count(preset: str) -> None:
    hybrid = build_vsr_model(preset, 4, 7)
    control = VideoSRNet(matched_cnn(PRESETS[preset], 4, 7), 4, 7)
    assert not any(isinstance(m, HybridBlock) for m in control.modules())
    assert abs(count_parameters(control) / count_parameters(hybrid) - 1) < 0.03


def test_onednn_conv3d_matches_pytorch_and_trains() -> None:
    model = build_vsr_model("vsr_tiny", 2, 3)
    conv = model.stem
    x = torch.rand(1, 3, 3, 9, 11, requires_grad=True)
    ours = conv(x)
    reference = torch.nn.Conv3d.forward(conv, x)
    torch.testing.assert_close(ours, reference)
    ours.sum().backward()
    assert conv.weight.grad is not None and x.grad is not None


def test_even_window_is_refused() -> None:
    with pytest.raises(ValueError, match="odd"):
        build_vsr_model("vsr_tiny", 4, 4)


def _frames_read_by_centre(attention: torch.nn.Module, num_frames: int) -> list[bool]:
    """Which input frames the attention layer's centre-frame output depends on (gradient)."""
    x = torch.rand(1, attention.channels, num_frames, 8, 8, requires_grad=True)
    attention(x)[:, :, num_frames // 2].sum().backward()
    return (x.grad.abs().sum(dim=(0, 1, 3, 4)) > 0).tolist()


@pytest.mark.parametrize("num_frames", [5, 7])
def test_release_attention_reads_every_frame_of_the_window(num_frames: int) -> None:
    """Attention as implicit alignment: the centre frame's tokens attend to all T frames in
    every hybrid block (window (7, 8, 8) covers T; no temporal padding or shift)."""
    torch.manual_seed(0)
    model = build_vsr_model("vsr_small", 4, num_frames)
    blocks = [m for m in model.modules() if isinstance(m, HybridBlock)]
    assert len(blocks) == 2
    for block in blocks:
        assert all(_frames_read_by_centre(block.attention, num_frames))


def test_two_frame_windows_never_let_the_centre_see_the_first_frame() -> None:
    """Why vsr_small changed the window: with (2, 8, 8) on 5 frames (padded to 6, windows
    [0,1] [2,3] [4,pad]; shifted [1,2] [3,4] [pad,0]) the centre frame attends to one neighbour
    per block, and frame 0 reaches it through no attention layer (the depthwise positional
    conv adds only +-1 frame)."""
    torch.manual_seed(0)
    blocks = [m for m in build_vsr_model("vsr_tiny", 4, 5).modules()
              if isinstance(m, HybridBlock)]  # fmt: skip
    reads = [_frames_read_by_centre(b.attention, 5) for b in blocks]
    assert reads == [[False, True, True, True, True], [True, True, True, True, False]]
