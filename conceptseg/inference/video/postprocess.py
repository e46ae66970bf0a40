"""Mask operations of SAM 3 video inference and the per-frame outputs of the association.

Mask operations on low-res logits (hole filling, bilinear resizing, boxes, the pixel-wise and
object-wise non-overlap constraints, the memory-encoder inputs), the :class:`FrameRecord`
that :meth:`.association.Associator.step` produces for every frame, and its
release as a :class:`~.results.FrameResult` (official ``_postprocess_output``).

Outputs and the hotstart delay (:class:`OutputBuffer`, :func:`finalize_frame`)
------------------------------------------------------------------------------
Records are held back: with ``hotstart_delay = 15`` nothing is released until 15 frames are
buffered, then one frame per processed frame (the oldest); on the **last frame of the
propagation everything left is released at once** (so a clip shorter than 15 frames outputs
everything at the end).  At release, ids removed by hotstart *up to the current frame* are
hidden, even on older frames where they were still tracked (that is the point of the delay),
as are ids suppressed by keep-alive on that frame.  Then per frame: objects sorted by id;
masks bilinearly upsampled to the video size and binarised (> 0); objects with an empty mask
or hidden are dropped; boxes (xyxy from the masks, inclusive pixel indices, no +1) -> xywh
normalised by the video width / height; then, if more than one object is left, the
object-wise non-overlap constraint: each pixel claimed by several objects goes to the one with
the highest per-frame tracker score (ties: the smaller id) and an object whose score is <= 0
keeps no pixel.  An object can therefore be output with an empty mask.  **Boxes come from the
final masks** (after the constraint; an empty mask has an all-zero box and
:attr:`~.results.FrameResult.empty` marks it); the official code computes them before the
constraint, so an emptied object kept another object's box.  (The ``add_prompt`` output is
finalised directly, with nothing hidden.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ...ops.masks import remove_small_regions
from .results import FrameResult, frame_result

__all__ = [
    "FrameRecord", "OutputBuffer", "fill_holes_in_mask_logits", "memory_encoder_masks",
    "masks_for_tracker_input", "apply_pixelwise_non_overlap", "apply_object_wise_non_overlap",
    "finalize_frame", "resize_logits", "NO_OBJ_LOGIT", "merge_records", "non_overlap_per_concept",
]

NO_OBJ_LOGIT = -10.0


# --------------------------------------------------------------------------------------------
# mask primitives
# --------------------------------------------------------------------------------------------

def _small_components(binary: Tensor, max_area) -> Tensor:
    """``(K, H, W)`` bool -> the pixels of 8-connected components of area <= ``max_area``
    (one int, or one per mask)."""
    areas = [max_area] * binary.shape[0] if isinstance(max_area, int) else max_area
    return torch.stack([b & ~remove_small_regions(b, a).to(b.device)
                        for b, a in zip(binary, areas)])


def fill_holes_in_mask_logits(mask_logits: Tensor, max_area: int, fill_holes: bool = True,
                              remove_sprinkles: bool = True) -> Tensor:
    """Official ``fill_holes_in_mask_scores`` on ``(..., H, W)`` logits.

    1. Background (logit <= 0) 8-connected components of area <= ``max_area`` become 0.1,
       **including components touching the border** (unlike ``ops.masks.fill_holes``).
    2. Then foreground (> 0) components of area <= ``min(fg_area // 2, max_area)`` (fg_area:
       the whole mask's foreground after step 1) become -0.1.
    ``max_area <= 0`` returns the input unchanged.
    """
    if max_area <= 0 or mask_logits.numel() == 0:
        return mask_logits
    shape = mask_logits.shape
    out = mask_logits.reshape(-1, shape[-2], shape[-1])
    if fill_holes:
        small = _small_components(out <= 0, max_area)
        out = torch.where(small, torch.tensor(0.1, dtype=out.dtype, device=out.device), out)
    if remove_sprinkles:
        fg = out > 0
        limits = [min(int(n) // 2, max_area) for n in fg.flatten(1).sum(1).tolist()]
        small = _small_components(fg, limits)
        out = torch.where(small, torch.tensor(-0.1, dtype=out.dtype, device=out.device), out)
    return out.reshape(shape)


def resize_logits(masks: Tensor, size: Tuple[int, int]) -> Tensor:
    """Bilinear (align_corners=False, no antialias) resize of ``(N, h, w)`` logits."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *size))
    return F.interpolate(masks.unsqueeze(1), size=size, mode="bilinear",
                         align_corners=False).squeeze(1)


def masks_for_tracker_input(mask_logits: Tensor, size: int) -> Tensor:
    """Detection mask logits ``(K, h, w)`` -> the boolean ``(K, size, size)`` masks the tracker
    receives for new objects and reconditioning (bilinear resize, then > 0)."""
    return resize_logits(mask_logits, (size, size)) > 0


def apply_pixelwise_non_overlap(mask_logits: Tensor) -> Tensor:
    """At each pixel keep only the object with the highest logit (first one on ties); the
    others are clamped to <= -10.  ``(N, H, W)``; a no-op for N == 1."""
    n = mask_logits.shape[0]
    if n <= 1:
        return mask_logits
    winner = torch.argmax(mask_logits, dim=0, keepdim=True)
    keep = winner == torch.arange(n, device=mask_logits.device)[:, None, None]
    return torch.where(keep, mask_logits, torch.clamp(mask_logits, max=NO_OBJ_LOGIT))


def apply_object_wise_non_overlap(masks: Tensor, scores: Tensor) -> Tensor:
    """Official output constraint on boolean ``(N, H, W)`` masks with per-object ``scores``:
    a pixel claimed by several objects goes to the highest score (first on ties); an object
    with score <= 0 keeps nothing.  Returns bool ``(N, H, W)``."""
    n = masks.shape[0]
    if n <= 1:
        return masks.clone()
    s = scores.to(torch.float32).reshape(n, 1, 1)
    per_pixel = torch.where(masks, s, torch.zeros((), dtype=torch.float32, device=masks.device))
    winner = torch.argmax(per_pixel, dim=0, keepdim=True)
    keep = winner == torch.arange(n, device=masks.device)[:, None, None]
    return masks & keep & (per_pixel > 0)


def memory_encoder_masks(track_mask_logits: Tensor, size: Tuple[int, int],
                         shrink_threshold: float = 0.3) -> Tuple[Tensor, Tensor]:
    """Inputs of the tracker's memory encoder for the tracked objects of a frame.

    Official ``_tracker_update_memories``: the (hole-filled, occlusion-suppressed) low-res
    logits ``(N, h, w)`` are bilinearly resized to the memory encoder's mask size; a mask
    that would keep < ``shrink_threshold`` of its area under the pixel-wise non-overlap
    constraint is clamped to <= -10 (the others are left *unconstrained*); the object score
    logits are +10 / -10 for non-empty / empty masks.
    Returns ``(high_res_logits (N, H, W), object_score_logits (N,))``.
    """
    high = resize_logits(track_mask_logits, size)
    if high.shape[0] > 1:
        constrained = apply_pixelwise_non_overlap(high)
        before = (high > 0).sum(dim=(-1, -2)).clamp(min=1)
        after = (constrained > 0).sum(dim=(-1, -2))
        keep = (after / before) >= shrink_threshold
        high = torch.where(keep[:, None, None], high, torch.clamp(high, max=NO_OBJ_LOGIT))
    obj = torch.where((high > 0).flatten(1).any(1), 10.0, -10.0).to(high.dtype) \
        if high.shape[0] else high.new_zeros(0)
    return high, obj


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------

@dataclass
class FrameRecord:
    """What the official code keeps for a frame until it is released (low-res logits per id;
    upsampling happens in :func:`finalize_frame`, which gives the same result as upsampling
    first)."""

    frame_idx: int
    obj_id_to_logits: Dict[int, Tensor]  # (h, w) low-res logits per object id
    obj_id_to_score: Dict[int, float]  # snapshot: det score at creation (-1e4 if removed)
    obj_id_to_tracker_score: Dict[int, float]  # this frame's tracker score (prob)
    suppressed_obj_ids: Set[int]  # keep-alive suppression on this frame
    removed_obj_ids: Set[int]  # all ids removed by hotstart up to this frame
    frame_stats: Dict[str, int]
    # concept key per object (several concepts: the non-overlap step applies within each
    # concept only); empty: one concept
    obj_id_to_concept: Dict[int, int] = field(default_factory=dict)


def merge_records(frame_idx: int, records: List[FrameRecord], keys: List[int]) -> FrameRecord:
    """The records of several concepts on one frame as one (ids are unique across concepts);
    one concept's record is returned as it is, tagged with its key."""
    if len(records) == 1:
        rec = records[0]
        rec.obj_id_to_concept = {o: keys[0] for o in rec.obj_id_to_logits}
        return rec
    out = FrameRecord(frame_idx, {}, {}, {}, set(), set(),
                      {"num_obj_tracked": 0, "num_obj_dropped": 0})
    for rec, key in zip(records, keys):
        out.obj_id_to_logits.update(rec.obj_id_to_logits)
        out.obj_id_to_score.update(rec.obj_id_to_score)
        out.obj_id_to_tracker_score.update(rec.obj_id_to_tracker_score)
        out.suppressed_obj_ids |= rec.suppressed_obj_ids
        out.removed_obj_ids |= rec.removed_obj_ids
        for k, v in rec.frame_stats.items():
            out.frame_stats[k] = out.frame_stats.get(k, 0) + v
        out.obj_id_to_concept.update({o: key for o in rec.obj_id_to_logits})
    return out


def non_overlap_per_concept(masks: Tensor, scores: Tensor, keys: List[int]) -> Tensor:
    """:func:`apply_object_wise_non_overlap` within each concept (``keys``: one per mask):
    objects of different concepts may share pixels (a concept never takes pixels from
    another one)."""
    if len(set(keys)) <= 1:
        return apply_object_wise_non_overlap(masks, scores)
    out = masks.clone()
    for key in sorted(set(keys)):
        rows = torch.tensor([i for i, k in enumerate(keys) if k == key], dtype=torch.long)
        if rows.numel() > 1:
            out[rows.to(masks.device)] = apply_object_wise_non_overlap(
                masks[rows.to(masks.device)], scores[rows.to(scores.device)])
    return out


def finalize_frame(record: FrameRecord, video_size: Tuple[int, int],
                   removed_obj_ids: Optional[Set[int]] = None,
                   suppressed_obj_ids: Optional[Set[int]] = None) -> FrameResult:
    """Official ``_postprocess_output``; ``video_size`` is ``(H, W)``.  With both id sets None
    (the ``add_prompt`` case) nothing is hidden.  Boxes come from the final masks."""
    h, w = video_size
    ids = sorted(record.obj_id_to_logits)
    if not ids:
        return frame_result(record.frame_idx, [], [], torch.zeros(0, h, w, dtype=torch.bool),
                            record.frame_stats)
    # one object at a time: track and detection logits may differ in dtype (the official code
    # resizes the two groups separately, each in its own dtype)
    masks = torch.cat([resize_logits(record.obj_id_to_logits[i][None], (h, w)) > 0 for i in ids])
    obj_ids = torch.tensor(ids, dtype=torch.int64)
    probs = torch.tensor([record.obj_id_to_score[i] for i in ids], dtype=torch.float32)
    tracker_probs = torch.tensor([record.obj_id_to_tracker_score.get(i, 0.0) for i in ids],
                                 dtype=torch.float32)
    keep = masks.flatten(1).any(1).cpu()
    hidden = set(suppressed_obj_ids or ()) | set(removed_obj_ids or ())
    if hidden:
        keep &= ~torch.isin(obj_ids, torch.tensor(sorted(hidden), dtype=torch.int64))
    idx = torch.nonzero(keep).flatten()
    masks = masks[idx.to(masks.device)]
    if masks.shape[0] > 1:
        keys = [record.obj_id_to_concept.get(i, 0) for i in obj_ids[idx].tolist()]
        masks = non_overlap_per_concept(masks, tracker_probs[idx].to(masks.device), keys)
    return frame_result(record.frame_idx, obj_ids[idx].tolist(), probs[idx].tolist(),
                        masks.cpu(), record.frame_stats)


class OutputBuffer:
    """The hotstart delay of ``propagate_in_video``: records in, finalised outputs out.

    ``push(record, is_last)`` returns the frames released by this push, oldest first: nothing
    while fewer than ``hotstart_delay`` records are held, then the oldest one; everything on
    the last frame of the propagation.  With ``hotstart_delay <= 0`` every record is released
    at once (and, as in the official code, ids removed by hotstart are then not hidden).
    """

    def __init__(self, hotstart_delay: int, video_size: Tuple[int, int]):
        self.hotstart_delay = int(hotstart_delay)
        self.video_size = tuple(video_size)
        self.removed_obj_ids: Set[int] = set()
        self._held: List[FrameRecord] = []

    def __len__(self) -> int:
        return len(self._held)

    def push(self, record: FrameRecord, is_last: bool = False) -> List[FrameResult]:
        if self.hotstart_delay <= 0:
            release = [record]
        else:
            self._held.append(record)
            self.removed_obj_ids.update(record.removed_obj_ids)
            if is_last:
                release, self._held = self._held, []
            elif len(self._held) >= self.hotstart_delay:
                release, self._held = self._held[:1], self._held[1:]
            else:
                release = []
        return [finalize_frame(r, self.video_size, self.removed_obj_ids, r.suppressed_obj_ids)
                for r in release]

    def flush(self) -> List[FrameResult]:
        """Release everything still held (a propagation interrupted before its last frame)."""
        release, self._held = self._held, []
        return [finalize_frame(r, self.video_size, self.removed_obj_ids, r.suppressed_obj_ids)
                for r in release]
