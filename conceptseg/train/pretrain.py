"""Contrastive pretraining of the vision and text encoders on synthetic objects.

The real SAM 3 starts from a Perception Encoder whose image and text towers are already aligned;
a model trained from scratch has no such start, and a detector whose encoders do not know that
"red" and "blue" differ learns to find *objects* but not to use the phrase. This stage aligns
them CLIP-style on the synthetic engine's exhaustive labels:

* vision: the ViT trunk's features averaged inside each instance's mask (mask pooling: precise
  even for overlapping shapes) -> linear projection;
* text: the mean of the text encoder's per-token features after the detector's resizer (the
  detector's own prompt tokens), with no projection head;
* phrases: for every instance a random description of it (a random non-empty subset of its
  size / fill / colour / shape), plus the scene's own positive and negative phrases, deduplicated;
* loss: multi-positive InfoNCE in both directions. The engine knows exactly which phrases
  describe which instance (``matches``), so a "red object" is a positive for every red instance
  and never a false negative. One-attribute swaps of each instance's description are added as
  phrases: without them the loss is satisfied by colour, size and fill alone and the shape is
  never encoded (a linear probe of the pooled features found shape at chance after 1,000 steps);
* plus linear attribute classifiers on the pooled features and on every token inside an
  instance (supervised pretraining: the engine knows every attribute). The per-token terms are
  what teaches the trunk shapes: with pooled terms only, shape stayed at chance for 400 steps
  while colour was learned in 80.

The projection heads live only in the training state; the detector checkpoint is unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.phrases import ATTRIBUTES, VALUES, format_phrase, matches, parse_phrase

__all__ = ["ContrastiveHead", "pretrain_batch", "contrastive_loss"]


class ContrastiveHead(nn.Module):
    """Vision projection (to the text width) and attribute classifiers. The text side has no
    head: the phrase embedding is the mean of the text encoder's raw per-token features, i.e.
    exactly what the detector's prompt is made of. (With a LayerNorm + linear text head the loss
    is met while the raw features of "red" and "blue" stay at cosine 0.99, and the detector then
    cannot tell the phrases apart.)"""

    def __init__(self, vision_dim: int, text_dim: int, embed_dim: int | None = None):
        super().__init__()
        self.vision = nn.Sequential(nn.LayerNorm(vision_dim), nn.Linear(vision_dim, text_dim))
        self.text = nn.Identity()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        # per-attribute linear classifiers on the pooled vision features (auxiliary)
        self.attr = nn.ModuleDict({a: nn.Linear(vision_dim, len(VALUES[a])) for a in ATTRIBUTES})
        # and on the pooled text features: each attribute's value or "not mentioned"
        self.text_attr = nn.ModuleDict({a: nn.Linear(text_dim, len(VALUES[a]) + 1)
                                        for a in ATTRIBUTES})


class AttributeHead(nn.Module):
    """Linear attribute classifiers on single ViT tokens: the auxiliary loss of the detection
    stage (``--attr-aux``) that keeps teaching the trunk every attribute (the shape is learned
    slowly, see the module docstring) while the detector trains. Training-only."""

    def __init__(self, vision_dim: int):
        super().__init__()
        self.attr = nn.ModuleDict({a: nn.Linear(vision_dim, len(VALUES[a])) for a in ATTRIBUTES})

    def token_loss(self, feats: Tensor, owner: Tensor, inst_attrs: Tensor) -> tuple[Tensor, dict]:
        """feats B x C x g x g, owner B x g x g (index into inst_attrs or -1), inst_attrs N x 4
        -> (mean cross-entropy over attributes, {"tok_acc_<attr>": accuracy})."""
        tok = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
        own = owner.flatten()
        keep = own >= 0
        if not bool(keep.any()):
            return feats.sum() * 0.0, {}
        tok, y = tok[keep].float(), inst_attrs[own[keep]]
        loss, comps = 0.0, {}
        for j, a in enumerate(ATTRIBUTES):
            logits = self.attr[a](tok)
            loss = loss + F.cross_entropy(logits, y[:, j])
            comps[f"tok_acc_{a}"] = float((logits.argmax(1) == y[:, j]).float().mean())
        return loss / len(ATTRIBUTES), comps


def pretrain_batch(scenes, rng: np.random.Generator, grid: int, extra_phrases: int = 2,
                   swaps: int = 2):
    """scenes: list of synthetic Scene objects -> (pooling weights list per image, instance
    attributes, phrases, match matrix I x P).

    Phrases: ``extra_phrases`` random descriptions per instance, ``swaps`` one-attribute swaps
    of a description (a "red star" next to a "red circle": forces every attribute, the shape
    included, to be encoded), and the scenes' own datapoint phrases."""
    weights, attrs, phrases, owners = [], [], [], []
    for sc in scenes:
        ws, covs = [], []
        for inst in sc.instances:
            m = torch.from_numpy(inst.mask)[None, None].float()
            w = F.adaptive_avg_pool2d(m, grid)[0, 0]
            covs.append(w)
            ws.append(w / w.sum().clamp(min=1e-6))
            attrs.append(inst.attributes)
            for n in range(extra_phrases + swaps):
                k = int(rng.integers(1, len(ATTRIBUTES) + 1))
                sub = sorted(rng.choice(len(ATTRIBUTES), size=k, replace=False).tolist())
                q = {ATTRIBUTES[i]: inst.attributes[ATTRIBUTES[i]] for i in sub}
                if n >= extra_phrases:
                    a = ATTRIBUTES[sub[int(rng.integers(len(sub)))]]
                    others = [v for v in VALUES[a] if v != q[a]]
                    q[a] = others[int(rng.integers(len(others)))]
                phrases.append(format_phrase(q))
        weights.append(torch.stack(ws) if ws else torch.zeros(0, grid, grid))
        # token -> index (into attrs) of the instance covering at least half of it, else -1
        if covs:
            cov = torch.stack(covs)
            best, arg = cov.max(0)
            owners.append(torch.where(best >= 0.5, arg + (len(attrs) - len(covs)), -1))
        else:
            owners.append(torch.full((grid, grid), -1))
        phrases += [dp.phrase for dp in sc.datapoints]
    phrases = list(dict.fromkeys(phrases))
    queries = [parse_phrase(p) for p in phrases]
    match = torch.tensor([[matches(q, a) for q in queries] for a in attrs], dtype=torch.bool)
    return weights, attrs, phrases, match, owners


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


def pretrain_step(model, head: ContrastiveHead, scenes, tokenize, rng: np.random.Generator,
                  attr_weight: float = 0.5):
    """One contrastive step on a list of scenes; returns (loss, components)."""
    device = next(model.parameters()).device
    trunk = model.backbone.vision_backbone.trunk
    grid = model.config.vision.grid
    weights, attrs, phrases, match, owners = pretrain_batch(scenes, rng, grid)
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() / 255.0 for s in scenes])
    feats = trunk(((images - 0.5) / 0.5).to(device))  # B x C x g x g
    pooled = torch.cat([torch.einsum("chw,nhw->nc", feats[b], weights[b].to(feats))
                        for b in range(len(scenes))])
    tokens = tokenize(phrases).to(device)
    tf, padding, _ = model.backbone.language_backbone(tokens)
    valid = (~padding).to(tf.dtype)[..., None]
    t = (tf * valid).sum(1) / valid.sum(1).clamp(min=1.0)
    loss, comps = contrastive_loss(head.vision(pooled), head.text(t), match.to(device), head.logit_scale)
    if hasattr(head, "attr") and attr_weight > 0:
        # dense: every token inside an instance predicts that instance's attributes, so each
        # token (what the detector's queries average over) carries colour, shape, size, fill
        own = torch.stack(owners).to(device).flatten()  # B*g*g
        tok = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
        keep = own >= 0
        for a in ATTRIBUTES:
            y_inst = torch.tensor([VALUES[a].index(x[a]) for x in attrs], device=device)
            logits = head.attr[a](pooled.float())
            loss = loss + attr_weight * F.cross_entropy(logits, y_inst)
            comps[f"acc_{a}"] = float((logits.argmax(1) == y_inst).float().mean())
            if hasattr(head, "text_attr"):
                yq = torch.tensor([VALUES[a].index(q[a]) if a in q else len(VALUES[a])
                                   for q in map(parse_phrase, phrases)], device=device)
                lq = head.text_attr[a](t.float())
                loss = loss + attr_weight * F.cross_entropy(lq, yq)
                comps[f"text_acc_{a}"] = float((lq.argmax(1) == yq).float().mean())
            if bool(keep.any()):
                lt = head.attr[a](tok[keep].float())
                yt = y_inst[own[keep]]
                loss = loss + attr_weight * F.cross_entropy(lt, yt)
                comps[f"tok_acc_{a}"] = float((lt.argmax(1) == yt).float().mean())
    comps["instances"] = float(len(attrs))
    comps["phrases"] = float(len(phrases))
    return loss, comps
