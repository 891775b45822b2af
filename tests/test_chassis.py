"""CLI chassis and engine contract on the toy task: layering, option parsing, prediction of
inputs of any size and name, trainer flags, weight-decay groups, one-line refusals."""

from __future__ import annotations

import ast
import csv
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from shared.cli import load_run
from shared.engine import (
    OptimConfig,
    RegularizationConfig,
    RunConfig,
    RunFolderConfig,
    TrainerConfig,
    build_trainer,
    file_stem,
)
from shared.toy import SPEC, ToyDataConfig, ToyModelConfig, main

ROOT = Path(__file__).resolve().parents[1]
# 16 training images at batch 8: 2 optimiser steps per epoch.
TINY = [
    "--data.num_train", "16", "--data.num_val", "8", "--trainer.batch_size", "8",
    "--trainer.progress", "false", "--trainer.log_every_n_steps", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One toy run, trained for one epoch, shared by the tests that read a run."""
    runs = tmp_path_factory.mktemp("runs")
    args = ["train", *TINY, "--trainer.max_epochs", "1", "--run.runs_dir", str(runs)]
    assert main([*args, "--run.name", "toy"]) == 0
    return runs / "toy"


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return names


def test_engine_never_imports_the_cli_or_the_toy_task() -> None:
    files = sorted((ROOT / "shared" / "engine").glob("*.py"))
    assert files
    for file in files:
        upward = {n for n in _imports(file) if n.startswith(("shared.cli", "shared.toy"))}
        assert not upward, f"{file.name} imports {upward}: the engine sits below the CLI"


def test_run_config_lives_in_the_engine_and_the_cli_re_exports_it() -> None:
    from shared.cli import RunConfig as FromCli
    from shared.engine.config import RunConfig as FromConfig

    assert FromCli is RunConfig is FromConfig


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("a.b.tif", "a.b"),
        ("a.c.tif", "a.c"),
        ("scan.nii.gz", "scan"),
        ("SCAN.NII.GZ", "SCAN"),
        ("case_0000.nii", "case_0000"),
        ("tile.ome.tiff", "tile"),
        ("dir.with.dots/x.npy", "x"),
        ("noext", "noext"),
    ],
)
def test_file_stem_drops_only_the_type_ending(name: str, stem: str) -> None:
    assert file_stem(Path(name)) == stem


def test_predict_keeps_full_names_and_takes_inputs_of_any_size(run: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    shapes = {"a.b.npy": (3, 32, 32), "a.c.npy": (3, 40, 36), "b.npy": (3, 48, 24)}
    for name, shape in shapes.items():
        np.save(inputs / name, rng.normal(size=shape).astype("float32"))
    out = tmp_path / "out"
    checkpoint = run / "checkpoints" / "best.ckpt"
    # Options before and after the inputs, '--flag=value' and '--flag value' alike.
    code = main(["predict", "--trainer.progress", "false", str(inputs / "a.b.npy"),
                 str(inputs / "a.c.npy"), str(inputs / "b.npy"), f"--checkpoint={checkpoint}",
                 "-o", str(out)])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(shapes)
    _, module, _ = load_run(SPEC, checkpoint, [], "predict")
    module.eval()
    for name in shapes:
        image = torch.from_numpy(np.load(inputs / name))[None]
        with torch.no_grad():
            expected = module(image).softmax(-1)[0].numpy()
        np.testing.assert_allclose(np.load(out / name), expected, atol=1e-5, err_msg=name)


def test_predict_refuses_two_inputs_with_one_output_name(run: Path, tmp_path: Path, capsys):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "scan.npy", np.zeros((3, 32, 32), dtype="float32"))
    code = main(["predict", str(tmp_path / "x"), str(tmp_path / "y"), "--out", str(tmp_path / "o"),
                 "--checkpoint", str(run / "checkpoints" / "best.ckpt")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "would both write" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "in", "-o", "out"], "predict needs --checkpoint"),
        (["predict", "in", "--checkpoint"], "--checkpoint: expected one argument"),
        (["evaluate"], "evaluate needs --checkpoint"),
        (["export", "--checkpoint", "x.ckpt"], "export needs -o"),
        (["train", "--resume"], "--resume: expected one argument"),
        (["train", "--resume=/no/such/run"], "/no/such/run: not a run folder"),
    ],
)
def test_option_errors_are_one_line(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_evaluate_export_and_resume_accept_both_option_forms(run: Path, tmp_path: Path) -> None:
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert main(["evaluate", f"--checkpoint={checkpoint}", "--trainer.progress", "false"]) == 0
    assert "val/macro_f1" in json.loads((run / "evaluation.json").read_text())["metrics"]
    target = tmp_path / "model.pt2"
    assert main(["export", "--checkpoint", str(checkpoint), f"--out={target}"]) == 0
    assert torch.export.load(target).module()(torch.randn(1, 3, 32, 32)).shape == (1, 4)
    # Resume with '=': the saved config is the base, the new flag extends the run to 2 epochs.
    assert main(["train", f"--resume={run}", "--trainer.max_epochs", "2"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["attempts"] == 2 and summary["global_step"] == 2 * 2


def test_accumulation_and_mid_epoch_validation_reach_the_trainer(tmp_path: Path) -> None:
    code = main(["train", *TINY, "--data.num_train", "32", "--trainer.max_epochs", "1",
                 "--trainer.accumulate_grad_batches", "2", "--trainer.val_check_interval", "0.5",
                 "--run.runs_dir", str(tmp_path), "--run.name", "acc"])  # fmt: skip
    assert code == 0
    summary = json.loads((tmp_path / "acc" / "summary.json").read_text())
    assert summary["global_step"] == 2, "4 batches, 2 per optimiser step"
    with (tmp_path / "acc" / "metrics.csv").open() as handle:
        validations = [row for row in csv.DictReader(handle) if row.get("val/loss")]
    assert len(validations) == 2, "validated at half and at the end of the epoch"


def test_trainer_flags_pass_through_to_lightning(tmp_path: Path) -> None:
    cfg = TrainerConfig(val_check_interval=0.25, accumulate_grad_batches=3, sync_batchnorm=True,
                        accelerator="cpu", devices="2", strategy="ddp", progress=False)  # fmt: skip
    trainer = build_trainer(cfg, tmp_path, "val/acc", "max")
    assert trainer.val_check_interval == 0.25
    assert trainer.accumulate_grad_batches == 3
    assert type(trainer.strategy._layer_sync).__name__ == "TorchSyncBatchNorm"
    plain = build_trainer(replace(cfg, sync_batchnorm=False, accumulate_grad_batches=1), tmp_path,
                          "val/acc", "max")  # fmt: skip
    assert plain.accumulate_grad_batches == 1 and plain.strategy._layer_sync is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--trainer.val_check_interval", "1.5"], "--trainer.val_check_interval must be"),
        (["--trainer.val_check_interval", "0"], "--trainer.val_check_interval must be"),
        (["--trainer.val_check_interval", "100"], "more than the 2 training batches"),
        (["--trainer.accumulate_grad_batches", "0"], "--trainer.accumulate_grad_batches"),
        (["--trainer.sync_batchnorm", "true", "--trainer.accelerator", "cpu"], "needs GPUs"),
        # On this machine's one device (or CPU) sync-BN could not take effect: refused.
        (["--trainer.sync_batchnorm", "true"], "--trainer.sync_batchnorm"),
        (["--regularization.mix_prob", "0.5"], "--regularization.mix_prob needs"),
        (["--trainer.strategy", "nope"], "--trainer settings:"),
    ],
)
def test_flags_that_cannot_take_effect_are_refused(tmp_path: Path, capsys, flags, message):
    assert main(["train", *TINY, "--run.runs_dir", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_weight_decay_skips_norms_biases_and_listed_names() -> None:
    cfg = RunConfig(ToyDataConfig(), ToyModelConfig(), OptimConfig(weight_decay=0.05),
                    TrainerConfig(), RegularizationConfig(), RunFolderConfig())  # fmt: skip
    module, _ = SPEC.build(cfg)
    listed = next(n for n, p in module.model.named_parameters() if p.ndim > 1)
    module.model.no_weight_decay = lambda: {listed}
    module._trainer = SimpleNamespace(estimated_stepping_batches=10)
    optimizer = module.configure_optimizers()["optimizer"]
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(module.named_parameters())
    assert len(decay_of) == len(named), "every parameter in exactly one group"
    for name, param in named.items():
        no_decay = param.ndim <= 1 or name == f"model.{listed}"
        assert decay_of[id(param)] == (0.0 if no_decay else 0.05), name
    assert any(p.ndim <= 1 for p in named.values()) and any(p.ndim > 1 for p in named.values())
