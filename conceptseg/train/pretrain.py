"""Contrastive pretraining of the vision and text encoders on synthetic objects.

The real SAM 3 starts from a Perception Encoder whose image and text towers are already aligned;
a model trained from scratch has no such start, and a detector whose encoders do not know that
"red" and "blue" differ learns to find *objects* but not to use the phrase. This stage aligns
them CLIP-style on the synthetic engine's exhaustive labels:

* vision: the ViT trunk's features averaged inside each instance's mask (mask pooling: precise
  even for overlapping shapes) -> linear projection;
* text: the text encoder's feature at the EOT token (the causal transformer's only token that
  has read the whole phrase), after the detector's resizer -> linear projection;
* phrases: for every instance a random description of it (a random non-empty subset of its
  size / fill / colour / shape), plus the scene's own positive and negative phrases, deduplicated;
* loss: multi-positive InfoNCE in both directions. The engine knows exactly which phrases
  describe which instance (``matches``), so a "red object" is a positive for every red instance
  and never a false negative.

The projection heads live only in the training state; the detector checkpoint is unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.phrases import ATTRIBUTES, format_phrase, matches, parse_phrase
from ..text.tokenizer import EOT_ID

__all__ = ["ContrastiveHead", "pretrain_batch", "contrastive_loss"]


class ContrastiveHead(nn.Module):
    def __init__(self, vision_dim: int, text_dim: int, embed_dim: int = 128):
        super().__init__()
        self.vision = nn.Sequential(nn.LayerNorm(vision_dim), nn.Linear(vision_dim, embed_dim))
        self.text = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))


def pretrain_batch(scenes, rng: np.random.Generator, grid: int, extra_phrases: int = 2):
    """scenes: list of synthetic Scene objects -> (pooling weights list per image, instance
    attributes, phrases, match matrix I x P)."""
    weights, attrs, phrases = [], [], []
    for sc in scenes:
        ws = []
        for inst in sc.instances:
            m = torch.from_numpy(inst.mask)[None, None].float()
            w = F.adaptive_avg_pool2d(m, grid)[0, 0]
            ws.append(w / w.sum().clamp(min=1e-6))
            attrs.append(inst.attributes)
            for _ in range(extra_phrases):
                k = int(rng.integers(1, len(ATTRIBUTES) + 1))
                sub = sorted(rng.choice(len(ATTRIBUTES), size=k, replace=False).tolist())
                phrases.append(format_phrase({ATTRIBUTES[i]: inst.attributes[ATTRIBUTES[i]] for i in sub}))
        weights.append(torch.stack(ws) if ws else torch.zeros(0, grid, grid))
        phrases += [dp.phrase for dp in sc.datapoints]
    phrases = list(dict.fromkeys(phrases))
    queries = [parse_phrase(p) for p in phrases]
    match = torch.tensor([[matches(q, a) for q in queries] for a in attrs], dtype=torch.bool)
    return weights, attrs, phrases, match


def eot_features(text_feats: Tensor, tokens: Tensor) -> Tensor:
    """B x L x C features, B x L tokens -> B x C at each row's EOT (last valid) token."""
    is_eot = tokens == EOT_ID
    pos = torch.where(is_eot.any(1), is_eot.float().argmax(1), (tokens != 0).sum(1).clamp(min=1) - 1)
    return text_feats[torch.arange(tokens.shape[0]), pos]


def contrastive_loss(v: Tensor, t: Tensor, match: Tensor, logit_scale: Tensor) -> tuple[Tensor, dict]:
    """v I x E, t P x E (unnormalised), match I x P bool -> multi-positive InfoNCE (both ways)."""
    v = F.normalize(v.float(), dim=-1)
    t = F.normalize(t.float(), dim=-1)
    scale = logit_scale.clamp(max=math.log(100.0)).exp()
    logits = scale * v @ t.T
    m = match.float()
    rows = m.sum(1) > 0
    cols = m.sum(0) > 0
    l_v = -(F.log_softmax(logits[rows], 1) * (m[rows] / m[rows].sum(1, keepdim=True))).sum(1).mean()
    l_t = -(F.log_softmax(logits.T[cols], 1) * (m.T[cols] / m.T[cols].sum(1, keepdim=True))).sum(1).mean()
    with torch.no_grad():
        # retrieval accuracy: the best phrase of an instance describes it
        acc = m[rows].gather(1, logits[rows].argmax(1, keepdim=True)).mean()
        sep = (logits[m.bool()].mean() - logits[~m.bool()].mean()) / scale
    return 0.5 * (l_v + l_t), {"nce_v": float(l_v.detach()), "nce_t": float(l_t.detach()), "top1": float(acc),
                               "cos_gap": float(sep), "scale": float(scale.detach())}


def pretrain_step(model, head: ContrastiveHead, scenes, tokenize, rng: np.random.Generator):
    """One contrastive step on a list of scenes; returns (loss, components)."""
    device = next(model.parameters()).device
    trunk = model.backbone.vision_backbone.trunk
    grid = model.config.vision.grid
    weights, attrs, phrases, match = pretrain_batch(scenes, rng, grid)
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() / 255.0 for s in scenes])
    feats = trunk(((images - 0.5) / 0.5).to(device))  # B x C x g x g
    pooled = torch.cat([torch.einsum("chw,nhw->nc", feats[b], weights[b].to(feats))
                        for b in range(len(scenes))])
    tokens = tokenize(phrases).to(device)
    tf, _, _ = model.backbone.language_backbone(tokens)
    t = eot_features(tf, tokens)
    loss, comps = contrastive_loss(head.vision(pooled), head.text(t), match.to(device), head.logit_scale)
    comps["instances"] = float(len(attrs))
    comps["phrases"] = float(len(phrases))
    return loss, comps
