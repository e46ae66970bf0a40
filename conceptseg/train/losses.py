"""Training losses for promptable concept segmentation (SAM 3 style).

One row of the batch is one (image, noun phrase) pair. Targets per row: ``boxes`` (N, 4)
normalised cxcywh, ``masks`` (N, h, w) float in [0, 1] at the prediction resolution (or any
resolution: they are area-resized), and ``presence`` (1 if the phrase has any instance).

Terms (all reported in the returned dict, the weighted sum is ``loss``):

* ``cls``: sigmoid focal loss over *all* queries, target 1 for matched queries, 0 otherwise
  (every query is 0 on a negative row); summed, divided by the number of target boxes.
* ``bbox`` / ``giou``: L1 and 1 - GIoU of matched queries.
* ``presence``: BCE of the presence logit against "any instance".
  These four are applied to every decoder layer (``aux_*``), each layer matched on its own.
* ``mask_bce`` / ``mask_dice``: matched queries' masks, last layer only (as the official recipe).
* ``sem_bce`` / ``sem_dice``: the semantic head against the union of the row's instances
  (all zeros for negatives): dense supervision of where the phrase is.
* ``dn_*``: optional recognition queries (see :mod:`conceptseg.train.dac`): one query per
  instance of the image at its jittered box; BCE of "matches the phrase", L1 + GIoU to its box.
* ``o2m_*``: optional one-to-many terms (each target matched to ``o2m_k`` queries) on the
  ``o2m`` outputs (DAC queries, see :mod:`conceptseg.train.dac`), or, when the model has no such
  outputs, box-only terms on the regular queries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops.boxes import box_cxcywh_to_xyxy, box_iou, generalized_box_iou
from .matcher import MatcherWeights, match_batch, match_one_to_many

__all__ = ["LossWeights", "SetCriterion", "sigmoid_focal", "dice_loss", "resize_masks"]


@dataclass
class LossWeights:
    cls: float = 2.0
    bbox: float = 5.0
    giou: float = 2.0
    presence: float = 2.0
    mask_bce: float = 5.0
    mask_dice: float = 5.0
    sem_bce: float = 2.0
    sem_dice: float = 1.0
    o2m: float = 1.0  # multiplies every o2m term (which use the cls/bbox/giou weights)
    dn_cls: float = 5.0  # recognition queries: BCE of "this instance matches the phrase"
    dn_box: float = 1.0  # recognition queries: multiplies their L1 / GIoU terms
    alpha: float = 0.25
    gamma: float = 2.0
    aux_layers: bool = True  # supervise every decoder layer (else the last only)
    o2m_k: int = 0  # 0 = off
    matcher: MatcherWeights = field(default_factory=MatcherWeights)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LossWeights":
        d = dict(d)
        m = d.pop("matcher", None)
        return cls(**d, **({"matcher": MatcherWeights(**m)} if m else {}))


def sigmoid_focal(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Elementwise sigmoid focal loss (RetinaNet); alpha < 0 disables the class balance."""
    logits = logits.float()
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def dice_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-mask dice loss: logits / targets M x ... -> M (smoothing 1, as DETR)."""
    p = logits.float().sigmoid().flatten(1)
    t = targets.float().flatten(1)
    return 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)


def resize_masks(masks: Tensor, hw: tuple[int, int]) -> Tensor:
    """(N, H, W) bool/float -> (N, h, w) float fraction of each cell covered (area resize)."""
    if masks.shape[-2:] == tuple(hw):
        return masks.float()
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *hw), dtype=torch.float32)
    return F.interpolate(masks[:, None].float(), size=hw, mode="area")[:, 0]


def _gather(x: Tensor, idx: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """x B x Q x ... and per-row (query, target) indices -> (batch_idx, query_idx)."""
    b = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(idx)]).to(x.device)
    q = torch.cat([q for q, _ in idx]).to(x.device)
    return b, q


class SetCriterion:
    """Computes the weighted loss and its components for one batch of rows."""

    def __init__(self, weights: LossWeights | None = None):
        self.w = weights or LossWeights()

    # -- pieces -----------------------------------------------------------------------------
    def _layer_terms(self, logits: Tensor, boxes: Tensor, tgt_boxes: list[Tensor],
                     idx: list[tuple[Tensor, Tensor]], num_boxes: float) -> dict[str, Tensor]:
        w = self.w
        target = torch.zeros_like(logits, dtype=torch.float32)
        b, q = _gather(logits, idx)
        if b.numel():
            target[b, q] = 1.0
        cls = sigmoid_focal(logits, target, w.alpha, w.gamma).sum() / num_boxes
        if b.numel():
            src = boxes[b, q].float()
            tgt = torch.cat([t[j] for t, (_, j) in zip(tgt_boxes, idx)]).to(src)
            l1 = F.l1_loss(src, tgt, reduction="none").sum() / num_boxes
            giou = (1 - torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(src),
                                                       box_cxcywh_to_xyxy(tgt)))).sum() / num_boxes
        else:
            l1 = giou = boxes.sum() * 0.0
        return {"cls": cls, "bbox": l1, "giou": giou}

    def __call__(self, outputs: dict[str, Tensor], targets: dict) -> tuple[Tensor, dict[str, float]]:
        """outputs: the model's training dict; targets: ``boxes`` (list of N_b x 4), ``masks``
        (list of N_b x h x w), ``presence`` (B,). Returns (loss, {name: value})."""
        w = self.w
        tgt_boxes = [t.to(outputs["pred_boxes"].device) for t in targets["boxes"]]
        presence = targets["presence"].to(outputs["pred_boxes"].device).float()
        num_boxes = float(max(sum(t.shape[0] for t in tgt_boxes), 1))
        L = outputs["aux_logits"].shape[0]
        layers = range(L) if w.aux_layers else [L - 1]
        comps: dict[str, Tensor] = {}
        total = outputs["pred_boxes"].new_zeros((), dtype=torch.float32)
        last_idx = None
        for l in layers:
            logits, boxes = outputs["aux_logits"][l][..., 0], outputs["aux_boxes"][l]
            idx = match_batch(logits.detach(), boxes.detach(), tgt_boxes, w.matcher)
            if l == L - 1:
                last_idx = idx
            terms = self._layer_terms(logits, boxes, tgt_boxes, idx, num_boxes)
            terms["presence"] = F.binary_cross_entropy_with_logits(
                outputs["aux_presence"][l][:, 0].float(), presence)
            sfx = "" if l == L - 1 else f"_{l}"
            for k, v in terms.items():
                comps[k + sfx] = v
                total = total + getattr(w, k) * v
        if last_idx is None:
            last_idx = match_batch(outputs["pred_logits"][..., 0].detach(),
                                   outputs["pred_boxes"].detach(), tgt_boxes, w.matcher)
        # masks (last layer only)
        if "pred_masks" in outputs and (w.mask_bce or w.mask_dice or w.sem_bce or w.sem_dice):
            pm = outputs["pred_masks"]
            hw = tuple(pm.shape[-2:])
            tmasks = [resize_masks(m.to(pm.device), hw) for m in targets["masks"]]
            b, q = _gather(pm, last_idx)
            if b.numel():
                src = pm[b, q]
                tgt = torch.cat([m[j] for m, (_, j) in zip(tmasks, last_idx)])
                comps["mask_bce"] = F.binary_cross_entropy_with_logits(
                    src.float(), tgt, reduction="none").mean((1, 2)).sum() / num_boxes
                comps["mask_dice"] = dice_loss(src, tgt).sum() / num_boxes
            else:
                comps["mask_bce"] = comps["mask_dice"] = pm.sum() * 0.0
            total = total + w.mask_bce * comps["mask_bce"] + w.mask_dice * comps["mask_dice"]
            if "semantic_seg" in outputs and (w.sem_bce or w.sem_dice):
                sem = outputs["semantic_seg"][:, 0].float()
                union = torch.stack([m.amax(0) if m.shape[0] else sem.new_zeros(hw) for m in tmasks])
                comps["sem_bce"] = F.binary_cross_entropy_with_logits(sem, union)
                comps["sem_dice"] = dice_loss(sem, union).mean()
                total = total + w.sem_bce * comps["sem_bce"] + w.sem_dice * comps["sem_dice"]
        # one-to-many
        if w.o2m_k > 0:
            o2m = outputs.get("o2m")
            if o2m is not None:
                Lo = o2m["aux_logits"].shape[0]
                for l in (range(Lo) if w.aux_layers else [Lo - 1]):
                    logits, boxes = o2m["aux_logits"][l][..., 0], o2m["aux_boxes"][l]
                    idx = match_one_to_many(logits.detach(), boxes.detach(), tgt_boxes, w.o2m_k,
                                            w.matcher)
                    n = float(max(sum(i.numel() for i, _ in idx), 1))
                    terms = self._layer_terms(logits, boxes, tgt_boxes, idx, n)
                    sfx = "" if l == Lo - 1 else f"_{l}"
                    for k, v in terms.items():
                        comps[f"o2m_{k}{sfx}"] = v
                        total = total + w.o2m * getattr(w, k) * v
            else:  # box-only one-to-many on the ordinary queries: never teaches them to fire
                logits, boxes = outputs["pred_logits"][..., 0], outputs["pred_boxes"]
                idx = match_one_to_many(logits.detach(), boxes.detach(), tgt_boxes, w.o2m_k, w.matcher)
                n = float(max(sum(i.numel() for i, _ in idx), 1))
                terms = self._layer_terms(logits, boxes, tgt_boxes, idx, n)
                for k in ("bbox", "giou"):
                    comps[f"o2m_{k}"] = terms[k]
                    total = total + w.o2m * getattr(w, k) * terms[k]
        # recognition queries (teacher-forced boxes of every instance of the image)
        if "dn" in outputs and "dn_labels" in targets:
            dn = outputs["dn"]
            dev = dn["aux_logits"].device
            valid = targets["dn_valid"].to(dev)
            labels = targets["dn_labels"].to(dev)[valid]
            gt = targets["dn_boxes"].to(dev)[valid].float()
            Ld = dn["aux_logits"].shape[0]
            for l in (range(Ld) if w.aux_layers else [Ld - 1]):
                sfx = "" if l == Ld - 1 else f"_{l}"
                logits = dn["aux_logits"][l][..., 0][valid].float()
                src = dn["aux_boxes"][l][valid].float()
                terms = {
                    "dn_cls": F.binary_cross_entropy_with_logits(logits, labels),
                    "dn_bbox": F.l1_loss(src, gt, reduction="none").sum(-1).mean(),
                    "dn_giou": (1 - torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(src),
                                                                   box_cxcywh_to_xyxy(gt)))).mean(),
                }
                total = total + w.dn_cls * terms["dn_cls"] + w.dn_box * (
                    w.bbox * terms["dn_bbox"] + w.giou * terms["dn_giou"])
                for k, v in terms.items():
                    comps[k + sfx] = v
            with torch.no_grad():
                lg = dn["aux_logits"][-1][..., 0][valid].float()
                if bool((labels > 0.5).any()) and bool((labels < 0.5).any()):
                    comps["dn_gap"] = lg[labels > 0.5].mean() - lg[labels < 0.5].mean()
        # diagnostics (not part of the loss)
        with torch.no_grad():
            b, q = _gather(outputs["pred_boxes"], last_idx)
            if b.numel():
                src = box_cxcywh_to_xyxy(outputs["pred_boxes"][b, q].float())
                tgt = box_cxcywh_to_xyxy(torch.cat([t[j] for t, (_, j) in zip(tgt_boxes, last_idx)]).float())
                comps["matched_iou"] = torch.diag(box_iou(src, tgt)[0]).mean()
            pres = outputs["presence_logit_dec"][:, 0].float()
            if bool((presence > 0.5).any()) and bool((presence < 0.5).any()):
                comps["pres_gap"] = pres[presence > 0.5].mean() - pres[presence < 0.5].mean()
        comps["loss"] = total
        # one device -> host copy for all the logged values (one GPU synchronisation, not ~50)
        names = list(comps)
        values = torch.stack([comps[k].detach().float().reshape(()) for k in names]).tolist()
        return total, dict(zip(names, values))
