"""hv-med honours or refuses every regularisation flag: drop path reaches the encoder, label
smoothing reaches the cross-entropy half of Dice + CE, MixUp/CutMix are refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.losses import DiceCELoss
from timm.layers import DropPath

from medical.cli import main as hv_med
from medical.phantom import PhantomConfig, write_phantom_dataset
from medical.task import MedicalDataConfig, MedicalModelConfig, build_task
from shared.engine import (
    InputError,
    OptimConfig,
    RegularizationConfig,
    RunConfig,
    RunFolderConfig,
    TrainerConfig,
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("reg")
    small = PhantomConfig(shape=(32, 32, 16), spacing=(1.0, 1.0, 2.0))
    raw = write_phantom_dataset(tmp_path / "Phantoms", num_cases=2, cfg=small)
    assert hv_med(["prepare", str(raw), "-o", str(tmp_path / "prepared"), "--workers", "1"]) == 0
    return tmp_path / "prepared"


def _task(prepared: Path, **regularization: float):
    cfg = RunConfig(
        MedicalDataConfig(prepared=str(prepared), patch_size=(32, 32, 32)),
        MedicalModelConfig(),
        OptimConfig(),
        TrainerConfig(batch_size=1),
        RegularizationConfig(**regularization),
        RunFolderConfig(),
    )
    return build_task(cfg)[0]


def _drop_rates(model: torch.nn.Module) -> list[float]:
    return [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]


def test_drop_path_rate_reaches_the_encoder(prepared: Path) -> None:
    assert _drop_rates(_task(prepared).model) == []
    rates = _drop_rates(_task(prepared, drop_path_rate=0.2).model)
    assert rates and max(rates) == pytest.approx(0.2), rates
    assert rates == sorted(rates), "stochastic depth rises with depth"


def test_label_smoothing_reaches_the_cross_entropy(prepared: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, 8, generator=generator)
    labels = torch.randint(0, 3, (2, 1, 8, 8, 8), generator=generator)
    plain = _task(prepared).loss_fn(logits, labels)
    smoothed = _task(prepared, label_smoothing=0.1).loss_fn(logits, labels)
    reference = DiceCELoss(to_onehot_y=True, softmax=True, label_smoothing=0.1)(logits, labels)
    assert smoothed.item() != pytest.approx(plain.item(), abs=1e-4)
    assert smoothed.item() == pytest.approx(reference.item(), abs=1e-6)


@pytest.mark.parametrize("flag", ["mixup_alpha", "cutmix_alpha"])
def test_mixing_is_refused_for_segmentation(prepared: Path, flag: str, capsys) -> None:
    code = hv_med(["train", "--data.prepared", str(prepared), f"--regularization.{flag}", "0.4",
                   "--run.runs_dir", str(prepared.parent / "runs")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert f"--regularization.{flag} 0.4: not supported by segmentation" in err, err
    assert len(err.splitlines()) == 1, err
    # Built without the CLI's validation, the module refuses it too.
    with pytest.raises(InputError, match="classification tasks only"):
        _task(prepared, **{flag: 0.4})
