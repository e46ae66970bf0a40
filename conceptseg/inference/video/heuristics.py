"""Temporal heuristics of SAM 3 video inference (``apply_temporal_disambiguation``).

Steps 6 to 8 of :mod:`.association`: the hotstart (keep-alive counters and
removal of young masklets that stay unmatched or duplicate an earlier one,
:func:`process_hotstart`), the reconditioning decisions (:func:`reconditioning_decisions`) and
the occlusion-based overlap suppression (:func:`suppress_by_recent_occlusion`).

Duplicate pairs: the "first" masklet is the one with the smallest first-frame index (largest
in reverse), ties to the earlier one in track order.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Set, Tuple

import torch
from torch import Tensor

from ...ops.boxes import box_iou, masks_to_boxes
from ...ops.masks import mask_iou
from .association_state import AssociationConfig, AssociationState
from .matching import AssociationResult, Detections
from .postprocess import NO_OBJ_LOGIT

__all__ = ["process_hotstart", "reconditioning_decisions",
           "objects_to_suppress_by_recent_occlusion", "suppress_by_recent_occlusion",
           "NEVER_OCCLUDED", "ALWAYS_OCCLUDED"]

NEVER_OCCLUDED = -1
ALWAYS_OCCLUDED = 100000  # larger than any frame index: "removed by hotstart"


# --------------------------------------------------------------------------------------------
# hotstart
# --------------------------------------------------------------------------------------------

def _within_hotstart(first_frame: int, hotstart_diff: int, reverse: bool) -> bool:
    return first_frame < hotstart_diff if reverse else first_frame > hotstart_diff


def process_hotstart(state: AssociationState, cfg: AssociationConfig, frame_idx: int,
                     assoc: AssociationResult, new_obj_ids: Sequence[int],
                     reverse: bool = False) -> Set[int]:
    """Official ``_process_hotstart``: updates ``state`` (first frames, keep-alive, unmatched
    frames, duplicate pairs, removed ids, this frame's suppressed ids) and returns the ids
    newly removed on this frame."""
    newly_removed: Set[int] = set()
    suppressed = state.suppressed_obj_ids.get(frame_idx, set())
    hotstart_diff = frame_idx + cfg.hotstart_delay if reverse else frame_idx - cfg.hotstart_delay
    keep_alive = state.trk_keep_alive

    for obj_id in new_obj_ids:
        obj_id = int(obj_id)
        state.obj_first_frame_idx.setdefault(obj_id, frame_idx)
        if obj_id in keep_alive:
            raise RuntimeError(f"new object id {obj_id} already has a keep-alive counter")
        keep_alive[obj_id] = cfg.init_trk_keep_alive

    matched: Set[int] = set()
    for trk_ids in assoc.det_to_matched_trk_obj_ids.values():
        matched.update(int(t) for t in trk_ids)
    for obj_id in matched:
        keep_alive[obj_id] = min(cfg.max_trk_keep_alive, keep_alive.get(obj_id, 0) + 1)
    for obj_id in assoc.unmatched_trk_obj_ids.tolist():
        state.unmatched_frame_inds.setdefault(obj_id, []).append(frame_idx)
        keep_alive[obj_id] = max(cfg.min_trk_keep_alive, keep_alive.get(obj_id, 0) - 1)
    if cfg.decrease_trk_keep_alive_for_empty_masklets:
        for obj_id in assoc.empty_trk_obj_ids.tolist():
            keep_alive[obj_id] = max(cfg.min_trk_keep_alive, keep_alive.get(obj_id, 0) - 1)

    # unmatched for too many frames within the hotstart window -> removed;
    # keep-alive exhausted (only when suppress_unmatched_only_within_hotstart is off) -> hidden
    for obj_id, frames in state.unmatched_frame_inds.items():
        if obj_id in state.removed_obj_ids or obj_id in newly_removed:
            continue
        if len(frames) >= cfg.hotstart_unmatch_thresh and \
                _within_hotstart(state.obj_first_frame_idx[obj_id], hotstart_diff, reverse):
            newly_removed.add(obj_id)
        if keep_alive.get(obj_id, 0) <= 0 and not cfg.suppress_unmatched_only_within_hotstart \
                and obj_id not in state.removed_obj_ids and obj_id not in newly_removed:
            suppressed.add(obj_id)

    # masklets sharing a detection: the later one accumulates "duplicate" frames
    for trk_ids in assoc.det_to_matched_trk_obj_ids.values():
        if len(trk_ids) < 2:
            continue
        trk_ids = [int(t) for t in trk_ids]
        pick = max if reverse else min
        first = pick(trk_ids, key=lambda t: state.obj_first_frame_idx[t])
        for obj_id in trk_ids:
            if obj_id != first:
                state.overlap_pair_to_frame_inds.setdefault((first, obj_id), []).append(frame_idx)
    for (_, obj_id), frames in state.overlap_pair_to_frame_inds.items():
        if obj_id in state.removed_obj_ids or obj_id in newly_removed:
            continue
        if _within_hotstart(state.obj_first_frame_idx[obj_id], hotstart_diff, reverse) \
                and len(frames) >= cfg.hotstart_dup_thresh:
            newly_removed.add(obj_id)

    if suppressed:  # only non-empty sets are stored (the state must not grow per frame)
        state.suppressed_obj_ids[frame_idx] = suppressed
    state.removed_obj_ids.update(newly_removed)
    return newly_removed


# --------------------------------------------------------------------------------------------
# reconditioning
# --------------------------------------------------------------------------------------------

def reconditioning_decisions(cfg: AssociationConfig, frame_idx: int, assoc: AssociationResult,
                             det: Detections, trk: Tensor, prev_ids: List[int],
                             obj_scores: Tensor) -> Tuple[Dict[int, int], Set[int]]:
    """Reconditioning decisions of one frame (step 7 of the association).

    ``det``: the kept detections; ``trk``: the hole-filled track mask logits ``(N, h, w)`` of
    ``prev_ids`` (in that order); ``obj_scores``: their ``(N,)`` object-score logits.
    Returns ``(recondition, reconditioned)``: ``recondition`` maps an object id to the
    detection index whose mask the tracker must re-seed it with (periodic reconditioning, or
    any frame once the box-IoU heuristic triggers); ``reconditioned`` holds the ids whose
    output is the raw detection mask (box-IoU heuristic, off by default).
    """
    reconditioned: Set[int] = set()
    bbox_trigger = False
    if cfg.reconstruction_bbox_iou_thresh > 0 and assoc.trk_id_to_max_iou_high_conf_det:
        h, w = trk.shape[-2:]
        for obj_id, d in assoc.trk_id_to_max_iou_high_conf_det.items():
            if obj_id not in prev_ids:
                continue
            mask = trk[prev_ids.index(obj_id)] > 0
            if not mask.any():
                continue
            x0, y0, x1, y1 = masks_to_boxes(mask[None])[0].tolist()
            tbox = torch.tensor([[x0 / w, y0 / h, x1 / w, y1 / h]], dtype=torch.float32)
            iou = box_iou(det.boxes_xyxy[d:d + 1].float().cpu(), tbox)[0][0, 0]
            if bool(iou < cfg.reconstruction_bbox_iou_thresh) and \
                    bool(det.scores[d] >= cfg.reconstruction_bbox_det_score):
                bbox_trigger = True
                reconditioned.add(obj_id)
    periodic = (cfg.recondition_every_nth_frame > 0
                and frame_idx % cfg.recondition_every_nth_frame == 0
                and len(assoc.trk_id_to_max_iou_high_conf_det) > 0)
    recondition: Dict[int, int] = {}
    if periodic or bbox_trigger:
        for obj_id, d in assoc.trk_id_to_max_iou_high_conf_det.items():
            # tensor-vs-Python-float comparison happens in the tensor's dtype (float32),
            # as in the official code: a logit of float32(0.8) is not > 0.8
            if bool(obj_scores[prev_ids.index(obj_id)] > cfg.recondition_obj_score_logit_thresh):
                recondition[obj_id] = d
    return recondition, reconditioned


# --------------------------------------------------------------------------------------------
# occlusion-based overlap suppression
# --------------------------------------------------------------------------------------------

def objects_to_suppress_by_recent_occlusion(binary_masks: Tensor, last_occluded: Tensor,
                                            iou_threshold: float, reverse: bool = False) -> Tensor:
    """Official ``_get_objects_to_suppress_based_on_most_recently_occluded``.

    For every pair ``i < j`` with mask IoU >= ``iou_threshold``: ``i`` is suppressed if it was
    occluded more recently than ``j`` (``last_occluded[i] > last_occluded[j]``; ``<`` in
    reverse) and ``j`` was occluded at some point (``last_occluded[j] > -1``), and
    symmetrically for ``j``.  Returns ``(N,)`` bool.
    """
    n = binary_masks.shape[0]
    out = torch.zeros(n, dtype=torch.bool, device=binary_masks.device)
    if n <= 1:
        return out
    iou = mask_iou(binary_masks, binary_masks)
    pairs = torch.triu(iou >= iou_threshold, diagonal=1)
    li = last_occluded[:, None]
    lj = last_occluded[None, :]
    newer = torch.gt if not reverse else torch.lt
    sup_i = pairs & newer(li, lj) & (lj > NEVER_OCCLUDED)
    sup_j = pairs & newer(lj, li) & (li > NEVER_OCCLUDED)
    return sup_i.any(dim=1) | sup_j.any(dim=0)


def suppress_by_recent_occlusion(track_mask_logits: Tensor, obj_ids: Sequence[int],
                                 last_occluded_prev: Dict[int, int], newly_removed: Set[int],
                                 frame_idx: int, iou_threshold: float, reverse: bool = False
                                 ) -> Tuple[Tensor, Tensor, Dict[int, int]]:
    """Official ``_suppress_overlapping_based_on_recent_occlusion``.

    Objects without a record count as never occluded, or always occluded when removed by the
    hotstart on this frame.  Returns ``(masks with suppressed objects set to -10, suppressed
    (N,) bool, new last-occluded record for obj_ids)``; a mask that is empty or suppressed
    records ``frame_idx``.  The input is not modified.
    """
    binary = track_mask_logits > 0
    default = [ALWAYS_OCCLUDED if int(o) in newly_removed else NEVER_OCCLUDED for o in obj_ids]
    last = torch.tensor([last_occluded_prev.get(int(o), d) for o, d in zip(obj_ids, default)],
                        dtype=torch.long, device=track_mask_logits.device)
    to_suppress = objects_to_suppress_by_recent_occlusion(binary, last, iou_threshold, reverse)
    occluded = ~binary.flatten(1).any(1)
    last_new = torch.where(occluded | to_suppress, torch.full_like(last, frame_idx), last)
    record = {int(o): int(v) for o, v in zip(obj_ids, last_new.tolist())}
    masks = track_mask_logits.clone()
    if to_suppress.any():
        masks[to_suppress] = NO_OBJ_LOGIT
    return masks, to_suppress, record
