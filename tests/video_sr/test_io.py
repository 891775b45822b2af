"""Video and frame-folder I/O: lossless round trip, bad inputs, nothing partial left behind."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from shared.engine import InputError
from video_sr.data import discover_clips, reflect_index, window_indices
from video_sr.io import FrameFolderWriter, VideoFileWriter, open_source, write_png

from .conftest import moving_frames, write_clip


def test_ffv1_round_trip_is_lossless_and_keeps_fps(video: Path) -> None:
    source = open_source(video)
    assert source.fps == Fraction(12) and source.size == (16, 24)
    frames = list(source)
    assert len(frames) == 8
    for got, want in zip(frames, moving_frames(8, 16, 24), strict=True):
        np.testing.assert_array_equal(got, want)


def test_truncated_video_names_the_file(video: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    with pytest.raises(InputError, match="broken.mkv"):
        list(open_source(broken))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 10)
    with pytest.raises(InputError, match="garbage.mp4"):
        list(open_source(garbage))


def test_frames_of_different_sizes_are_refused_with_the_frame(tmp_path: Path) -> None:
    folder = write_clip(tmp_path / "clip", moving_frames(3, 16, 16))
    write_png(folder / "00000003.png", np.zeros((18, 16, 3), np.uint8))
    with pytest.raises(InputError, match=r"00000003.png \(frame 3\).*differs"):
        list(open_source(folder))


@pytest.mark.parametrize("name", ["out.mkv", "frames"])
def test_an_interrupted_writer_leaves_nothing(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    writer_type = VideoFileWriter if name.endswith(".mkv") else FrameFolderWriter
    args = (target, Fraction(25)) if writer_type is VideoFileWriter else (target,)
    with pytest.raises(KeyboardInterrupt), writer_type(*args) as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_reflection_at_clip_ends() -> None:
    assert window_indices(0, 5, 10) == [2, 1, 0, 1, 2]
    assert window_indices(9, 5, 10) == [7, 8, 9, 8, 7]
    assert window_indices(0, 7, 2) == [1, 0, 1, 0, 1, 0, 1]  # shorter than the window
    assert reflect_index(0, 1) == 0


def test_basicsr_layout_pairs_lq_with_gt(tmp_path: Path) -> None:
    write_clip(tmp_path / "gt" / "000", moving_frames(3, 16, 16))
    write_clip(tmp_path / "lq" / "000", moving_frames(3, 4, 4))
    write_clip(tmp_path / "gt" / "011", moving_frames(2, 16, 16))  # LR made on the fly
    clips = discover_clips(tmp_path)
    assert [c.name for c in clips] == ["000", "011"]
    assert len(clips[0].lq) == 3 and clips[1].lq is None
    write_clip(tmp_path / "lq" / "011", moving_frames(1, 4, 4))
    with pytest.raises(InputError, match="1 LR frames for 2 GT frames"):
        discover_clips(tmp_path)


def test_clips_shorter_than_the_window_are_padded_and_said(tmp_path: Path) -> None:
    from video_sr.task import VSRDataConfig, VSRDataModule

    write_clip(tmp_path / "a", moving_frames(2, 16, 16))
    write_clip(tmp_path / "b", moving_frames(6, 16, 16))
    module = VSRDataModule(VSRDataConfig(root=str(tmp_path), num_frames=5, patch=4), 2, 0)
    with pytest.warns(UserWarning, match="2 frames, fewer than the 5-frame window"):
        module.setup()
    lq, gt = module.train_set[1]
    assert lq.shape == (3, 5, 4, 4) and gt.shape == (3, 16, 16)
