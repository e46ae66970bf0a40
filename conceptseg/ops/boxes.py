"""Box utilities in pure PyTorch.

All boxes are ``(..., 4)`` tensors; ``xyxy`` means ``[x1, y1, x2, y2]`` and ``cxcywh``
means ``[cx, cy, w, h]``.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_area",
    "box_iou",
    "generalized_box_iou",
    "inverse_sigmoid",
    "nms",
    "batched_nms",
    "masks_to_boxes",
]


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``(..., 4)`` cxcywh -> ``(..., 4)`` xyxy."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``(..., 4)`` xyxy -> ``(..., 4)`` cxcywh."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``(..., 4)`` xyxy boxes -> ``(...)``. Not clamped (degenerate boxes may be <= 0)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _pairwise_inter_union(boxes1: Tensor, boxes2: Tensor) -> Tuple[Tensor, Tensor]:
    """Pairwise intersection and union areas: ``(N, 4)``, ``(M, 4)`` -> ``(N, M)``, ``(N, M)``."""
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter, union


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tuple[Tensor, Tensor]:
    """Pairwise IoU of xyxy boxes.

    Args:
        boxes1: ``(N, 4)``; boxes2: ``(M, 4)``.
    Returns:
        ``(iou, union)``, each ``(N, M)``.
    """
    inter, union = _pairwise_inter_union(boxes1, boxes2)
    return inter / union, union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU (Rezatofighi et al. 2019) of xyxy boxes.

    ``giou = iou - (area(C) - union) / area(C)`` with ``C`` the smallest enclosing box.

    Args:
        boxes1: ``(N, 4)``; boxes2: ``(M, 4)``. Boxes should satisfy ``x2 >= x1, y2 >= y1``.
    Returns:
        ``(N, M)`` GIoU in ``[-1, 1]``.
    """
    iou, union = box_iou(boxes1, boxes2)
    lt = torch.minimum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    area_c = wh[..., 0] * wh[..., 1]
    return iou - (area_c - union) / area_c


def inverse_sigmoid(x: Tensor, eps: float = 1e-3) -> Tensor:
    """Numerically safe logit: ``log(x1 / x2)`` with ``x`` clamped to ``[0, 1]``,
    ``x1 = x.clamp(min=eps)``, ``x2 = (1 - x).clamp(min=eps)``. Shape-preserving."""
    x = x.clamp(min=0, max=1)
    x1 = x.clamp(min=eps)
    x2 = (1 - x).clamp(min=eps)
    return torch.log(x1 / x2)


def _greedy_suppress(iou: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS on a pre-sorted ``(K, K)`` IoU matrix -> bool keep mask ``(K,)``.

    Box ``j`` is suppressed by an earlier kept box ``i`` when ``iou[i, j] > iou_threshold``.
    """
    over = (iou > iou_threshold).cpu().numpy()
    k = over.shape[0]
    keep = np.zeros(k, dtype=bool)
    removed = np.zeros(k, dtype=bool)
    for i in range(k):
        if removed[i]:
            continue
        keep[i] = True
        removed |= over[i]
    return torch.from_numpy(keep)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression, matching ``torchvision.ops.nms``.

    Args:
        boxes: ``(K, 4)`` xyxy boxes.
        scores: ``(K,)`` scores.
        iou_threshold: discard boxes whose IoU with a higher-scoring kept box is
            strictly greater than this.
    Returns:
        ``(K',)`` int64 indices of kept boxes, sorted by decreasing score
        (ties broken by original index).
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order]
    inter, union = _pairwise_inter_union(b, b)
    iou = inter / union
    # Only earlier (higher scoring) boxes may suppress later ones.
    iou = torch.triu(iou, diagonal=1)
    keep = _greedy_suppress(iou, iou_threshold).to(order.device)
    return order[keep]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS applied independently per category ``idxs``.

    Args:
        boxes: ``(K, 4)`` xyxy; scores: ``(K,)``; idxs: ``(K,)`` int category of each box.
    Returns:
        ``(K',)`` int64 indices of kept boxes, sorted by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    # Shift each category's boxes into a disjoint region so they never overlap.
    span = (boxes.max() - boxes.min()).to(boxes.dtype) + 1
    shifted = boxes - boxes.min() + (idxs.to(boxes.dtype) * span)[:, None]
    return nms(shifted, scores, iou_threshold)


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Tight xyxy boxes of binary masks.

    Args:
        masks: ``(N, H, W)`` bool (or 0/1) masks.
    Returns:
        ``(N, 4)`` float boxes ``[x_min, y_min, x_max, y_max]`` of pixel indices
        (inclusive max, as torchvision). Empty masks give all zeros.
    """
    if masks.numel() == 0:
        return torch.zeros((masks.shape[0], 4), dtype=torch.float32, device=masks.device)
    n, h, w = masks.shape
    m = masks.bool()
    rows = m.any(dim=2)  # (N, H)
    cols = m.any(dim=1)  # (N, W)
    ys = torch.arange(h, device=masks.device, dtype=torch.float32)
    xs = torch.arange(w, device=masks.device, dtype=torch.float32)
    big = float(max(h, w))
    y_min = torch.where(rows, ys, big).amin(dim=1)
    y_max = torch.where(rows, ys, -1.0).amax(dim=1)
    x_min = torch.where(cols, xs, big).amin(dim=1)
    x_max = torch.where(cols, xs, -1.0).amax(dim=1)
    out = torch.stack([x_min, y_min, x_max, y_max], dim=1)
    nonempty = rows.any(dim=1)
    return torch.where(nonempty[:, None], out, torch.zeros_like(out))
