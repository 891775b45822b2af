"""``hv-rs train`` repeats itself: the same seed gives the same weights, whatever the process.

Each run is a fresh interpreter with its own hash seed, so neither albumentations' private
generator (seeded from torch's per item) nor any set or dict order may leak into the result.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from remote_sensing.data import ChipDataset, Sample
from remote_sensing.transforms import train_transform

from .conftest import make_eurosat, write_tif

ROOT = Path(__file__).resolve().parents[2]


def _train(root: Path, runs: Path, name: str, hash_seed: str) -> dict[str, torch.Tensor]:
    command = [sys.executable, "-m", "remote_sensing.cli", "train", "--data.root", str(root),
               "--data.chip_size", "32", "--trainer.max_steps", "3", "--trainer.batch_size", "4",
               "--trainer.progress", "false", "--trainer.accelerator", "cpu",
               "--trainer.seed", "7", "--run.runs_dir", str(runs), "--run.name", name]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    state = torch.load(runs / name / "checkpoints" / "last.ckpt", weights_only=True)
    return state["state_dict"]


def test_same_seed_same_weights_in_fresh_processes(tmp_path: Path) -> None:
    root = make_eurosat(tmp_path / "eurosat", 4)
    first = _train(root, tmp_path / "runs", "a", "1")
    second = _train(root, tmp_path / "runs", "b", "2")
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_augmentation_follows_torch_seed(tmp_path: Path) -> None:
    chip = write_tif(tmp_path / "c.tif", np.arange(4 * 32 * 32, dtype=np.uint16).reshape(4, 32, 32))
    from remote_sensing.data import Preprocessing

    pre = Preprocessing(["a", "b", "c", "d"], [1, 2, 3, 4], 10000.0, [0.0] * 4, [1.0] * 4, 32,
                        ["x"], 4)  # fmt: skip
    dataset = ChipDataset([Sample(chip, 0)], pre, train_transform(pre), 4, random=True)

    def draws(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return [dataset[0]["image"] for _ in range(4)]

    again, other = draws(0), draws(1)
    for a, b in zip(draws(0), again, strict=True):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(again, other, strict=True))
