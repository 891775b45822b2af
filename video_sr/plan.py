"""The video SR plan: what a trained network needs to upscale a video.

Stored in every checkpoint through the engine's inference contract (:mod:`shared.engine.contract`,
vertical ``video_sr``): the scale, the temporal window, the degradation it was trained to undo,
and the full architecture (:class:`~video_sr.model.VSRConfig`, the pure-CNN control's matched
width included), so ``hv-vsr upscale`` and ``export`` need the checkpoint alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.engine.contract import Vertical

from .model import VideoSRNet, VSRConfig

__all__ = ["VIDEO_SR", "VSRPlan", "build_network"]

LEGACY_KEY = "video_sr"
"""Where checkpoints written before the inference contract kept their metadata."""


@dataclass
class VSRPlan:
    """Scale, temporal window, degradation and architecture of a trained network."""

    scale: int
    num_frames: int
    degradation: str
    variant: str
    """hybrid (3D), single_frame (2D) or cnn (3D control)."""
    preset: str
    network: VSRConfig


def build_network(plan: VSRPlan) -> VideoSRNet:
    """The untrained network of a plan."""
    return VideoSRNet(plan.network, plan.scale, plan.num_frames)


def from_legacy(checkpoint: dict[str, Any]) -> VSRPlan:
    """The plan of a checkpoint written before the contract (``video_sr`` entry)."""
    old = checkpoint[LEGACY_KEY]
    fields = dict(old["model"])
    fields["window"] = tuple(fields["window"])
    return VSRPlan(old["scale"], old["num_frames"], old["degradation"],
                   old.get("variant", "hybrid"), old.get("preset", ""),
                   VSRConfig(**fields))  # fmt: skip


VIDEO_SR = Vertical(
    name="video_sr",
    prog="hv-vsr",
    plan_type=VSRPlan,
    schema=1,
    build_network=build_network,
    legacy=from_legacy,
)
