"""The PSNR headline: per frame, mean over each clip's frames, then over clips, in training's
``val/psnr_y`` (reduced across DDP ranks, padded repeats counted once) and ``hv-vsr evaluate``."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from video_sr.data import ValClips, ValItem, discover_clips
from video_sr.evaluate import evaluate_folders
from video_sr.metrics import ClipMean, frames_by_clip, mean_over_clips, psnr

from .conftest import moving_frames, write_clip

ROOT = Path(__file__).resolve().parents[2]


def test_mean_over_clips_golden_numbers() -> None:
    # Clip A frames [30, 32], clip B [40]: (31 + 40) / 2 = 35.5; pooled over frames would be 34.
    assert mean_over_clips(["A", "A", "B"], [0, 1, 0], [30.0, 32.0, 40.0]) == 35.5
    # A repeated (clip, frame), as DDP padding makes, counts once, whatever the arrival order.
    assert mean_over_clips(["B", "A", "A", "A"], [0, 1, 0, 1], [40.0, 32.0, 30.0, 32.0]) == 35.5
    assert frames_by_clip([1, 0, 0], [0, 1, 0], [40.0, 32.0, 30.0]) == {0: [30.0, 32.0], 1: [40.0]}
    # Three clips of 1, 2 and 3 frames: ((10) + (20 + 22) / 2 + (30 + 33 + 36) / 3) / 3.
    clips, frames = ["x", "y", "y", "z", "z", "z"], [0, 0, 1, 0, 1, 2]
    values = [10.0, 20.0, 22.0, 30.0, 33.0, 36.0]
    assert mean_over_clips(clips, frames, values) == pytest.approx((10 + 21 + 33) / 3, abs=1e-12)


def test_clip_mean_metric_accumulates_batches_and_drops_repeats() -> None:
    metric = ClipMean()
    metric.update(torch.tensor([0]), torch.tensor([0]), [30.0])
    metric.update(torch.tensor([1, 0]), torch.tensor([0, 1]), [40.0, 32.0])
    metric.update(torch.tensor([0]), torch.tensor([0]), [30.0])  # a padded repeat
    value = metric.compute()
    assert value.dtype == torch.float64 and float(value) == 35.5


def test_val_items_carry_clip_and_frame(dataset: Path) -> None:
    clips = discover_clips(dataset)  # two clips of 6 frames
    val = ValClips(clips, 4, 3, "BI", stride=4)
    items = [val[i] for i in range(len(val))]
    assert [(item.clip, item.frame) for item in items] == [(0, 0), (0, 4), (1, 2)]
    assert isinstance(items[0], ValItem) and items[0].inputs.shape == (3, 3, 8, 12)
    batch = torch.utils.data.default_collate(items[:2])
    assert isinstance(batch, ValItem) and batch.clip.tolist() == [0, 0]
    assert batch.frame.tolist() == [0, 4]


def test_evaluate_scores_clips_not_frames(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gt_a, gt_b = moving_frames(2, 32, 48, 0), moving_frames(1, 32, 48, 1)
    # Clip a nearly right (high PSNR), clip b noisy (low): clip and frame means differ by dB.
    pred_a = [np.clip(f.astype(int) + rng.integers(-2, 3, f.shape), 0, 255).astype(np.uint8)
              for f in gt_a]  # fmt: skip
    pred_b = [rng.integers(0, 256, gt_b[0].shape).astype(np.uint8)]
    for root, (a, b) in {"gt": (gt_a, gt_b), "pred": (pred_a, pred_b)}.items():
        write_clip(tmp_path / root / "a", a)
        write_clip(tmp_path / root / "b", b)
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "gt", tmp_path / "eval", 4,
                               with_ssim=False)  # fmt: skip
    y = [psnr(p, g, 4, y_channel=True) for p, g in zip(pred_a + pred_b, gt_a + gt_b, strict=True)]
    assert [row["psnr_y"] for row in summary["frames"]] == y
    by_hand = ((y[0] + y[1]) / 2 + y[2]) / 2
    assert summary["psnr_y"] == pytest.approx(by_hand, abs=1e-12)
    assert abs(summary["psnr_y"] - np.mean(y)) > 1.0  # the pooled mean is another number
    assert summary["per_clip"]["a"]["psnr_y"] == pytest.approx((y[0] + y[1]) / 2, abs=1e-12)


VALIDATE_SCRIPT = """
import json, sys
import lightning.pytorch as pl
import torch
from shared.engine import RunConfig
from shared.engine.config import OptimConfig, RegularizationConfig, RunFolderConfig, TrainerConfig
from video_sr.metrics import psnr
from video_sr.task import VSRDataConfig, VSRModelConfig, _to_uint8, build_task


def validate(root, out, devices):
    pl.seed_everything(0, verbose=False)
    cfg = RunConfig(VSRDataConfig(root=root, val_clips=["b", "c"], num_frames=3, tile=0),
                    VSRModelConfig(preset="vsr_tiny"), OptimConfig(),
                    TrainerConfig(batch_size=1, progress=False), RegularizationConfig(),
                    RunFolderConfig())
    module, data = build_task(cfg)
    with torch.no_grad():  # an untrained network is its bicubic skip: perturb it, seeded
        for parameter in module.model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    trainer = pl.Trainer(accelerator="cpu", devices=devices,
                         strategy="ddp" if devices > 1 else "auto", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    result = trainer.validate(module, datamodule=data, verbose=False)[0]
    result["frames"] = []
    if devices == 1:  # per-frame PSNR outside Lightning, for the hand-computed reference
        module.eval()
        with torch.no_grad():
            for item in data.val_set:
                output = module.infer(item.inputs[None])
                pred, gt = _to_uint8(output)[0].numpy(), _to_uint8(item.targets[None])[0].numpy()
                result["frames"].append([item.clip, item.frame,
                                         psnr(pred, gt, 4, y_channel=True), psnr(pred, gt, 4)])
    with open(f"{out}/devices{devices}-rank{trainer.global_rank}.json", "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":  # Lightning's DDP launcher reruns this command for rank 1
    torch.set_num_threads(1)
    validate(sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 48, 3), dtype=np.uint8)


def test_ddp_validation_psnr_equals_the_single_process_clip_mean(tmp_path: Path) -> None:
    """2 CPU processes (gloo): 5 held-out frames (clips of 2 and 3) are padded to 6 by
    Lightning's DistributedSampler (item 0 twice); the repeat must not count, clips must weigh
    equally, and both ranks must give exactly the single-process value."""
    root = tmp_path / "data"
    write_clip(root / "a", moving_frames(3, 32, 48, 0))  # the training clip
    write_clip(root / "b", [moving_frames(1, 32, 48, 1)[0], _noise(1)])  # high, then low PSNR
    write_clip(root / "c", [_noise(2), _noise(3), _noise(4)])
    script = tmp_path / "validate.py"
    script.write_text(VALIDATE_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script), str(root), str(tmp_path), "2"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the DDP ranks: the same per-frame numbers to the last bit
    try:
        runpy.run_path(str(script))["validate"](str(root), str(tmp_path), 1)
    finally:
        torch.set_num_threads(threads)
    single = json.loads((tmp_path / "devices1-rank0.json").read_text())
    ranks = [json.loads((tmp_path / f"devices2-rank{r}.json").read_text()) for r in (0, 1)]
    frames = single["frames"]
    assert [(c, f) for c, f, _, _ in frames] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    for column, key in ((2, "val/psnr_y"), (3, "val/psnr_rgb")):
        b, c = [row[column] for row in frames[:2]], [row[column] for row in frames[2:]]
        by_hand = (sum(b) / 2 + sum(c) / 3) / 2
        assert single[key] == pytest.approx(by_hand, abs=1e-9), key
        pooled = sum(b + c) / 5
        with_repeat = (sum(b + [b[0]]) / 3 + sum(c) / 3) / 2  # item 0 counted twice
        assert abs(single[key] - pooled) > 0.3 and abs(single[key] - with_repeat) > 0.3, key
        assert ranks[0][key] == ranks[1][key] == single[key], key  # exactly, on every rank
