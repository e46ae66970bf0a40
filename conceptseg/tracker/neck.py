"""The tracker's FPN neck (``sam2_convs``): a separately trained copy of the detector's SimpleFPN
that reads the same ViT trunk output.

Keys: ``sam2_convs.N.*``, i.e. the official ``detector.backbone.vision_backbone.sam2_convs.N.*``
with ``detector.backbone.vision_backbone.`` stripped (see :data:`NECK_PREFIX`).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..model.common import SinePositionCache
from ..model.neck import _branch
from .config import TrackerConfig

NECK_PREFIX = "detector.backbone.vision_backbone."


class TrackerNeck(nn.Module):
    """ViT trunk output B x vit_dim x g x g -> (levels, positions): three B x d_model maps at
    4g, 2g and g (288, 144, 72 for the full model) and their 2-D sine position encodings.
    The 0.5x branch is built (it is in the checkpoint) but, as officially, never computed."""

    def __init__(self, cfg: TrackerConfig):
        super().__init__()
        self.sam2_convs = nn.ModuleList(
            _branch(cfg.vit_dim, cfg.d_model, s) for s in cfg.neck_scales)
        self.num_used = len(cfg.neck_scales) - cfg.scalp
        self.d_model = cfg.d_model
        self.position = SinePositionCache(self.d_model)  # (h, w, like) -> dim x h x w

    def forward(self, trunk_out: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        levels, pos = [], []
        for conv in self.sam2_convs[: self.num_used]:
            y = conv(trunk_out)
            levels.append(y)
            p = self.position(y.shape[-2], y.shape[-1], y)
            pos.append(p[None].expand(y.shape[0], -1, -1, -1))
        return levels, pos
