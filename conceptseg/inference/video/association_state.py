"""What the detection <-> track association of a video session is configured with
(:class:`AssociationConfig`, the official thresholds) and what it remembers between frames
(:class:`AssociationState`, the official ``tracker_metadata``).

Both are plain dataclasses with no dependency on the rest of the association, so that
:mod:`.matching`, :mod:`.heuristics` and :mod:`.association` import them without a cycle.
The state is changed in two places only: :meth:`.association.Associator.step` (with its
hotstart helper) on every frame, and the methods below for what the user does between frames
(clicked objects, removed objects).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Set, Tuple

from ...errors import InputError

__all__ = ["AssociationConfig", "AssociationState", "REMOVED_SCORE", "USER_OBJECT_FRAME"]

REMOVED_SCORE = -1e4  # obj_id_to_score of an object removed by the hotstart
_UNLIMITED_OBJECTS = 10000  # the official value used when max_num_objects <= 0
USER_OBJECT_FRAME = 10 ** 9  # first-frame index of click objects: never "within the hotstart"
@dataclass(frozen=True)
class AssociationConfig:
    """Every threshold of the association, with the official defaults of
    ``build_sam3_video_model(apply_temporal_disambiguation=True)``."""

    # detections
    score_threshold_detection: float = 0.5  # keep prob > this (also the NMS prefilter)
    det_nms_thresh: float = 0.1  # mask NMS drops IoU > this; <= 0 disables NMS
    # matching
    assoc_iou_thresh: float = 0.1  # a detection matches a track at IoU >= this
    trk_assoc_iou_thresh: float = 0.5  # a track counts as matched at IoU >= this
    new_det_thresh: float = 0.7  # unmatched detection with score >= this starts a new object
    max_num_objects: int = -1  # <= 0: unlimited (official: 10000)
    suppress_det_close_to_boundary: bool = False
    boundary_margin: float = 0.025
    # hotstart
    hotstart_delay: int = 15
    hotstart_unmatch_thresh: int = 8
    hotstart_dup_thresh: int = 8
    suppress_unmatched_only_within_hotstart: bool = True
    init_trk_keep_alive: int = 30
    max_trk_keep_alive: int = 30
    min_trk_keep_alive: int = -1
    decrease_trk_keep_alive_for_empty_masklets: bool = False
    # occlusion-based overlap suppression (<= 0 disables)
    suppress_overlapping_based_on_recent_occlusion_threshold: float = 0.7
    # masks
    fill_hole_area: int = 16
    # reconditioning
    recondition_every_nth_frame: int = 16  # <= 0 disables the periodic reconditioning
    recondition_det_score_thresh: float = 0.8  # official HIGH_CONF_THRESH
    recondition_iou_thresh: float = 0.8  # official HIGH_IOU_THRESH
    recondition_obj_score_logit_thresh: float = 0.8  # tracker object-score *logit* must exceed
    reconstruction_bbox_iou_thresh: float = 0.0  # > 0 enables box-IoU reconditioning
    reconstruction_bbox_det_score: float = 0.0
    # memory encoding
    memory_shrink_threshold: float = 0.3

    def __post_init__(self):
        if self.hotstart_delay > 0:
            if self.hotstart_unmatch_thresh > self.hotstart_delay:
                raise InputError("hotstart_unmatch_thresh must be <= hotstart_delay")
            if self.hotstart_dup_thresh > self.hotstart_delay:
                raise InputError("hotstart_dup_thresh must be <= hotstart_delay")

    @property
    def object_limit(self) -> int:
        return self.max_num_objects if self.max_num_objects > 0 else _UNLIMITED_OBJECTS

    @classmethod
    def official(cls, **overrides) -> "AssociationConfig":
        """``build_sam3_video_model(apply_temporal_disambiguation=True)`` (the default)."""
        return replace(cls(), **overrides)

    @classmethod
    def without_heuristics(cls, **overrides) -> "AssociationConfig":
        """``build_sam3_video_model(apply_temporal_disambiguation=False)``: no hotstart, no
        reconditioning (occlusion suppression and hole filling stay on)."""
        return replace(cls(), hotstart_delay=0, hotstart_unmatch_thresh=0, hotstart_dup_thresh=0,
                       recondition_every_nth_frame=0, **overrides)


@dataclass
class AssociationState:
    """Everything the association remembers between frames (official ``tracker_metadata`` and
    its ``rank0_metadata``, minus the multi-GPU fields and the per-frame score history)."""

    obj_ids: List[int] = field(default_factory=list)  # tracked ids, in tracker order
    max_obj_id: int = -1
    obj_id_to_score: Dict[int, float] = field(default_factory=dict)  # det score at creation
    obj_id_to_last_occluded: Dict[int, int] = field(default_factory=dict)
    obj_first_frame_idx: Dict[int, int] = field(default_factory=dict)
    unmatched_frame_inds: Dict[int, List[int]] = field(default_factory=dict)
    trk_keep_alive: Dict[int, int] = field(default_factory=dict)
    overlap_pair_to_frame_inds: Dict[Tuple[int, int], List[int]] = field(default_factory=dict)
    removed_obj_ids: Set[int] = field(default_factory=set)
    suppressed_obj_ids: Dict[int, Set[int]] = field(default_factory=dict)  # frame -> ids

    @property
    def num_objects(self) -> int:
        return len(self.obj_ids)



    # -- what the user does between frames ------------------------------------------------------
    def add_user_object(self, obj_id: int, keep_alive: int) -> None:
        """A new object created by clicks: tracked from now on, with a keep-alive counter."""
        self.obj_ids.append(obj_id)
        self.max_obj_id = max(self.max_obj_id, obj_id)
        self.trk_keep_alive[obj_id] = keep_alive

    def confirm_user_object(self, obj_id: int) -> None:
        """A clicked object is confirmed by the user: score 1.0, never hidden or removed by the
        hotstart (its first frame lies outside every hotstart window)."""
        self.obj_id_to_score[obj_id] = 1.0
        self.removed_obj_ids.discard(obj_id)
        for ids in self.suppressed_obj_ids.values():
            ids.discard(obj_id)
        self.obj_first_frame_idx[obj_id] = -USER_OBJECT_FRAME

    def place_user_objects(self, obj_ids, reverse: bool) -> None:
        """At the start of a pass: click objects outside the hotstart window of its direction."""
        for o in obj_ids:
            self.obj_first_frame_idx[o] = USER_OBJECT_FRAME if reverse else -USER_OBJECT_FRAME

    def forget(self, obj_id: int) -> None:
        """An object removed by the user: dropped from the tracked ids and per-object records
        (``max_obj_id`` is kept, so its id is never reused)."""
        if obj_id in self.obj_ids:
            self.obj_ids.remove(obj_id)
        self.obj_id_to_score.pop(obj_id, None)
        self.obj_id_to_last_occluded.pop(obj_id, None)
        self.unmatched_frame_inds.pop(obj_id, None)
        self.trk_keep_alive.pop(obj_id, None)
        for pair in [p for p in self.overlap_pair_to_frame_inds if obj_id in p]:
            del self.overlap_pair_to_frame_inds[pair]
