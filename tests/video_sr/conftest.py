"""Tiny real-format inputs for the video SR tests: PNG frame folders and an FFV1 video."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from video_sr.io import VideoFileWriter, write_png


def moving_frames(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth colour gradients with a square moving one pixel per frame (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (height + width)], -1)
    frames = []
    for t in range(count):
        frame = base.copy()
        frame[4 + t : 12 + t, 6 + t : 14 + t] = rng.integers(0, 255, 3)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def write_clip(folder: Path, frames: list[np.ndarray]) -> Path:
    """Frames as ``folder/%08d.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        write_png(folder / f"{index:08d}.png", frame)
    return folder


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A GT-only frame-folder dataset: two 32x48 clips of 6 frames."""
    root = tmp_path / "data"
    write_clip(root / "clip_a", moving_frames(6, 32, 48, 0))
    write_clip(root / "clip_b", moving_frames(6, 32, 48, 1))
    return root


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """A lossless 8-frame 16x24 FFV1 video at 12 fps."""
    path = tmp_path / "clip.mkv"
    with VideoFileWriter(path, Fraction(12)) as writer:
        for frame in moving_frames(8, 16, 24):
            writer.write(frame)
    return path
