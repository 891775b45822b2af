"""``hv-rs evaluate`` takes preprocessing and network from the checkpoint's plan: it scans and
splits the dataset but computes no statistics and searches no control width again."""

from __future__ import annotations

from pathlib import Path

import pytest

import remote_sensing.model
import remote_sensing.task
from remote_sensing.cli import main as hv_rs

from .conftest import make_eurosat


def test_evaluate_neither_recomputes_statistics_nor_searches(tmp_path: Path, monkeypatch) -> None:
    root = make_eurosat(tmp_path / "eurosat", 4)
    assert hv_rs(["train", "--data.root", str(root), "--data.chip_size", "32",
                  "--model.arch", "cnn", "--trainer.max_steps", "1", "--trainer.batch_size", "4",
                  "--trainer.progress", "false", "--trainer.accelerator", "cpu",
                  "--run.runs_dir", str(tmp_path / "runs"), "--run.name", "c"]) == 0  # fmt: skip

    def forbidden(*args, **kwargs):
        raise AssertionError("evaluate redid work the plan holds")

    monkeypatch.setattr(remote_sensing.task, "compute_stats", forbidden)
    monkeypatch.setattr(remote_sensing.task, "matched_cnn_scale", forbidden)
    monkeypatch.setattr(remote_sensing.model, "matched_cnn_scale", forbidden)
    checkpoint = tmp_path / "runs" / "c" / "checkpoints" / "last.ckpt"
    assert hv_rs(["evaluate", "--checkpoint", str(checkpoint), "--split", "val",
                  "--views", "plain"]) == 0  # fmt: skip
    with pytest.raises(AssertionError):  # the guard is live: training does both
        remote_sensing.task.compute_stats([], [1], 1.0)
