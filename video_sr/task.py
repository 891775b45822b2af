"""The video SR task: configs, data module and the Lightning module on ``ImageToImageTask``.

Training minimises the mean squared error on aligned random crops (``VSRModelConfig.loss``);
validation upscales whole held-out frames in tiles and logs, beside the engine's float
PSNR/SSIM, ``val/psnr_y`` and ``val/psnr_rgb`` with BasicSR's convention (frames rounded to 8
bits as a saved frame would be, ``crop_border = scale``), the headline: per frame, mean over
the frames of each clip, then over clips, gathered from every DDP rank with padded repeats
counted once (:class:`~video_sr.metrics.ClipMean`, the aggregation of ``hv-vsr evaluate``).
Checkpoints carry the :class:`~video_sr.plan.VSRPlan` (scale, temporal window, degradation,
architecture) through the engine's inference contract, so ``hv-vsr upscale`` needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from shared.engine import (
    HalfOpenUnitInterval,
    ImageToImageTask,
    InputError,
    RunConfig,
    TaskDataModule,
    evaluation_loader,
    resumable_loader,
)
from shared.engine.image_task import PIXEL_LOSSES

from .data import Clip, TrainClips, ValClips, discover_clips
from .inference import tiled_forward
from .io import frame_size
from .metrics import ClipMean, psnr
from .model import PRESETS, VideoSRNet, build_vsr_model, matched_cnn
from .plan import VIDEO_SR, VSRPlan, build_network
from .transforms import DEGRADATIONS, SCALES

__all__ = ["VSRDataConfig", "VSRModelConfig", "VSRDataModule", "VideoSRTask", "build_task"]

VARIANTS = ("hybrid", "single_frame", "cnn")

# Choices and ranges as types: the parser refuses a bad value with one line naming the flag.
Scale = Literal[SCALES]  # type: ignore[valid-type]
Degradation = Literal[DEGRADATIONS]  # type: ignore[valid-type]
Preset = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
Variant = Literal[VARIANTS]  # type: ignore[valid-type]
Loss = Literal[PIXEL_LOSSES]  # type: ignore[valid-type]


@dataclass
class VSRDataConfig:
    """Clips, degradation and sampling."""

    root: str = ""
    """Data folder: BasicSR gt/ (+ lq/), frame folders, or video files (see video_sr.data)."""
    val_clips: list[str] | None = None
    """Held-out clip names (default: the last clip in name order)."""
    scale: Scale = 4
    """Upscaling factor: 2, 3 or 4."""
    degradation: Degradation = "BI"
    """BI (MATLAB-style bicubic) or BD (Gaussian sigma 1.6, then subsample)."""
    num_frames: PositiveInt = 5
    """Temporal window T (odd; 5 or 7 usual)."""
    patch: PositiveInt = 32
    """Training crop in LR pixels (GT crop: patch * scale); every training clip's LR frames
    must be at least this large."""
    val_stride: PositiveInt = 1
    """Validate on every n-th frame of the held-out clips."""
    tile: NonNegativeInt = 64
    """Validation tile in LR pixels (0: whole frames)."""
    tile_overlap: HalfOpenUnitInterval = 0.25
    """Overlap of neighbouring validation tiles, in [0, 1)."""
    cache_dir: str = ""
    """Where video files are decoded into frames (default: <root>/.frames)."""


@dataclass
class VSRModelConfig:
    """Network choice and loss."""

    preset: Preset = "vsr_cpu"
    """vsr_tiny, vsr_cpu or vsr_gpu."""
    variant: Variant = "hybrid"
    """hybrid (3D, ours), single_frame (2D on the centre frame), cnn (3D, matched params)."""
    loss: Loss = "mse"
    """mse (default), charbonnier or l1. MSE is what PSNR measures, and its gradient grows with
    the error, so training starts on the edges bicubic blurs; L1-type losses push every pixel
    equally and, from the bicubic start, sat at the identity for hundreds of CPU steps (issue
    10, vsr_tiny 2D, 400 steps, batch 8, held-out bikes frames: MSE +1.52 dB over bicubic,
    Charbonnier +0.0 dB; with LeakyReLU and BasicSR's 0.1-scaled init, Charbonnier +0.34 dB
    and MSE +1.40 dB). BasicSR's Charbonnier suits long GPU schedules."""


def make_model(
    model_cfg: VSRModelConfig, scale: int, num_frames: int, drop_path_rate: float = 0.0
) -> VideoSRNet:
    """The network of a model config; ``drop_path_rate``: stochastic depth of its body blocks."""
    if model_cfg.variant == "single_frame":
        return build_vsr_model(model_cfg.preset, scale, num_frames, dims=2,
                               drop_path_rate=drop_path_rate)  # fmt: skip
    if model_cfg.variant == "cnn":
        cnn = matched_cnn(PRESETS[model_cfg.preset], scale, num_frames)
        return VideoSRNet(replace(cnn, drop_path_rate=drop_path_rate), scale, num_frames)
    return build_vsr_model(model_cfg.preset, scale, num_frames, drop_path_rate=drop_path_rate)


class VSRDataModule(TaskDataModule):
    """Training windows from the training clips, whole frames from the held-out clips."""

    def __init__(self, cfg: VSRDataConfig, batch_size: int, seed: int, num_workers: int = 0):
        super().__init__(batch_size, seed, num_workers)
        self.cfg = cfg

    def split(self) -> tuple[list, list]:
        """(training clips, held-out clips)."""
        clips = discover_clips(self.cfg.root, self.cfg.cache_dir or None)
        names = self.cfg.val_clips or [clips[-1].name]
        unknown = set(names) - {c.name for c in clips}
        if unknown:
            raise InputError(f"--data.val_clips: no clip named {sorted(unknown)[0]!r}")
        train = [c for c in clips if c.name not in names]
        if not train:
            raise InputError(f"{self.cfg.root}: every clip is held out; need one for training")
        return train, [c for c in clips if c.name in names]

    def setup(self, stage: str | None = None) -> None:  # noqa: D102
        cfg = self.cfg
        train, val = self.split()
        # Validating or evaluating only (stage "validate") needs no training crop.
        check_clips(train if stage in (None, "fit") else [], val, cfg.scale, cfg.patch)
        for clip in train + val:
            if len(clip) < cfg.num_frames:
                rank_zero_warn(
                    f"{clip.gt[0].parent}: {len(clip)} frames, fewer than the "
                    f"{cfg.num_frames}-frame window: windows are filled by reflecting the clip"
                )
        self.train_set = TrainClips(
            train, cfg.scale, cfg.num_frames, cfg.degradation, cfg.patch, self.seed
        )
        self.val_set = ValClips(val, cfg.scale, cfg.num_frames, cfg.degradation, cfg.val_stride)

    def train_dataloader(self) -> DataLoader:  # noqa: D102
        return resumable_loader(
            self.train_set, self.batch_size, drop_last=True, num_workers=self.num_workers
        )

    def val_dataloader(self) -> DataLoader:  # noqa: D102
        # Whole frames: one window per batch (frames of different clips may differ in size).
        return evaluation_loader(self.val_set, 1, num_workers=self.num_workers)


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` in [0, 1] -> ``(N, H, W, 3)`` uint8, rounded as a saved frame."""
    return (images.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1)


class VideoSRTask(ImageToImageTask):
    """``ImageToImageTask`` with temporal windows, BasicSR PSNR and self-describing checkpoints."""

    def __init__(self, model: VideoSRNet, cfg: RunConfig, plan: VSRPlan) -> None:
        super().__init__(
            model,
            cfg.optim,
            loss=cfg.model.loss,
            spatial_dims=2,  # metrics compare output frames (N, 3, H, W)
            tile=cfg.data.tile or None,
            tile_overlap=cfg.data.tile_overlap,
            tile_batch_size=1,
            regularization=cfg.regularization,
            vertical=VIDEO_SR,
            plan=plan,
        )
        self.val_psnr_y, self.val_psnr_rgb = ClipMean(), ClipMean()

    def infer(self, inputs: torch.Tensor) -> torch.Tensor:
        """Whole-frame output, in overlapping LR tiles (the same routine as ``upscale``)."""
        tile = self.tile[0] if self.tile else None
        return tiled_forward(self.model, inputs, tile, self.tile_overlap).to(inputs.device)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Engine metrics plus BasicSR-convention PSNR on Y and RGB (8-bit, crop_border=scale)."""
        inputs, targets, clips, frames = batch
        output = self.infer(inputs)
        self.log("val/loss", self.loss_fn(output, targets), on_epoch=True, batch_size=1,
                 sync_dist=True)  # fmt: skip
        self.val_metrics.update(output.clamp(0, 1), targets)
        self.log_dict(self.val_metrics, on_epoch=True, batch_size=1)
        border = self.plan.scale
        pairs = list(zip(_to_uint8(output).cpu().numpy(), _to_uint8(targets).cpu().numpy(),
                         strict=True))  # fmt: skip
        self.val_psnr_y.update(
            clips, frames, [psnr(p, g, border, y_channel=True) for p, g in pairs]
        )
        self.val_psnr_rgb.update(clips, frames, [psnr(p, g, border) for p, g in pairs])
        # Metric objects: Lightning computes them once per epoch, after the DDP gather.
        self.log("val/psnr_y", self.val_psnr_y, on_epoch=True, batch_size=1, prog_bar=True)
        self.log("val/psnr_rgb", self.val_psnr_rgb, on_epoch=True, batch_size=1)


def validate(cfg: RunConfig) -> None:
    """One-line errors for bad video SR settings."""
    data = cfg.data
    if not data.root:
        raise InputError("give --data.root DATA (BasicSR gt/ + lq/, frame folders or videos)")
    if not Path(data.root).is_dir():
        raise InputError(f"--data.root {data.root}: folder not found")
    if data.num_frames % 2 == 0:
        raise InputError(f"--data.num_frames must be odd, got {data.num_frames}")
    if data.patch < 8:
        raise InputError(f"--data.patch must be >= 8 LR pixels, got {data.patch}")
    if data.tile and data.tile < 8:
        raise InputError(f"--data.tile must be 0 (whole frames) or >= 8 LR pixels, got {data.tile}")


def _uniform_size(files: list[Path]) -> tuple[int, int]:
    """``(h, w)`` shared by all ``files`` (image headers only); ``InputError`` if they differ."""
    first = frame_size(files[0])
    for file in files[1:]:
        size = frame_size(file)
        if size != first:
            raise InputError(
                f"{file}: frame size {size[1]}x{size[0]} differs from {files[0].name}'s "
                f"{first[1]}x{first[0]}; all frames of a clip must match"
            )
    return first


def _lr_size(clip: Clip, scale: int) -> tuple[int, int]:
    """``(h, w)`` of the clip's LR frames: read, or the mod-cropped GT size divided by scale."""
    height, width = _uniform_size(clip.gt)
    made = (height // scale, width // scale)
    if clip.lq is None:
        return made
    lr = _uniform_size(clip.lq)
    if lr != made:
        raise InputError(
            f"{clip.lq[0].parent}: LR frames {lr[1]}x{lr[0]} do not match GT frames "
            f"{width}x{height} at scale {scale}"
        )
    return lr


def check_clips(train: list[Clip], val: list[Clip], scale: int, patch: int) -> None:
    """Refuse clips whose frames differ in size, and training clips smaller than the crop.

    Reads image headers only. A mixed-size clip cannot be stacked into windows; an LR frame
    smaller than ``--data.patch`` cannot give a training crop.
    """
    for clip in train + val:
        height, width = _lr_size(clip, scale)
        if clip in train and min(height, width) < patch:
            folder = (clip.lq or clip.gt)[0].parent
            raise InputError(
                f"{folder}: LR frames {width}x{height} are smaller than the training crop "
                f"--data.patch {patch}; lower --data.patch or hold the clip out with "
                "--data.val_clips"
            )


def build_task(
    cfg: RunConfig, plan: VSRPlan | None = None
) -> tuple[VideoSRTask, VSRDataModule]:
    """Module and data for a run config (and a trained run's plan, when evaluating)."""
    if plan is None:
        model = make_model(cfg.model, cfg.data.scale, cfg.data.num_frames,
                           cfg.regularization.drop_path_rate)  # fmt: skip
        plan = VSRPlan(cfg.data.scale, cfg.data.num_frames, cfg.data.degradation,
                       cfg.model.variant, cfg.model.preset, model.cfg)  # fmt: skip
    else:
        model = build_network(plan)
    data = VSRDataModule(cfg.data, cfg.trainer.batch_size, cfg.trainer.seed,
                         cfg.trainer.num_workers)  # fmt: skip
    return VideoSRTask(model, cfg, plan), data
