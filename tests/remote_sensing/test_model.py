"""Model construction, and the values of TTA, the evaluation views, rotation and zoom."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from remote_sensing.evaluate import evaluate_views, rotate_batch
from remote_sensing.model import MultiscaleClassifier, build_model, tta_logits, zoom
from shared import SpatialSelfAttention
from shared.layers import count_parameters

# The eight elements of the dihedral group D4 on the last two axes, written out one by one.
D4 = (
    lambda t: t,
    lambda t: t.flip(-1),
    lambda t: t.flip(-2),
    lambda t: t.flip(-1).flip(-2),  # rotation by 180 degrees
    lambda t: t.transpose(-1, -2),
    lambda t: t.transpose(-1, -2).flip(-1),  # rotation by 90 degrees
    lambda t: t.transpose(-1, -2).flip(-2),  # rotation by 270 degrees
    lambda t: t.transpose(-1, -2).flip(-1).flip(-2),
)


class PixelLinear(nn.Module):
    """A fixed linear map of every pixel to the logits: no symmetry at all."""

    def __init__(self, channels: int, size: int, classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(channels * size * size, classes)
        with torch.no_grad():
            self.linear.weight.mul_(10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.linear(x.flatten(1))


def _d4_mean_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([model(view(x)).softmax(-1) for view in D4]).mean(0)


def test_multiscale_head_pools_three_stages() -> None:
    multi = MultiscaleClassifier(13, 10, multiscale=True)
    single = MultiscaleClassifier(13, 10, multiscale=False)
    assert len(multi.taps) == 3 and len(single.taps) == 1
    assert multi.head.in_features > single.head.in_features
    assert multi.eval()(torch.randn(2, 13, 64, 64)).shape == (2, 10)


def test_cnn_control_matches_parameters_without_attention() -> None:
    hybrid, cnn = build_model("hybrid", 4, 8, 32), build_model("cnn", 4, 8, 32)
    assert abs(count_parameters(cnn) - count_parameters(hybrid)) / count_parameters(hybrid) < 0.02

    def attention_layers(model: nn.Module) -> int:
        return sum(isinstance(m, SpatialSelfAttention) for m in model.modules())

    assert attention_layers(hybrid) > 0, "the premise: the hybrid has attention layers"
    assert attention_layers(cnn) == 0


def test_d4_tta_is_the_mean_of_the_eight_views_computed_by_hand() -> None:
    torch.manual_seed(0)
    model = PixelLinear(3, 6, 4).eval()
    x = torch.randn(2, 3, 6, 6)
    views = torch.stack([view(x) for view in D4])
    assert all(  # the premise: eight different views of this input
        not torch.equal(views[i], views[j]) for i in range(8) for j in range(i + 1, 8)
    )
    with torch.no_grad():
        expected = _d4_mean_probs(model, x).log()
        torch.testing.assert_close(tta_logits(model, x, scales=(1.0,)), expected)
        assert not torch.allclose(expected, model(x).log_softmax(-1), atol=1e-3)
        # Two ground scales: the mean over all 16 views.
        zoomed = zoom(x, 1.25)
        both = (_d4_mean_probs(model, x) + _d4_mean_probs(model, zoomed)) / 2
        torch.testing.assert_close(tta_logits(model, x), both.log())


def test_tta_of_a_d4_symmetric_chip_is_the_plain_prediction() -> None:
    torch.manual_seed(1)
    model = PixelLinear(2, 6, 3).eval()
    base = torch.randn(1, 2, 6, 6)
    chip = torch.stack([view(base) for view in D4]).mean(0)  # the group average: D4-invariant
    with torch.no_grad():
        plain = model(chip).log_softmax(-1)
        torch.testing.assert_close(tta_logits(model, chip, scales=(1.0,)), plain)


def test_d4_view_of_evaluate_scores_the_d4_averaged_prediction() -> None:
    torch.manual_seed(2)
    model = PixelLinear(2, 4, 3).eval()
    chips = torch.randn(40, 2, 4, 4)
    with torch.no_grad():
        d4_labels = _d4_mean_probs(model, chips).argmax(-1)
        plain_labels = model(chips).argmax(-1)
    assert (d4_labels != plain_labels).any(), "the premise: D4 averaging changes some classes"
    dataset = [{"image": c, "label": int(y)} for c, y in zip(chips, d4_labels, strict=True)]
    scores = evaluate_views(model, dataset, ["a", "b", "c"], views=("plain", "d4"),
                            batch_size=16, progress=False)  # fmt: skip
    assert scores["d4"]["accuracy"] == 1.0
    agree = int((plain_labels == d4_labels).sum())
    assert math.isclose(scores["plain"]["accuracy"], agree / len(chips))


def test_zoom_values() -> None:
    x = torch.randn(1, 2, 8, 8)
    assert zoom(x, 1.0) is x
    # Magnifying by 2 shows only the centre 4x4, resampled to 8x8: a constant centre fills it.
    x[..., 2:6, 2:6] = 3.0
    torch.testing.assert_close(zoom(x, 2.0), torch.full_like(x, 3.0))
    # Shrinking by 2 puts the 2x2 means in the centre and reflects them into the border.
    small = zoom(x, 0.5)
    torch.testing.assert_close(small[..., 2:6, 2:6], F.avg_pool2d(x, 2))
    torch.testing.assert_close(small[..., 2:6, 0], small[..., 2:6, 4])  # reflection about 2
    torch.testing.assert_close(small[..., 0, 2:6], small[..., 4, 2:6])


def test_rotate_batch_by_90_degrees_is_rot90() -> None:
    x = torch.randn(1, 2, 16, 16)
    turned = rotate_batch(x, torch.tensor([90.0]))
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-4) or torch.allclose(
        turned, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-4
    )
