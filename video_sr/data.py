"""Video SR datasets: BasicSR paired layouts, frame folders, video files.

Accepted roots (``--data.root``):

- BasicSR paired: ``root/gt/<clip>/<frame>.png`` and ``root/lq/<clip>/<frame>.png`` (REDS, Vid4,
  Vimeo-90K); without ``lq/`` (or without a clip inside it) the LR frames are made on the fly
  with the run's degradation;
- frame folders: ``root/<clip>/<frame>.png``, GT only;
- video files: ``root/<clip>.mp4`` (any file PyAV reads as a video, whatever its ending:
  :func:`video_sr.io.is_video_file`), decoded once, streamed frame by frame, into GT frame
  folders under ``cache_dir`` (random access for training needs frames, not a compressed
  stream).

Training samples: the window of ``T`` frames centred on each frame, with reflection at the clip
ends (frame ``-1`` is frame ``1``), one random crop aligned across the frames, flips, rot90 and
temporal reversal. Validation: whole frames of the held-out clips (every ``val_stride``-th),
each with its clip and frame index (:class:`ValItem`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from shared.engine import InputError

from .io import FRAME_SUFFIXES, is_video_file, list_frames, open_source, read_frame, write_png
from .transforms import augment_clip, degrade, mod_crop, random_crop_pair

__all__ = [
    "Clip",
    "TrainClips",
    "ValClips",
    "ValItem",
    "discover_clips",
    "extract_video",
    "reflect_index",
    "window_indices",
]


@dataclass
class Clip:
    """One clip: its GT frame files and, when given, matching LR frame files."""

    name: str
    gt: list[Path]
    lq: list[Path] | None = None

    def __len__(self) -> int:
        return len(self.gt)


def reflect_index(index: int, length: int) -> int:
    """Reflection without repeating the edge: -1 -> 1, length -> length - 2 (1 frame: 0)."""
    if length == 1:
        return 0
    period = 2 * (length - 1)
    index = index % period
    return period - index if index >= length else index


def window_indices(centre: int, num_frames: int, length: int) -> list[int]:
    """The ``num_frames`` frame indices centred on ``centre``, reflected at the clip ends."""
    half = num_frames // 2
    return [reflect_index(centre + offset, length) for offset in range(-half, half + 1)]


def extract_video(video: Path, folder: Path) -> list[Path]:
    """Decode ``video`` frame by frame into ``folder/%08d.png`` (kept when already complete)."""
    done = folder / ".complete"
    if done.is_file():
        return list_frames(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(open_source(video)):
        write_png(folder / f"{index:08d}.png", frame)
    done.touch()  # marks the folder complete: an interrupted extraction is redone
    return list_frames(folder)


def _clip_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def discover_clips(root: str | Path, cache_dir: str | Path | None = None) -> list[Clip]:
    """The clips under ``root`` (layouts in the module docstring), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: data folder not found")
    gt_root = root / "gt" if (root / "gt").is_dir() else root
    lq_root = root / "lq" if (root / "gt").is_dir() and (root / "lq").is_dir() else None
    clips = []
    for folder in _clip_folders(gt_root):
        if gt_root == root and folder.name in ("lq",):
            continue
        files = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES]
        if not files:
            continue
        gt = sorted(files)
        lq = None
        if lq_root is not None and (lq_root / folder.name).is_dir():
            lq = list_frames(lq_root / folder.name)
            if len(lq) != len(gt):
                raise InputError(
                    f"{lq_root / folder.name}: {len(lq)} LR frames for {len(gt)} GT frames"
                )
        clips.append(Clip(folder.name, gt, lq))
    videos = sorted(
        p for p in gt_root.iterdir() if p.suffix.lower() not in FRAME_SUFFIXES and is_video_file(p)
    )
    if videos:
        cache = Path(cache_dir) if cache_dir else root / ".frames"
        clips += [Clip(v.stem, extract_video(v, cache / v.stem)) for v in videos]
    if not clips:
        raise InputError(f"{root}: no clips (frame folders, gt/<clip>/ folders or video files)")
    return sorted(clips, key=lambda c: c.name)


CACHE_MIB = 1024
"""Decoded frames each dataset (each loader worker) keeps in memory."""


class _ClipFrames(Dataset):
    """Shared frame reading: GT frames mod-cropped, LR read or made on the fly; [0, 1] tensors.

    Decoded frames are kept in a least-recently-used cache of ``cache_mib``: every window
    reads T + 1 frames and a frame serves 2T + 1 windows, and decoding a 720p PNG took ~40 ms
    here, more than a CPU training step of the small presets. A small dataset (the demo's,
    the bench's) is decoded once; a large one degrades to plain reading.
    """

    def __init__(
        self,
        clips: list[Clip],
        scale: int,
        num_frames: int,
        degradation: str,
        cache_mib: int = CACHE_MIB,
    ) -> None:
        self.clips, self.scale = clips, scale
        self.num_frames, self.degradation = num_frames, degradation
        self.items = [(c, i) for c, clip in enumerate(clips) for i in range(len(clip))]
        self.cache_bytes = cache_mib * 2**20
        self._cache: OrderedDict[tuple[str, Path], np.ndarray] = OrderedDict()
        self._cached = 0

    def __len__(self) -> int:
        return len(self.items)

    def _cached_frame(self, key: tuple[str, Path], make) -> np.ndarray:
        frame = self._cache.get(key)
        if frame is not None:
            self._cache.move_to_end(key)
            return frame
        frame = make()
        if frame.nbytes <= self.cache_bytes:
            self._cache[key] = frame
            self._cached += frame.nbytes
            while self._cached > self.cache_bytes:
                self._cached -= self._cache.popitem(last=False)[1].nbytes
        return frame

    def _gt(self, clip: Clip, index: int) -> np.ndarray:
        path = clip.gt[index]
        return self._cached_frame(("gt", path), lambda: mod_crop(read_frame(path), self.scale))

    def _lq(self, clip: Clip, index: int) -> np.ndarray:
        if clip.lq is not None:
            path = clip.lq[index]
            return self._cached_frame(("lq", path), lambda: read_frame(path))
        return self._cached_frame(
            ("made", clip.gt[index]),
            lambda: degrade(self._gt(clip, index), self.scale, self.degradation),
        )

    def window(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(T, 3, h, w)`` LR window and ``(3, H, W)`` GT centre frame, in [0, 1]."""
        c, centre = self.items[item]
        clip = self.clips[c]
        indices = window_indices(centre, self.num_frames, len(clip))
        lq = np.stack([self._lq(clip, i) for i in indices])
        gt = self._gt(clip, centre)
        height, width = gt.shape[:2]
        if lq.shape[1:3] != (height // self.scale, width // self.scale):
            raise InputError(
                f"{clip.gt[centre]}: GT {width}x{height} does not match LR "
                f"{lq.shape[2]}x{lq.shape[1]} at scale {self.scale}"
            )
        lq_t = torch.from_numpy(lq).permute(0, 3, 1, 2).float() / 255.0
        gt_t = torch.from_numpy(np.array(gt)).permute(2, 0, 1).float() / 255.0
        return lq_t, gt_t


class TrainClips(_ClipFrames):
    """Random aligned crops of ``patch`` LR pixels with flips, rot90 and temporal reversal."""

    def __init__(
        self,
        clips: list[Clip],
        scale: int,
        num_frames: int,
        degradation: str,
        patch: int,
        seed: int,
    ) -> None:
        super().__init__(clips, scale, num_frames, degradation)
        self.patch, self.seed = patch, seed

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Drawn from the global generator, which Lightning seeds (and seeds per worker), so a
        # run repeats with its seed while each epoch sees new crops.
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        lq, gt = self.window(item)
        lq, gt = random_crop_pair(lq, gt, self.patch, self.scale, generator)
        lq, gt = augment_clip(lq, gt, generator)
        return lq.transpose(0, 1), gt  # (3, T, h, w): the network's layout


class ValItem(NamedTuple):
    """One validation frame (batched by the default collate into a ``ValItem`` of tensors)."""

    inputs: torch.Tensor
    """``(3, T, h, w)`` LR window, the network's layout."""
    targets: torch.Tensor
    """``(3, H, W)`` GT centre frame."""
    clip: int
    """Index of the clip in ``ValClips.clips``."""
    frame: int
    """Index of the centre frame in its clip."""


class ValClips(_ClipFrames):
    """Whole frames of the held-out clips, every ``stride``-th centre frame."""

    def __init__(
        self, clips: list[Clip], scale: int, num_frames: int, degradation: str, stride: int = 1
    ) -> None:
        super().__init__(clips, scale, num_frames, degradation)
        self.items = self.items[::stride]

    def __getitem__(self, item: int) -> ValItem:
        # Clip and frame travel with the frame: the per-clip PSNR mean needs them, and DDP's
        # padding repeats items that must be recognised as repeats.
        lq, gt = self.window(item)
        clip, frame = self.items[item]
        return ValItem(lq.transpose(0, 1), gt, clip, frame)
