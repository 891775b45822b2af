"""The inference contract: every checkpoint carries its vertical's plan, and one loader reads it.

A vertical declares a :class:`Vertical`: its name, the dataclass of its *plan* (everything
inference needs: preprocessing, the network's architecture with any searched widths, tiling and
window settings), the plan's schema version and ``build_network(plan)``. The engine writes

    checkpoint["hybridvision"] = {"vertical": "medical", "prog": "hv-med", "schema": 1,
                                  "plan": {... plain types ...}}

into every checkpoint of a task that has a plan (:class:`~shared.engine.module.HybridTask`), and
:func:`load_for_inference` returns ``(network in eval mode, plan)`` from a checkpoint alone, as
nnU-Net's model folder (``plans.json``) and MONAI bundles carry their preprocessing. Everything
that runs a trained model (evaluate, predict, upscale, export, bench) goes through it, so a
checkpoint of another vertical, of another schema, truncated, or not a checkpoint is refused in
one line that says what it is and what was expected.

Checkpoints written before the contract kept their plan under a key of their own
(:data:`LEGACY_KEYS`); each vertical's ``legacy`` converter turns that into today's plan.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .io import InputError, load_checkpoint, load_state_dict_strict

__all__ = [
    "CHECKPOINT_KEY",
    "LEGACY_KEYS",
    "Vertical",
    "load_for_inference",
    "network_state_dict",
    "plan_entry",
    "plan_from_plain",
    "plan_to_plain",
    "read_checkpoint",
]

CHECKPOINT_KEY = "hybridvision"
"""The one checkpoint entry holding ``{vertical, prog, schema, plan}``."""

LEGACY_KEYS = {
    "hybridvision_plan": ("medical", "hv-med"),
    "hv_rs": ("remote_sensing", "hv-rs"),
    "video_sr": ("video_sr", "hv-vsr"),
}
"""Entries of checkpoints written before the contract, and the vertical each belongs to."""

NETWORK_PREFIX = "model."
"""The network's weights inside a task checkpoint's ``state_dict`` (``HybridTask.model``)."""


@dataclass(frozen=True)
class Vertical:
    """What the engine needs to know about a vertical to save and load its trained models.

    ``plan_type`` is a dataclass of plain values (str, int, float, bool, None, lists, tuples,
    dicts and nested dataclasses); ``build_network(plan)`` returns the untrained network whose
    ``state_dict`` the checkpoint's ``model.*`` weights fill. Bump ``schema`` when a plan field
    changes meaning or goes away; ``legacy(checkpoint)`` converts a pre-contract checkpoint's
    own entry into a plan.
    """

    name: str
    prog: str
    plan_type: type
    schema: int
    build_network: Callable[[Any], nn.Module]
    legacy: Callable[[dict[str, Any]], Any] | None = None


def plan_to_plain(plan: Any) -> dict[str, Any]:
    """A plan dataclass as plain Python values (``weights_only`` loading accepts them)."""
    if not dataclasses.is_dataclass(plan) or isinstance(plan, type):
        raise TypeError(f"a plan must be a dataclass instance, got {type(plan).__name__}")
    return _plain(dataclasses.asdict(plan))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def plan_entry(vertical: Vertical, plan: Any) -> dict[str, Any]:
    """The checkpoint entry for ``plan`` (stored under :data:`CHECKPOINT_KEY`)."""
    if not isinstance(plan, vertical.plan_type):
        raise TypeError(f"{vertical.name} expects a {vertical.plan_type.__name__} plan")
    return {
        "vertical": vertical.name,
        "prog": vertical.prog,
        "schema": vertical.schema,
        "plan": plan_to_plain(plan),
    }


def plan_from_plain(plan_type: type, data: Any, source: str | Path = "plan") -> Any:
    """Rebuild a plan dataclass from plain values, following the field annotations.

    Lists become tuples where a field says ``tuple``, nested dataclasses are rebuilt; a missing
    or unknown field is an :class:`InputError` naming ``source`` (the plan does not fit).
    """
    try:
        return _from_plain(plan_type, data)
    except (TypeError, ValueError, KeyError) as err:
        raise InputError(
            f"{source}: its {plan_type.__name__} does not match this version's fields ({err})"
        ) from None


def _from_plain(annotation: Any, value: Any) -> Any:
    # Hand-written: dacite/pydantic are not dependencies, and plans are small, flat dataclasses.
    if value is None:
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _from_plain(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise TypeError(f"{annotation.__name__} expects a mapping, got {type(value).__name__}")
        hints = typing.get_type_hints(annotation)
        names = {f.name for f in dataclasses.fields(annotation) if f.init}
        unknown = sorted(set(value) - names)
        if unknown:
            raise KeyError(f"unknown field {unknown[0]!r} in {annotation.__name__}")
        return annotation(**{k: _from_plain(hints[k], v) for k, v in value.items()})
    if origin is tuple or annotation is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], v) for v in value)
        if args:
            return tuple(_from_plain(a, v) for a, v in zip(args, value, strict=True))
        return tuple(value)
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return [_from_plain(item, v) for v in value]
    if origin is dict:
        _, item = typing.get_args(annotation) or (Any, Any)
        return {k: _from_plain(item, v) for k, v in value.items()}
    if annotation is float and isinstance(value, int):
        return float(value)
    return value


def _describe(entry: Any) -> str:
    if isinstance(entry, dict) and entry.get("vertical"):
        prog = f" (from '{entry['prog']} train')" if entry.get("prog") else ""
        return f"a {entry['vertical']} checkpoint{prog}"
    return "an unrecognised hybridvision entry"


def read_checkpoint(path: str | Path, vertical: Vertical) -> tuple[dict[str, Any], Any]:
    """The checkpoint dictionary and its plan, checked to belong to ``vertical``.

    Every refusal is one :class:`InputError` line naming the file, what it is and what was
    expected: missing, truncated or not a checkpoint (:func:`~shared.engine.io.load_checkpoint`),
    no weights, another vertical's checkpoint, another schema version, no plan at all.
    """
    path = Path(path)
    state = load_checkpoint(path)
    expected = f"{vertical.prog} needs a {vertical.name} checkpoint from '{vertical.prog} train'"
    if "state_dict" not in state:
        raise InputError(f"{path}: a file of torch objects without network weights; {expected}")
    entry = state.get(CHECKPOINT_KEY)
    if entry is None:
        for key, (name, prog) in LEGACY_KEYS.items():
            if key in state:
                if name != vertical.name or vertical.legacy is None:
                    raise InputError(
                        f"{path}: a {name} checkpoint (from '{prog} train'); {expected}"
                    )
                return state, vertical.legacy(state)
        raise InputError(
            f"{path}: a Lightning checkpoint without a hybridvision plan (not written by "
            f"hybridvision's train); {expected}"
        )
    if not isinstance(entry, dict) or entry.get("vertical") != vertical.name:
        raise InputError(f"{path}: {_describe(entry)}; {expected}")
    if entry.get("schema") != vertical.schema:
        raise InputError(
            f"{path}: {vertical.name} plan schema {entry.get('schema')}, this hybridvision reads "
            f"schema {vertical.schema} (the checkpoint comes from another version)"
        )
    return state, plan_from_plain(vertical.plan_type, entry.get("plan"), path)


def network_state_dict(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The network's weights (``model.*`` of the task's ``state_dict``, prefix removed)."""
    return {
        key.removeprefix(NETWORK_PREFIX): value
        for key, value in state["state_dict"].items()
        if key.startswith(NETWORK_PREFIX)
    }


def load_for_inference(
    checkpoint: str | Path, vertical: Vertical, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Any]:
    """``(network, plan)`` from a checkpoint alone: the network built from the plan, with the
    checkpoint's weights, on ``device``, in eval mode."""
    state, plan = read_checkpoint(checkpoint, vertical)
    network = vertical.build_network(plan)
    load_state_dict_strict(network, network_state_dict(state), checkpoint)
    return network.to(device).eval(), plan
