"""Model construction: multiscale head, matched CNN control, TTA, rotation and zoom views."""

from __future__ import annotations

import torch

from remote_sensing.evaluate import rotate_batch
from remote_sensing.model import MultiscaleClassifier, build_model, tta_logits, zoom
from shared.layers import count_parameters


def test_multiscale_head_pools_three_stages() -> None:
    multi = MultiscaleClassifier(13, 10, multiscale=True)
    single = MultiscaleClassifier(13, 10, multiscale=False)
    assert len(multi.taps) == 3 and len(single.taps) == 1
    assert multi.head.in_features > single.head.in_features
    assert multi.eval()(torch.randn(2, 13, 64, 64)).shape == (2, 10)


def test_cnn_control_matches_parameters_without_attention() -> None:
    hybrid, cnn = build_model("hybrid", 4, 8, 32), build_model("cnn", 4, 8, 32)
    assert abs(count_parameters(cnn) - count_parameters(hybrid)) / count_parameters(hybrid) < 0.02
    assert not any("attn" in name for name, _ in cnn.named_modules())


def test_tta_and_zoom_keep_shapes() -> None:
    model = build_model("hybrid", 4, 3, 32).eval()
    x = torch.randn(2, 4, 32, 32)
    assert tta_logits(model, x).shape == (2, 3)
    assert zoom(x, 0.5).shape == x.shape and zoom(x, 2.0).shape == x.shape


def test_rotate_batch_by_90_degrees_is_rot90() -> None:
    x = torch.randn(1, 2, 16, 16)
    turned = rotate_batch(x, torch.tensor([90.0]))
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-4) or torch.allclose(
        turned, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-4
    )
