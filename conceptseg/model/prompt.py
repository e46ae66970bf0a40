"""Geometry / exemplar prompt encoder: boxes with pos/neg labels -> prompt tokens."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..ops.boxes import box_cxcywh_to_xyxy
from ..ops.roi_align import roi_align
from .common import encode_box_sine
from .fusion import PreNormLayer


class GeometryEncoder(nn.Module):
    """Encodes exemplar boxes into prompt tokens, always followed by a learned CLS token.

    Inputs: image features B x C x H x W (the 1x level) and their positions (same shape);
    boxes B x N x 4 (normalised cxcywh), labels B x N (1 positive, 0 negative),
    box_padding B x N (True = no box there). N may be 0.
    Output: tokens B x (N + 1) x C and their padding mask B x (N + 1).

    Each box token is the sum of a linear map of its coordinates, a 7x7 RoI-Align of the
    layer-normed image features through a 7x7 conv, a linear map of its sine-encoded centre and
    raw size, and a label embedding. Point prompts exist in the checkpoint (``points_*``) but
    concept segmentation never passes points, so they are kept for loading only.
    """

    def __init__(self, d_model: int, heads: int, ffn_dim: int, num_layers: int, dropout: float,
                 roi_size: int = 7):
        super().__init__()
        self.d_model, self.roi_size = d_model, roi_size
        self.label_embed = nn.Embedding(2, d_model)
        self.cls_embed = nn.Embedding(1, d_model)
        self.points_direct_project = nn.Linear(2, d_model)
        self.points_pool_project = nn.Linear(d_model, d_model)
        self.points_pos_enc_project = nn.Linear(d_model, d_model)
        self.boxes_direct_project = nn.Linear(4, d_model)
        self.boxes_pool_project = nn.Conv2d(d_model, d_model, roi_size)
        self.boxes_pos_enc_project = nn.Linear(d_model + 2, d_model)
        self.final_proj = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.img_pre_norm = nn.LayerNorm(d_model)
        self.encode = nn.ModuleList(PreNormLayer(d_model, heads, ffn_dim, dropout)
                                    for _ in range(num_layers))
        self.encode_norm = nn.LayerNorm(d_model)

    def embed_boxes(self, feats: Tensor, boxes: Tensor, labels: Tensor) -> Tensor:
        """feats B x C x H x W, boxes B x N x 4, labels B x N -> B x N x C (before the CLS)."""
        B, N, _ = boxes.shape
        H, W = feats.shape[-2:]
        emb = self.boxes_direct_project(boxes)
        normed = self.img_pre_norm(feats.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        xyxy = box_cxcywh_to_xyxy(boxes) * boxes.new_tensor([W, H, W, H])
        batch_idx = torch.arange(B, device=boxes.device, dtype=boxes.dtype).repeat_interleave(N)
        rois = torch.cat([batch_idx[:, None], xyxy.reshape(-1, 4).float()], dim=1)
        pooled = roi_align(normed, rois, self.roi_size, spatial_scale=1.0, sampling_ratio=-1,
                           aligned=False)
        emb = emb + self.boxes_pool_project(pooled).view(B, N, self.d_model)
        emb = emb + self.boxes_pos_enc_project(encode_box_sine(boxes, self.d_model))
        return emb + self.label_embed(labels.long())

    def forward(self, feats: Tensor, pos: Tensor, boxes: Tensor, labels: Tensor,
                box_padding: Tensor) -> tuple[Tensor, Tensor]:
        B = feats.shape[0]
        if boxes.shape[1]:
            tokens = self.embed_boxes(feats, boxes, labels)
        else:
            tokens = feats.new_zeros(B, 0, self.d_model)
        cls = self.cls_embed.weight[None].expand(B, 1, -1)
        tokens = torch.cat([tokens, cls], dim=1)
        padding = torch.cat([box_padding, box_padding.new_zeros(B, 1)], dim=1)
        tokens = self.norm(self.final_proj(tokens))
        image = feats.flatten(2).transpose(1, 2)
        image_pos = pos.flatten(2).transpose(1, 2)
        for layer in self.encode:
            tokens = layer(tokens, image, self_padding=padding, memory_key_pos=image_pos)
        return self.encode_norm(tokens), padding
