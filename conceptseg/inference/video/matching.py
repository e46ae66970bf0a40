"""Detections of one frame and their matching with the tracked masklets (SAM 3 video).

Steps 1 and 3 of :mod:`.association`: mask NMS and score threshold on the
detector outputs (:func:`select_detections`), then the official ``_associate_det_trk``
(:func:`associate`) at the smaller of the two mask resolutions.

NMS order (official CPU path): ``numpy.argsort(scores)[::-1]``; we use a stable ascending sort
reversed, so equal scores go higher query index first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ...ops.masks import mask_iou, mask_nms
from .association_state import AssociationConfig
from .postprocess import resize_logits

__all__ = ["Detections", "AssociationResult", "select_detections", "nms_keep", "associate",
           "argsort_desc"]


@dataclass
class Detections:
    """Detections of one frame: ``scores`` (K,) probabilities, ``masks`` (K, h, w) logits,
    ``boxes_xyxy`` (K, 4) normalised to [0, 1]."""

    scores: Tensor
    masks: Tensor
    boxes_xyxy: Optional[Tensor] = None

    def __post_init__(self):
        k = self.scores.shape[0]
        if self.masks.dim() != 3 or self.masks.shape[0] != k:
            raise ValueError(f"masks must be (K, h, w) with K={k}, got {tuple(self.masks.shape)}")
        if self.boxes_xyxy is None:
            self.boxes_xyxy = torch.zeros(k, 4, dtype=torch.float32, device=self.scores.device)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @staticmethod
    def empty(h: int, w: int) -> "Detections":
        return Detections(torch.zeros(0), torch.zeros(0, h, w), torch.zeros(0, 4))


# --------------------------------------------------------------------------------------------
# detections
# --------------------------------------------------------------------------------------------

def argsort_desc(scores: np.ndarray) -> np.ndarray:
    """``argsort(scores)[::-1]`` with a stable ascending sort (equal scores: higher index first)."""
    return np.argsort(scores, kind="stable")[::-1]


def nms_keep(probs: Tensor, mask_logits: Tensor, prob_threshold: float,
             iou_threshold: float) -> Tensor:
    """Official mask NMS: ``(Q,)`` bool, True for detections with prob > ``prob_threshold``
    that survive greedy NMS (a detection is dropped when its mask IoU with a kept,
    higher-scoring one is > ``iou_threshold``)."""
    valid = probs > prob_threshold
    keep = torch.zeros_like(valid)
    vidx = torch.nonzero(valid).flatten()
    if vidx.numel() == 0:
        return keep
    # ops.mask_nms breaks score ties by the lower index; reversing the candidates gives the
    # official order (numpy argsort()[::-1] on a stable sort: higher index first)
    rev = torch.flip(vidx, (0,))
    kept = mask_nms(mask_logits[rev] > 0, probs[rev].float(), iou_threshold)
    keep[rev[kept.to(rev.device)]] = True
    return keep


def select_detections(probs: Tensor, mask_logits: Tensor, boxes_xyxy: Optional[Tensor],
                      cfg: AssociationConfig, allow_new_detections: bool = True) -> Detections:
    """Detector outputs of one frame (all ``Q`` queries) -> the kept :class:`Detections`.

    Args:
        probs: ``(Q,)`` probabilities (the video detector folds presence into its logits).
        mask_logits: ``(Q, h, w)``; boxes_xyxy: ``(Q, 4)`` normalised, or None.
        allow_new_detections: False (no prompt) keeps nothing, as the official code does.
    """
    probs = probs.reshape(-1)
    if boxes_xyxy is None:
        boxes_xyxy = torch.zeros(probs.shape[0], 4, dtype=torch.float32, device=probs.device)
    if cfg.det_nms_thresh > 0.0:
        keep = nms_keep(probs, mask_logits, cfg.score_threshold_detection, cfg.det_nms_thresh)
    else:
        keep = probs > cfg.score_threshold_detection
    if not allow_new_detections:
        keep = torch.zeros_like(keep)
    idx = torch.nonzero(keep).flatten()
    return Detections(probs[idx], mask_logits[idx], boxes_xyxy[idx])


# --------------------------------------------------------------------------------------------
# association
# --------------------------------------------------------------------------------------------

@dataclass
class AssociationResult:
    """Official ``_associate_det_trk`` outputs (indices refer to the kept detections)."""

    new_det_inds: np.ndarray  # int64, detections that start new objects (ascending)
    unmatched_trk_obj_ids: np.ndarray  # non-empty tracks with no detection at IoU >= 0.5
    det_to_matched_trk_obj_ids: Dict[int, np.ndarray]  # det -> tracks at IoU >= 0.1
    trk_id_to_max_iou_high_conf_det: Dict[int, int]  # track -> det (reconditioning)
    empty_trk_obj_ids: np.ndarray  # tracks with an empty mask
    ious: Optional[np.ndarray] = None  # (K, N) det x track IoU, None in the trivial cases


def associate(det_masks: Tensor, det_scores: Tensor, trk_masks: Tensor,
              trk_obj_ids: Sequence[int], cfg: AssociationConfig) -> AssociationResult:
    """Match the kept detections with the tracked masklets (mask logits, not binarised)."""
    ids = np.asarray(list(trk_obj_ids), dtype=np.int64)
    if trk_masks.shape[0] != len(ids):
        raise ValueError(f"{trk_masks.shape[0]} track masks for {len(ids)} object ids")
    scores = det_scores.float().cpu().numpy().reshape(-1)
    k, n = det_masks.shape[0], trk_masks.shape[0]
    empty = np.zeros(0, dtype=np.int64)
    if n == 0:  # every detection is new, whatever its score
        return AssociationResult(np.arange(k, dtype=np.int64), empty, {}, {}, empty)
    if k == 0:
        nonempty = (trk_masks > 0).flatten(1).any(1).cpu().numpy()
        return AssociationResult(empty, ids[nonempty], {}, {}, ids[~nonempty])
    if tuple(det_masks.shape[-2:]) != tuple(trk_masks.shape[-2:]):
        if math.prod(det_masks.shape[-2:]) < math.prod(trk_masks.shape[-2:]):
            trk_masks = resize_logits(trk_masks, tuple(det_masks.shape[-2:]))
        else:
            det_masks = resize_logits(det_masks, tuple(trk_masks.shape[-2:]))
    det_bin = det_masks > 0
    trk_bin = trk_masks > 0
    ious = mask_iou(det_bin, trk_bin).cpu().numpy()  # (K, N)
    trk_matched = (ious >= cfg.trk_assoc_iou_thresh).any(axis=0)
    trk_nonempty = trk_bin.flatten(1).any(1).cpu().numpy()
    unmatched = ids[trk_nonempty & ~trk_matched]
    empty_ids = ids[~trk_nonempty]
    is_new = (scores >= cfg.new_det_thresh) & ~(ious >= cfg.assoc_iou_thresh).any(axis=1)
    new_inds = np.nonzero(is_new)[0].astype(np.int64)
    best_trk = np.argmax(ious, axis=1)  # first maximum
    high = (scores >= cfg.recondition_det_score_thresh) & ~is_new \
        & (ious.max(axis=1) >= cfg.recondition_iou_thresh)
    det_to_trk: Dict[int, np.ndarray] = {}
    trk_to_det: Dict[int, int] = {}
    for d in range(k):
        det_to_trk[d] = ids[ious[d] >= cfg.assoc_iou_thresh]
        if high[d]:
            trk_to_det[int(ids[best_trk[d]])] = d
    return AssociationResult(new_inds, unmatched, det_to_trk, trk_to_det, empty_ids, ious)
