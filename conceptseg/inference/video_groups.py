"""Tracker groups of a :class:`~conceptseg.inference.video.VideoSession`: objects tracked
together (the official "tracker inference state", one memory bank each), the inputs they were
given per frame, and removing objects (official ``clear_all_points_in_frame`` /
``remove_object``: inputs cleared, memories sliced, metadata and stored results dropped)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..tracker.bank import FrameMemory, MemoryBank, memory_score

__all__ = ["ObjectGroups"]


@dataclass
class _Group:
    """Objects tracked together (the official "tracker inference state"): objects first seen on
    the same frame, or one clicked object. ``inputs[obj][frame]`` is "mask" (detection) or
    "points" (clicks); ``points[(obj, frame)]`` the clicks given so far (pixel xy, labels)."""

    obj_ids: list[int]
    bank: MemoryBank
    inputs: dict[int, dict[int, str]] = field(default_factory=dict)
    points: dict[tuple[int, int], tuple[Tensor, Tensor]] = field(default_factory=dict)
    anchor: dict[int, tuple[FrameMemory, bool]] = field(default_factory=dict)

    def frame_memory(self, t: int) -> FrameMemory | None:
        mem = self.bank.cond.get(t)
        return mem if mem is not None else self.bank.non_cond.get(t)

    def has_input(self, t: int) -> bool:
        return any(t in frames for frames in self.inputs.values())


def _pred_masks(mem: FrameMemory) -> Tensor | None:
    """Low-res output logits B x 1 x r x r kept with a frame's memory (our addition)."""
    return getattr(mem, "pred_masks", None)


def _slice_memory(mem: FrameMemory, keep: Tensor) -> None:
    mem.obj_ptr = mem.obj_ptr[keep]
    mem.object_score_logits = mem.object_score_logits[keep]
    if mem.maskmem is not None:
        mem.maskmem = mem.maskmem[keep]
    if mem.maskmem_pos is not None:
        mem.maskmem_pos = mem.maskmem_pos[keep]
    if mem.iou_score is not None:
        mem.iou_score = mem.iou_score.reshape(-1)[keep]
        mem.eff_iou_score = memory_score(mem.object_score_logits, mem.iou_score)
    pm = _pred_masks(mem)
    if pm is not None:
        mem.pred_masks = pm[keep]


class ObjectGroups:
    """VideoSession mixin: finding, editing and leaving tracker groups (``self._groups``)."""

    def _new_bank(self, reverse: bool) -> MemoryBank:
        return self.tracker.new_bank(self.num_frames, reverse)

    def _group_of(self, obj_id: int) -> tuple[_Group, int]:
        for g in self._groups:
            if obj_id in g.obj_ids:
                return g, g.obj_ids.index(obj_id)
        raise KeyError(obj_id)

    # -- removing objects -----------------------------------------------------------------------
    def _clear_inputs(self, g: _Group, obj_id: int, t: int) -> None:
        """Official ``clear_all_points_in_frame``: drop the object's input on frame t; a frame
        left without inputs stops being a conditioning frame."""
        g.inputs.get(obj_id, {}).pop(t, None)
        g.points.pop((obj_id, t), None)
        if not g.has_input(t):
            mem = g.bank.cond.pop(t, None)
            if mem is not None:
                g.bank.non_cond[t] = mem

    def _drop_from_groups(self, obj_id: int) -> None:
        try:
            g, j = self._group_of(obj_id)
        except KeyError:
            return
        if len(g.obj_ids) == 1:
            self._groups.remove(g)
            return
        for t in list(g.inputs.get(obj_id, {})):
            self._clear_inputs(g, obj_id, t)
        g.inputs.pop(obj_id, None)
        keep = torch.tensor([k for k in range(len(g.obj_ids)) if k != j], dtype=torch.long)
        seen = set()
        for store in (g.bank.cond, g.bank.non_cond):
            for mem in store.values():
                if id(mem) not in seen:
                    seen.add(id(mem))
                    _slice_memory(mem, keep.to(mem.obj_ptr.device))
        for mem, _ in g.anchor.values():
            if id(mem) not in seen:
                seen.add(id(mem))
                _slice_memory(mem, keep.to(mem.obj_ptr.device))
        g.obj_ids.pop(j)
        if not g.bank.cond:  # nothing left to track from (the official code would fail here)
            for o in list(g.obj_ids):
                self._forget(o)
            self._groups.remove(g)

    def _forget(self, obj_id: int) -> None:
        """Remove an object from the association metadata and the stored results."""
        st = self._assoc.state
        if obj_id in st.obj_ids:
            st.obj_ids.remove(obj_id)
        st.obj_id_to_score.pop(obj_id, None)
        st.obj_id_to_last_occluded.pop(obj_id, None)
        st.unmatched_frame_inds.pop(obj_id, None)
        st.trk_keep_alive.pop(obj_id, None)
        for pair in [p for p in st.overlap_pair_to_frame_inds if obj_id in p]:
            del st.overlap_pair_to_frame_inds[pair]
        self._user_ids.discard(obj_id)
        for s in self._store.values():
            if obj_id in s.obj_ids:
                k = s.obj_ids.index(obj_id)
                keep = [i for i in range(len(s.obj_ids)) if i != k]
                s.obj_ids = [s.obj_ids[i] for i in keep]
                s.scores = [s.scores[i] for i in keep]
                s.rles = [s.rles[i] for i in keep]
                s.boxes = s.boxes[keep]
                s.boxes_xywh = s.boxes_xywh[keep]
