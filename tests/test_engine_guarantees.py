"""What the engine promises beyond "it runs": atomic writes survive a writer that fails half-way,
and a deterministic run that crashes mid-epoch and is resumed equals an uninterrupted run, step
by step in its loss curve and bit for bit in its final weights. (The crash is an exception at a
chosen step, so the resume point is exact; test_engine.py resumes after a real SIGKILL.)"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from shared.engine.io import atomic_write, load_checkpoint
from shared.engine.module import HybridTask
from shared.toy import main as toy_main


def test_writer_failing_half_way_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    target.write_bytes(b'{"old": true}\n')

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            handle.write(b'{"new": ')  # half of the new content, then the writer dies
            handle.flush()
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, write)
    assert target.read_bytes() == b'{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"], "no temporary file"
    # And a writer that succeeds replaces the file whole.
    atomic_write(target, lambda tmp: tmp.write_bytes(b'{"new": true}\n'))
    assert target.read_bytes() == b'{"new": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


# 32 images, batch 8: 4 steps an epoch, 8 in all; last.ckpt every 2 steps. Drop path draws from
# the global RNG every step, so the RNG state must come back at the right moment too.
RUN = [
    "--data.num_train", "32", "--data.num_val", "8", "--trainer.batch_size", "8",
    "--trainer.max_epochs", "2", "--trainer.deterministic", "true",
    "--trainer.checkpoint_every_n_steps", "2", "--trainer.log_every_n_steps", "1",
    "--regularization.drop_path_rate", "0.2", "--trainer.progress", "false",
]  # fmt: skip
# (crash step, last checkpoint, bit-exact): mid-epoch (epoch 1 batch 3, checkpoint after batch
# 2), and at an epoch boundary (epoch 1 batch 1, checkpoint after epoch 0's last batch: the saved
# loader position is exhausted and must not be restored into the next epoch, which would lose
# the epoch). At the boundary the next epoch's shuffle is drawn afresh, so only the steps match,
# not the losses: a known limit, stated in the README's resume section.
CRASHES = [(7, 6, True), (5, 4, False)]


def _losses(run_dir: Path) -> dict[int, float]:
    with (run_dir / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train/loss_step")]
    return {int(r["step"]): float(r["train/loss_step"]) for r in rows}


@pytest.mark.parametrize(
    ("crash_at", "checkpoint_step", "exact"), CRASHES, ids=["mid-epoch", "epoch-end"]
)
def test_crashed_and_resumed_run_equals_an_uninterrupted_one(
    tmp_path: Path, monkeypatch, crash_at: int, checkpoint_step: int, exact: bool
) -> None:
    assert toy_main(["train", *RUN, "--run.runs_dir", str(tmp_path), "--run.name", "whole"]) == 0

    train_step = HybridTask.training_step

    def crash(self, batch, batch_idx):
        if self.global_step == crash_at:
            raise RuntimeError("simulated crash")
        return train_step(self, batch, batch_idx)

    monkeypatch.setattr(HybridTask, "training_step", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        toy_main(["train", *RUN, "--run.runs_dir", str(tmp_path), "--run.name", "crashed"])
    monkeypatch.setattr(HybridTask, "training_step", train_step)
    crashed = tmp_path / "crashed"
    resumed_from = load_checkpoint(crashed / "checkpoints" / "last.ckpt")["global_step"]
    assert resumed_from == checkpoint_step, "the crash must come right after that checkpoint"
    assert toy_main(["train", "--resume", str(crashed)]) == 0

    whole, again = _losses(tmp_path / "whole"), _losses(crashed)
    assert sorted(whole) == list(range(8)), whole
    assert sorted(again) == sorted(whole), "the same steps, each logged once"
    final_again = load_checkpoint(crashed / "checkpoints" / "last.ckpt")
    assert final_again["global_step"] == 8, "a resume must not lose or repeat steps"
    if not exact:
        return
    for step, loss in whole.items():
        # Bit-for-bit on one machine; the tolerance only absorbs the CSV's decimal round trip.
        assert again[step] == pytest.approx(loss, rel=1e-6, abs=1e-7), (step, loss, again[step])

    final = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    assert final["global_step"] == 8
    weights, weights_again = final["state_dict"], final_again["state_dict"]
    assert weights.keys() == weights_again.keys()
    different = [k for k in weights if not torch.equal(weights[k], weights_again[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
