"""Small layers shared by the tracker modules: channel LayerNorm for maps, attention with separate
q / k / v / out projections (the SAM layout), and 2-D axial RoPE on a feature grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.vision import apply_rope, axial_rope_freqs


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a B x C x H x W map (eps 1e-6, as in SAM)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ProjAttention(nn.Module):
    """Multi-head attention with separate ``q_proj`` / ``k_proj`` / ``v_proj`` / ``out_proj``.

    The projections map to ``dim // downsample`` channels (SAM's token <-> image attention runs
    at half width); keys and values may come from ``kv_dim`` channels (the 64-d memory).
    """

    def __init__(self, dim: int, heads: int, downsample: int = 1, kv_dim: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        inner = dim // downsample
        if inner % heads:
            raise ValueError(f"{heads} heads do not divide the attention width {inner}")
        kv_dim = dim if kv_dim is None else kv_dim
        self.heads, self.dropout = heads, dropout
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(kv_dim, inner)
        self.v_proj = nn.Linear(kv_dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def project(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """B x L x C inputs -> B x heads x L x inner/heads."""
        def split(x: Tensor) -> Tensor:
            B, L, C = x.shape
            return x.view(B, L, self.heads, C // self.heads).transpose(1, 2)
        return split(self.q_proj(q)), split(self.k_proj(k)), split(self.v_proj(v))

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Heads-split q, k, v -> B x Lq x C (after ``out_proj``)."""
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0)
        B, h, L, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, L, h * d))

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """q: B x Lq x C, k / v: B x Lk x kv_dim -> B x Lq x C."""
        return self.attend(*self.project(q, k, v))


class GridRoPE:
    """2-D axial RoPE factors for a square side x side token grid (positions not scaled).

    Token t sits at column t mod side and row t div side; the first half of the rotated pairs turn
    with the column, the second half with the row. Factors are cached per (side, dim, device).
    """

    def __init__(self, theta: float = 10000.0):
        self.theta = theta
        self._cache: dict[tuple, Tensor] = {}

    def __call__(self, side: int, dim: int, device) -> Tensor:
        """(side*side) x (dim/2) complex factors."""
        key = (side, dim, str(device))
        if key not in self._cache:
            self._cache[key] = axial_rope_freqs(dim, side, 1.0, self.theta).to(device)
        return self._cache[key]


def rope_qk(q: Tensor, k: Tensor, freqs: Tensor, num_k_exclude: int = 0,
            repeat_k: bool = False) -> tuple[Tensor, Tensor]:
    """Rotate q (B x h x Lq x d) and the first ``Lk - num_k_exclude`` keys of k.

    With ``repeat_k`` the factors are tiled along the keys (one copy per memory frame), so every
    memory frame is rotated like the current frame's grid. The excluded tail (object-pointer
    tokens) is left as is. Rotation happens in float32; results take the input dtype.
    """
    q_out = apply_rope(q, freqs).type_as(q)
    n_rot = k.shape[-2] - num_k_exclude
    if n_rot == 0:
        return q_out, k
    k_rot = k[..., :n_rot, :]
    if repeat_k:
        r = n_rot // q.shape[-2]
        freqs = freqs.repeat(r, 1)
    k_rot = apply_rope(k_rot, freqs).type_as(k)
    if num_k_exclude:
        k_rot = torch.cat([k_rot, k[..., n_rot:, :]], dim=-2)
    return q_out, k_rot
