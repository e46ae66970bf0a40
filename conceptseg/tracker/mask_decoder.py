"""SAM mask decoder: a two-way transformer between output tokens and the image embedding,
then hypernetwork masks on a 4x upscaled map (with high-resolution skips), an IoU head and an
object-score head. Attribute names follow the official ``sam_mask_decoder`` keys."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.common import MLP
from .layers import LayerNorm2d, ProjAttention


class TokenMLP(nn.Module):
    """``lin1`` -> ReLU -> ``lin2`` (the two-way block's MLP)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(F.relu(self.lin1(x)))


class TwoWayBlock(nn.Module):
    """Post-norm block: token self-attn, tokens -> image, token MLP, image -> tokens.

    The first block's self-attention sees the tokens without their position (they *are* the
    position at that point) and no residual.
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int, downsample: int, first: bool):
        super().__init__()
        self.first = first
        self.self_attn = ProjAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = ProjAttention(dim, heads, downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = TokenMLP(dim, mlp_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = ProjAttention(dim, heads, downsample)

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor,
                key_pe: Tensor) -> tuple[Tensor, Tensor]:
        """queries: B x T x C (tokens), keys: B x HW x C (image); *_pe: their positions."""
        if self.first:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, downsample: int):
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayBlock(dim, heads, mlp_dim, downsample, first=(i == 0)) for i in range(depth))
        self.final_attn_token_to_image = ProjAttention(dim, heads, downsample)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: Tensor, image_pe: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """image / image_pe: B x C x h x w; tokens: B x T x C -> (tokens, image B x hw x C)."""
        keys = image.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        attn = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys


@dataclass
class DecoderOutput:
    masks: Tensor  # B x K x 4h x 4w mask logits (K = 3 multimask, else 1)
    ious: Tensor  # B x K predicted IoU (sigmoid)
    tokens: Tensor  # B x K' x C mask tokens for the object pointer (K' = 3 multimask, else 1)
    object_score_logits: Tensor  # B x 1


class MaskDecoder(nn.Module):
    """4 mask tokens (0: single mask, 1-3: multimask), an IoU token and an object-score token."""

    def __init__(self, dim: int, *, depth: int = 2, heads: int = 8, mlp_dim: int = 2048,
                 downsample: int = 2, num_multimask: int = 3, iou_depth: int = 3,
                 iou_hidden: int = 256, dynamic_multimask: bool = True,
                 stability_delta: float = 0.05, stability_thresh: float = 0.98):
        super().__init__()
        self.num_mask_tokens = num_multimask + 1
        self.transformer = TwoWayTransformer(dim, depth, heads, mlp_dim, downsample)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.obj_score_token = nn.Embedding(1, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, 2, stride=2), LayerNorm2d(dim // 4), nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, 2, stride=2), nn.GELU())
        self.conv_s0 = nn.Conv2d(dim, dim // 8, 1)
        self.conv_s1 = nn.Conv2d(dim, dim // 4, 1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(dim, iou_hidden, self.num_mask_tokens, iou_depth)
        self.pred_obj_score_head = MLP(dim, dim, 1, 3)
        self.dynamic_multimask = dynamic_multimask
        self.stability_delta = stability_delta
        self.stability_thresh = stability_thresh

    def predict_all(self, image: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor,
                    high_res: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """All 4 masks: (masks B x 4 x 4h x 4w, ious B x 4, mask tokens B x 4 x C,
        object score logits B x 1)."""
        B = sparse.shape[0]
        out_tokens = torch.cat(
            [self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens[None].expand(B, -1, -1), sparse], dim=1)
        src = image + dense
        pos = image_pe.expand(B, -1, -1, -1)
        _, C, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_out = hs[:, 1]
        mask_out = hs[:, 2:2 + self.num_mask_tokens]
        src = src.transpose(1, 2).reshape(B, C, h, w)
        up1, ln, act1, up2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res
        x = act1(ln(up1(src) + feat_s1))
        x = act2(up2(x) + feat_s0)
        hyper = torch.stack(
            [mlp(mask_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, c, H, W = x.shape
        masks = (hyper @ x.view(b, c, H * W)).view(b, -1, H, W)
        ious = torch.sigmoid(self.iou_prediction_head(iou_out))
        obj = self.pred_obj_score_head(hs[:, 0])
        return masks, ious, mask_out, obj

    def stability(self, logits: Tensor) -> Tensor:
        """IoU between the masks thresholded at +delta and -delta: B x K x H x W -> B x K."""
        flat = logits.flatten(-2)
        inter = (flat > self.stability_delta).sum(-1).float()
        union = (flat > -self.stability_delta).sum(-1).float()
        return torch.where(union > 0, inter / union, torch.ones_like(inter))

    def forward(self, image: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor,
                high_res: tuple[Tensor, Tensor], multimask: bool) -> DecoderOutput:
        """Inference selection: multimask -> tokens 1-3; otherwise token 0, or (dynamic
        multimask) the best of 1-3 by predicted IoU when token 0's mask is unstable. The pointer
        token stays token 0 in the single-mask case, even after a fallback."""
        masks, ious, tokens, obj = self.predict_all(image, image_pe, sparse, dense, high_res)
        if multimask:
            return DecoderOutput(masks[:, 1:], ious[:, 1:], tokens[:, 1:], obj)
        if self.dynamic_multimask and not self.training:
            best = ious[:, 1:].argmax(-1)
            rows = torch.arange(masks.shape[0], device=masks.device)
            best_mask = masks[:, 1:][rows, best][:, None]
            best_iou = ious[:, 1:][rows, best][:, None]
            stable = self.stability(masks[:, :1]) >= self.stability_thresh  # B x 1
            m = torch.where(stable[..., None, None], masks[:, :1], best_mask)
            s = torch.where(stable, ious[:, :1], best_iou)
            return DecoderOutput(m, s, tokens[:, :1], obj)
        return DecoderOutput(masks[:, :1], ious[:, :1], tokens[:, :1], obj)
