"""Memory encoder (a mask + the frame's features -> a mem_dim memory map) and memory attention
(the current frame's features attend to stored memories and object pointers).

Attribute names follow the official keys: ``maskmem_backbone.*`` for :class:`MemoryEncoder`,
``transformer.encoder.*`` for :class:`MemoryAttention` (held by :class:`MemoryTransformer`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.common import SinePositionCache
from .config import TrackerConfig
from .layers import GridRoPE, LayerNorm2d, ProjAttention, rope_qk


# -- memory encoder ---------------------------------------------------------------------------
class MaskDownSampler(nn.Module):
    """Resize the mask to ``interpol_size`` (bilinear, antialiased), then k x [Conv3x3 stride 2,
    LayerNorm2d, GELU] with channels x4 each (1 -> 4 -> 16 -> 64 -> 256), then Conv1x1 -> dim.

    ``encoder`` indices (0, 1, 3, 4, ..., 3k) match the official Sequential.
    """

    def __init__(self, dim: int, interpol_size: int, stride: int = 2, total_stride: int = 16):
        super().__init__()
        n = int(math.log2(total_stride) // math.log2(stride))
        if stride ** n != total_stride:
            raise ValueError(f"total stride {total_stride} is not a power of {stride}")
        self.interpol_size = interpol_size
        layers: list[nn.Module] = []
        cin = 1
        for _ in range(n):
            cout = cin * stride ** 2
            layers += [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), LayerNorm2d(cout),
                       nn.GELU()]
            cin = cout
        layers.append(nn.Conv2d(cin, dim, 1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, mask: Tensor) -> Tensor:
        """mask: B x 1 x H x W -> B x dim x (S/16) x (S/16), S = interpol_size."""
        s = self.interpol_size
        if tuple(mask.shape[-2:]) != (s, s):
            mask = F.interpolate(mask.float(), size=(s, s), mode="bilinear", align_corners=False,
                                 antialias=True)
        return self.encoder(mask)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise k x k conv, LayerNorm2d, Linear x4, GELU, Linear, layer scale
    ``gamma``, residual."""

    def __init__(self, dim: int, kernel: int = 7, mlp_ratio: int = 4):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, mlp_ratio * dim)
        self.pwconv2 = nn.Linear(mlp_ratio * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    def __init__(self, dim: int, num_layers: int, kernel: int, mlp_ratio: int):
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim, kernel, mlp_ratio) for _ in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """(frame features B x C x g x g, mask B x 1 x H x W already scaled to logits-like values)
    -> (memory B x mem_dim x g x g, its sine position B x mem_dim x g x g)."""

    def __init__(self, cfg: TrackerConfig):
        super().__init__()
        d = cfg.d_model
        self.mask_downsampler = MaskDownSampler(d, cfg.mask_interpol_size,
                                                cfg.mask_downsampler_stride,
                                                cfg.mask_downsampler_total_stride)
        self.pix_feat_proj = nn.Conv2d(d, d, 1)
        self.fuser = Fuser(d, cfg.fuser_layers, cfg.fuser_kernel, cfg.fuser_mlp_ratio)
        self.out_proj = nn.Conv2d(d, cfg.mem_dim, 1)
        self.mem_dim = cfg.mem_dim
        self.position = SinePositionCache(self.mem_dim)  # (h, w, like) -> dim x h x w

    def forward(self, pix_feat: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(mask)
        x = self.out_proj(self.fuser(x))
        pos = self.position(x.shape[-2], x.shape[-1], x)[None].expand(x.shape[0], -1, -1, -1)
        return x, pos


# -- memory attention -------------------------------------------------------------------------
class RoPEAttention(ProjAttention):
    """Attention whose queries (a g x g grid) and keys get 2-D axial RoPE.

    For cross-attention to memories (``repeat_k``) the factors are tiled once per memory frame and
    the last ``num_k_exclude`` keys (object-pointer tokens) are not rotated.
    """

    def __init__(self, dim: int, heads: int, rope: GridRoPE, kv_dim: int | None = None,
                 repeat_k: bool = False, dropout: float = 0.1):
        super().__init__(dim, heads, kv_dim=kv_dim, dropout=dropout)
        self.rope, self.repeat_k = rope, repeat_k

    def forward(self, q: Tensor, k: Tensor, v: Tensor, side: int,
                num_k_exclude: int = 0) -> Tensor:
        q, k, v = self.project(q, k, v)
        q, k = rope_qk(q, k, self.rope(side, q.shape[-1], q.device), num_k_exclude, self.repeat_k)
        return self.attend(q, k, v)


class MemoryAttentionLayer(nn.Module):
    """Pre-norm: x += SelfAttn(norm1 x); x += CrossAttn(norm2 x, memory + memory_pos, memory);
    x += FFN(norm3 x). No position terms on the queries (RoPE only)."""

    def __init__(self, cfg: TrackerConfig, rope: GridRoPE):
        super().__init__()
        d = cfg.d_model
        self.self_attn = RoPEAttention(d, cfg.memory_heads, rope)
        self.cross_attn_image = RoPEAttention(d, cfg.memory_heads, rope, kv_dim=cfg.mem_dim,
                                              repeat_k=True)
        self.linear1 = nn.Linear(d, cfg.memory_ffn_dim)
        self.linear2 = nn.Linear(cfg.memory_ffn_dim, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)
        self.dropout = 0.1  # training only

    def forward(self, x: Tensor, memory: Tensor, memory_pos: Tensor, side: int,
                num_ptr_tokens: int) -> Tensor:
        p = self.dropout if self.training else 0.0
        y = self.norm1(x)
        x = x + F.dropout(self.self_attn(y, y, y, side), p, self.training)
        y = self.norm2(x)
        x = x + F.dropout(self.cross_attn_image(y, memory + memory_pos, memory, side,
                                                num_ptr_tokens), p, self.training)
        y = self.norm3(x)
        y = self.linear2(F.dropout(F.relu(self.linear1(y)), p, self.training))
        return x + F.dropout(y, p, self.training)


class MemoryAttention(nn.Module):
    def __init__(self, cfg: TrackerConfig):
        super().__init__()
        rope = GridRoPE(cfg.rope_theta)
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(cfg, rope) for _ in range(cfg.memory_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.input_pos_scale = cfg.input_pos_scale

    def forward(self, feat: Tensor, pos: Tensor, memory: Tensor, memory_pos: Tensor,
                num_ptr_tokens: int = 0) -> Tensor:
        """feat / pos: B x C x g x g (current frame, square grid); memory / memory_pos:
        B x M x mem_dim, the spatial memory tokens first (whole frames of g*g tokens), then
        ``num_ptr_tokens`` object-pointer tokens. Returns the conditioned map B x C x g x g."""
        B, C, H, W = feat.shape
        if H != W:
            raise ValueError(f"memory attention needs a square feature grid, got {H}x{W}")
        x = (feat + self.input_pos_scale * pos).flatten(2).transpose(1, 2)
        for layer in self.layers:
            x = layer(x, memory, memory_pos, H, num_ptr_tokens)
        return self.norm(x).transpose(1, 2).reshape(B, C, H, W)


class MemoryTransformer(nn.Module):
    """Holder so that keys read ``transformer.encoder.*`` as in the official checkpoint."""

    def __init__(self, cfg: TrackerConfig):
        super().__init__()
        self.encoder = MemoryAttention(cfg)

    def forward(self, *args, **kwargs) -> Tensor:
        return self.encoder(*args, **kwargs)
