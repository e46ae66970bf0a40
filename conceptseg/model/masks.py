"""Pixel decoder and the instance / semantic mask heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLP, Attention


class PixelDecoder(nn.Module):
    """Top-down FPN: levels (highest resolution first, lowest last) -> B x C x H0 x W0.

    ``stages`` convs are built (the checkpoint has three) but only len(levels) - 1 run.
    """

    def __init__(self, dim: int, stages: int):
        super().__init__()
        self.conv_layers = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=1) for _ in range(stages))
        self.norms = nn.ModuleList(nn.GroupNorm(8, dim) for _ in range(stages))

    def forward(self, levels: list[Tensor]) -> Tensor:
        x = levels[-1]
        for i, skip in enumerate(levels[-2::-1]):
            x = skip + F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = F.relu(self.norms[i](self.conv_layers[i](x)))
        return x


class MaskPredictor(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.mask_embed = MLP(dim, dim, dim, 3)

    def forward(self, queries: Tensor, pixels: Tensor) -> Tensor:
        """queries B x Q x C, pixels B x C x H x W -> mask logits B x Q x H x W."""
        return torch.einsum("bqc,bchw->bqhw", self.mask_embed(queries), pixels)


class SegmentationHead(nn.Module):
    """The fused image tokens first attend to the prompt (residual), replace the 1x FPN level,
    and the pixel decoder upsamples to the 4x level. Outputs instance mask logits for every
    query and a one-channel semantic map."""

    def __init__(self, d_model: int, heads: int, stages: int):
        super().__init__()
        self.cross_attend_prompt = Attention(d_model, heads, dropout=0.0)
        self.cross_attn_norm = nn.LayerNorm(d_model)
        self.pixel_decoder = PixelDecoder(d_model, stages)
        self.mask_predictor = MaskPredictor(d_model)
        self.instance_seg_head = nn.Conv2d(d_model, d_model, 1)
        self.semantic_seg_head = nn.Conv2d(d_model, 1, 1)

    def pixel_embedding(self, levels: list[Tensor], memory: Tensor, prompt: Tensor,
                        prompt_padding: Tensor) -> Tensor:
        """levels: FPN maps (B x C x Hi x Wi), memory B x HW x C -> pixel features B x C x H0 x W0."""
        y = self.cross_attn_norm(memory)
        memory = memory + self.cross_attend_prompt(y, prompt, prompt, key_padding_mask=prompt_padding)
        B, _, h, w = levels[-1].shape
        grid = memory.transpose(1, 2).reshape(B, -1, h, w)
        return self.pixel_decoder(list(levels[:-1]) + [grid])
