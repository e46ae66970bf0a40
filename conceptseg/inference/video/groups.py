"""Tracker groups of a video session's :class:`~.state.SessionState`: finding an object's
group, clearing its inputs on a frame and removing objects (official
``clear_all_points_in_frame`` / ``remove_object``: inputs cleared, memories sliced, association
metadata and stored results dropped). Every function mutates the state it is given."""

from __future__ import annotations

import torch
from torch import Tensor

from ...tracker.bank import FrameMemory, memory_score
from .state import Group, SessionState, TrackedConcept

__all__ = ["group_of", "clear_inputs", "drop_from_groups", "forget", "remove_concept"]


def group_of(state: SessionState, obj_id: int) -> tuple[Group, int]:
    """The group holding ``obj_id`` and the object's row in it (KeyError if none)."""
    for g in state.groups:
        if obj_id in g.obj_ids:
            return g, g.obj_ids.index(obj_id)
    raise KeyError(obj_id)


def _concept_of_group(state: SessionState, g: Group) -> TrackedConcept:
    return next(c for c in state.concepts if any(x is g for x in c.groups))


def _remove_group(state: SessionState, g: Group) -> None:
    c = _concept_of_group(state, g)
    c.groups = [x for x in c.groups if x is not g]


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
    if mem.pred_masks is not None:
        mem.pred_masks = mem.pred_masks[keep]


def clear_inputs(g: Group, obj_id: int, t: int) -> None:
    """Official ``clear_all_points_in_frame``: drop the object's input on frame t; a frame
    left without inputs stops being a conditioning frame."""
    g.inputs.get(obj_id, {}).pop(t, None)
    g.points.pop((obj_id, t), None)
    if not g.has_input(t):
        mem = g.bank.cond.pop(t, None)
        if mem is not None:
            g.bank.non_cond[t] = mem


def drop_from_groups(state: SessionState, obj_id: int) -> None:
    """Take an object out of its group (slicing every memory of the group); a group left
    without conditioning frame is dissolved and its objects forgotten."""
    try:
        g, j = group_of(state, obj_id)
    except KeyError:
        return
    if len(g.obj_ids) == 1:
        _remove_group(state, g)
        return
    for t in list(g.inputs.get(obj_id, {})):
        clear_inputs(g, obj_id, t)
    g.inputs.pop(obj_id, None)
    keep = torch.tensor([k for k in range(len(g.obj_ids)) if k != j], dtype=torch.long)
    seen = set()
    mems = [*g.bank.cond.values(), *g.bank.non_cond.values(), *(m for m, _ in g.anchor.values())]
    for mem in mems:
        if id(mem) not in seen:
            seen.add(id(mem))
            _slice_memory(mem, keep.to(mem.obj_ptr.device))
    g.obj_ids.pop(j)
    if not g.bank.cond:  # nothing left to track from (the official code would fail here)
        for o in list(g.obj_ids):
            forget(state, o)
        _remove_group(state, g)


def forget(state: SessionState, obj_id: int) -> None:
    """Remove an object from its concept's association metadata and the stored results."""
    for c in state.concepts:
        if obj_id in c.assoc.obj_ids or obj_id in c.assoc.obj_id_to_score:
            c.assoc.forget(obj_id)
            c.clicked.discard(obj_id)
    state.user_ids.discard(obj_id)
    for s in state.store.values():
        s.drop(obj_id)


def remove_concept(state: SessionState, c: TrackedConcept) -> None:
    """Drop a concept with all its objects (from the trackers, the association and the stored
    results); the other concepts' objects, memories and masklets are untouched."""
    for obj_id in list(c.assoc.obj_ids):
        drop_from_groups(state, obj_id)
        forget(state, obj_id)
    for s in state.store.values():  # objects it had that were removed since (hotstart)
        for obj_id in [o for o in s.obj_ids if o in c.assoc.obj_id_to_score]:
            s.drop(obj_id)
    state.concepts = [x for x in state.concepts if x is not c]
