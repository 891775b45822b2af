"""The trained x4 BI weights that ship inside the package, and how a run becomes them.

``hv-vsr upscale`` without ``--checkpoint`` uses :func:`shipped_checkpoint` (x4 BI, the recipe in
``video_sr/weights/MODEL_CARD.md``: ``python -m video_sr.release``). The shipped file is a
*minimal* checkpoint: what :func:`shared.engine.contract.load_for_inference` reads and nothing
else, i.e. the network's weights under ``state_dict`` (``model.*`` keys, as the engine writes
them) and the ``hybridvision`` plan entry; optimiser, scheduler, loop and RNG state are dropped.
"""

from __future__ import annotations

from pathlib import Path

import torch

from shared.engine import InputError, atomic_write
from shared.engine.contract import CHECKPOINT_KEY, NETWORK_PREFIX, plan_entry, read_checkpoint

from .plan import VIDEO_SR

__all__ = ["SHIPPED_SCALE", "minimal_checkpoint", "shipped_checkpoint"]

SHIPPED_SCALE = 4
"""The only scale with shipped weights."""

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
"""Package data (``pyproject.toml``: ``[tool.setuptools.package-data]``)."""


def shipped_checkpoint() -> Path:
    """Path of the shipped x4 BI checkpoint; ``InputError`` if this install lacks it."""
    path = WEIGHTS_DIR / "x4_bi.ckpt"
    if not path.is_file():
        raise InputError(
            f"{path}: the shipped x4 weights are missing from this install; pass --checkpoint "
            "or rebuild them with python -m video_sr.release"
        )
    return path


def minimal_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Write ``source``'s network weights and plan alone to ``target`` (atomically).

    ``source`` must be an ``hv-vsr train`` checkpoint (checked through the inference contract);
    the tensors are cloned so no storage of dropped state is saved alongside them.
    """
    state, plan = read_checkpoint(source, VIDEO_SR)
    weights = {
        key: value.detach().clone().contiguous()
        for key, value in state["state_dict"].items()
        if key.startswith(NETWORK_PREFIX)
    }
    if not weights:
        raise InputError(f"{source}: no network weights (model.*) in its state_dict")
    minimal = {"state_dict": weights, CHECKPOINT_KEY: plan_entry(VIDEO_SR, plan)}
    return atomic_write(target, lambda tmp: torch.save(minimal, tmp))
