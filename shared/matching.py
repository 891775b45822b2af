"""One matched-parameter search: the width scale at which a control network has a target size.

Every vertical compares its hybrid with an attention-free control of the same parameter count
(``--model.arch cnn`` / ``--model.variant cnn``). Removing attention only removes weights, so the
control is widened; :func:`match_width_scale` finds the scale. The result goes into the run's
plan (:mod:`shared.engine.contract`), so prediction rebuilds the control without searching.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .layers import count_parameters

__all__ = ["WidthMatch", "match_width_scale"]


@dataclass(frozen=True)
class WidthMatch:
    """The scale found, the control's parameter count there, and the target."""

    scale: float
    params: int
    target: int

    @property
    def error(self) -> float:
        """Relative size mismatch ``|params - target| / target``."""
        return abs(self.params - self.target) / self.target


def match_width_scale(
    build: Callable[[float], nn.Module],
    target: int,
    tolerance: float = 0.01,
    start: float = 1.0,
    max_builds: int = 24,
) -> WidthMatch:
    """The width scale >= ``start`` whose ``build(scale)`` comes closest to ``target`` parameters.

    Conv weights grow with the square of the width, so the count is close to linear in
    ``scale**2``: Illinois regula falsi on ``scale**2`` (bracketing, so it cannot diverge, and
    the Illinois halving keeps one stuck end from stalling it) lands within ``tolerance / 5``
    in 2-4 builds where bisection needs ~12; each build of a large 3D network takes about a
    second. Builds may round widths (multiples of 8, whole channels), so the count is a step
    function: the search stops when the bracket no longer changes the count and returns the
    closest scale seen. The caller decides whether ``WidthMatch.error`` is acceptable.
    """
    if target <= 0:
        raise ValueError(f"target must be a positive parameter count, got {target}")
    seen: dict[float, int] = {}

    def size(scale: float) -> int:
        if scale not in seen:
            seen[scale] = count_parameters(build(scale))
        return seen[scale]

    def best() -> WidthMatch:
        scale = min(seen, key=lambda s: (abs(seen[s] - target), s))
        return WidthMatch(scale, seen[scale], target)

    low, high = start, start * 1.5
    p_low, p_high = size(low), size(high)
    if p_low >= target:
        return best()
    while p_high < target and len(seen) < max_builds:
        low, p_low = high, p_high
        high *= 1.5
        p_high = size(high)
    side = 0  # which end was kept last time (Illinois: halve its weight when kept twice)
    weight_low, weight_high = float(p_low - target), float(p_high - target)
    while len(seen) < max_builds and best().error > tolerance / 5 and p_high != p_low:
        fraction = -weight_low / (weight_high - weight_low)
        scale = math.sqrt(low**2 + fraction * (high**2 - low**2))
        if scale in seen or not low < scale < high:
            scale = (low + high) / 2
            if scale in seen:
                break
        params = size(scale)
        if params < target:
            low, p_low, weight_low = scale, params, float(params - target)
            if side == -1:
                weight_high /= 2
            side = -1
        else:
            high, p_high, weight_high = scale, params, float(params - target)
            if side == 1:
                weight_low /= 2
            side = 1
    return best()
