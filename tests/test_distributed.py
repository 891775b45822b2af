"""Two-process DDP on CPU (gloo): synchronised metrics, rank-0-only run folder, distributed
prediction over a folder of inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.toy import main

ROOT = Path(__file__).resolve().parents[1]
DDP = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu"]

VALIDATE_SCRIPT = """
import json, sys
import lightning.pytorch as pl
from shared.engine import RunConfig
from shared.engine.config import OptimConfig, RegularizationConfig, RunFolderConfig, TrainerConfig
from shared.toy import SPEC, ToyDataConfig, ToyModelConfig

out, devices, num_val = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pl.seed_everything(0)
cfg = RunConfig(ToyDataConfig(num_train=16, num_val=num_val), ToyModelConfig(), OptimConfig(),
                TrainerConfig(batch_size=8, progress=False), RegularizationConfig(),
                RunFolderConfig())
module, data = SPEC.build(cfg)
trainer = pl.Trainer(accelerator="cpu", devices=devices,
                     strategy="ddp" if devices > 1 else "auto", logger=False,
                     enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False)
results = trainer.validate(module, datamodule=data, verbose=False)[0]
with open(f"{out}/val{num_val}-devices{devices}-rank{trainer.global_rank}.json", "w") as handle:
    json.dump(results, handle)
"""


def _run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("num_val", [48, 47])
def test_ddp_metrics_are_synchronised_across_ranks(tmp_path: Path, num_val: int) -> None:
    """Every rank sees the globally reduced metric, equal to one process's; with 47 items on 2
    ranks (24 + 23) no item is scored twice (the default sampler would score one twice)."""
    script = tmp_path / "validate.py"
    script.write_text(VALIDATE_SCRIPT)
    _run([sys.executable, str(script), str(tmp_path), "1", str(num_val)])
    _run([sys.executable, str(script), str(tmp_path), "2", str(num_val)])

    def result(devices: int, rank: int) -> dict:
        return json.loads((tmp_path / f"val{num_val}-devices{devices}-rank{rank}.json").read_text())

    single, rank0, rank1 = result(1, 0), result(2, 0), result(2, 1)
    assert rank0 == rank1, "every rank must see the globally reduced metric"
    for key in ("val/acc", "val/macro_f1"):
        assert rank0[key] == pytest.approx(single[key], abs=1e-6), key
    # val/loss is a mean of the ranks' means (Lightning's sync_dist): exact only for even shares.
    tolerance = 1e-5 if num_val == 48 else 0.05
    assert rank0["val/loss"] == pytest.approx(single["val/loss"], abs=tolerance)


def test_ddp_training_writes_one_run_folder_from_rank_zero(tmp_path: Path) -> None:
    _run([sys.executable, "-m", "shared.toy", "train", *DDP,
          "--data.num_train", "64", "--data.num_val", "32", "--trainer.batch_size", "8",
          "--trainer.max_epochs", "2", "--trainer.progress", "false",
          "--run.runs_dir", str(tmp_path), "--run.name", "ddp"])  # fmt: skip
    run = tmp_path / "ddp"
    summary = json.loads((run / "summary.json").read_text())
    # 64 samples / 2 ranks / batch 8 = 4 steps per epoch on each rank.
    assert summary["global_step"] == 8
    assert sorted(p.name for p in (run / "logs").iterdir()) == ["attempt-0", "attempt-0.json"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert not list(run.rglob("*.tmp")) and not (run / "lightning_logs").exists()


def test_ddp_prediction_covers_every_input_once(tmp_path: Path) -> None:
    assert main(["train", "--data.num_train", "32", "--data.num_val", "16",
                 "--trainer.batch_size", "8", "--trainer.max_epochs", "1",
                 "--trainer.progress", "false", "--run.runs_dir", str(tmp_path),
                 "--run.name", "p"]) == 0  # fmt: skip
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for index in range(11):  # odd count: no rank may duplicate or drop an input
        np.save(inputs / f"scan{index:02d}.npy", rng.normal(size=(3, 32, 32)).astype("float32"))
    checkpoint = tmp_path / "p" / "checkpoints" / "best.ckpt"
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert main(["predict", str(inputs), "-o", str(single), "--checkpoint", str(checkpoint),
                 "--trainer.progress", "false"]) == 0  # fmt: skip
    _run([sys.executable, "-m", "shared.toy", "predict", str(inputs), "-o", str(multi),
          "--checkpoint", str(checkpoint), "--trainer.progress", "false", *DDP])  # fmt: skip
    names = sorted(p.name for p in multi.iterdir())
    assert names == sorted(p.name for p in inputs.iterdir())
    for name in names:
        probabilities = np.load(multi / name)
        assert probabilities.shape == (4,)
        np.testing.assert_allclose(probabilities.sum(), 1.0, rtol=1e-5)
        np.testing.assert_allclose(probabilities, np.load(single / name), atol=1e-5)


def test_predict_refuses_to_write_into_its_inputs(tmp_path: Path, capsys) -> None:
    import torch

    from shared.engine import CHECKPOINT_KEY
    from shared.engine.contract import plan_entry
    from shared.toy import TOY, ToyPlan, build_network

    plan = ToyPlan("hybrid_tiny", 32)  # a checkpoint as the engine writes it, without training
    weights = {f"model.{k}": v for k, v in build_network(plan).state_dict().items()}
    checkpoint = tmp_path / "toy.ckpt"
    torch.save({"state_dict": weights, CHECKPOINT_KEY: plan_entry(TOY, plan)}, checkpoint)
    inputs = tmp_path / "in"
    inputs.mkdir()
    np.save(inputs / "a.npy", np.zeros((3, 32, 32), dtype="float32"))
    code = main(["predict", str(inputs), "-o", str(inputs), "--checkpoint", str(checkpoint)])
    assert code == 2
    assert "output folder holds the inputs" in capsys.readouterr().err
