"""The remote-sensing plan: what a trained scene classifier needs at prediction time.

Stored in every checkpoint through the engine's inference contract (:mod:`shared.engine.contract`,
vertical ``remote_sensing``): the :class:`~remote_sensing.data.Preprocessing` decided once per
dataset (bands, reflectance scale, per-band statistics of the training split, chip size, class
names) and the network (with the pure-CNN control's searched width), so ``hv-rs predict``,
``evaluate`` and ``export`` need the checkpoint alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from shared.engine.contract import Vertical

from .data import Preprocessing
from .model import build_model, matched_cnn_scale

__all__ = ["REMOTE_SENSING", "NetworkPlan", "SceneClassifierPlan", "build_network"]

LEGACY_KEY, LEGACY_MODEL_KEY = "hv_rs", "hv_rs_model"
"""Where checkpoints written before the inference contract kept preprocessing and network."""


@dataclass
class NetworkPlan:
    """The classifier: ``--model.*`` as trained, plus the searched control width."""

    arch: str = "hybrid"
    preset: str = "hybrid_tiny"
    multiscale_head: bool = True
    cnn_width_scale: float | None = None
    """``arch == "cnn"``: width scale of the former attention stages at matched parameters."""


@dataclass
class SceneClassifierPlan:
    """Preprocessing and network of a trained scene classifier."""

    preprocessing: Preprocessing
    network: NetworkPlan


def build_network(plan: SceneClassifierPlan) -> nn.Module:
    """The untrained classifier of a plan (no width search: the plan holds the control's)."""
    pre, net = plan.preprocessing, plan.network
    return build_model(net.arch, len(pre.bands), len(pre.class_names), pre.chip_size, net.preset,
                       net.multiscale_head, cnn_width_scale=net.cnn_width_scale)  # fmt: skip


def from_legacy(checkpoint: dict[str, Any]) -> SceneClassifierPlan:
    """The plan of a checkpoint written before the contract (``hv_rs`` + ``hv_rs_model``).

    Those have no control width: a ``cnn`` network's scale is searched once here, as the old
    loader did on every prediction.
    """

    pre = Preprocessing.from_dict(checkpoint[LEGACY_KEY])
    network = NetworkPlan(**checkpoint.get(LEGACY_MODEL_KEY, {}))
    if network.arch == "cnn":
        network.cnn_width_scale = matched_cnn_scale(len(pre.bands), len(pre.class_names),
                                                    network.preset,
                                                    multiscale=network.multiscale_head)  # fmt: skip
    return SceneClassifierPlan(pre, network)


REMOTE_SENSING = Vertical(
    name="remote_sensing",
    prog="hv-rs",
    plan_type=SceneClassifierPlan,
    schema=1,
    build_network=build_network,
    legacy=from_legacy,
)
