"""Multi-head self-attention over a 2D or 3D feature map: global, or in local (shifted) windows.

Uses ``torch.nn.functional.scaled_dot_product_attention`` with 4-D ``(B, heads, N, d)`` tensors
(fused kernels, and the shape the ONNX exporters handle). SDPA never returns the attention
weights, so monitoring has its own explicit path: ``forward(x, return_attention=True)`` computes
the full probabilities, and ``monitor=True`` records the entropy of a fixed sample of queries
and how many keys they may attend to (see :mod:`shared.monitors`).

Windowed attention (``window_size`` set) attends inside non-overlapping windows, e.g. 7x7 in 2D
or 2x8x8 in 3D, so its cost grows linearly with the number of positions. As in Swin and Video
Swin, a block may shift the window grid by half a window (``shift=True``) so information crosses
window borders in consecutive blocks; the wrapped-around regions and the padding added for sizes
that the window does not divide are masked out. Along an axis no longer than the window the
window shrinks to the axis and is not shifted, so small maps get exact global attention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import check_spatial_dims, conv_layer, flatten_tokens, unflatten_tokens

__all__ = [
    "ATTENTION_KINDS",
    "SpatialSelfAttention",
    "WindowGrid",
    "attention_entropy",
    "check_heads",
    "check_window",
]

ATTENTION_KINDS = ("global", "window")
"""``global``: every position attends to every other (cost quadratic in positions).
``window``: attention inside local windows (cost linear in positions)."""


def check_heads(channels: int, num_heads: int) -> None:
    """Raise ``ValueError`` unless ``num_heads`` is positive and divides ``channels``."""
    if num_heads < 1 or channels % num_heads != 0:
        raise ValueError(
            f"num_heads={num_heads} must be positive and divide the attention width "
            f"({channels} channels)"
        )


def check_window(window_size: int | Sequence[int] | None, spatial_dims: int) -> tuple | None:
    """Per-axis window size (``None`` for global attention); ``ValueError`` if malformed."""
    if window_size is None:
        return None
    sizes = (
        (window_size,) * spatial_dims
        if isinstance(window_size, int)
        else tuple(int(s) for s in window_size)
    )
    if len(sizes) != spatial_dims or any(s < 1 for s in sizes):
        raise ValueError(
            f"window_size must be a positive int or {spatial_dims} positive ints, "
            f"got {window_size!r}"
        )
    return sizes


def attention_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean entropy in nats of attention distributions over the last axis.

    ``probs`` is ``(..., N)`` with rows summing to one (e.g. ``(B, heads, queries, keys)``); the
    result averages over every leading axis (batch, heads and queries). Uniform attention over
    N keys gives ``ln N``; masked keys (probability 0) add nothing.
    """
    probs = probs.float()
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()


class WindowGrid:
    """How a ``(B, C, *spatial)`` map is cut into windows: window, shift and padding per axis.

    Hand-written because no installed library partitions N-D windows with per-axis shift and
    padding masks for SDPA (timm's and MONAI's Swin code is 2D-only or tied to their blocks).
    """

    def __init__(self, spatial_shape: Sequence[int], window: Sequence[int], shift: bool) -> None:
        self.shape = tuple(int(s) for s in spatial_shape)
        # A window never exceeds its axis; a window covering its axis is never shifted.
        self.window = tuple(min(w, s) for w, s in zip(window, self.shape, strict=True))
        self.shift = tuple(
            w // 2 if shift and w < s else 0 for w, s in zip(self.window, self.shape, strict=True)
        )
        self.padded = tuple(
            math.ceil(s / w) * w for s, w in zip(self.shape, self.window, strict=True)
        )
        self.counts = tuple(p // w for p, w in zip(self.padded, self.window, strict=True))
        self.num_windows = math.prod(self.counts)
        self.window_tokens = math.prod(self.window)
        self.needs_mask = any(self.shift) or self.padded != self.shape

    def partition(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial)`` -> ``(B * windows, window_tokens, C)``: pad, shift, cut."""
        if self.padded != self.shape:
            # F.pad lists the last axis first; pad only at the far end of each axis.
            spec: list[int] = []
            for p, s in zip(reversed(self.padded), reversed(self.shape), strict=True):
                spec += [0, p - s]
            x = F.pad(x, spec)
        if any(self.shift):
            x = torch.roll(x, [-s for s in self.shift], dims=list(range(2, x.ndim)))
        return self._cut(x)

    def _cut(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[:2]
        split = [channels]
        for count, size in zip(self.counts, self.window, strict=True):
            split += [count, size]
        x = x.reshape(batch, *split)
        dims = len(self.window)
        # (B, C, n1, w1, n2, w2, ...) -> (B, n1, n2, ..., w1, w2, ..., C)
        order = [0, *range(2, 2 + 2 * dims, 2), *range(3, 3 + 2 * dims, 2), 1]
        return x.permute(order).reshape(batch * self.num_windows, self.window_tokens, channels)

    def merge(self, windows: torch.Tensor, batch: int) -> torch.Tensor:
        """Inverse of :meth:`partition`: back to ``(B, C, *spatial)``, shift undone, crop."""
        channels = windows.shape[-1]
        dims = len(self.window)
        x = windows.reshape(batch, *self.counts, *self.window, channels)
        # (B, n1, n2, ..., w1, w2, ..., C) -> (B, C, n1, w1, n2, w2, ...)
        order = [0, 1 + 2 * dims]
        for axis in range(dims):
            order += [1 + axis, 1 + dims + axis]
        x = x.permute(order).reshape(batch, channels, *self.padded)
        if any(self.shift):
            x = torch.roll(x, list(self.shift), dims=list(range(2, x.ndim)))
        return x[(slice(None), slice(None), *(slice(0, s) for s in self.shape))]

    def mask(self, device: torch.device) -> torch.Tensor | None:
        """``(windows, 1, N, N)`` bool mask (True: may attend), or ``None`` when nothing is masked.

        Every position gets a region label and a query attends to keys of its own region only:
        in the shifted frame each shifted axis splits into the three bands Swin uses (so tokens
        wrapped around by the roll never see tokens they were not next to), and the padding is
        a region of its own.
        """
        if not self.needs_mask:
            return None
        labels = torch.zeros(self.padded, dtype=torch.long, device=device)
        stride = 1
        for axis, (size, window, shift) in enumerate(
            zip(self.padded, self.window, self.shift, strict=True)
        ):
            if shift:
                band = torch.zeros(size, dtype=torch.long, device=device)
                band[size - window : size - shift] = 1
                band[size - shift :] = 2
                view = [1] * len(self.padded)
                view[axis] = size
                labels = labels + stride * band.view(view)
            stride *= 3
        padding = torch.ones(self.padded, dtype=torch.bool, device=device)
        padding[tuple(slice(0, s) for s in self.shape)] = False
        if any(self.shift):
            padding = torch.roll(padding, [-s for s in self.shift], dims=list(range(padding.ndim)))
        labels = labels.masked_fill(padding, -1)
        windows = self._cut(labels[None, None]).squeeze(-1)
        return (windows[:, :, None] == windows[:, None, :])[:, None]


class SpatialSelfAttention(nn.Module):
    """Pre-norm multi-head self-attention layer on a ``(B, C, *spatial)`` feature map.

    Adds a depthwise-convolution positional encoding (works at any resolution, in 3D, and inside
    windows), attends over all positions or inside windows and returns ``x + attention(x)``, so
    it is a full residual unit.

    Args:
        spatial_dims: 2 or 3.
        channels: feature width; ``num_heads`` must divide it.
        num_heads: attention heads (8 is the design brief's balanced default).
        attn_drop: dropout on attention weights, active only in training.
        proj_drop: dropout after the output projection.
        drop_path: stochastic-depth rate on the residual branch.
        attention_fp32: compute q/k/v and softmax in fp32 even under autocast (the brief's
            precision policy: convolutions low precision, attention fp32).
        monitor_queries: how many query positions the entropy monitor samples.
        window_size: ``None`` for global attention, else the window per axis (an int or one per
            axis, e.g. ``(2, 8, 8)`` for time x height x width).
        shift: shift the window grid by half a window (use on every second block).
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        num_heads: int = 8,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
        attention_fp32: bool = False,
        monitor_queries: int = 256,
        window_size: int | Sequence[int] | None = None,
        shift: bool = False,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_heads(channels, num_heads)
        self.spatial_dims = spatial_dims
        self.channels = channels
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.attn_drop = float(attn_drop)
        self.attention_fp32 = attention_fp32
        self.monitor_queries = monitor_queries
        self.window_size = check_window(window_size, spatial_dims)
        self.shift = bool(shift)
        self.pos_embed = conv_layer(spatial_dims, channels, channels, 3, groups=channels, bias=True)
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.monitor = False
        self.grad_checkpointing = False
        self.last_entropy: torch.Tensor | None = None
        # Mean ln(keys a query may attend to) over the same sampled queries: the entropy's
        # ceiling, which the monitors normalise by (masked keys of shifted windows don't count).
        self.last_log_keys: torch.Tensor | None = None

    def extra_repr(self) -> str:  # noqa: D102
        kind = "global" if self.window_size is None else f"window={self.window_size}"
        return f"{kind}, heads={self.num_heads}, shift={self.shift}"

    def _grid(self, spatial_shape: Sequence[int]) -> WindowGrid | None:
        if self.window_size is None:
            return None
        return WindowGrid(spatial_shape, self.window_size, self.shift)

    def _qkv(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, length, _ = tokens.shape
        qkv = self.qkv(self.norm(tokens))
        qkv = qkv.reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def _explicit_probs(
        self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-1)

    def _record_entropy(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> None:
        # Evenly spaced queries (of evenly spaced windows) keep the monitor's cost bounded.
        with torch.no_grad():
            if self.window_size is None:
                length = q.shape[2]
                count = min(self.monitor_queries, length)
                index = torch.linspace(0, length - 1, count, device=q.device).round().long()
                probs = self._explicit_probs(q[:, :, index], k)
                window_mask = None
            else:
                count = min(q.shape[0], max(1, self.monitor_queries // q.shape[2]))
                index = torch.linspace(0, q.shape[0] - 1, count, device=q.device).round().long()
                window_mask = None if mask is None else mask[index]
                probs = self._explicit_probs(q[index], k[index], window_mask)
            self.last_entropy = attention_entropy(probs).detach()
            if window_mask is None:
                self.last_log_keys = torch.tensor(math.log(k.shape[2]), device=q.device)
            else:
                self.last_log_keys = window_mask.sum(-1).float().log().mean()

    def _attend(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Attention over ``tokens`` ``(groups, N, C)``; ``mask`` ``(groups, 1, N, N)`` or None."""
        q, k, v = self._qkv(tokens)
        if self.monitor and not torch.compiler.is_compiling():
            self._record_entropy(q, k, mask)
        dropout_p = self.attn_drop if self.training else 0.0
        if self.attention_fp32 and torch.is_autocast_enabled(q.device.type):
            with torch.autocast(device_type=q.device.type, enabled=False):
                out = F.scaled_dot_product_attention(
                    q.float(), k.float(), v.float(), attn_mask=mask, dropout_p=dropout_p
                )
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        groups, _, length, _ = out.shape
        out = out.transpose(1, 2).reshape(groups, length, self.channels)
        return self.proj_drop(self.proj(out))

    def _tokens(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, WindowGrid | None]:
        """Tokens ``(groups, N, C)`` to attend over, their mask, and the window grid (or None)."""
        grid = self._grid(x.shape[2:])
        if grid is None:
            return flatten_tokens(x), None, None
        mask = grid.mask(x.device)
        if mask is not None:
            # One mask per window, repeated for every image of the batch (window-major order).
            mask = mask.repeat(x.shape[0], 1, 1, 1)
        return grid.partition(x), mask, grid

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attend over the positions of ``x`` (or its windows); optionally also return the probs.

        The probabilities are ``(B, heads, N, N)`` for global attention and
        ``(B * windows, heads, window_tokens, window_tokens)`` for windowed attention.
        """
        x = x + self.pos_embed(x)
        tokens, mask, grid = self._tokens(x)
        if self.grad_checkpointing and self.training and not return_attention:
            attended = checkpoint(self._attend, tokens, mask, use_reentrant=False)
        else:
            attended = self._attend(tokens, mask)
        tokens = tokens + self.drop_path(attended)
        if grid is None:
            out = unflatten_tokens(tokens, x.shape[2:])
        else:
            out = grid.merge(tokens, x.shape[0])
        if not return_attention:
            return out
        q, k, _ = self._qkv(grid.partition(x) if grid is not None else flatten_tokens(x))
        return out, self._explicit_probs(q, k, mask)
