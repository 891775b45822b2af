"""hv-vsr error contract: each bad invocation exits 2 with one line naming the flag or file, no
traceback, nothing written (table rows run by :func:`tests.errors_helpers.check_refusal`); and
the fixes behind some rows: inputs probed as videos by content, stochastic depth honoured."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from .errors_helpers import Bad, check_refusal, rows, truncate
from .video_sr.conftest import moving_frames, write_clip

TRAIN = "train --data.root {data} --run.runs_dir {runs} --trainer.max_steps 1 " \
    "--trainer.batch_size 2 --data.patch 8 --data.num_frames 3 --model.preset vsr_tiny"
UPSCALE = "upscale {video} -o {out}/up.mkv --checkpoint {ckpt} --no-progress"

TABLE = [
    Bad("preset-typo", TRAIN + " --model.preset vsr_tinyy", "model.preset", subprocess=True),
    Bad("variant-typo", TRAIN + " --model.variant single", "model.variant"),
    Bad("degradation-typo", TRAIN + " --data.degradation BX", "data.degradation"),
    Bad("scale-5", TRAIN + " --data.scale 5", "data.scale"),
    Bad("loss-typo", TRAIN + " --model.loss l3", "model.loss"),
    Bad("patch-zero", TRAIN + " --data.patch 0", "data.patch"),
    Bad("patch-below-8", TRAIN + " --data.patch 4", "--data.patch"),
    Bad("tile-3", TRAIN + " --data.tile 3", "--data.tile"),
    Bad("tile-overlap-1", TRAIN + " --data.tile_overlap 1", "data.tile_overlap"),
    Bad("even-window", TRAIN + " --data.num_frames 4", "--data.num_frames"),
    Bad("val-stride-0", TRAIN + " --data.val_stride 0", "data.val_stride"),
    Bad("mixup-on-sr", TRAIN + " --regularization.mixup_alpha 0.2",
        "--regularization.mixup_alpha"),
    Bad("val-clip-unknown", TRAIN + " --data.val_clips [zz]", "--data.val_clips"),
    Bad("root-missing", "train --data.root {data}/nope --run.runs_dir {runs}", "{data}/nope"),
    Bad("clip-smaller-than-crop", TRAIN.replace("{data}", "{small}"), "{small}/a"),
    Bad("mixed-frame-sizes", TRAIN.replace("{data}", "{mixed}"), "{mixed}/a/00000002.png"),
    Bad("upscale-overlap-1", UPSCALE + " --tile-overlap 1", "--tile-overlap"),
    Bad("upscale-overlap-negative", UPSCALE + " --tile 8 --tile-overlap -0.1", "--tile-overlap"),
    Bad("upscale-tile-3", UPSCALE + " --tile 3", "--tile"),
    Bad("upscale-scale-mismatch", UPSCALE + " --scale 2", "--scale 2"),
    Bad("upscale-shipped-weights-scale-2", "upscale {video} -o {out}/up.mkv --scale 2 "
        "--no-progress", "--scale 2"),
    Bad("upscale-fps-zero", UPSCALE.replace("{video}", "{data}/a") + " --fps 0", "--fps"),
    Bad("upscale-max-memory-zero", UPSCALE + " --max-memory 0", "--max-memory"),
    Bad("upscale-no-such-device", UPSCALE + " --device cuda:99", "--device"),
    Bad("upscale-truncated-video", UPSCALE.replace("{video}", "{truncated}"), "{truncated}"),
    Bad("upscale-text-named-mp4", UPSCALE.replace("{video}", "{text}"), "{text}"),
    Bad("upscale-missing-input", UPSCALE.replace("{video}", "{data}/nope.mkv"),
        "{data}/nope.mkv"),
    Bad("upscale-folder-without-frames", UPSCALE.replace("{video}", "{empty}"), "{empty}"),
    Bad("upscale-output-exists", "upscale {video} -o {existing} --checkpoint {ckpt}",
        "{existing}", watch=("{existing}",)),
    Bad("upscale-truncated-checkpoint", UPSCALE.replace("{ckpt}", "{bad_ckpt}"), "{bad_ckpt}"),
    Bad("upscale-not-a-checkpoint", UPSCALE.replace("{ckpt}", "{video}"), "{video}"),
    Bad("upscale-hv-med-checkpoint", UPSCALE.replace("{ckpt}", "{med_ckpt}"), "{med_ckpt}"),
    Bad("degrade-negative-frames", "degrade {video} -o {out} --max-frames -1", "--max-frames"),
    Bad("evaluate-crop-border-too-large", "evaluate {data}/a {data}/a -o {out} --crop-border 20",
        "--crop-border 20"),
]  # fmt: skip


def write_mpeg2(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    """An MPEG-2 program stream (``.mpg``), as DVD rips and old cameras store video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg2video", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def vsr(vsr_run: dict[str, str], med_run: dict[str, str],
        tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:  # fmt: skip
    """The trained run's paths plus the bad inputs the rows name."""
    from video_sr.io import VideoFileWriter

    root = tmp_path_factory.mktemp("vsr_bad")
    video = root / "clip.mkv"
    with VideoFileWriter(video, Fraction(12)) as writer:
        for frame in moving_frames(6, 16, 24):
            writer.write(frame)
    (root / "text.mp4").write_text("not a video\n")
    (root / "empty").mkdir()
    (root / "existing.mkv").write_bytes(b"keep me")
    # Training sets: one clip of 16x16 frames (4x4 LR at x4, smaller than the 8-pixel crop);
    # one clip whose third frame is taller than the others.
    write_clip(root / "small" / "a", moving_frames(4, 16, 16, 0))
    write_clip(root / "small" / "b", moving_frames(3, 32, 32, 1))
    write_clip(root / "mixed" / "a", moving_frames(4, 32, 32, 0))
    write_clip(root / "mixed" / "b", moving_frames(3, 32, 32, 1))
    write_clip(root / "mixed" / "tall", moving_frames(1, 40, 32, 2))
    (root / "mixed" / "tall" / "00000000.png").rename(root / "mixed" / "a" / "00000002.png")
    (root / "mixed" / "tall").rmdir()
    return {**vsr_run, "med_ckpt": med_run["ckpt"], "video": str(video),
            "truncated": str(truncate(video, root / "truncated.mkv", 0.3)),
            "text": str(root / "text.mp4"), "empty": str(root / "empty"),
            "existing": str(root / "existing.mkv"), "small": str(root / "small"),
            "mixed": str(root / "mixed"),
            "bad_ckpt": str(truncate(Path(vsr_run["ckpt"]), root / "truncated.ckpt"))}  # fmt: skip


@pytest.mark.parametrize("row", rows(TABLE))
def test_hv_vsr_refuses(row: Bad, vsr: dict[str, str], tmp_path: Path,
                        capfd: pytest.CaptureFixture) -> None:  # fmt: skip
    check_refusal("video_sr.cli", row, vsr, tmp_path, capfd)


def test_mpeg2_file_named_mpg_upscales(vsr: dict[str, str], tmp_path: Path) -> None:
    """Inputs are videos when PyAV finds a video stream, not when their ending is on a list."""
    from video_sr.cli import main
    from video_sr.io import is_video_file, open_source

    clip = write_mpeg2(tmp_path / "clip.mpg", moving_frames(5, 16, 32))
    assert is_video_file(clip)
    out = tmp_path / "up.mkv"
    assert main(["upscale", str(clip), "-o", str(out), "--checkpoint", vsr["ckpt"],
                 "--no-progress"]) == 0  # fmt: skip
    result = open_source(out)
    assert result.size == (64, 128) and len(list(result)) == 5


def test_video_probe_refuses_stills_text_and_folders(vsr: dict[str, str]) -> None:
    from video_sr.io import is_video_file

    frame = sorted(Path(vsr["data"], "a").iterdir())[0]
    assert is_video_file(Path(vsr["video"]))
    for path in (frame, Path(vsr["text"]), Path(vsr["empty"]), Path(vsr["data"]) / "nope"):
        assert not is_video_file(path), path


def test_drop_path_rate_reaches_every_body_block(vsr: dict[str, str]) -> None:
    """``--regularization.drop_path_rate`` was accepted and ignored; now the body's residual
    blocks drop their branch with rates rising linearly to it (training only)."""
    from timm.layers import DropPath

    from shared.cli import parse_task_command
    from video_sr.cli import SPEC
    from video_sr.task import build_task

    argv = ["--data.root", vsr["data"], "--data.patch", "8", "--data.num_frames", "3",
            "--model.preset", "vsr_tiny", "--regularization.drop_path_rate", "0.3"]  # fmt: skip
    _, cfg = parse_task_command(SPEC, "train", "", argv, lambda parser: None)
    model = build_task(cfg)[0].model
    rates = [m.drop_prob for m in model.body.modules() if isinstance(m, DropPath)]
    depth = len(model.body)  # vsr_tiny: 1 residual + 2 hybrid blocks; the first rate is 0
    assert rates == pytest.approx(torch.linspace(0, 0.3, depth).tolist()[1:])
    # The last conv starts at zero (the untrained net is bicubic): wake it to see the body.
    torch.nn.init.normal_(model.upsample[2].weight, std=0.1)
    frames = torch.rand(4, 3, 3, 8, 8)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(frames), model(frames))
        model.train()
        torch.manual_seed(0)
        first = model(frames)
        torch.manual_seed(1)
        assert not torch.allclose(first, model(frames))


def test_config_yaml_round_trips_and_checkpoint_meta_is_plain(vsr: dict[str, str]) -> None:
    from shared.cli import parse_task_command
    from video_sr.cli import SPEC

    config = Path(vsr["run"]) / "config.yaml"
    _, cfg = parse_task_command(SPEC, "export", "", [], lambda parser: None, base=config)
    assert (cfg.data.scale, cfg.data.patch, cfg.data.tile_overlap) == (4, 8, 0.25)
    assert type(cfg.data.patch) is int and type(cfg.data.tile_overlap) is float
    meta = torch.load(vsr["ckpt"], map_location="cpu", weights_only=True)["hybridvision"]["plan"]
    assert meta["num_frames"] == 3 and type(meta["num_frames"]) is int
