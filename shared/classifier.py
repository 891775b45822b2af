"""``HybridClassifier``: backbone + pooled linear head, following timm's model contract.

Implements ``feature_info``, ``forward_features``, ``forward_head``, ``forward_intermediates``,
``prune_intermediate_layers``, ``reset_classifier``, ``get_classifier`` and
``set_grad_checkpointing`` so timm's ``create_model(..., features_only=True)`` and smp's
``tu-`` encoders work unchanged. Works for 2D and 3D inputs.
"""

from __future__ import annotations

import torch
from timm.models._features import feature_take_indices
from torch import nn

from .backbone import HybridBackbone
from .config import BackboneConfig

__all__ = ["HybridClassifier"]


class HybridClassifier(nn.Module):
    """Image (or volume) classifier on a :class:`HybridBackbone`.

    Args:
        config: preset name or :class:`BackboneConfig`.
        num_classes: classes of the linear head (0 for a feature extractor).
        in_chans: input channels (timm's spelling).
        spatial_dims: 2 or 3.
        drop_rate: dropout before the head.
        drop_path_rate: stochastic depth, overrides the config.
        global_pool: ``"avg"`` or ``""`` (no pooling, no head).
        **overrides: other :class:`BackboneConfig` fields, e.g. ``topology``.
    """

    def __init__(
        self,
        config: str | BackboneConfig = "hybrid_small",
        num_classes: int = 1000,
        in_chans: int = 3,
        spatial_dims: int = 2,
        drop_rate: float = 0.0,
        drop_path_rate: float | None = None,
        global_pool: str = "avg",
        **overrides: object,
    ) -> None:
        super().__init__()
        if drop_path_rate is not None:
            overrides["drop_path_rate"] = drop_path_rate
        self.backbone = HybridBackbone(spatial_dims, in_chans, config, **overrides)
        self.feature_info = self.backbone.feature_info
        self.num_features = self.head_hidden_size = self.feature_info[-1]["num_chs"]
        self.drop_rate = drop_rate
        self.head_drop = nn.Dropout(drop_rate)
        self.reset_classifier(num_classes, global_pool)

    # timm's stem/stage naming, so its feature wrappers and grad-checkpoint helpers find them.
    @property
    def stem(self) -> nn.Module:
        """The backbone stem."""
        return self.backbone.stem

    @property
    def stages(self) -> nn.ModuleList:
        """The backbone stages."""
        return self.backbone.stages

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head, e.g. ``reset_classifier(10)`` to fine-tune on 10 classes."""
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute attention in backward (see :meth:`HybridBackbone.set_grad_checkpointing`)."""
        self.backbone.set_grad_checkpointing(enable)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Deepest feature map."""
        return self.backbone.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, dropout and classify a feature map (``pre_logits`` stops before the linear)."""
        if self.global_pool == "avg":
            x = x.flatten(2).mean(-1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's intermediate-feature API; index 0 is the stem, 1..4 the stages."""
        if output_fmt != "NCHW":
            raise ValueError(f"only output_fmt='NCHW' is supported, got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        self.backbone.check_input(x)
        x = self.stem(x)
        intermediates = [x] if 0 in take_indices else []
        stages = self.stages[:max_index] if stop_early else self.stages
        for index, stage in enumerate(stages, start=1):
            x = stage(x)
            if index in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop stages after the last requested feature (and the head)."""
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        self.backbone.stages = self.backbone.stages[:max_index]
        if prune_head or max_index < len(self.feature_info) - 1:
            self.num_features = self.feature_info[max_index]["num_chs"]
            self.reset_classifier(0, "")
        return take_indices
