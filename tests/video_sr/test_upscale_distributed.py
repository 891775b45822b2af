"""``hv-vsr upscale`` on two CPU processes (gloo): a folder of clips shared between ranks.

Every clip's output must be written exactly once, by one rank (both ranks get work), with no
temporary file or folder left, and equal to what one process writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from video_sr.cli import main as hv_vsr
from video_sr.io import VideoFileWriter, open_source

from .conftest import moving_frames, write_clip

ROOT = Path(__file__).resolve().parents[2]
DDP = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu"]

# Lightning's DDP launcher starts rank 1 by rerunning this script, so the job log (which rank
# upscaled which clip) is installed in both processes.
LOGGED_UPSCALE = """
import os, sys
import video_sr.upscale as upscale
from video_sr.cli import main

original = upscale.upscale

def logged(model, source, target, *args, **kwargs):
    with open(os.environ["HV_JOB_LOG"], "a") as log:
        log.write(f"{os.environ.get('LOCAL_RANK', '0')} {target}\\n")
    return original(model, source, target, *args, **kwargs)

upscale.upscale = logged
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """A checkpoint after two steps and a folder of 3 clips: two frame folders and a video."""
    root = tmp_path_factory.mktemp("vsr_ddp")
    data = root / "data"
    write_clip(data / "clip_a", moving_frames(6, 32, 48, 0))
    write_clip(data / "clip_b", moving_frames(6, 32, 48, 1))
    assert hv_vsr(["train", "--data.root", str(data), "--data.patch", "8",
                   "--data.num_frames", "3", "--model.preset", "vsr_tiny",
                   "--trainer.batch_size", "2", "--trainer.max_steps", "2",
                   "--trainer.progress", "false", "--run.runs_dir", str(root / "runs"),
                   "--run.name", "t"]) == 0  # fmt: skip
    clips = root / "clips"
    write_clip(clips / "first", moving_frames(4, 16, 24, 2))
    write_clip(clips / "second", moving_frames(3, 20, 16, 3))
    with VideoFileWriter(clips / "third.mkv", Fraction(12)) as writer:
        for frame in moving_frames(5, 16, 24, 4):
            writer.write(frame)
    return root / "runs" / "t" / "checkpoints" / "last.ckpt", clips


def _frames(path: Path) -> list[np.ndarray]:
    return list(open_source(path))


def test_two_processes_write_every_clip_once(setup, tmp_path: Path) -> None:
    checkpoint, clips = setup
    single, multi = tmp_path / "single", tmp_path / "multi"
    common = ["--checkpoint", str(checkpoint), "--no-progress", "--trainer.progress", "false"]
    assert hv_vsr(["upscale", str(clips), "-o", str(single), *common]) == 0
    script, log = tmp_path / "logged_upscale.py", tmp_path / "jobs.log"
    script.write_text(LOGGED_UPSCALE)
    result = subprocess.run(
        [sys.executable, str(script), "upscale", str(clips), "-o", str(multi), *common, *DDP],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HV_JOB_LOG": str(log)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    expected = ["first", "second", "third.mkv"]
    # Exactly the outputs, nothing else: no temporary file or folder is left.
    assert sorted(p.name for p in multi.iterdir()) == expected
    jobs = [line.split() for line in log.read_text().splitlines()]
    assert sorted(Path(target).name for _, target in jobs) == expected, "each clip once"
    assert {rank for rank, _ in jobs} == {"0", "1"}, "both processes share the clips"
    for name in expected:
        one, two = _frames(single / name), _frames(multi / name)
        assert len(two) == len(one) == len(_frames(clips / name))
        for a, b in zip(one, two, strict=True):
            np.testing.assert_array_equal(b, a)
    assert _frames(multi / "first")[0].shape == (64, 96, 3)  # x4 of 16x24


def test_several_clips_need_an_output_folder(setup, tmp_path: Path, capsys) -> None:
    checkpoint, clips = setup
    assert hv_vsr(["upscale", str(clips), "-o", str(tmp_path / "out.mkv"),
                   "--checkpoint", str(checkpoint)]) == 2  # fmt: skip
    assert "several clips need an output folder" in capsys.readouterr().err
    assert not (tmp_path / "out.mkv").exists()
