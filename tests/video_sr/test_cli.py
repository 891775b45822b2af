"""hv-vsr end to end: train, upscale a video, degrade, evaluate, and every bad input refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import video_sr
from shared.engine import (
    CHECKPOINT_KEY,
    InputError,
    load_checkpoint,
    load_for_inference,
    read_checkpoint,
)
from video_sr import upscale as upscale_module
from video_sr.cli import main as hv_vsr
from video_sr.io import VideoFileWriter, open_source
from video_sr.metrics import psnr
from video_sr.plan import VIDEO_SR
from video_sr.upscale import upscale

from .conftest import moving_frames, write_clip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of a two-step x4 run on two tiny GT-only clips."""
    root = tmp_path_factory.mktemp("vsr")
    write_clip(root / "data" / "clip_a", moving_frames(6, 32, 48, 0))
    write_clip(root / "data" / "clip_b", moving_frames(5, 32, 48, 1))
    code = hv_vsr([
        "train", "--data.root", str(root / "data"), "--data.patch", "8",
        "--data.num_frames", "3", "--model.preset", "vsr_tiny", "--trainer.batch_size", "2",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.progress", "false", "--run.runs_dir", str(root / "runs"), "--run.name", "t",
    ])  # fmt: skip
    assert code == 0
    return root / "runs" / "t" / "checkpoints" / "best.ckpt"


def test_checkpoint_carries_scale_window_and_degradation(trained: Path) -> None:
    _, plan = read_checkpoint(trained, VIDEO_SR)
    assert (plan.scale, plan.num_frames, plan.degradation) == (4, 3, "BI")
    assert load_checkpoint(trained)[CHECKPOINT_KEY]["vertical"] == "video_sr"
    summary = json.loads((trained.parent.parent / "summary.json").read_text())
    assert summary["final_metrics"]["val/psnr_y"] > 15  # BasicSR-convention PSNR logged


def test_upscale_writes_a_playable_x4_video_with_the_fps(
    trained: Path, video: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out" / "up.mp4"
    assert hv_vsr(["upscale", str(video), "-o", str(out), "--checkpoint", str(trained),
                   "--tile", "12", "--no-progress"]) == 0  # fmt: skip
    result = open_source(out)
    assert result.size == (64, 96) and result.fps == Fraction(12)
    assert len(list(result)) == 8
    assert "peak RSS" in capsys.readouterr().out
    # Tiled (8-pixel tiles, blended) and whole-frame inference agree closely.
    whole = tmp_path / "whole"
    assert hv_vsr(["upscale", str(video), "-o", str(whole), "--checkpoint", str(trained),
                   "--tile", "0", "--no-progress"]) == 0  # fmt: skip
    frames = list(open_source(whole))
    assert len(frames) == 8 and not any(p.name.startswith(".") for p in whole.parent.iterdir())
    for tiled_frame, whole_frame in zip(open_source(out), frames, strict=True):
        assert psnr(tiled_frame, whole_frame) > 30  # H.264 CRF 17 and tile seams, both small


def test_upscale_refuses_to_overwrite(trained: Path, video: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    assert hv_vsr(["upscale", str(video), "-o", str(video), "--checkpoint", str(trained)]) == 2
    assert "overwrite the input" in capsys.readouterr().err
    existing = tmp_path / "existing.mkv"
    existing.write_bytes(b"keep me")
    assert hv_vsr(["upscale", str(video), "-o", str(existing), "--checkpoint", str(trained)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert existing.read_bytes() == b"keep me"


def test_killed_upscale_leaves_nothing_that_looks_complete(
    trained: Path, video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = load_for_inference(trained, VIDEO_SR)
    calls = {"n": 0}
    real = upscale_module.tiled_forward

    def dies_on_the_third_frame(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(upscale_module, "tiled_forward", dies_on_the_third_frame)
    for target in (tmp_path / "out" / "up.mkv", tmp_path / "out" / "frames"):
        calls["n"] = 0
        with pytest.raises(KeyboardInterrupt):
            upscale(model, video, target, progress=False)
        assert list((tmp_path / "out").iterdir()) == []


def test_upscale_killed_by_sigterm_leaves_nothing_under_the_output_name(
    trained: Path, tmp_path: Path
) -> None:
    """``hv-vsr upscale`` to a video file, in its own process, stopped mid-way by SIGTERM (``kill``,
    a job scheduler): it exits with 143 and leaves no file under the target's name and no
    temporary file beside it. (Ctrl-C's KeyboardInterrupt: the test above.)"""
    long_clip = tmp_path / "long.mkv"
    with VideoFileWriter(long_clip, Fraction(25)) as writer:
        frames = moving_frames(8, 16, 24)
        for index in range(1500):  # far more than get upscaled before the signal
            writer.write(frames[index % 8])
    out = tmp_path / "out" / "up.mkv"
    out.parent.mkdir()
    env = dict(os.environ, PYTHONPATH=str(Path(video_sr.__file__).parents[1]))
    command = [sys.executable, "-m", "video_sr.cli", "upscale", str(long_clip), "-o", str(out),
               "--checkpoint", str(trained), "--tile", "0", "--no-progress"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        # Wait until the writer has opened its hidden temporary file (the frame loop follows),
        # then let a few frames be encoded into it (the muxer flushes to disk only every 256 KiB).
        while not list(out.parent.glob(f".{out.name}.*")):
            assert process.poll() is None, process.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "upscale never opened its output"
            time.sleep(0.05)
        time.sleep(1.0)
        assert process.poll() is None, "finished before the signal: make the clip longer"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    assert list(out.parent.iterdir()) == []


def test_truncated_video_is_one_line_error_and_no_output(
    trained: Path, video: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    out = tmp_path / "out.mkv"
    assert hv_vsr(["upscale", str(broken), "-o", str(out), "--checkpoint", str(trained),
                   "--no-progress"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "broken.mkv" in err and "frame" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mkv", "clip.mkv"]


def test_fewer_frames_than_the_window_are_padded_and_said(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    clip = write_clip(tmp_path / "short", moving_frames(2, 8, 12))
    out = tmp_path / "short_x4"
    assert hv_vsr(["upscale", str(clip), "-o", str(out), "--checkpoint", str(trained),
                   "--no-progress"]) == 0  # fmt: skip
    assert "fewer than the 3-frame window" in capsys.readouterr().out
    assert len(list(out.iterdir())) == 2


def test_degrade_crops_odd_sizes_then_evaluate_scores(tmp_path: Path) -> None:
    source = tmp_path / "src.mkv"
    with VideoFileWriter(source, Fraction(25)) as writer:
        for frame in moving_frames(3, 34, 50):  # not multiples of 4
            writer.write(frame)
    dataset = tmp_path / "ds"
    assert hv_vsr(["degrade", str(source), "-o", str(dataset), "--scale", "4"]) == 0
    gt = sorted((dataset / "gt" / "src").iterdir())
    lq = sorted((dataset / "lq" / "src").iterdir())
    assert len(gt) == len(lq) == 3
    assert open_source(dataset / "gt" / "src").size == (32, 48)
    assert open_source(dataset / "lq" / "src").size == (8, 12)
    assert hv_vsr(["degrade", str(source), "-o", str(dataset)]) == 2  # exists: refused


def test_evaluate_writes_json_csv_and_figures(tmp_path: Path) -> None:
    frames = moving_frames(3, 32, 48)
    gt = write_clip(tmp_path / "gt" / "c", frames)
    noisy = [np.clip(f.astype(int) + 3, 0, 255).astype(np.uint8) for f in frames]
    pred = write_clip(tmp_path / "pred" / "c", noisy)
    out = tmp_path / "eval"
    assert hv_vsr(["evaluate", str(pred.parent), str(gt.parent), "-o", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert len(summary["frames"]) == 3 and 30 < summary["psnr_rgb"] < 50
    assert (out / "metrics.csv").read_text().startswith("clip,frame,psnr_y,psnr_rgb,ssim_y")
    for name in ("psnr_per_frame.png", "crops.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="no prediction for clip"):
        from video_sr.evaluate import evaluate_folders

        write_clip(tmp_path / "gt" / "d", frames)
        evaluate_folders(pred.parent, gt.parent, out)


def test_evaluate_leaves_out_a_scale_wide_border_by_default(tmp_path: Path) -> None:
    """BasicSR's crop_border = scale: errors only in the 4-pixel frame border of an x4 result do
    not count. Inside it every channel is off by exactly 1 (lowest bit flipped), so RGB PSNR is
    10 log10(255^2 / 1) exactly; with --crop-border 0 the border's errors count."""
    frames = moving_frames(3, 32, 48)
    gt = write_clip(tmp_path / "gt" / "c", frames)
    outputs = []
    for frame in frames:
        output = 255 - frame  # wrong everywhere ...
        output[4:-4, 4:-4] = frame[4:-4, 4:-4] ^ 1  # ... but by 1 inside the border
        outputs.append(output)
    pred = write_clip(tmp_path / "pred" / "c", outputs)
    out = tmp_path / "eval"
    assert hv_vsr(["evaluate", str(pred.parent), str(gt.parent), "-o", str(out), "--scale", "4",
                   "--no-ssim"]) == 0  # fmt: skip
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["psnr_rgb"] == pytest.approx(20 * np.log10(255.0), abs=1e-9)
    assert hv_vsr(["evaluate", str(pred.parent), str(gt.parent), "-o", str(tmp_path / "all"),
                   "--scale", "4", "--crop-border", "0", "--no-ssim"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "all" / "metrics.json").read_text())["psnr_rgb"] < 20


def test_bf16_upscale_stays_close_to_fp32(trained: Path, video: Path, tmp_path: Path) -> None:
    model, _ = load_for_inference(trained, VIDEO_SR)
    fp32 = upscale(model, video, tmp_path / "fp32", tile=None, progress=False)
    bf16 = upscale(model, video, tmp_path / "bf16", tile=None, bf16=True, progress=False)
    assert fp32.frames == bf16.frames == 8
    for a, b in zip(open_source(tmp_path / "fp32"), open_source(tmp_path / "bf16"), strict=True):
        assert psnr(a, b) > 35


def test_export_gives_the_checkpoint_network(trained: Path, tmp_path: Path) -> None:
    import torch

    out = tmp_path / "vsr.pt2"
    assert hv_vsr(["export", "--checkpoint", str(trained), "-o", str(out)]) == 0
    program = torch.export.load(out).module()
    model, _ = load_for_inference(trained, VIDEO_SR)
    x = torch.rand(1, 3, 3, 64, 64)  # the exported tile (64 LR pixels), 3 frames, any batch
    torch.testing.assert_close(program(x), model(x), atol=1e-5, rtol=1e-5)


def test_max_memory_picks_a_tile_that_fits(trained: Path, video: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    from shared.memory import current_rss_mib, peak_memory
    from video_sr.upscale import IO_ALLOWANCE_MIB, tile_for_memory

    model, _ = load_for_inference(trained, VIDEO_SR)
    frame = (180, 320)  # LR of a 720p output
    tile_for_memory(model, 1e6, frame)  # load the profiler once, so RSS is steady below
    base = current_rss_mib()
    tiles = [tile_for_memory(model, base + extra, frame) for extra in (160, 220, 300)]
    assert all(t is not None and t % 8 == 0 for t in tiles) and tiles[0] < tiles[1] < tiles[2]
    # The chosen tile's measured activation peak fits in what the budget leaves free.
    buffers = (3 * 3 * 180 * 320 + 2 * 3 * 16 * 180 * 320) * 4 / 2**20 + IO_ALLOWANCE_MIB
    x = torch.rand(1, 3, 3, tiles[1], tiles[1])
    with torch.inference_mode():
        used = peak_memory(lambda: model(x)) / 2**20
    assert used <= 220 - buffers
    assert tile_for_memory(model, 1e6, (36, 44)) is None  # whole frames fit
    with pytest.raises(InputError, match="--max-memory"):
        tile_for_memory(model, 10, frame)
    out = tmp_path / "up"
    assert hv_vsr(["upscale", str(video), "-o", str(out), "--checkpoint", str(trained),
                   "--max-memory", "100000", "--no-progress"]) == 0  # fmt: skip
    assert "whole frames fit" in capsys.readouterr().out and len(list(out.iterdir())) == 8
