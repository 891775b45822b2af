"""Image-to-image task path: pixel losses, tiled inference for outputs larger than inputs, and
the toy x2 super-resolution task end to end through the chassis (train, evaluate, predict)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shared.engine import OptimConfig, RegularizationConfig
from shared.engine.image_task import CharbonnierLoss, ImageToImageTask
from shared.toy_image import degrade, main, make_images

TINY = [
    "--data.num_train", "16", "--data.num_val", "4", "--trainer.batch_size", "8",
    "--trainer.progress", "false", "--optim.lr", "2e-3",
]  # fmt: skip


def test_charbonnier_is_a_smooth_l1() -> None:
    output, target = torch.tensor([0.0, 0.5, -2.0]), torch.zeros(3)
    eps = 1e-3
    expected = torch.sqrt((output - target) ** 2 + eps**2).mean()
    assert CharbonnierLoss(eps)(output, target).item() == pytest.approx(expected.item())
    assert CharbonnierLoss(eps)(target, target).item() == pytest.approx(eps)
    big = torch.tensor([3.0, -4.0])
    assert CharbonnierLoss(eps)(big, torch.zeros(2)).item() == pytest.approx(3.5, abs=1e-5)


class _PointwiseUpscaler(nn.Module):
    """1x1 conv then nearest x2: each output pixel depends on one input pixel, so tiles must
    stitch to exactly the whole-image output."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.mix(x), scale_factor=2, mode="nearest")


@pytest.mark.parametrize("shape", [(20, 28), (10, 12)])  # larger and smaller than the tile
def test_tiled_inference_stitches_outputs_larger_than_inputs(shape) -> None:
    model = _PointwiseUpscaler()
    task = ImageToImageTask(model, OptimConfig(), tile=16, tile_overlap=0.25)
    image = torch.rand(1, 3, *shape)
    with torch.no_grad():
        tiled, whole = task.infer(image), model(image)
    assert tiled.shape == (1, 3, 2 * shape[0], 2 * shape[1])
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["label_smoothing", "mixup_alpha", "cutmix_alpha"])
def test_label_regularisers_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=f"--regularization.{name}"):
        ImageToImageTask(
            nn.Identity(), OptimConfig(), regularization=RegularizationConfig(**{name: 0.1})
        )


def test_toy_super_resolution_end_to_end(tmp_path: Path) -> None:
    assert main(["train", *TINY, "--trainer.max_epochs", "2", "--run.runs_dir", str(tmp_path),
                 "--run.name", "sr"]) == 0  # fmt: skip
    run = tmp_path / "sr"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["headline_metric"] == "val/psnr" and summary["mode"] == "max"
    assert {"val/psnr", "val/ssim", "val/loss"} <= set(summary["final_metrics"])
    checkpoint = run / "checkpoints" / "best.ckpt"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--trainer.progress", "false"]) == 0
    evaluated = json.loads((run / "evaluation.json").read_text())["metrics"]

    # The validation images as files (one of another size too), predicted through the CLI.
    targets = make_images(4, 48, seed=42 + 1)  # the data module's validation seed
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index, low in enumerate(degrade(targets, 2)):
        np.save(inputs / f"val.{index}.npy", low.numpy())
    np.save(inputs / "odd.npy", np.random.default_rng(0).random((3, 13, 21), dtype=np.float32))
    out = tmp_path / "out"
    assert main(["predict", str(inputs), "-o", str(out), "--checkpoint", str(checkpoint),
                 "--trainer.progress", "false"]) == 0  # fmt: skip
    assert np.load(out / "odd_sr.npy").shape == (3, 26, 42)
    outputs = np.stack([np.load(out / f"val.{index}_sr.npy") for index in range(4)])
    assert outputs.shape == (4, 3, 48, 48) and outputs.min() >= 0 and outputs.max() <= 1
    # PSNR per image, then the mean: the same number evaluate reported.
    mse = ((outputs - targets.numpy()) ** 2).reshape(4, -1).mean(1)
    assert evaluated["val/psnr"] == pytest.approx(np.mean(10 * np.log10(1 / mse)), abs=1e-3)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--regularization.label_smoothing", "0.1"], "--regularization.label_smoothing"),
        (["--regularization.mixup_alpha", "0.2"], "--regularization.mixup_alpha"),
        (["--model.loss", "l2"], "--model.loss must be one of"),
        (["--data.image_size", "31"], "--data.image_size must be a multiple"),
    ],
)
def test_bad_values_exit_2_with_one_line(tmp_path: Path, capsys, flags, message) -> None:
    assert main(["train", *TINY, "--trainer.max_epochs", "1", "--run.runs_dir", str(tmp_path),
                 *flags]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
