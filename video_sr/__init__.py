"""hybridvision.video_sr: spatiotemporal 3D hybrid video super-resolution, scored by PSNR.

Command: ``hv-vsr train | upscale | degrade | evaluate | bench | export`` (``video_sr.cli:main``).

Library (public entry points; the names below are exported here):

* ``data``, ``io``: BasicSR-layout frame folders and streamed video files (``discover_clips``,
  ``open_source``, frame writers).
* ``transforms``: BI/BD degradations (``degrade``, ``bi_downsample``, ``bd_downsample``,
  ``mod_crop``).
* ``model``: the 3D hybrid network with a single-frame 2D variant and a 3D-CNN control
  (``VideoSRNet``, ``VSRConfig``, ``build_vsr_model``, ``matched_cnn``, ``PRESETS``).
* ``inference``: tiled inference on frames larger than a tile (``tiled_forward``), shared by
  validation and ``upscale``.
* ``task``: the Lightning task for the shared engine (``VideoSRTask``, ``build_task``).
* ``metrics``: BasicSR PSNR/SSIM (``psnr``, ``ssim``, ``rgb_to_y``).

Commands: ``cli``; ``upscale`` (streaming, memory-bounded upscaling: ``upscale``,
``load_vsr_checkpoint``, ``tile_for_memory``); ``evaluate`` (folders against ground truth:
``evaluate_folders``); ``bench``; ``demo`` (``python -m video_sr.demo``).
"""

from .metrics import psnr, rgb_to_y, ssim
from .model import PRESETS, VideoSRNet, VSRConfig, build_vsr_model, matched_cnn
from .transforms import bd_downsample, bi_downsample, degrade, mod_crop

__all__ = [
    "PRESETS",
    "VSRConfig",
    "VideoSRNet",
    "bd_downsample",
    "bi_downsample",
    "build_vsr_model",
    "degrade",
    "matched_cnn",
    "mod_crop",
    "psnr",
    "rgb_to_y",
    "ssim",
]
