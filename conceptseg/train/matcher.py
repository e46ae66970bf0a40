"""Hungarian matching of predicted queries to ground-truth instances (DETR / SAM 3 costs).

For one (image, phrase) row the cost of assigning query q to target t is

    w_class * focal_cost(logit_q) + w_bbox * |box_q - box_t|_1 - w_giou * GIoU(box_q, box_t)

with the deformable-DETR focal cost ``alpha (1-p)^gamma (-log p) - (1-alpha) p^gamma (-log(1-p))``
(alpha 0.25, gamma 2; SAM 3 weights: class 2, L1 5, GIoU 2). A row without targets (a negative
phrase) matches nothing. ``match_one_to_many`` assigns each target to ``k`` distinct queries
(targets repeated k times), for the auxiliary one-to-many loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..ops.boxes import box_cxcywh_to_xyxy, generalized_box_iou

__all__ = ["MatcherWeights", "focal_class_cost", "match_cost", "assign", "hungarian_match",
           "match_batch", "match_one_to_many"]

_EMPTY = (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))


@dataclass(frozen=True)
class MatcherWeights:
    cost_class: float = 2.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    alpha: float = 0.25
    gamma: float = 2.0


def focal_class_cost(logits: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Per-query focal cost of calling the query a match: logits (Q,) -> (Q,). Lower = better."""
    p = logits.float().sigmoid()
    eps = 1e-8
    neg = (1 - alpha) * p.pow(gamma) * -(1 - p + eps).log()
    pos = alpha * (1 - p).pow(gamma) * -(p + eps).log()
    return pos - neg


@torch.no_grad()
def match_cost(logits: Tensor, boxes: Tensor, tgt_boxes: Tensor,
               w: MatcherWeights = MatcherWeights()) -> Tensor:
    """logits (Q,) or (Q, 1), boxes (Q, 4) cxcywh, tgt_boxes (N, 4) cxcywh -> cost (Q, N)."""
    logits = logits.reshape(-1)
    boxes, tgt_boxes = boxes.float(), tgt_boxes.float()
    c_cls = focal_class_cost(logits, w.alpha, w.gamma)[:, None]
    c_l1 = torch.cdist(boxes, tgt_boxes, p=1)
    c_giou = -generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt_boxes))
    return w.cost_class * c_cls + w.cost_bbox * c_l1 + w.cost_giou * c_giou


def assign(cost: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    """Minimum-cost assignment of a (Q, N) cost matrix -> (query indices, target indices), sorted
    by target index. Non-finite costs are treated as very large (never raise)."""
    c = cost.detach().float().cpu().numpy() if isinstance(cost, Tensor) else np.asarray(cost, np.float64)
    if c.size == 0:
        return _EMPTY
    c = np.nan_to_num(c, nan=1e8, posinf=1e8, neginf=-1e8)
    rows, cols = linear_sum_assignment(c)
    order = np.argsort(cols, kind="stable")
    return (torch.as_tensor(rows[order], dtype=torch.long),
            torch.as_tensor(cols[order], dtype=torch.long))


def hungarian_match(logits: Tensor, boxes: Tensor, tgt_boxes: Tensor,
                    w: MatcherWeights = MatcherWeights()) -> tuple[Tensor, Tensor]:
    """One row: returns (query_idx, target_idx); empty for a row without targets."""
    if tgt_boxes.shape[0] == 0:
        return _EMPTY
    return assign(match_cost(logits, boxes, tgt_boxes, w))


def _host_costs(pred_logits: Tensor, pred_boxes: Tensor, tgt_boxes: list[Tensor],
                w: MatcherWeights) -> list[np.ndarray | None]:
    """Every row's (Q, N) cost matrix on the host (None for a row without targets), moved in
    one copy: on a GPU, one synchronisation per batch instead of one per row (the assignment
    itself runs on the CPU, in scipy)."""
    costs = [match_cost(pred_logits[b], pred_boxes[b], tgt_boxes[b], w) if tgt_boxes[b].shape[0]
             else None for b in range(pred_boxes.shape[0])]
    live = [c.reshape(-1).float() for c in costs if c is not None]
    if not live:
        return [None] * len(costs)
    flat = torch.cat(live).cpu().numpy()
    out, k = [], 0
    for c in costs:
        if c is None:
            out.append(None)
            continue
        n = c.numel()
        out.append(flat[k:k + n].reshape(c.shape))
        k += n
    return out


def match_batch(pred_logits: Tensor, pred_boxes: Tensor, tgt_boxes: list[Tensor],
                w: MatcherWeights = MatcherWeights()) -> list[tuple[Tensor, Tensor]]:
    """pred_logits B x Q x 1, pred_boxes B x Q x 4, tgt_boxes: B tensors (N_b x 4)."""
    return [assign(c) if c is not None else _EMPTY
            for c in _host_costs(pred_logits, pred_boxes, tgt_boxes, w)]


def match_one_to_many(pred_logits: Tensor, pred_boxes: Tensor, tgt_boxes: list[Tensor], k: int,
                      w: MatcherWeights = MatcherWeights()) -> list[tuple[Tensor, Tensor]]:
    """Each target gets up to ``k`` distinct queries (fewer if the row runs out of queries).
    Returns per row (query_idx, target_idx) with target_idx in 0..N-1 (repeats allowed)."""
    Q = pred_boxes.shape[1]
    out = []
    for c in _host_costs(pred_logits, pred_boxes, tgt_boxes, w):
        if c is None:
            out.append(_EMPTY)
            continue
        n = c.shape[1]
        reps = max(1, min(k, Q // n))
        qi, ti = assign(np.tile(c, (1, reps)))
        out.append((qi, ti % n))
    return out
