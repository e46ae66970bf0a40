"""Building blocks shared by the detector's transformers: MLP, attention, sine encodings.

Everything here is batch-first: tokens are ``B x L x C``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them, optionally residual + output norm.

    Parameter names (``layers.N``, ``out_norm``) follow the official checkpoint.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, *,
                 residual: bool = False, out_norm: bool = False, dropout: float = 0.0):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        if residual and in_dim != out_dim:
            raise ValueError("a residual MLP needs in_dim == out_dim")
        self.residual = residual
        self.out_norm = nn.LayerNorm(out_dim) if out_norm else None
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        y = x
        for i, layer in enumerate(self.layers):
            y = layer(y)
            if i < len(self.layers) - 1:
                y = F.dropout(F.relu(y), self.dropout, self.training)
        if self.residual:
            y = y + x
        if self.out_norm is not None:
            y = self.out_norm(y)
        return y


class Attention(nn.Module):
    """Multi-head attention with a fused input projection.

    Stores ``in_proj_weight`` (3C x C), ``in_proj_bias`` and ``out_proj`` exactly like
    ``nn.MultiheadAttention`` so official checkpoints load unchanged, but runs batch-first through
    ``F.scaled_dot_product_attention`` with no layout round trips.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.dim, self.num_heads, self.dropout = dim, num_heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, *, key_padding_mask: Tensor | None = None,
                attn_bias: Tensor | None = None) -> Tensor:
        """q: B x Lq x C, k/v: B x Lk x C; key_padding_mask: B x Lk (True = ignore);
        attn_bias: additive, broadcastable to B x heads x Lq x Lk. Returns B x Lq x C."""
        B, Lq, C = q.shape
        Lk = k.shape[1]
        h = self.num_heads
        w, b = self.in_proj_weight, self.in_proj_bias
        if q is k and k is v:  # one matmul for self-attention without position terms
            qp, kp, vp = F.linear(q, w, b).chunk(3, dim=-1)
        else:
            qp = F.linear(q, w[:C], b[:C])
            kp = F.linear(k, w[C:2 * C], b[C:2 * C])
            vp = F.linear(v, w[2 * C:], b[2 * C:])
        qp = qp.view(B, Lq, h, -1).transpose(1, 2)
        kp = kp.view(B, Lk, h, -1).transpose(1, 2)
        vp = vp.view(B, Lk, h, -1).transpose(1, 2)
        mask = attn_bias
        if key_padding_mask is not None:
            pad = torch.zeros(key_padding_mask.shape, dtype=qp.dtype, device=qp.device)
            pad = pad.masked_fill(key_padding_mask, float("-inf"))[:, None, None, :]
            mask = pad if mask is None else mask + pad
        if mask is not None:
            mask = mask.to(qp.dtype)
        out = F.scaled_dot_product_attention(
            qp, kp, vp, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(B, Lq, C))


def _sine_pairs(x: Tensor, num_feats: int, temperature: float = 10000.0) -> Tensor:
    """x: (...) already scaled coordinates -> (..., num_feats) interleaved [sin, cos, sin, ...].

    Channels 2i and 2i+1 share the frequency temperature^(2i / num_feats).
    """
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=x.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    p = x[..., None] / dim_t
    return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_position_map(h: int, w: int, dim: int, device=None) -> Tensor:
    """The 2-D sine position encoding of a feature map: returns dim x h x w.

    Channels: the y half first, then x. Positions 1..H are normalised by (H + 1e-6) and
    scaled by 2 pi (DETR's ``normalize=True``).
    """
    half = dim // 2
    y = torch.arange(1, h + 1, dtype=torch.float32, device=device)
    x = torch.arange(1, w + 1, dtype=torch.float32, device=device)
    y = y / (y[-1] + 1e-6) * 2 * math.pi
    x = x / (x[-1] + 1e-6) * 2 * math.pi
    pos_y = _sine_pairs(y, half)[:, None, :].expand(h, w, half)
    pos_x = _sine_pairs(x, half)[None, :, :].expand(h, w, half)
    return torch.cat([pos_y, pos_x], dim=-1).permute(2, 0, 1).contiguous()


class SinePositionCache:
    """2-D sine position maps of ``dim`` channels (:func:`sine_position_map`), computed once per
    (h, w, device, dtype): ``cache(h, w, like)`` -> dim x h x w. A plain object, not a module:
    nothing of it is in a state dict."""

    def __init__(self, dim: int):
        self.dim = dim
        self._maps: dict[tuple, Tensor] = {}

    def __call__(self, h: int, w: int, like: Tensor) -> Tensor:
        key = (h, w, like.device, like.dtype)
        if key not in self._maps:
            self._maps[key] = sine_position_map(h, w, self.dim, like.device).to(like.dtype)
        return self._maps[key]


def encode_box_sine(boxes: Tensor, dim: int) -> Tensor:
    """Exemplar box encoding: boxes (..., 4) normalised cxcywh -> (..., dim + 2).

    [sine(cy) (dim/2), sine(cx) (dim/2), h, w]: the centre gets a sine code, the size stays raw.
    """
    cx, cy, w, h = boxes.unbind(-1)
    half = dim // 2
    return torch.cat([_sine_pairs(cy * 2 * math.pi, half), _sine_pairs(cx * 2 * math.pi, half),
                      h[..., None], w[..., None]], dim=-1)


def encode_query_box_sine(boxes: Tensor, dim: int) -> Tensor:
    """Decoder query position: boxes (..., 4) cxcywh -> (..., 2 * dim), order y, x, w, h,
    each coordinate with dim/2 sine channels."""
    cx, cy, w, h = boxes.unbind(-1)
    half = dim // 2
    parts = [_sine_pairs(c * 2 * math.pi, half) for c in (cy, cx, w, h)]
    return torch.cat(parts, dim=-1)
