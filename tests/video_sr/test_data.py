"""The decoded-frame cache: same windows as reading from disk, and it keeps to its budget."""

from __future__ import annotations

from pathlib import Path

import torch

from video_sr.data import ValClips, discover_clips


def test_frame_cache_gives_the_same_windows_and_keeps_its_budget(dataset: Path) -> None:
    clips = discover_clips(dataset)
    uncached = ValClips(clips, 4, 3, "BI")
    uncached.cache_bytes = 0
    frame_bytes = 32 * 48 * 3
    cached = ValClips(clips, 4, 3, "BI")
    cached.cache_bytes = 5 * frame_bytes  # room for five GT frames (LR frames are smaller)
    for _ in range(2):  # the second pass reads from the cache
        for item in range(len(cached)):
            for a, b in zip(cached[item], uncached[item], strict=True):
                torch.testing.assert_close(a, b)
    assert 0 < cached._cached <= cached.cache_bytes and not uncached._cache
    assert cached._cached == sum(frame.nbytes for frame in cached._cache.values())
