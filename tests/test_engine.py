"""Engine on the toy classification task: run folder, loss, resume after SIGKILL, precision,
regularisers, checkpoint errors and one-line CLI errors. (DDP lives in test_distributed.py.)"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from shared.engine.io import InputError, load_checkpoint
from shared.toy import main

FAST = [
    "--data.num_train", "64", "--data.num_val", "32", "--trainer.batch_size", "16",
    "--trainer.progress", "false", "--trainer.log_every_n_steps", "1",
]  # fmt: skip


def _train(tmp_path: Path, name: str, *extra: str) -> Path:
    code = main(["train", *FAST, "--run.runs_dir", str(tmp_path), "--run.name", name, *extra])
    assert code == 0
    return tmp_path / name


def _column(run_dir: Path, key: str) -> list[tuple[int, float]]:
    with (run_dir / "metrics.csv").open() as handle:
        return [(int(r["step"]), float(r[key])) for r in csv.DictReader(handle) if r.get(key)]


def test_train_writes_the_run_folder_and_learns(tmp_path: Path) -> None:
    run = _train(tmp_path, "toy", "--trainer.max_epochs", "6", "--optim.lr", "2e-3")
    expected = ["config.yaml", "metrics.csv", "summary.json", "plots/loss.png", "plots/metrics.png"]
    for name in [*expected, "checkpoints/best.ckpt", "checkpoints/last.ckpt"]:
        assert (run / name).is_file(), name
    assert not list(run.rglob("*.tmp")), "no temporary files may remain"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["headline_metric"] == "val/macro_f1"
    assert summary["global_step"] == 6 * 4 and summary["epochs"] == 6
    losses = [v for _, v in _column(run, "train/loss_step")]
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4]), losses
    assert "lr: 0.002" in (run / "config.yaml").read_text()
    state = load_checkpoint(run / "checkpoints" / "best.ckpt")
    assert "state_dict" in state and "optimizer_states" in state


def test_training_split_smaller_than_a_batch_is_an_error(tmp_path: Path, capsys) -> None:
    flags = [*FAST, "--data.num_train", "8", "--trainer.max_epochs", "1"]
    assert main(["train", *flags, "--run.runs_dir", str(tmp_path), "--run.name", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no training batch" in err and "--trainer.batch_size 16" in err, err
    assert not (tmp_path / "tiny" / "checkpoints" / "best.ckpt").exists()


def test_relative_data_path_is_stored_absolute(tmp_path: Path, monkeypatch) -> None:
    """evaluate rereads config.yaml: a path relative to the training's folder must survive."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for index in range(12):
            np.save(tmp_path / "data" / name / f"{index}.npy",
                    rng.normal(size=(3, 32, 32)).astype("float32"))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    run = _train(tmp_path / "runs", "rel", "--data.root", "data", "--trainer.max_epochs", "1",
                 "--data.image_size", "32", "--trainer.batch_size", "4")  # fmt: skip
    assert f"root: {tmp_path / 'data'}" in (run / "config.yaml").read_text()
    monkeypatch.chdir(run)  # another folder: the stored path still points at the data
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--trainer.progress", "false"]) == 0


def test_threads_flag_sets_torch_threads(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _train(tmp_path, "one-thread", "--trainer.max_epochs", "1", "--trainer.threads", "1")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_existing_run_folder_is_not_overwritten(tmp_path: Path, capsys) -> None:
    _train(tmp_path, "once", "--trainer.max_epochs", "1")
    assert main(["train", *FAST, "--run.runs_dir", str(tmp_path), "--run.name", "once"]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--optim.lr", "-1"], "--optim.lr must be > 0"),
        (["--trainer.precision", "fp8"], "--trainer.precision must be one of"),
        (["--data.root", "/nonexistent/data"], "/nonexistent/data: folder not found"),
        (["--trainer.max_epochs", "many"], "max_epochs"),
        (["--no-such-flag", "1"], "no-such-flag"),
        (["--trainer.threads", "-1"], "--trainer.threads must be >= 0"),
    ],
)
def test_bad_values_exit_2_with_one_line(tmp_path: Path, capsys, flags, message) -> None:
    assert main(["train", "--run.runs_dir", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_unknown_command_and_help(capsys) -> None:
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("precision", "dtype"), [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)]
)
def test_mixed_precision_trains_with_fp32_attention(
    tmp_path: Path, precision: str, dtype: torch.dtype
) -> None:
    # Lightning runs 16-mixed as bf16-mixed where fp16 AMP is unsupported (CPU): test fp16 only
    # where it really runs, rather than pass while testing bf16 a second time.
    effective = pl.Trainer(precision=precision, devices=1, logger=False,
                           enable_checkpointing=False, enable_progress_bar=False).precision
    if effective != precision:
        pytest.skip(f"Lightning {pl.__version__} runs {precision} as {effective} on this machine "
                    "(fp16 AMP needs CUDA)")  # fmt: skip
    conv_dtypes: set[torch.dtype] = set()

    def record(module, _inputs, output) -> None:
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            conv_dtypes.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        run = _train(tmp_path, "mixed", "--trainer.max_epochs", "1", "--trainer.precision",
                     precision)  # fmt: skip
    finally:
        handle.remove()
    assert dtype in conv_dtypes, f"convolutions ran in {conv_dtypes}, not {dtype}"
    summary = json.loads((run / "summary.json").read_text())
    assert np.isfinite(summary["final_metrics"]["train/loss_epoch"])


def test_regularisers_ema_and_monitors(tmp_path: Path) -> None:
    run = _train(
        tmp_path, "reg", "--trainer.max_epochs", "1", "--trainer.monitor_every_n_steps", "1",
        "--regularization.mixup_alpha", "0.8",
        "--regularization.cutmix_alpha", "1.0", "--regularization.label_smoothing", "0.1",
        "--regularization.drop_path_rate", "0.1", "--trainer.ema_decay", "0.9",
    )  # fmt: skip
    assert (run / "checkpoints" / "last.ckpt").is_file()
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "monitor/entropy/model.backbone.stages.2.0.attention" in header


def test_deterministic_runs_repeat_exactly(tmp_path: Path) -> None:
    flags = ["--trainer.max_epochs", "1", "--trainer.deterministic", "true"]
    first = _column(_train(tmp_path, "det1", *flags), "train/loss_step")
    second = _column(_train(tmp_path, "det2", *flags), "train/loss_step")
    assert first == second and len(first) == 4


def test_checkpoint_errors_name_the_file(tmp_path: Path, capsys) -> None:
    run = _train(tmp_path, "ck", "--trainer.max_epochs", "1")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    with pytest.raises(InputError, match="truncated.ckpt: not a readable checkpoint"):
        load_checkpoint(truncated)
    code = main(["evaluate", "--checkpoint", str(run / "checkpoints" / "best.ckpt"),
                 "--model.preset", "hybrid_small"])  # fmt: skip
    assert code == 2
    assert "--model.preset: evaluate rebuilds the network" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(truncated)]) == 2


def test_evaluate_and_export(tmp_path: Path) -> None:
    run = _train(tmp_path, "ev", "--trainer.max_epochs", "1")
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "best.ckpt")]) == 0
    assert "val/macro_f1" in json.loads((run / "evaluation.json").read_text())["metrics"]
    target = tmp_path / "toy.pt2"
    assert (
        main(["export", "--checkpoint", str(run / "checkpoints" / "best.ckpt"), "-o", str(target)])
        == 0
    )
    program = torch.export.load(target)
    assert program.module()(torch.randn(1, 3, 32, 32)).shape == (1, 4)


def _checkpoint_step(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    except Exception:  # not written yet
        return -1


def test_resume_after_sigkill_continues_the_same_run(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "shared.toy", "train", *FAST,
            "--run.runs_dir", str(tmp_path), "--run.name", "killed", "--trainer.max_epochs", "5",
            "--trainer.checkpoint_every_n_steps", "3"]  # fmt: skip
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(args, cwd=Path(__file__).parents[1], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and _checkpoint_step(last) < 9:
        time.sleep(0.2)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = _checkpoint_step(last)
    assert 9 <= killed_at < 20, killed_at
    assert not (tmp_path / "killed" / "summary.json").exists()

    assert main(["train", "--resume", str(tmp_path / "killed")]) == 0
    run = tmp_path / "killed"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 5 * 4, "same step count as an uninterrupted run"
    assert summary["attempts"] == 2
    steps = [s for s, _ in _column(run, "train/loss_step")]
    assert steps == sorted(steps) and len(steps) == len(set(steps)), "one continuous curve"
    resumed = json.loads((run / "logs" / "attempt-1.json").read_text())["start_step"]
    assert resumed == killed_at
    with (run / "logs" / "attempt-1" / "metrics.csv").open() as handle:
        first = min(int(r["step"]) for r in csv.DictReader(handle) if r.get("train/loss_step"))
    assert first >= killed_at, "the resumed attempt continues, it does not restart at step 0"
