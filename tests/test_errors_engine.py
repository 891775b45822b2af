"""Engine pieces of the error contract: MixUp/CutMix honoured on odd batches and with class
weights (never silently skipped or dropped), restricted config types kept out of checkpoints
and YAML, and no empty folders left by a failed atomic write."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from jsonargparse.typing import PositiveFloat, PositiveInt
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy as TimmSoftTargetCrossEntropy
from torch import nn
from torchmetrics import MetricCollection

from shared.engine import HybridTask, OptimConfig, RegularizationConfig, atomic_write
from shared.engine.config import plain_values
from shared.engine.module import SoftTargetCrossEntropy, mix_batch


def test_weighted_soft_target_loss_is_torch_weighted_cross_entropy_on_hard_labels() -> None:
    logits = torch.randn(7, 4)
    labels = torch.tensor([0, 1, 1, 3, 2, 3, 3])
    weight = torch.tensor([0.5, 2.0, 1.0, 3.0])
    golden = F.cross_entropy(logits, labels, weight=weight)
    ours = SoftTargetCrossEntropy(weight)(logits, F.one_hot(labels, 4).float())
    assert ours.item() == pytest.approx(golden.item(), rel=1e-6)
    # Without weights: timm's SoftTargetCrossEntropy, on soft targets too.
    soft = torch.softmax(torch.randn(7, 4), -1)
    expected = TimmSoftTargetCrossEntropy()(logits, soft)
    assert SoftTargetCrossEntropy()(logits, soft).item() == pytest.approx(expected.item())


def test_weighted_soft_target_loss_weighs_each_class_share_of_a_mixed_target() -> None:
    """A 0.7/0.3 mix of classes 0 and 2: sum_c w_c y_c (-log p_c) / sum_c w_c y_c."""
    logits = torch.tensor([[1.0, -1.0, 0.5]])
    target = torch.tensor([[0.7, 0.0, 0.3]])
    weight = torch.tensor([1.0, 5.0, 4.0])
    log_p = torch.log_softmax(logits, -1)[0]
    expected = -(0.7 * 1.0 * log_p[0] + 0.3 * 4.0 * log_p[2]) / (0.7 * 1.0 + 0.3 * 4.0)
    assert SoftTargetCrossEntropy(weight)(logits, target).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("batch", [1, 3, 5])
def test_odd_batch_is_mixed_all_but_its_last_sample(batch: int) -> None:
    """timm asserts an even batch; the engine skipped odd ones. Now the even part goes through
    timm unchanged and the last sample keeps its own (smoothed) label."""
    mixer = Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=3)
    inputs = torch.rand(batch, 2, 8, 8)
    targets = torch.arange(batch) % 3
    np.random.seed(7)  # timm draws lambda and the MixUp/CutMix switch from numpy
    mixed, soft = mix_batch(mixer, inputs.clone(), targets)
    np.random.seed(7)
    even = batch - 1
    if even:
        reference, reference_soft = mixer(inputs[:even].clone(), targets[:even])
        assert torch.equal(mixed[:even], reference) and torch.equal(soft[:even], reference_soft)
        assert not torch.equal(mixed[:even], inputs[:even]), "the even part is mixed"
    assert torch.equal(mixed[-1], inputs[-1])
    smooth = torch.full((3,), 0.1 / 3)
    smooth[targets[-1]] += 0.9
    assert torch.allclose(soft[-1], smooth)


def _task(loss_fn: nn.Module) -> HybridTask:
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    regularization = RegularizationConfig(mixup_alpha=1.0, mix_prob=1.0)
    return HybridTask(model, loss_fn, MetricCollection({}), OptimConfig(), regularization,
                      num_classes=3)  # fmt: skip


@pytest.mark.filterwarnings("ignore:.*self.log.*")
def test_training_step_mixes_an_odd_batch_with_the_task_class_weights() -> None:
    weight = torch.tensor([1.0, 3.0, 0.5])
    task = _task(nn.CrossEntropyLoss(weight=weight))
    assert torch.equal(task.mixed_loss.weight, weight), "class weights reach the mixed loss"
    inputs, targets = torch.rand(3, 2, 4, 4), torch.tensor([0, 1, 2])
    np.random.seed(3)
    mixed, soft = mix_batch(task.mixer, inputs.clone(), targets)
    expected = SoftTargetCrossEntropy(weight)(task(mixed), soft)
    np.random.seed(3)
    loss = task.training_step((inputs.clone(), targets), 0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() != pytest.approx(task.loss_fn(task(inputs), targets).item(), rel=1e-3)


@dataclass
class _Section:
    size: PositiveInt = PositiveInt(4)
    pair: tuple[PositiveFloat, PositiveFloat] = (PositiveFloat(1.0), PositiveFloat(2.0))
    name: str = "x"
    flag: bool = True


def test_restricted_values_become_plain_for_yaml_and_weights_only_checkpoints(
    tmp_path: Path,
) -> None:
    section = plain_values(_Section())
    assert type(section.size) is int and {type(v) for v in section.pair} == {float}
    assert section.flag is True and section.name == "x"
    yaml.safe_dump(vars(section))  # restricted int/float subclasses would raise here
    torch.save({"plan": vars(section)}, tmp_path / "c.ckpt")
    assert torch.load(tmp_path / "c.ckpt", weights_only=True)["plan"]["size"] == 4


def test_failed_atomic_write_leaves_no_folder_it_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise ValueError("refused")

    with pytest.raises(ValueError):
        atomic_write(target, fail)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "other.txt").write_text("x")
    with pytest.raises(ValueError):
        atomic_write(tmp_path / "keep" / "out.txt", fail)
    assert [p.name for p in (tmp_path / "keep").iterdir()] == ["other.txt"]
