"""CLIP-style causal text transformer and the resizer to the detector width."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import TextConfig
from ..model.common import Attention


class TextMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.c_fc = nn.Linear(dim, hidden)
        self.c_proj = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class TextBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = TextMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, causal: Tensor) -> Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, attn_bias=causal)
        return x + self.mlp(self.ln_2(x))


class TextStack(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.resblocks = nn.ModuleList(TextBlock(cfg.width, cfg.heads, cfg.mlp_ratio)
                                       for _ in range(cfg.layers))


class TextTransformer(nn.Module):
    """tokens B x L -> token features B x L x width (causal attention, no pooling)."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.width))
        self.transformer = TextStack(cfg)
        self.ln_final = nn.LayerNorm(cfg.width)
        # In the official checkpoint, multiplied by a pooled token and discarded; kept so that
        # strict loading and round trips work. Never used here.
        self.text_projection = nn.Parameter(torch.empty(cfg.width, cfg.projection_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=cfg.width ** -0.5)

    def forward(self, tokens: Tensor) -> Tensor:
        L = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:L]
        causal = torch.full((L, L), float("-inf"), device=x.device, dtype=x.dtype).triu_(1)
        for blk in self.transformer.resblocks:
            x = blk(x, causal)
        return self.ln_final(x)


class TextEncoder(nn.Module):
    """tokens B x L -> (features B x L x d_model, padding mask B x L (True = pad),
    raw token embeddings B x L x width).

    Padding is token id 0, which is also a real BPE symbol ("!"): the official model treats
    every 0 as padding and so do we. The encoder is causal only, so padding slots never leak into
    real tokens; they are masked downstream.
    """

    def __init__(self, cfg: TextConfig, d_model: int):
        super().__init__()
        self.encoder = TextTransformer(cfg)
        self.resizer = nn.Linear(cfg.width, d_model)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feats = self.resizer(self.encoder(tokens))
        return feats, tokens == 0, self.encoder.token_embedding(tokens)
