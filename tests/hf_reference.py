"""transformers' ``Sam3Model`` as an independent reference for our image model (test helper).

``hf_config_for(cfg)`` gives the transformers config with the sizes of one of our configs, set so
that the port computes what the official code does (see shared/reference/ARCHITECTURE.md, section
8): ViT LayerNorm eps 1e-5 (transformers defaults to 1e-6), the CLIP text config built as an
object with ``hidden_act="gelu"`` and 32 positions (a dict would fall back to CLIP's defaults,
``quick_gelu`` and 77). ``build_hf_model(cfg, official_sd)`` loads our (official-layout) weights
into ``transformers.Sam3Model`` through :func:`conceptseg.checkpoint.hf.official_to_hf`, strictly.

Differences that remain by design and that a comparison has to allow for: transformers'
``pred_boxes`` are xyxy; its presence logit is clamped to +-10; with no box it skips the geometry
encoder (no CLS prompt token), so a text-only prompt is compared by passing one padding box
(label -10); its box path needs ``torchvision.ops.roi_align``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from conceptseg.checkpoint.hf import official_to_hf
from conceptseg.config import Sam3Config


def hf_config_for(cfg: Sam3Config):
    """A ``transformers.Sam3Config`` whose sizes equal ``cfg``'s."""
    from transformers import CLIPTextConfig
    from transformers import Sam3Config as HFSam3Config
    from transformers.models.sam3.configuration_sam3 import (
        Sam3DETRDecoderConfig, Sam3DETREncoderConfig, Sam3GeometryEncoderConfig,
        Sam3MaskDecoderConfig, Sam3VisionConfig, Sam3ViTConfig)

    if cfg.dot_mlp_hidden != cfg.ffn_dim:
        # transformers sizes the scorer's MLP with detr_decoder_config.intermediate_size
        raise ValueError("transformers needs dot_mlp_hidden == ffn_dim, got "
                         f"{cfg.dot_mlp_hidden} and {cfg.ffn_dim}")
    v, t, d = cfg.vision, cfg.text, cfg.d_model
    if v.global_blocks and max(v.global_blocks) != v.depth - 1:
        # transformers runs every block; we stop after the last global one (as the official
        # code's output does not depend on later blocks). Parity needs them to coincide.
        raise ValueError("transformers' ViT output is the last block's: the last block must be "
                         "global for a comparison")
    vit = Sam3ViTConfig(
        hidden_size=v.width, intermediate_size=int(v.width * v.mlp_ratio),
        num_hidden_layers=v.depth, num_attention_heads=v.heads, image_size=v.image_size,
        patch_size=v.patch_size, layer_norm_eps=v.layer_norm_eps, window_size=v.window_size,
        global_attn_indexes=list(v.global_blocks), pretrain_image_size=v.pretrain_image_size,
        rope_parameters={"rope_type": "axial", "rope_theta": v.rope_theta})
    g = v.grid
    vision = Sam3VisionConfig(
        backbone_config=vit, fpn_hidden_size=d, scale_factors=list(cfg.neck_scales),
        backbone_feature_sizes=[[int(g * s), int(g * s)] for s in cfg.neck_scales[:3]])
    text = CLIPTextConfig(
        vocab_size=t.vocab_size, hidden_size=t.width, intermediate_size=int(t.width * t.mlp_ratio),
        projection_dim=t.projection_dim, num_hidden_layers=t.layers, num_attention_heads=t.heads,
        max_position_embeddings=t.context_length, hidden_act="gelu", layer_norm_eps=1e-5)
    common = dict(hidden_size=d, num_attention_heads=cfg.heads, dropout=0.0)
    return HFSam3Config(
        vision_config=vision, text_config=text,
        geometry_encoder_config=Sam3GeometryEncoderConfig(
            num_layers=cfg.geometry_layers, intermediate_size=cfg.ffn_dim, roi_size=cfg.roi_size,
            **common),
        detr_encoder_config=Sam3DETREncoderConfig(
            num_layers=cfg.encoder_layers, intermediate_size=cfg.ffn_dim, **common),
        detr_decoder_config=Sam3DETRDecoderConfig(
            num_layers=cfg.decoder_layers, num_queries=cfg.num_queries,
            intermediate_size=cfg.ffn_dim, **common),
        mask_decoder_config=Sam3MaskDecoderConfig(
            num_upsampling_stages=cfg.pixel_decoder_stages, **common),
    )


def build_hf_model(cfg: Sam3Config, official_sd: dict[str, Tensor], *, share: bool = True):
    """``transformers.Sam3Model`` for ``cfg`` holding ``official_sd`` (official layout), in eval
    mode. Loading is strict: a missing or unexpected key is an error.

    With ``share`` the model's parameters are our tensors themselves (q / k / v as views), so the
    two models together take about the memory of one.
    """
    from transformers import Sam3Model

    model = Sam3Model(hf_config_for(cfg)).eval()
    hf_sd = official_to_hf(official_sd, share=share)
    missing, unexpected = model.load_state_dict(hf_sd, strict=False, assign=share)
    if missing or unexpected:
        raise AssertionError(f"transformers Sam3Model: missing keys {missing}, "
                             f"unexpected keys {unexpected}")
    return model


@torch.no_grad()
def randomize_constants_(model: torch.nn.Module, seed: int = 0, std: float = 0.1) -> None:
    """Add N(0, std) noise to every parameter that is constant after init (LayerNorm weights and
    biases, attention biases, zero-initialised heads), so that a swapped or misnamed one shows."""
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.is_floating_point() and (p.numel() == 1 or p.std() == 0):
            p.add_(torch.randn(p.shape, generator=gen) * std)


@torch.no_grad()
def hf_text_features(model, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Projected text features (B x L x d) and the validity mask for our zero-padded tokens."""
    mask = (tokens != 0).long()
    out = model.get_text_features(input_ids=tokens, attention_mask=mask, return_dict=True)
    return out.pooler_output, mask.bool()
