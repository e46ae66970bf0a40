"""SAM prompt encoder: clicks / box corners -> sparse tokens, a mask -> a dense map.

Points are encoded with random Fourier features (a fixed 2 x C/2 gaussian matrix, stored as a
buffer) of their pixel-centre coordinates normalised by the image size, plus a learned embedding
per label: 0 negative click, 1 positive click, 2 / 3 box top-left / bottom-right corner,
-1 padding (replaced by ``not_a_point_embed``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .layers import LayerNorm2d


class RandomFourierPE(nn.Module):
    """x, y in [0, 1] -> [sin(2 pi (2p - 1) G), cos(...)], G a 2 x (C/2) gaussian matrix."""

    def __init__(self, num_feats: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def encode(self, coords: Tensor) -> Tensor:
        """coords: (..., 2) normalised (x, y) -> (..., 2 * num_feats)."""
        c = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        c = 2 * math.pi * c
        return torch.cat([c.sin(), c.cos()], dim=-1)

    def grid(self, h: int, w: int) -> Tensor:
        """Encoding of every cell centre of an h x w grid: returns C x h x w."""
        g = self.positional_encoding_gaussian_matrix
        y = (torch.arange(h, dtype=torch.float32, device=g.device) + 0.5) / h
        x = (torch.arange(w, dtype=torch.float32, device=g.device) + 0.5) / w
        xy = torch.stack([x[None, :].expand(h, w), y[:, None].expand(h, w)], dim=-1)
        return self.encode(xy).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Attribute names follow the official ``sam_prompt_encoder`` keys."""

    def __init__(self, dim: int, grid: int, image_size: int, mask_in_chans: int = 16):
        super().__init__()
        self.dim, self.grid, self.image_size = dim, grid, image_size
        self.pe_layer = RandomFourierPE(dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, dim)
        self.mask_input_size = 4 * grid
        c = mask_in_chans
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, c // 4, 2, stride=2), LayerNorm2d(c // 4), nn.GELU(),
            nn.Conv2d(c // 4, c, 2, stride=2), LayerNorm2d(c), nn.GELU(),
            nn.Conv2d(c, dim, 1))
        self.no_mask_embed = nn.Embedding(1, dim)

    def dense_pe(self) -> Tensor:
        """Position encoding of the image tokens: 1 x C x grid x grid."""
        return self.pe_layer.grid(self.grid, self.grid)[None]

    def embed_points(self, points: Tensor, labels: Tensor, pad: bool = True) -> Tensor:
        """points: B x N x 2 pixel (x, y) in the image_size frame; labels: B x N ints.

        ``pad`` appends one padding point (label -1) as the official tracker always does (it never
        passes a separate box; boxes arrive as two corner points). Returns B x (N + pad) x C.
        """
        points = points.float() + 0.5  # pixel centre
        if pad:
            B = points.shape[0]
            points = torch.cat([points, points.new_zeros(B, 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((B, 1), -1)], dim=1)
        emb = self.pe_layer.encode(points / self.image_size)
        lab = labels[..., None]
        emb = torch.where(lab == -1, self.not_a_point_embed.weight.expand_as(emb), emb)
        for i, table in enumerate(self.point_embeddings):
            emb = torch.where(lab == i, emb + table.weight, emb)
        return emb

    def embed_mask(self, masks: Tensor) -> Tensor:
        """masks: B x 1 x 4g x 4g logits -> B x C x g x g."""
        return self.mask_downscaling(masks)

    def forward(self, points: Tensor, labels: Tensor, masks: Tensor | None,
                batch: int) -> tuple[Tensor, Tensor]:
        """Returns (sparse B x (N + 1) x C, dense B x C x g x g)."""
        sparse = self.embed_points(points, labels, pad=True)
        if masks is not None:
            dense = self.embed_mask(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                batch, -1, self.grid, self.grid)
        return sparse, dense
