"""DETR decoder with box refinement, log box relative-position bias and the presence token;
and the dot-product scorer that turns queries into per-query logits."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.boxes import box_cxcywh_to_xyxy, inverse_sigmoid
from .common import MLP, Attention, encode_query_box_sine


class DecoderLayer(nn.Module):
    """Post-norm: self-attn -> text cross-attn -> image cross-attn (+ box bias) -> FFN."""

    def __init__(self, d_model: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.self_attn = Attention(d_model, heads, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ca_text = Attention(d_model, heads, dropout)
        self.catext_norm = nn.LayerNorm(d_model)
        self.cross_attn = Attention(d_model, heads, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = dropout

    def forward(self, x: Tensor, query_pos: Tensor, prompt: Tensor, prompt_padding: Tensor,
                memory: Tensor, memory_pos: Tensor, box_bias: Tensor,
                n_self: int | None = None) -> Tensor:
        """x: B x (1+Q) x C with the presence token first (its query_pos is zero);
        box_bias: B x heads x (1+Q) x HW, additive. ``n_self``: only the first n_self rows take
        self-attention (among themselves); the others are only normed, so they cannot suppress
        each other (training-only query groups, see conceptseg/train/dac.py). None: all rows."""
        drop = lambda t: F.dropout(t, self.dropout, self.training)  # noqa: E731
        if n_self is None:
            q = x + query_pos
            x = self.norm2(x + drop(self.self_attn(q, q, x)))
        else:
            a, b = x[:, :n_self], x[:, n_self:]
            q = a + query_pos[:, :n_self]
            x = torch.cat([self.norm2(a + drop(self.self_attn(q, q, a))), self.norm2(b)], 1)
        q = x + query_pos
        x = self.catext_norm(x + drop(self.ca_text(q, prompt, prompt, key_padding_mask=prompt_padding)))
        q = x + query_pos
        x = self.norm1(x + drop(self.cross_attn(q, memory + memory_pos, memory, attn_bias=box_bias)))
        y = self.linear2(drop(F.relu(self.linear1(x))))
        return self.norm3(x + drop(y))


class DetrDecoder(nn.Module):
    """Queries -> (hidden states, boxes, presence logits), one entry per layer.

    memory: fused image tokens B x HW x C on an h x w grid, memory_pos B x HW x C;
    prompt B x P x C with prompt_padding B x P.
    Returns hs L x B x Q x C (normed), boxes L x B x Q x 4 (cxcywh, sigmoid),
    presence L x B x 1 (logits). Layer l's box is that layer's input reference refined by its
    own delta; references are detached between layers, as in the official model.

    ``extra`` = (queries B x K x C, reference boxes B x K x 4 cxcywh in (0, 1)) appends a second
    group of K queries that skips self-attention (DAC one-to-many and recognition queries of
    training); hs and boxes then hold Q + K queries, the first Q unchanged by the group except
    for float rounding in the shared attention and MLP calls.
    """

    def __init__(self, d_model: int, heads: int, ffn_dim: int, num_layers: int, num_queries: int,
                 dropout: float, presence_clamp: float | None = None):
        super().__init__()
        self.d_model, self.heads = d_model, heads
        self.layers = nn.ModuleList(DecoderLayer(d_model, heads, ffn_dim, dropout)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.query_embed = nn.Embedding(num_queries, d_model)
        self.reference_points = nn.Embedding(num_queries, 4)
        self.bbox_embed = MLP(d_model, d_model, 4, 3)
        self.ref_point_head = MLP(2 * d_model, d_model, d_model, 2)
        self.boxRPB_embed_x = MLP(2, d_model, heads, 2)
        self.boxRPB_embed_y = MLP(2, d_model, heads, 2)
        self.presence_token = nn.Embedding(1, d_model)
        self.presence_token_head = MLP(d_model, d_model, 1, 3)
        self.presence_token_out_norm = nn.LayerNorm(d_model)
        self.presence_clamp = presence_clamp
        nn.init.normal_(self.query_embed.weight)
        nn.init.zeros_(self.bbox_embed.layers[-1].weight)
        nn.init.zeros_(self.bbox_embed.layers[-1].bias)

    def box_bias(self, boxes: Tensor, h: int, w: int) -> Tensor:
        """Log-scaled box relative position bias: boxes B x Q x 4 (cxcywh) -> B x heads x Q x HW.

        Grid coordinates are k/h (not pixel centres); each query's distance to its box edges
        is scaled by 8 and squashed with sign(d) log2(|d| + 1) / 3.
        """
        xyxy = box_cxcywh_to_xyxy(boxes)
        ys = torch.arange(h, device=boxes.device, dtype=torch.float32) / h
        xs = torch.arange(w, device=boxes.device, dtype=torch.float32) / w
        dy = ys[None, None, :, None] - xyxy[..., None, 1::2]  # B x Q x h x 2 (to y0, y1)
        dx = xs[None, None, :, None] - xyxy[..., None, 0::2]  # B x Q x w x 2 (to x0, x1)

        def squash(d: Tensor) -> Tensor:
            d = d * 8
            return torch.sign(d) * torch.log2(d.abs() + 1.0) / math.log2(8)

        by = self.boxRPB_embed_y(squash(dy))  # B x Q x h x heads
        bx = self.boxRPB_embed_x(squash(dx))  # B x Q x w x heads
        bias = by[:, :, :, None, :] + bx[:, :, None, :, :]  # B x Q x h x w x heads
        return bias.flatten(2, 3).permute(0, 3, 1, 2)

    def forward(self, memory: Tensor, memory_pos: Tensor, hw: tuple[int, int], prompt: Tensor,
                prompt_padding: Tensor, queries: Tensor | None = None,
                ref_boxes: Tensor | None = None,
                extra: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        B = memory.shape[0]
        x = (self.query_embed.weight if queries is None else queries)
        x = x[None].expand(B, -1, -1) if x.dim() == 2 else x
        ref = (self.reference_points.weight if ref_boxes is None else ref_boxes)
        ref = (ref[None].expand(B, -1, -1) if ref.dim() == 2 else ref).sigmoid()
        n_self = None
        if extra is not None:
            n_self = 1 + x.shape[1]  # the presence token and the ordinary queries
            x, ref = torch.cat([x, extra[0]], 1), torch.cat([ref, extra[1]], 1)
        presence = self.presence_token.weight[None].expand(B, 1, -1)
        hs, boxes, presence_logits = [], [], []
        for layer in self.layers:
            query_pos = self.ref_point_head(encode_query_box_sine(ref, self.d_model))
            bias = self.box_bias(ref, *hw)
            bias = torch.cat([bias.new_zeros(B, self.heads, 1, bias.shape[-1]), bias], dim=2)
            pos = torch.cat([query_pos.new_zeros(B, 1, self.d_model), query_pos], dim=1)
            out = layer(torch.cat([presence, x], dim=1), pos, prompt, prompt_padding, memory,
                        memory_pos, bias, n_self)
            presence, x = out[:, :1], out[:, 1:]
            normed = self.norm(x)
            new_ref = (inverse_sigmoid(ref) + self.bbox_embed(normed)).sigmoid()
            hs.append(normed)
            boxes.append(new_ref)
            logit = self.presence_token_head(self.presence_token_out_norm(presence)).squeeze(-1)
            if self.presence_clamp is not None:  # the official clamp is a no-op: off by default
                logit = logit.clamp(-self.presence_clamp, self.presence_clamp)
            presence_logits.append(logit)
            ref = new_ref.detach()
        return torch.stack(hs), torch.stack(boxes), torch.stack(presence_logits)


class DotProductScorer(nn.Module):
    """Per-query logits: dot(hs_proj(query), prompt_proj(mean over valid prompt tokens of
    prompt_mlp(prompt))) / sqrt(d) + bias, clamped to +-clamp. hs ... x B x Q x C -> ... x B x Q x 1.
    ``bias`` is a config constant (0 in official models), not a weight."""

    def __init__(self, d_model: int, hidden: int, dropout: float, clamp: float = 12.0,
                 bias: float = 0.0):
        super().__init__()
        self.bias = bias
        self.prompt_mlp = MLP(d_model, hidden, d_model, 2, residual=True, out_norm=True,
                              dropout=dropout)
        self.prompt_proj = nn.Linear(d_model, d_model)
        self.hs_proj = nn.Linear(d_model, d_model)
        self.scale = 1.0 / math.sqrt(d_model)
        self.clamp = clamp

    def forward(self, hs: Tensor, prompt: Tensor, prompt_padding: Tensor) -> Tensor:
        p = self.prompt_mlp(prompt)
        valid = (~prompt_padding).to(p.dtype)[..., None]  # B x P x 1
        pooled = (p * valid).sum(1) / valid.sum(1).clamp(min=1.0)  # B x C
        scores = torch.matmul(self.hs_proj(hs), self.prompt_proj(pooled)[..., None]) * self.scale
        if self.bias:
            scores = scores + self.bias
        return scores.clamp(-self.clamp, self.clamp)
