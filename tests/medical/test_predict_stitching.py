"""The memory-saving stitching path of ``hv-med predict`` equals the plain full-size arithmetic.

Softmax, flip averaging and argmax run slab by slab in place on the one probability buffer (so a
512x512x300 CT stays under 4 GiB); on a small volume whose depth is not a multiple of the slab,
the result must be what ``softmax``/``flip``/``argmax`` on whole tensors give.
"""

from __future__ import annotations

import torch

from medical.predict import SLAB, _argmax, _probabilities

SHAPE = (1, 1, 11, 9, 2 * SLAB + 5)  # a partial last slab along every slabbed axis


class Windows:
    """Stands in for the task: fixed, position-dependent logits (flips change them)."""

    def __init__(self) -> None:
        self.weight = torch.randn(1, 3, 1, 1, 1, generator=torch.Generator().manual_seed(0))

    def infer(self, image: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.weight * image + self.weight * image.cumsum(-1) * 0.1


def test_slab_softmax_flips_and_argmax_match_whole_tensors() -> None:
    image = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    task = Windows()
    plain = task.infer(image).softmax(1)
    for axes in ((2,), (3,), (4,)):
        plain = plain + task.infer(image.flip(axes)).softmax(1).flip(axes)
    plain = plain / 4
    streamed = _probabilities(task, image, flips=True)
    torch.testing.assert_close(streamed, plain, rtol=1e-5, atol=1e-6)
    assert torch.equal(_argmax(streamed)[0], plain[0].argmax(0).to(torch.uint8))
    single = _probabilities(task, image, flips=False)
    torch.testing.assert_close(single, task.infer(image).softmax(1), rtol=1e-5, atol=1e-6)
