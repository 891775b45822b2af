"""The medical plan: what a trained segmentation network needs at prediction time.

nnU-Net keeps ``plans.json`` and ``dataset.json`` beside its weights; here the same facts travel
inside every checkpoint (:mod:`shared.engine.contract`, vertical ``medical``): the preprocessing
(target spacing and per-channel normalisation, decided once per dataset by ``hv-med prepare``),
what the training data looked like (modalities, source spacings, normalised intensity range and
tissue share: predict's input checks), the label names, the network (with the pure-CNN
control's searched width) and the sliding-window settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from shared.engine.contract import Vertical

from .model import build_medical_model

__all__ = ["MEDICAL", "LEGACY_KEY", "MedicalPlan", "NetworkPlan", "build_network"]

LEGACY_KEY = "hybridvision_plan"
"""Where checkpoints written before the inference contract kept their plan."""


@dataclass
class NetworkPlan:
    """The segmentation network: ``--model.*`` as trained, plus the searched control width."""

    arch: str = "hybrid"
    preset: str = "med_cpu"
    spatial_dims: int = 3
    deep_supervision: bool = False
    cnn_width_scale: float | None = None
    """``arch == "cnn"``: width scale of the former attention stages at matched parameters."""


@dataclass
class MedicalPlan:
    """Everything ``hv-med predict`` needs from a run."""

    modalities: list[str]
    labels: dict[str, str]
    """Label id (as a string) -> class name, background included."""
    target_spacing: list[float]
    normalization: list[dict[str, Any]]
    """Per channel, as decided by ``hv-med prepare`` (:func:`medical.prepare.build_pipeline`)."""
    network: NetworkPlan
    patch_size: tuple[int, ...]
    """Sliding-window ROI (two entries for a 2D network)."""
    sw_batch_size: int = 2
    sw_overlap: float = 0.5
    slice_axis: int | None = None
    """2D networks: the axis volumes are sliced across."""
    name: str | None = None
    source_spacing_range: list[list[float]] | None = None
    intensity_range: list[list[float]] | None = None
    tissue_fraction: list[list[float]] | None = None

    @property
    def class_names(self) -> list[str]:
        """Foreground class names in label order (background left out)."""
        ids = sorted(int(k) for k in self.labels)
        return [self.labels[str(k)] for k in ids if k != 0]


def build_network(plan: MedicalPlan) -> nn.Module:
    """The untrained network of a plan (no width search: the plan holds the control's scale)."""
    net = plan.network
    extra = {"cnn_width_scale": net.cnn_width_scale} if net.arch == "cnn" else {}
    return build_medical_model(
        net.spatial_dims,
        len(plan.modalities),
        len(plan.labels),
        net.preset,
        deep_supervision=net.deep_supervision,
        arch=net.arch,
        **extra,
    )


def from_legacy(checkpoint: dict[str, Any]) -> MedicalPlan:
    """The plan of a checkpoint written before the contract (``hybridvision_plan`` entry).

    Those plans have no control width: a ``cnn`` network's scale is searched once here, as the
    old loader did on every prediction.
    """
    old = checkpoint[LEGACY_KEY]
    model = old["model"]
    arch = model.get("arch", "hybrid")  # plans before --model.arch: ours
    if model.get("pure_cnn"):
        arch = "cnn"
    network = NetworkPlan(arch, model["preset"], model["spatial_dims"], model["deep_supervision"])
    plan = MedicalPlan(
        modalities=list(old["modalities"]),
        labels={str(k): v for k, v in old["labels"].items()},
        target_spacing=list(old["target_spacing"]),
        normalization=list(old["normalization"]),
        network=network,
        patch_size=tuple(old["patch_size"]),
        sw_batch_size=old["sw_batch_size"],
        sw_overlap=old["sw_overlap"],
        slice_axis=old.get("slice_axis"),
        name=old.get("name"),
        source_spacing_range=old.get("source_spacing_range"),
        intensity_range=old.get("intensity_range"),
        tissue_fraction=old.get("tissue_fraction"),
    )
    if arch == "cnn":
        network.cnn_width_scale = build_network(plan).cnn_width_scale
    return plan


MEDICAL = Vertical(
    name="medical",
    prog="hv-med",
    plan_type=MedicalPlan,
    schema=1,
    build_network=build_network,
    legacy=from_legacy,
)
