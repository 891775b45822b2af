"""hybridvision.video_sr: spatiotemporal 3D hybrid video super-resolution, scored by PSNR.

BasicSR-layout frame folders and streamed video files (``data``, ``io``), BI/BD degradations
(``transforms``), a 3D hybrid network with a single-frame 2D variant and a 3D-CNN control
(``model``), the Lightning task (``task``), streaming tiled inference (``upscale``), BasicSR
PSNR/SSIM (``metrics``, ``evaluate``) and the ``hv-vsr`` command (``cli``).
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
