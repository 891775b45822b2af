"""Frame sources and sinks: video files through PyAV (streamed), PNG/JPG frame folders.

Frames are ``(H, W, 3)`` uint8 RGB arrays. A source is read one frame at a time, never the whole
video at once; a sink writes to a temporary name and renames only when complete, so a killed
run leaves nothing that looks finished. Every problem with an input is an :class:`InputError`
naming the file (and the frame index when known).

An input file is a video when PyAV opens it with a video stream (:func:`is_video_file`), whatever
its name: an MPEG-2 ``.mpg`` or a ``.ts`` capture plays. Outputs still need a name rule to pick a
container and codec (:func:`is_video_path`, :data:`VIDEO_SUFFIXES`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from shared.engine import InputError

__all__ = [
    "FRAME_SUFFIXES",
    "VIDEO_SUFFIXES",
    "FrameFolderWriter",
    "FrameSource",
    "VideoFileWriter",
    "clip_sources",
    "frame_size",
    "frame_writer",
    "is_video_file",
    "is_video_path",
    "list_frames",
    "open_source",
    "read_frame",
    "write_png",
]

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v")
DEFAULT_FPS = Fraction(25)


def is_video_path(path: Path) -> bool:
    """True when ``path`` names a video file by its ending: the rule for outputs, which do not
    exist yet (inputs are probed by :func:`is_video_file`)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def _still_image_format(name: str) -> bool:
    # FFmpeg opens single images (png_pipe, jpeg_pipe, image2) and text (tty) with a "video"
    # stream too; none of them is a clip.
    return any(part == "image2" or part == "tty" or part.endswith("_pipe")
               for part in name.split(","))  # fmt: skip


def is_video_file(path: Path) -> bool:
    """True when PyAV opens the file ``path`` with a video stream (not a still image): probed by
    content, so any container FFmpeg reads counts, whatever the file's ending."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.video) and not _still_image_format(container.format.name)
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return False


def frame_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image file from its header (the pixels are not decoded)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable image ({err})") from None
    return height, width


def list_frames(folder: Path) -> list[Path]:
    """The image files of a frame folder, in name order; ``InputError`` when there are none."""
    if not folder.is_dir():
        raise InputError(f"{folder}: frame folder not found")
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not frames:
        raise InputError(f"{folder}: no PNG/JPG frames inside")
    return frames


def clip_sources(path: Path) -> dict[str, Path]:
    """Clip name -> frame folder or video, for a clip folder, a root of clips, or a video."""
    if not path.exists():
        raise InputError(f"{path}: not found")
    if path.is_file():
        if not is_video_file(path):
            raise InputError(f"{path}: not a video (PyAV finds no video stream) nor a folder")
        return {path.stem: path}
    if any(p.suffix.lower() in FRAME_SUFFIXES for p in path.iterdir()):
        return {path.name: path}
    clips = {
        (p.stem if p.is_file() else p.name): p
        for p in sorted(path.iterdir())
        if (p.is_dir() and not p.name.startswith(".")) or is_video_file(p)
    }
    if not clips:
        raise InputError(f"{path}: no clips (frame folders or videos) inside")
    return clips


def read_frame(path: Path) -> np.ndarray:
    """One image file as ``(H, W, 3)`` uint8 RGB."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable image ({err})") from None


def write_png(path: Path, frame: np.ndarray) -> None:
    """Write ``(H, W, 3)`` uint8 RGB as PNG (not atomic: callers write into temporary places)."""
    Image.fromarray(frame).save(path, format="PNG")


@dataclass
class FrameSource:
    """A video file or a frame folder, read frame by frame.

    ``count`` is the number of frames when known beforehand (a folder; a video's header, which
    may be absent or wrong: the iterator is the truth), ``size`` is ``(H, W)`` of the first frame.
    """

    path: Path
    fps: Fraction
    size: tuple[int, int]
    count: int | None
    frames_list: list[Path] | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        """Frames in order; every frame must have the first frame's size."""
        if self.frames_list is not None:
            for index, file in enumerate(self.frames_list):
                frame = read_frame(file)
                self._check_size(frame, f"{file} (frame {index})")
                yield frame
            return
        yield from self._video_frames()

    def _check_size(self, frame: np.ndarray, where: str) -> None:
        if frame.shape[:2] != self.size:
            raise InputError(
                f"{where}: frame size {frame.shape[1]}x{frame.shape[0]} differs from the first "
                f"frame's {self.size[1]}x{self.size[0]}; all frames of a clip must match"
            )

    def _video_frames(self) -> Iterator[np.ndarray]:
        index = 0
        try:
            with av.open(str(self.path)) as container:
                for frame in container.decode(video=0):
                    array = frame.to_ndarray(format="rgb24")
                    self._check_size(array, f"{self.path} (frame {index})")
                    yield array
                    index += 1
        except (av.FFmpegError, OSError) as err:
            raise InputError(f"{self.path}: unreadable video at frame {index} ({err})") from None
        if index == 0:
            raise InputError(f"{self.path}: no decodable video frames")
        if self.count and index < self.count - 1:  # one frame of slack for duration rounding
            # FFmpeg often stops quietly at a truncated file: compare with the header's count.
            raise InputError(
                f"{self.path}: truncated video: decoding stopped at frame {index} of "
                f"{self.count} announced"
            )


def _announced_frames(container, stream, fps: Fraction) -> int | None:
    """Frames the file's headers promise: the stream's count, else its duration times fps.

    Matroska stores no frame count; its duration (the container's, trusted only when the video
    is the sole stream) still tells a truncated file from a complete one.
    """
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base:
        return round(float(stream.duration * stream.time_base * fps))
    if container.duration and len(container.streams) == 1:
        return round(container.duration / av.time_base * float(fps))
    return None


def _open_video(path: Path) -> FrameSource:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            stream = container.streams.video[0]
            fps = stream.average_rate or stream.guessed_rate or DEFAULT_FPS
            first = next(container.decode(video=0), None)
            if first is None:
                raise InputError(f"{path}: no decodable video frames")
            size = (first.height, first.width)
            count = _announced_frames(container, stream, Fraction(fps))
    except (av.FFmpegError, OSError) as err:
        raise InputError(f"{path}: unreadable video ({err})") from None
    return FrameSource(path, Fraction(fps), size, count)


def open_source(path: str | Path, fps: float | None = None) -> FrameSource:
    """A :class:`FrameSource` for a video file or a folder of frames (``fps`` for folders)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found")
    if path.is_dir():
        files = list_frames(path)
        first = read_frame(files[0])
        rate = Fraction(fps).limit_denominator(1001) if fps else DEFAULT_FPS
        return FrameSource(path, rate, first.shape[:2], len(files), files)
    if not is_video_file(path):
        raise InputError(f"{path}: not a video (PyAV finds no video stream) nor a folder of frames")
    return _open_video(path)


class _CloseOrAbort:
    """``with writer:`` closes (renames into place) on success and aborts on any error."""

    def close(self) -> Path:  # noqa: D102
        raise NotImplementedError

    def abort(self) -> None:  # noqa: D102
        raise NotImplementedError

    def __enter__(self) -> _CloseOrAbort:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


class VideoFileWriter(_CloseOrAbort):
    """Encode frames into a video file: FFV1 (lossless, ``.mkv``/``.avi``) or H.264 (``.mp4``).

    Frames go to a hidden temporary file beside the target, renamed onto it by :meth:`close`;
    :meth:`abort` (also on an exception inside ``with``) deletes it.
    """

    def __init__(self, target: Path, fps: Fraction, codec: str | None = None) -> None:
        self.target = target
        suffix = target.suffix.lower()
        self.codec = codec or ("libx264" if suffix in (".mp4", ".m4v", ".mov") else "ffv1")
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
        os.close(handle)  # PyAV reopens the file by name
        self.tmp = Path(name)
        self.container = av.open(str(self.tmp), mode="w")
        self.stream = self.container.add_stream(self.codec, rate=fps)
        self.stream.pix_fmt = "bgr0" if self.codec == "ffv1" else "yuv420p"
        if self.codec == "libx264":
            self.stream.options = {"crf": "17", "preset": "medium"}
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame."""
        if self.frames == 0:
            height, width = frame.shape[:2]
            if self.codec == "libx264" and (height % 2 or width % 2):
                raise InputError(f"{self.target}: H.264 needs even sizes, got {width}x{height}")
            self.stream.width, self.stream.height = width, height
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        self.container.mux(self.stream.encode(video_frame))
        self.frames += 1

    def close(self) -> Path:
        """Flush, close and rename into place."""
        self.container.mux(self.stream.encode(None))
        self.container.close()
        self.tmp.replace(self.target)
        return self.target

    def abort(self) -> None:
        """Drop the partial file."""
        try:
            self.container.close()
        except (av.FFmpegError, OSError, ValueError):
            pass
        self.tmp.unlink(missing_ok=True)



class FrameFolderWriter(_CloseOrAbort):
    """Write numbered PNG frames into a hidden temporary folder, renamed onto ``target`` at close.

    ``overwrite`` replaces an existing ``target`` folder only once the new one is complete.
    """

    def __init__(self, target: Path, overwrite: bool = False) -> None:
        self.target, self.overwrite = target, overwrite
        target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one frame as ``%08d.png``."""
        write_png(self.tmp / f"{self.frames:08d}.png", frame)
        self.frames += 1

    def close(self) -> Path:
        """Move the finished folder into place."""
        if self.target.exists() and self.overwrite:
            shutil.rmtree(self.target)
        self.tmp.rename(self.target)
        return self.target

    def abort(self) -> None:
        """Drop the partial folder."""
        shutil.rmtree(self.tmp, ignore_errors=True)



def frame_writer(
    target: Path, fps: Fraction, overwrite: bool = False
) -> VideoFileWriter | FrameFolderWriter:
    """A video writer when ``target`` ends like a video, else a PNG frame-folder writer."""
    if is_video_path(target):
        return VideoFileWriter(target, fps)
    return FrameFolderWriter(target, overwrite)
