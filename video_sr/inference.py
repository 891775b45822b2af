"""Tiled inference: run a video SR network on LR windows larger than one tile.

One routine for training-time validation (:class:`video_sr.task.VideoSRTask`) and the streaming
``upscale`` command, so the numbers validation reports are those of the frames users get. It
lives beside the model rather than in it: the network's file holds the architecture, and this
is how any network with the ``(N, 3, T, h, w) -> (N, 3, H, W)`` contract is run on large
frames (MONAI's sliding window with gaussian blending).
"""

from __future__ import annotations

import torch
from monai.inferers import sliding_window_inference

__all__ = ["tiled_forward"]


def tiled_forward(
    model: torch.nn.Module,
    window: torch.Tensor,
    tile: int | None,
    overlap: float = 0.25,
    tile_batch: int = 1,
) -> torch.Tensor:
    """``model(window)`` for ``(N, 3, T, h, w)``, in ``tile``-pixel LR tiles when it is larger.

    MONAI's sliding window needs equal input and output ranks, so the frames travel folded into
    the channel axis ``(N, 3T, h, w)`` and are unfolded inside the predictor.
    """
    batch, channels, frames, height, width = window.shape
    if tile is None or (height <= tile and width <= tile):
        return model(window)

    def predictor(folded: torch.Tensor) -> torch.Tensor:
        return model(folded.reshape(folded.shape[0], channels, frames, *folded.shape[-2:]))

    return sliding_window_inference(
        window.reshape(batch, channels * frames, height, width),
        roi_size=(min(tile, height), min(tile, width)),
        sw_batch_size=tile_batch,
        predictor=predictor,
        overlap=overlap,
        mode="gaussian",
        sw_device=window.device,
        device=torch.device("cpu"),  # the stitching buffer is a full frame: keep it on the CPU
    )
