"""``HybridTask``: the LightningModule every vertical plugs its model, loss and metrics into.

Holds only what is the same across domains: the train/val/predict steps, metric logging, AdamW
with warmup + cosine decay, and MixUp/CutMix through timm for classification tasks (any batch
size, and with the task's class weights).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.optim import param_groups_weight_decay
from torch import nn
from torchmetrics import MetricCollection

from .config import OptimConfig, RegularizationConfig
from .contract import CHECKPOINT_KEY, Vertical, plan_entry
from .io import InputError

__all__ = ["HybridTask", "SoftTargetCrossEntropy", "mix_batch", "split_batch", "warmup_cosine"]


def split_batch(batch: Any) -> tuple[torch.Tensor, Any]:
    """``(inputs, targets)`` from a tuple/list batch or a MONAI-style image/label dict."""
    if isinstance(batch, dict):
        return batch["image"], batch.get("label")
    if isinstance(batch, list | tuple):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def warmup_cosine(total_steps: int, warmup_fraction: float, min_ratio: float) -> Callable:
    """LR multiplier: linear warmup to 1, then cosine decay to ``min_ratio`` at ``total_steps``."""
    warmup = max(1, int(total_steps * warmup_fraction)) if warmup_fraction > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class SoftTargetCrossEntropy(nn.Module):
    """Cross-entropy against soft targets (MixUp/CutMix), optionally class-weighted.

    ``sum_n sum_c w_c y_nc (-log p_nc) / sum_n sum_c w_c y_nc``: on one-hot targets this is
    torch's ``F.cross_entropy(weight=w)`` (weighted mean over the batch), on mixed targets each
    sample's share of each class carries that class's weight. Without ``weight`` it is timm's
    ``SoftTargetCrossEntropy``. Written here because timm's takes no class weights.
    """

    def __init__(self, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("weight", None if weight is None else weight.detach().clone())

    def forward(self, logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
        """Mean loss over the batch (weighted mean with class weights)."""
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        if self.weight is None:
            return -(soft_targets * log_probs).sum(-1).mean()
        weighted = soft_targets * self.weight.to(log_probs.dtype)
        return -(weighted * log_probs).sum() / weighted.sum()


def mix_batch(
    mixer: Mixup, inputs: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """timm MixUp/CutMix for a batch of any size: ``(mixed inputs, soft targets)``.

    timm mixes each sample with its partner in reversed batch order and asserts an even batch.
    An odd batch mixes all but its last sample; that one keeps its own (smoothed) label, as the
    middle sample of a reversed odd batch would be paired with itself anyway.
    """
    even = inputs.shape[0] - inputs.shape[0] % 2
    if even == inputs.shape[0]:
        return mixer(inputs, targets)
    mixed, soft = mixer(inputs[:even], targets[:even]) if even else (inputs[:0], None)
    alone = mixup_target(targets[even:], mixer.num_classes, 1.0, mixer.label_smoothing)
    soft = alone if soft is None else torch.cat([soft, alone])
    return torch.cat([mixed, inputs[even:]]), soft


class HybridTask(pl.LightningModule):
    """Generic supervised task: ``loss_fn(model(x), y)``, metrics on validation.

    Args:
        model: the network.
        loss_fn: ``loss_fn(output, target)``.
        metrics: torchmetrics updated with ``(output, target)`` on validation; logged as
            ``val/<name>`` and synchronised across DDP ranks by torchmetrics.
        optim: optimiser and schedule settings.
        regularization: MixUp/CutMix/label smoothing (classification only; needs ``num_classes``).
        num_classes: classes, for MixUp/CutMix soft targets.
        vertical, plan: the inference contract (:mod:`shared.engine.contract`): when both are
            given, every checkpoint carries the plan, so the trained network loads from the
            checkpoint alone (:func:`~shared.engine.contract.load_for_inference`).

    With MixUp/CutMix on, the mixed loss takes the class weights of ``loss_fn`` when it is a
    weighted ``nn.CrossEntropyLoss`` (e.g. ``--data.balance loss``), so they are never dropped.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module,
        metrics: MetricCollection,
        optim: OptimConfig,
        regularization: RegularizationConfig | None = None,
        num_classes: int | None = None,
        vertical: Vertical | None = None,
        plan: Any = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.vertical, self.plan = vertical, plan
        self.loss_fn = loss_fn
        self.val_metrics = metrics.clone(prefix="val/")
        self.optim = optim
        reg = regularization or RegularizationConfig()
        self.mixer: Mixup | None = None
        if reg.mixup_alpha > 0 or reg.cutmix_alpha > 0:
            if not num_classes:
                raise InputError(
                    "--regularization.mixup_alpha/cutmix_alpha: MixUp and CutMix are for "
                    "classification tasks only"
                )
            self.mixer = Mixup(
                mixup_alpha=reg.mixup_alpha,
                cutmix_alpha=reg.cutmix_alpha,
                prob=reg.mix_prob,
                label_smoothing=reg.label_smoothing,
                num_classes=num_classes,
            )
            weight = loss_fn.weight if isinstance(loss_fn, nn.CrossEntropyLoss) else None
            self.mixed_loss = SoftTargetCrossEntropy(weight)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Write the plan under the contract's one key (plain types: ``weights_only`` loads)."""
        if self.vertical is not None and self.plan is not None:
            checkpoint[CHECKPOINT_KEY] = plan_entry(self.vertical, self.plan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Model output."""
        return self.model(x)

    def infer(self, inputs: torch.Tensor) -> torch.Tensor:
        """Output for whole validation/prediction inputs; tasks override it to tile them."""
        return self(inputs)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """One optimisation step's loss (mixed targets when MixUp/CutMix is on)."""
        inputs, targets = split_batch(batch)
        if self.mixer is not None:
            inputs, soft_targets = mix_batch(self.mixer, inputs, targets)
            loss = self.mixed_loss(self(inputs), soft_targets)
        else:
            loss = self.loss_fn(self(inputs), targets)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Validation loss and metric update."""
        inputs, targets = split_batch(batch)
        output = self.infer(inputs)
        self.log("val/loss", self.loss_fn(output, targets), on_epoch=True, sync_dist=True)
        self.val_metrics.update(output, targets)
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """Raw model outputs (through :meth:`infer`); tasks override to add decoding."""
        inputs, _ = split_batch(batch)
        return self.infer(inputs)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW with per-step warmup + cosine decay.

        No weight decay on norms, biases and other 1-D parameters, nor on the names the model
        lists in ``no_weight_decay()`` (timm's convention, e.g. positional embeddings).
        """
        skip = getattr(self.model, "no_weight_decay", lambda: ())()
        groups = param_groups_weight_decay(
            self, self.optim.weight_decay, no_weight_decay_list={f"model.{n}" for n in skip}
        )
        optimizer = torch.optim.AdamW(groups, lr=self.optim.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(total, self.optim.warmup_fraction, self.optim.min_lr_ratio)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "interval": "step"},
        }
