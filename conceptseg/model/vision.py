"""The ViT trunk of SAM 3 (ViTDet style): windowed and global blocks with 2-D axial RoPE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import VisionConfig


def axial_rope_freqs(head_dim: int, side: int, scale: float, theta: float = 10000.0) -> Tensor:
    """Complex RoPE factors for a side x side grid: returns (side*side) x (head_dim/2) complex64.

    The first head_dim/4 complex pairs rotate by the column (x), the next by the row (y).
    Token t sits at x = t mod side, y = t div side, both multiplied by ``scale``.
    """
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim)
    t = torch.arange(side * side, dtype=torch.float32)
    tx = (t % side) * scale
    ty = torch.div(t, side, rounding_mode="floor") * scale
    ang = torch.cat([torch.outer(tx, freqs), torch.outer(ty, freqs)], dim=-1)
    return torch.polar(torch.ones_like(ang), ang)


def block_rope_freqs(cfg: VisionConfig, block: int) -> Tensor:
    """The RoPE table of ViT block ``block``: windowed blocks see positions 0..window-1, global
    blocks squeeze the whole grid into the same range (positions scaled by window / grid),
    i.e. "interpolated" RoPE."""
    window = 0 if block in cfg.global_blocks else cfg.window_size
    side = window if window else cfg.grid
    scale = 1.0 if window else cfg.window_size / cfg.grid
    return axial_rope_freqs(cfg.width // cfg.heads, side, scale, cfg.rope_theta)


def apply_rope(x: Tensor, freqs_cis: Tensor) -> Tensor:
    """Rotate adjacent channel pairs (2i, 2i+1) of x (... x L x D) by the complex factors
    freqs_cis (L x D/2): one complex multiply, which is ~10x faster on CPU than the same rotation
    written as real slices, stacks and products (bit-identical results)."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs_cis).flatten(-2)


class ViTAttention(nn.Module):
    def __init__(self, dim: int, heads: int, freqs_cis: Tensor):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # Persistent complex buffer: the official checkpoint stores it, so we keep its name.
        self.register_buffer("freqs_cis", freqs_cis, persistent=True)

    def forward(self, x: Tensor) -> Tensor:
        """x: B x L x C (L = tokens of one window or of the whole grid)."""
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = apply_rope(q, self.freqs_cis).type_as(v), apply_rope(k, self.freqs_cis).type_as(v)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, L, C))


class ViTMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ViTBlock(nn.Module):
    """Pre-LN block; ``window`` > 0 means attention inside non-overlapping window x window tiles."""

    def __init__(self, cfg: VisionConfig, index: int):
        super().__init__()
        dim = cfg.width
        self.window = 0 if index in cfg.global_blocks else cfg.window_size
        self.norm1 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.attn = ViTAttention(dim, cfg.heads, block_rope_freqs(cfg, index))
        self.mlp = ViTMlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        """x: B x H x W x C."""
        B, H, W, C = x.shape
        y = self.norm1(x)
        if self.window:
            s = self.window
            ph, pw = (-H) % s, (-W) % s
            if ph or pw:
                y = F.pad(y, (0, 0, 0, pw, 0, ph))
            Hp, Wp = H + ph, W + pw
            y = y.view(B, Hp // s, s, Wp // s, s, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, s * s, C)
            y = self.attn(y)
            y = y.view(B, Hp // s, Wp // s, s, s, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
            y = y[:, :H, :W]
        else:
            y = self.attn(y.reshape(B, H * W, C)).view(B, H, W, C)
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class VisionTransformer(nn.Module):
    """images B x 3 x S x S (normalised to [-1, 1]) -> features B x C x S/p x S/p."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        pre = cfg.pretrain_image_size // cfg.patch_size
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.width)
        # pretraining grid + one (unused) cls slot, tiled over the larger grid at run time
        self.pos_embed = nn.Parameter(torch.zeros(1, pre * pre + 1, cfg.width))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.ln_pre = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.blocks = nn.ModuleList(ViTBlock(cfg, i) for i in range(cfg.depth))
        # Blocks after the last global block would be computed and discarded by the official
        # code; we stop there.
        self.num_used_blocks = max(cfg.global_blocks) + 1 if cfg.global_blocks else cfg.depth

    def tiled_pos_embed(self, h: int, w: int) -> Tensor:
        """1 x h x w x C: the pretraining grid repeated (not interpolated) to cover h x w."""
        pre = self.cfg.pretrain_image_size // self.cfg.patch_size
        grid = self.pos_embed[:, 1:].reshape(1, pre, pre, -1)
        reps = (-(-h // pre), -(-w // pre))
        return grid.repeat(1, reps[0], reps[1], 1)[:, :h, :w]

    def forward(self, images: Tensor) -> Tensor:
        x = self.patch_embed(images)
        x = self.ln_pre(x + self.tiled_pos_embed(x.shape[1], x.shape[2]))
        for blk in self.blocks[: self.num_used_blocks]:
            x = blk(x)
        return x.permute(0, 3, 1, 2)
