"""Multi-head self-attention over the flattened positions of a 2D or 3D feature map.

Uses ``torch.nn.functional.scaled_dot_product_attention`` with 4-D ``(B, heads, N, d)`` tensors
(fused kernels, and the shape the ONNX exporters handle). SDPA never returns the attention
weights, so monitoring has its own explicit path: ``forward(x, return_attention=True)`` computes
the full probabilities, and ``monitor=True`` records the entropy of a fixed sample of queries.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import check_spatial_dims, conv_layer, flatten_tokens, unflatten_tokens

__all__ = ["SpatialSelfAttention", "attention_entropy", "check_heads"]


def check_heads(channels: int, num_heads: int) -> None:
    """Raise ``ValueError`` unless ``num_heads`` is positive and divides ``channels``."""
    if num_heads < 1 or channels % num_heads != 0:
        raise ValueError(
            f"num_heads={num_heads} must be positive and divide the attention width "
            f"({channels} channels)"
        )


def attention_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean entropy in nats of attention distributions over the last axis.

    ``probs`` is ``(..., N)`` with rows summing to one (e.g. ``(B, heads, queries, keys)``); the
    result averages over every leading axis (batch, heads and queries). Uniform attention over
    N keys gives ``ln N``.
    """
    probs = probs.float()
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()


class SpatialSelfAttention(nn.Module):
    """Pre-norm multi-head self-attention layer on a ``(B, C, *spatial)`` feature map.

    Adds a depthwise-convolution positional encoding (works at any resolution and in 3D), runs
    attention over all positions and returns ``x + attention(x)``, so it is a full residual unit.

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
        self.pos_embed = conv_layer(spatial_dims, channels, channels, 3, groups=channels, bias=True)
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.monitor = False
        self.grad_checkpointing = False
        self.last_entropy: torch.Tensor | None = None

    def _qkv(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, length, _ = tokens.shape
        qkv = self.qkv(self.norm(tokens))
        qkv = qkv.reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def _explicit_probs(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(self.head_dim)
        return scores.softmax(dim=-1)

    def _record_entropy(self, q: torch.Tensor, k: torch.Tensor) -> None:
        # Evenly spaced queries keep the monitor's cost bounded at any resolution.
        length = q.shape[2]
        count = min(self.monitor_queries, length)
        index = torch.linspace(0, length - 1, count, device=q.device).round().long()
        with torch.no_grad():
            probs = self._explicit_probs(q[:, :, index], k)
            self.last_entropy = attention_entropy(probs).detach()

    def _attend(self, tokens: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(tokens)
        if self.monitor and not torch.compiler.is_compiling():
            self._record_entropy(q, k)
        dropout_p = self.attn_drop if self.training else 0.0
        if self.attention_fp32 and torch.is_autocast_enabled(q.device.type):
            with torch.autocast(device_type=q.device.type, enabled=False):
                out = F.scaled_dot_product_attention(
                    q.float(), k.float(), v.float(), dropout_p=dropout_p
                )
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        batch, _, length, _ = out.shape
        out = out.transpose(1, 2).reshape(batch, length, self.channels)
        return self.proj_drop(self.proj(out))

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attend over all positions of ``x``; optionally also return ``(B, heads, N, N)`` probs."""
        x = x + self.pos_embed(x)
        spatial_shape = x.shape[2:]
        tokens = flatten_tokens(x)
        if self.grad_checkpointing and self.training and not return_attention:
            attended = checkpoint(self._attend, tokens, use_reentrant=False)
        else:
            attended = self._attend(tokens)
        out = unflatten_tokens(tokens + self.drop_path(attended), spatial_shape)
        if not return_attention:
            return out
        q, k, _ = self._qkv(tokens)
        return out, self._explicit_probs(q, k)
