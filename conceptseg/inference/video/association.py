"""Detection <-> track association of SAM 3 video inference, as pure functions over tensors.

This is the bookkeeping that the official ``Sam3VideoBase._det_track_one_frame`` (and
``Sam3VideoInference.propagate_in_video`` / ``_postprocess_output``) wraps around the detector
and the tracker, re-written from its behaviour (single process, i.e. ``world_size == 1``).
The tracker is not called from here: its per-frame outputs come in as plain tensors and the
decisions it must carry out go back in a :class:`FramePlan`.

Per-frame order of operations (official defaults in :class:`AssociationConfig`)
----------------------------------------------------------------------------------
1. **Detections** (:func:`select_detections`): probabilities of all queries; mask NMS among
   those with prob > ``score_threshold_detection`` (greedy, highest first, drop IoU >
   ``det_nms_thresh`` on binarised masks); keep prob > ``score_threshold_detection``.  Kept
   detections stay in *query order* (not score order).
2. **Tracker propagation** (the tracker's job) gives low-res mask logits and object-score
   logits of every tracked object, in :attr:`AssociationState.obj_ids` order.  The mask logits
   then get :func:`fill_holes_in_mask_logits` (official: inside the propagation helper).
3. **Association** (:func:`associate`), binary masks at the smaller of the two resolutions
   (the larger is bilinearly resized first, on logits).  Special case: with **no track at all,
   every kept detection becomes a new object, whatever its score** (``new_det_thresh`` is not
   applied then; this is what makes the prompt frame create objects from prob > 0.5).
4. Optional border filter on new detections; cap on the number of objects (``max_num_objects``:
   new detections are kept by decreasing score and then get ids in that order).
5. **New ids**: ``max_obj_id + 1, + 2, ...`` in new-detection order.
6. **Hotstart heuristics** (:func:`process_hotstart`): keep-alive counters, removal of masklets
   that first appeared within the last ``hotstart_delay`` frames and are unmatched on
   ``>= hotstart_unmatch_thresh`` frames (cumulative), or share a detection with an earlier
   masklet on ``>= hotstart_dup_thresh`` frames.
7. **Reconditioning** decision (every ``recondition_every_nth_frame`` frames: ``frame_idx %
   n == 0``): for each track that a detection with score >= 0.8 overlaps at IoU >= 0.8 (the
   track with the highest IoU; a later detection wins a track), if the track's object-score
   **logit** > 0.8 the tracker must re-seed that object with the detection mask.
8. **Occlusion-based overlap suppression** (:func:`objects_to_suppress_by_recent_occlusion`):
   among tracks whose masks overlap at IoU >= 0.7, the one occluded (empty or suppressed) most
   recently is set to -10 logits.  This is done in place in the official code, so the
   suppressed object is also absent from this frame's output.
9. The tracker encodes memories from these (suppressed) track masks (see
   :func:`memory_encoder_masks`), then adds the new objects (detection mask resized to its
   mask-input size and binarised, :func:`masks_for_tracker_input`), then removes the removed
   ones.
10. **Metadata**: object list = previous ids + new ids - removed ids.  ``obj_id_to_score`` is
    the detection score at creation (``-1e4`` once removed).  The per-frame "tracker score"
    is sigmoid(object-score logit) for tracked objects and the detection score for new ones.
11. **Output record** (:class:`FrameRecord`): low-res logits per object id (tracks: the
    processed track masks; new objects: the detection mask with holes filled; an id re-seeded
    by the (off by default) box-IoU reconditioning: the raw detection mask).

Outputs are held back by the hotstart delay and released by :class:`OutputBuffer` (see
:mod:`.postprocess`).  The pieces live in their own modules: :mod:`.association_state`
(configuration and state), :mod:`.matching` (detections, matching), :mod:`.heuristics` (hotstart,
reconditioning, occlusion suppression) and :mod:`.postprocess` (mask operations, outputs).

Why the official fixture outputs one object per frame (``official_small/video_case.pt``)
----------------------------------------------------------------------------------------
``propagate_forward`` outputs ids 0, 1, 2, 3 on frames 0..3, one object each, while
``frame_stats.num_obj_tracked`` is 1, 2, 3, 4 and nothing is dropped.  The rules above explain
it: on frames 1..3 the random-weight tracker predicts every existing masklet as *absent*
(object-score logit <= 0, so SAM 2-style tracking returns an all-negative mask).  Hence

* every detection has IoU 0 with every track, so the detection (prob ~0.981 >= 0.7) starts a
  new id on every frame (rule 3);
* empty tracks are neither "matched" nor "unmatched" (only non-empty tracks count as
  unmatched), so the hotstart never removes them (and 4 frames < 8 anyway): they stay tracked
  and ``num_obj_tracked`` grows by one per frame;
* ``finalize_frame`` drops objects whose video-size mask is empty, so only the newest object,
  whose output mask is the detection mask itself, appears.  On frame 0 the prompt's object is
  on its conditioning frame, is matched by the detection and is output alone.

All four frames are released together after frame 3 (4 < 15 = hotstart delay).  The empty
track masks are inferred (the fixture stores no tracker outputs); the alternatives are ruled
out: a non-empty unmatched track would be output, hotstart removal needs 8 frames, keep-alive
suppression is off by default, and occlusion suppression needs IoU >= 0.7 between two
tracks (impossible with an empty mask).

Tie-breaking (official CPU paths)
---------------------------------
* NMS order: ``numpy.argsort(scores)[::-1]``; we use a stable ascending sort reversed, so
  equal scores go higher query index first (numpy's default sort is stable only below 17
  elements; GPU kernels may order ties differently).
* Object-limit drop: same ordering rule.
* Argmax over objects (non-overlap constraints): the first object in list order wins ties.
* Duplicate pairs: the "first" masklet is the one with the smallest first-frame index
  (largest in reverse), ties to the earlier one in track order.

Not implemented (all off in the default build): Hungarian one-to-one matching
(``o2o_matching_masklets_enable``), masklet confirmation (``masklet_confirmation_enable``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Set

import numpy as np
import torch
from torch import Tensor

from .association_state import REMOVED_SCORE, AssociationConfig, AssociationState
from .heuristics import process_hotstart, reconditioning_decisions, suppress_by_recent_occlusion
from .matching import AssociationResult, Detections, argsort_desc, associate
from .postprocess import FrameRecord, fill_holes_in_mask_logits

__all__ = ["AssociationConfig", "AssociationState", "FramePlan", "FrameStep", "Associator",
           "REMOVED_SCORE"]


# --------------------------------------------------------------------------------------------
# per-frame step
# --------------------------------------------------------------------------------------------

@dataclass
class FramePlan:
    """Decisions of one frame, for the tracker and for the outputs."""

    frame_idx: int
    reverse: bool
    prev_obj_ids: List[int]  # order of the track inputs
    detections: Detections  # the kept detections
    assoc: AssociationResult
    track_mask_logits: Tensor  # (N, h, w) hole-filled + occlusion-suppressed: memory input
    suppressed_by_occlusion: Tensor  # (N,) bool
    new_det_inds: np.ndarray  # indices into `detections`
    new_obj_ids: List[int]
    removed_obj_ids: Set[int]  # removed on this frame (tracker: drop them)
    recondition: Dict[int, int]  # obj id -> det index: tracker re-seeds with that det mask
    reconditioned_obj_ids: Set[int]  # ids whose output is the det mask (box-IoU heuristic)
    num_obj_dropped_due_to_limit: int
    obj_ids: List[int]  # tracked after this frame
    record: FrameRecord

    @property
    def new_obj_mask_logits(self) -> Tensor:
        """``(len(new_obj_ids), h, w)`` detection logits of the new objects (give them to the
        tracker through :func:`masks_for_tracker_input`)."""
        return self.detections.masks[torch.as_tensor(self.new_det_inds, dtype=torch.long)]

    @property
    def frame_stats(self) -> Dict[str, int]:
        return self.record.frame_stats


@dataclass
class FrameStep:
    """One frame of a session with one or several concepts: each concept's plan (in the order
    stepped, ``keys`` their concept keys) and the merged record that is released."""

    frame_idx: int
    plans: List[FramePlan]  # one per concept stepped
    keys: List[int]  # the concept key of each plan
    record: FrameRecord  # every concept's objects (postprocess.merge_records)


class Associator:
    """Runs the association frame after frame and owns the :class:`AssociationState`.

    >>> assoc = Associator(AssociationConfig())
    >>> plan = assoc.step(t, dets, track_logits, track_obj_score_logits)   # doctest: +SKIP
    >>> # tracker: recondition (plan.recondition), encode memories (plan.track_mask_logits),
    >>> # add plan.new_obj_ids with plan.new_obj_mask_logits, remove plan.removed_obj_ids
    >>> for out in buffer.push(plan.record, is_last=(t == last)): ...        # doctest: +SKIP
    """

    def __init__(self, config: Optional[AssociationConfig] = None,
                 state: Optional[AssociationState] = None):
        self.config = config or AssociationConfig()
        self.state = state or AssociationState()

    def reset(self) -> None:
        self.state = AssociationState()

    def step(self, frame_idx: int, detections: Detections, track_mask_logits: Tensor,
             track_obj_score_logits: Tensor, *, reverse: bool = False,
             is_image_only: bool = False, next_id: Optional[int] = None) -> FramePlan:
        """One frame.  ``track_mask_logits`` ``(N, h, w)`` and ``track_obj_score_logits``
        ``(N,)`` are the tracker's raw propagation outputs for ``self.state.obj_ids`` (in that
        order; ``N = 0`` before the first object).  ``next_id``: the first id to give a new
        object (default ``max_obj_id + 1``; a session with several concepts shares one
        counter among their associations)."""
        cfg, st = self.config, self.state
        prev_ids = list(st.obj_ids)
        n = len(prev_ids)
        if track_mask_logits.shape[0] != n or track_obj_score_logits.reshape(-1).shape[0] != n:
            raise ValueError(f"tracker outputs for {track_mask_logits.shape[0]} objects, "
                             f"but {n} are tracked ({prev_ids})")
        obj_scores = track_obj_score_logits.reshape(-1)

        # propagation post-processing: holes and sprinkles
        trk = track_mask_logits
        if n > 0:
            trk = fill_holes_in_mask_logits(trk, cfg.fill_hole_area)

        # association
        det = detections
        assoc = associate(det.masks, det.scores, trk, prev_ids, cfg)
        new_inds = assoc.new_det_inds
        if cfg.suppress_det_close_to_boundary and len(new_inds):
            b = det.boxes_xyxy[torch.as_tensor(new_inds, dtype=torch.long)]
            cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
            m = cfg.boundary_margin
            ok = ((cx > m) & (cx < 1 - m) & (cy > m) & (cy < 1 - m)).cpu().numpy()
            new_inds = new_inds[ok]
        dropped = 0
        limit = cfg.object_limit
        if not is_image_only and n + len(new_inds) > limit:
            n_keep = limit - n
            dropped = len(new_inds) - n_keep
            if n_keep <= 0:
                new_inds = np.zeros(0, dtype=np.int64)
            elif n_keep < len(new_inds):
                scores = det.scores.float().cpu().numpy()[new_inds]
                new_inds = new_inds[argsort_desc(scores)[:n_keep]]
        first = st.max_obj_id + 1 if next_id is None else max(int(next_id), st.max_obj_id + 1)
        new_ids = [first + i for i in range(len(new_inds))]

        # hotstart
        newly_removed = process_hotstart(st, cfg, frame_idx, assoc, new_ids, reverse)

        # reconditioning decisions
        recondition, reconditioned = reconditioning_decisions(cfg, frame_idx, assoc, det, trk,
                                                              prev_ids, obj_scores)

        # occlusion-based overlap suppression (before memory encoding and outputs)
        suppressed = torch.zeros(n, dtype=torch.bool, device=trk.device)
        last_occluded: Dict[int, int] = {}
        if n > 0 and cfg.suppress_overlapping_based_on_recent_occlusion_threshold > 0.0:
            trk, suppressed, last_occluded = suppress_by_recent_occlusion(
                trk, prev_ids, st.obj_id_to_last_occluded, newly_removed, frame_idx,
                cfg.suppress_overlapping_based_on_recent_occlusion_threshold, reverse)

        # metadata update
        new_obj_list = prev_ids + list(new_ids)
        st.obj_ids = [o for o in new_obj_list if o not in newly_removed]
        det_scores_np = det.scores.float().cpu().numpy()
        tracker_scores: Dict[int, float] = {}
        for obj_id, d in zip(new_ids, new_inds.tolist()):
            st.obj_id_to_score[obj_id] = float(det_scores_np[d])
            tracker_scores[obj_id] = float(det_scores_np[d])
        if new_ids:
            st.max_obj_id = max(st.max_obj_id, max(new_ids))
        for obj_id in newly_removed:
            st.obj_id_to_score[obj_id] = REMOVED_SCORE
            tracker_scores[obj_id] = REMOVED_SCORE
            last_occluded.pop(obj_id, None)
        st.obj_id_to_last_occluded = last_occluded
        # tracker scores of the propagated objects (they overwrite the -1e4 of removed ones)
        for obj_id, s in zip(prev_ids, torch.sigmoid(obj_scores.float()).tolist()):
            tracker_scores[obj_id] = s

        # output record (low-res logits)
        logits: Dict[int, Tensor] = {obj_id: trk[i] for i, obj_id in enumerate(prev_ids)}
        if new_ids:
            new_masks = det.masks[torch.as_tensor(new_inds, dtype=torch.long)]
            new_masks = fill_holes_in_mask_logits(new_masks, cfg.fill_hole_area)
            for obj_id, m in zip(new_ids, new_masks):
                logits[obj_id] = m
        for obj_id in reconditioned:
            logits[obj_id] = det.masks[assoc.trk_id_to_max_iou_high_conf_det[obj_id]]
        stats = {"num_obj_tracked": len(st.obj_ids), "num_obj_dropped": int(dropped)}
        record = FrameRecord(
            frame_idx=frame_idx, obj_id_to_logits=logits,
            obj_id_to_score=dict(st.obj_id_to_score), obj_id_to_tracker_score=tracker_scores,
            suppressed_obj_ids=set(st.suppressed_obj_ids.get(frame_idx, set())),
            removed_obj_ids=set(st.removed_obj_ids), frame_stats=stats)
        return FramePlan(
            frame_idx=frame_idx, reverse=reverse, prev_obj_ids=prev_ids, detections=det,
            assoc=assoc, track_mask_logits=trk, suppressed_by_occlusion=suppressed,
            new_det_inds=new_inds, new_obj_ids=list(new_ids), removed_obj_ids=newly_removed,
            recondition=recondition, reconditioned_obj_ids=reconditioned,
            num_obj_dropped_due_to_limit=int(dropped), obj_ids=list(st.obj_ids), record=record)
