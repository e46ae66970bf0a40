"""The SAM 3 image model (detector), assembled.

Attribute names mirror the official checkpoint (``backbone.vision_backbone.trunk`` ...), so the
official layout loads with no renaming beyond the ``detector.`` prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import Sam3Config
from ..ops.boxes import box_cxcywh_to_xyxy
from ..text.encoder import TextEncoder
from .decoder import DetrDecoder, DotProductScorer
from .fusion import FusionEncoder
from .masks import SegmentationHead
from .neck import VisionBackbone
from .prompt import GeometryEncoder
from .vision import VisionTransformer


@dataclass
class ImageFeatures:
    """Output of the vision encoder for a batch of images.

    levels / pos: FPN maps, highest resolution first, each B x d x h x w (4x, 2x, 1x of the
    ViT grid for SAM 3).
    """

    levels: list[Tensor]
    pos: list[Tensor]

    def select(self, index: Tensor) -> "ImageFeatures":
        """Row i of the result is image index[i] (used to pair several prompts with one image)."""
        if self.levels[0].shape[0] == 1:  # broadcast without copying
            n = index.numel()
            return ImageFeatures([x.expand(n, -1, -1, -1) for x in self.levels],
                                 [p.expand(n, -1, -1, -1) for p in self.pos])
        return ImageFeatures([x[index] for x in self.levels], [p[index] for p in self.pos])


@dataclass
class TextFeatures:
    """feats B x L x d_model, padding B x L (True = pad), embeds B x L x text width."""

    feats: Tensor
    padding: Tensor
    embeds: Tensor


class Backbone(nn.Module):
    def __init__(self, cfg: Sam3Config):
        super().__init__()
        v = cfg.vision
        self.vision_backbone = VisionBackbone(VisionTransformer(v), v.width, cfg.d_model,
                                              cfg.neck_scales, cfg.scalp)
        self.language_backbone = TextEncoder(cfg.text, cfg.d_model)


class Transformer(nn.Module):
    def __init__(self, cfg: Sam3Config):
        super().__init__()
        self.encoder = FusionEncoder(cfg.d_model, cfg.heads, cfg.ffn_dim, cfg.encoder_layers,
                                     cfg.dropout)
        self.decoder = DetrDecoder(cfg.d_model, cfg.heads, cfg.ffn_dim, cfg.decoder_layers,
                                   cfg.num_queries, cfg.dropout, cfg.presence_clamp)


class Sam3Detector(nn.Module):
    """Promptable concept detector: image + (text, exemplar boxes) -> every matching instance."""

    def __init__(self, cfg: Sam3Config):
        super().__init__()
        self.config = cfg
        self.backbone = Backbone(cfg)
        self.geometry_encoder = GeometryEncoder(cfg.d_model, cfg.heads, cfg.ffn_dim,
                                                cfg.geometry_layers, cfg.dropout, cfg.roi_size)
        self.transformer = Transformer(cfg)
        self.dot_prod_scoring = DotProductScorer(cfg.d_model, cfg.dot_mlp_hidden, cfg.dropout,
                                                 cfg.logit_clamp, cfg.score_bias)
        self.segmentation_head = SegmentationHead(cfg.d_model, cfg.heads, cfg.pixel_decoder_stages)

    # -- encoders -----------------------------------------------------------------------------
    def encode_image(self, images: Tensor) -> ImageFeatures:
        """images B x 3 x S x S normalised to [-1, 1]."""
        levels, pos = self.backbone.vision_backbone(images)
        return ImageFeatures(levels, pos)

    def encode_text(self, tokens: Tensor) -> TextFeatures:
        """tokens B x context_length (from :class:`conceptseg.text.tokenizer.ClipTokenizer`)."""
        feats, padding, embeds = self.backbone.language_backbone(tokens)
        return TextFeatures(feats, padding, embeds)

    def encode_prompt(self, image: ImageFeatures, text: TextFeatures, boxes: Tensor | None = None,
                      box_labels: Tensor | None = None, box_padding: Tensor | None = None
                      ) -> tuple[Tensor, Tensor]:
        """Prompt tokens = [text tokens; exemplar box tokens; geometry CLS].

        image and text have the same batch B (one row per prompt); boxes B x N x 4 normalised
        cxcywh, box_labels B x N (1 pos / 0 neg), box_padding B x N (True = absent).
        Returns prompt B x P x C and its padding mask B x P.
        """
        B = text.feats.shape[0]
        if boxes is None:
            boxes = text.feats.new_zeros(B, 0, 4)
            box_labels = torch.zeros(B, 0, dtype=torch.long, device=boxes.device)
        if box_labels is None:
            box_labels = torch.ones(boxes.shape[:2], dtype=torch.long, device=boxes.device)
        if box_padding is None:
            box_padding = torch.zeros(boxes.shape[:2], dtype=torch.bool, device=boxes.device)
        geo, geo_padding = self.geometry_encoder(image.levels[-1], image.pos[-1], boxes,
                                                 box_labels, box_padding)
        return (torch.cat([text.feats, geo], dim=1),
                torch.cat([text.padding, geo_padding], dim=1))

    # -- grounding ----------------------------------------------------------------------------
    def forward_grounding(self, image: ImageFeatures, text: TextFeatures,
                          boxes: Tensor | None = None, box_labels: Tensor | None = None,
                          box_padding: Tensor | None = None, *, with_masks: bool = True
                          ) -> dict[str, Tensor]:
        """Run prompt encoding, fusion, decoding and the mask head for B (image, prompt) rows.

        Returns (official names, batch first):
          pred_logits B x Q x 1 (raw, presence not folded in), pred_boxes B x Q x 4 (cxcywh),
          pred_boxes_xyxy, presence_logit_dec B x 1, queries B x Q x C,
          encoder_hidden_states B x HW x C, pred_masks B x Q x H0 x W0 (logits),
          semantic_seg B x 1 x H0 x W0, and every decoder layer's logits / boxes / presence
          as aux_logits L x B x Q x 1, aux_boxes L x B x Q x 4, aux_presence L x B x 1.
        """
        prompt, prompt_padding = self.encode_prompt(image, text, boxes, box_labels, box_padding)
        return self.forward_prompt(image, prompt, prompt_padding, with_masks=with_masks)

    def forward_prompt(self, image: ImageFeatures, prompt: Tensor, prompt_padding: Tensor, *,
                       with_masks: bool = True) -> dict[str, Tensor]:
        """forward_grounding from ready prompt tokens B x P x C (padding B x P, True = absent),
        e.g. a saved concept's (``inference/concept.py``); same outputs."""
        memory, memory_pos, hw = self.fuse(image, prompt, prompt_padding)
        hs, boxes_all, presence = self.transformer.decoder(memory, memory_pos, hw, prompt,
                                                           prompt_padding)
        out = self.decoder_outputs(hs, boxes_all, presence, memory, prompt, prompt_padding)
        if with_masks:
            out["pixel_embed"] = self.segmentation_head.pixel_embedding(
                image.levels, memory, prompt, prompt_padding)
            masks, semantic = self.mask_logits(out["pixel_embed"], hs[-1])
            out["pred_masks"], out["semantic_seg"] = masks, semantic
        return out

    def fuse(self, image: ImageFeatures, prompt: Tensor, prompt_padding: Tensor
             ) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """Fusion encoder on the lowest-resolution level: returns the fused image tokens
        B x HW x C, their positions B x HW x C and the grid size (h, w)."""
        top = image.levels[-1]
        memory_pos = image.pos[-1].flatten(2).transpose(1, 2)
        memory = self.transformer.encoder(top.flatten(2).transpose(1, 2), memory_pos, prompt,
                                          prompt_padding)
        return memory, memory_pos, (top.shape[-2], top.shape[-1])

    def decoder_outputs(self, hs: Tensor, boxes_all: Tensor, presence: Tensor, memory: Tensor,
                        prompt: Tensor, prompt_padding: Tensor) -> dict[str, Tensor]:
        """Scores every decoder layer's queries and names the outputs (see forward_grounding)."""
        logits = self.dot_prod_scoring(hs, prompt, prompt_padding)
        return {
            "pred_logits": logits[-1], "pred_boxes": boxes_all[-1],
            "pred_boxes_xyxy": box_cxcywh_to_xyxy(boxes_all[-1]),
            "presence_logit_dec": presence[-1], "queries": hs[-1],
            "encoder_hidden_states": memory, "prompt": prompt, "prompt_padding": prompt_padding,
            "aux_logits": logits, "aux_boxes": boxes_all, "aux_presence": presence,
        }

    def mask_logits(self, pixel_embed: Tensor, queries: Tensor) -> tuple[Tensor, Tensor]:
        """pixel_embed B x C x H0 x W0, queries B x K x C -> (B x K x H0 x W0, B x 1 x H0 x W0)."""
        head = self.segmentation_head
        masks = head.mask_predictor(queries, head.instance_seg_head(pixel_embed))
        return masks, head.semantic_seg_head(pixel_embed)

    def forward(self, images: Tensor, tokens: Tensor, boxes: Tensor | None = None,
                box_labels: Tensor | None = None, box_padding: Tensor | None = None,
                image_index: Tensor | None = None) -> dict[str, Tensor]:
        """Training / batch entry point: images N x 3 x S x S, tokens B x L; row b of the prompt
        batch uses image image_index[b] (default: b)."""
        image = self.encode_image(images)
        if image_index is not None:
            image = image.select(image_index)
        return self.forward_grounding(image, self.encode_text(tokens), boxes, box_labels,
                                      box_padding)


def build_detector(cfg: Sam3Config) -> Sam3Detector:
    return Sam3Detector(cfg)
