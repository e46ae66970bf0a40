"""Per-pair geometry: per-frame mask IoUs between predicted and GT masklets, and their
spatio-temporal (masklet) IoU = sum over frames of intersections / sum of unions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...ops.masks import rle_area, rle_iou
from .ground_truth import GTMasklet
from .predictions import VideoPrediction

__all__ = ["PairGeometry", "pair_geometry", "masklet_iou"]


@dataclass
class PairGeometry:
    """What the metrics of one (video, phrase) pair need from its masks."""

    masklet_iou: np.ndarray  # (n_pred, n_gt) spatio-temporal IoU
    frame_iou: list[np.ndarray]  # per frame (n_pred_present, n_gt_present) mask IoU
    pred_present: list[np.ndarray]  # per frame: indices of predictions with a mask
    gt_present: list[np.ndarray]  # per frame: indices of GT masklets with a mask
    pred_area: list[np.ndarray]  # per frame, aligned with pred_present


def pair_geometry(preds: list[VideoPrediction], gts: list[GTMasklet], T: int) -> PairGeometry:
    """Per-frame IoUs and masklet IoU ``(n_pred, n_gt)`` of a pair's masklets over ``T`` frames
    (official: a pair of masklets that are both empty everywhere has IoU 1)."""
    n_p, n_g = len(preds), len(gts)
    inter = np.zeros((n_p, n_g), dtype=np.int64)
    tot_p, tot_g = np.zeros(n_p, np.int64), np.zeros(n_g, np.int64)
    frame_iou, p_idx, g_idx, p_area = [], [], [], []
    for t in range(T):
        pi = np.array([k for k, p in enumerate(preds) if p.segmentations[t]], dtype=np.int64)
        gi = np.array([k for k, g in enumerate(gts) if g.segmentations[t]], dtype=np.int64)
        d = [preds[k].segmentations[t] for k in pi]
        g = [gts[k].segmentations[t] for k in gi]
        ap, ag = rle_area(d), rle_area(g)
        tot_p[pi] += ap
        tot_g[gi] += ag
        iou = rle_iou(d, g)
        if iou.size:
            # pycocotools gives iou = I / (ap + ag - I): recover the integer intersection exactly
            s = (ap[:, None] + ag[None, :]).astype(float)
            inter[np.ix_(pi, gi)] += np.rint(iou * s / (1.0 + iou)).astype(np.int64)
        frame_iou.append(iou)
        p_idx.append(pi)
        g_idx.append(gi)
        p_area.append(ap)
    union = tot_p[:, None] + tot_g[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        miou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)  # official: empty union -> IoU 1
    return PairGeometry(miou.reshape(n_p, n_g), frame_iou, p_idx, g_idx, p_area)


def masklet_iou(pred: Sequence[dict | None], gt: Sequence[dict | None]) -> float:
    """Spatio-temporal mask IoU of two masklets (lists of RLE or None per frame)."""
    if len(pred) != len(gt):
        raise ValueError(f"masklets have {len(pred)} and {len(gt)} frames")
    p = VideoPrediction(0, 0, 0, 1.0, list(pred))
    return float(pair_geometry([p], [GTMasklet(0, list(gt))], len(gt)).masklet_iou[0, 0])
