"""Pre-norm self + cross attention layer, and the fusion encoder built from it.

The same layer type serves two places with different position-encoding wiring:
* geometry encoder: prompt tokens attend to each other (no positions), then to the image with
  positions added to the image keys only;
* fusion encoder: image tokens attend to each other with positions on q and k, then to the
  prompt tokens (no positions, prompt padding masked).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .common import Attention


class PreNormLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.self_attn = Attention(d_model, heads, dropout)
        self.cross_attn_image = Attention(d_model, heads, dropout)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = dropout

    def forward(self, x: Tensor, memory: Tensor, *, self_pos: Tensor | None = None,
                self_padding: Tensor | None = None, memory_key_pos: Tensor | None = None,
                memory_padding: Tensor | None = None) -> Tensor:
        """x: B x L x C; memory: B x M x C; *_pos: added to q/k (self) or to memory keys;
        *_padding: B x L / B x M, True = ignore."""
        drop = lambda t: F.dropout(t, self.dropout, self.training)  # noqa: E731
        y = self.norm1(x)
        qk = y if self_pos is None else y + self_pos
        x = x + drop(self.self_attn(qk, qk, y, key_padding_mask=self_padding))
        y = self.norm2(x)
        keys = memory if memory_key_pos is None else memory + memory_key_pos
        x = x + drop(self.cross_attn_image(y, keys, memory, key_padding_mask=memory_padding))
        y = self.norm3(x)
        y = self.linear2(drop(F.relu(self.linear1(y))))
        return x + drop(y)


class FusionEncoder(nn.Module):
    """Conditions the image tokens on the prompt.

    image B x HW x C, image_pos B x HW x C, prompt B x P x C, prompt_padding B x P
    -> fused image tokens B x HW x C. The prompt itself is not updated.
    """

    def __init__(self, d_model: int, heads: int, ffn_dim: int, num_layers: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(PreNormLayer(d_model, heads, ffn_dim, dropout)
                                    for _ in range(num_layers))

    def forward(self, image: Tensor, image_pos: Tensor, prompt: Tensor,
                prompt_padding: Tensor) -> Tensor:
        x = image
        for layer in self.layers:
            x = layer(x, prompt, self_pos=image_pos, memory_padding=prompt_padding)
        return x
