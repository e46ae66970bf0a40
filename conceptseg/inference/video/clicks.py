"""Click objects of a :class:`~conceptseg.inference.video.VideoSession`: a click starts a new
object (its own group, a conditioning frame from the clicks, no memory read) or corrects an
existing one (previous logits of that frame as mask input, consolidated across its group,
detector-added conditioning frames nearby dropped); the clicked frame's output merges the
object into the frame's last output."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...tracker.bank import FrameMemory
from ...tracker.tracker import NO_OBJ_SCORE, TrackerFeatures
from .engine import VideoEngine
from .groups import clear_inputs, group_of
from .postprocess import fill_holes_in_mask_logits, non_overlap_per_concept
from .results import FrameResult, frame_result
from .state import Group, SessionState, TrackedConcept

__all__ = ["add_clicks", "REFINE_COND_FRAME_WINDOW", "PREV_LOGITS_CLAMP"]

REFINE_COND_FRAME_WINDOW = 16  # official refinement_detector_cond_frame_removal_window
PREV_LOGITS_CLAMP = 32.0


@torch.inference_mode()
def add_clicks(eng: VideoEngine, state: SessionState, obj_id: int | None, pts: Tensor,
               labs: Tensor, t: int, concept: TrackedConcept | None = None) -> FrameResult:
    """Checked clicks (pixel xy N x 2, labels N) on frame t: ``obj_id=None`` starts a new object
    (the largest id so far + 1) in ``concept`` (default: the last concept added; a concept
    without prompt if there is none), an existing id refines that object. Mutates ``state``;
    returns the frame's objects with this one updated (others as last output on that frame)."""
    _, feats = eng.features.frame(t)
    if obj_id is None:
        c = concept or (state.concepts[-1] if state.concepts else state.add_concept())
        st = c.assoc
        obj_id = state.max_obj_id + 1
        state.max_obj_id = obj_id
        c.clicked.add(obj_id)
        all_pts, all_labs = pts, labs
        g = Group([obj_id], eng.new_bank(state, reverse=False), {obj_id: {t: "points"}})
        g.points[(obj_id, t)] = (all_pts, all_labs)
        scaled = _scale_points(eng, all_pts)
        out = eng.tracker.track(feats, g.bank, t, points=scaled[None],
                                labels=all_labs[None].to(eng.device), encode=True)
        g.bank.cond[t].pred_masks = out.masks
        low = out.masks
        c.groups.append(g)
        st.add_user_object(obj_id, state.config.init_trk_keep_alive)
    else:
        st = state.owner(obj_id).assoc
        g, j = group_of(state, obj_id)
        prev = g.points.get((obj_id, t))
        all_pts = pts if prev is None else torch.cat([prev[0], pts])
        all_labs = labs if prev is None else torch.cat([prev[1], labs])
        mem_t = g.frame_memory(t)
        prev_logits = None
        if mem_t is not None and mem_t.pred_masks is not None:
            prev_logits = mem_t.pred_masks[j:j + 1].float().clamp(-PREV_LOGITS_CLAMP,
                                                                  PREV_LOGITS_CLAMP)
        out = eng.tracker.predict_masks(feats, points=_scale_points(eng, all_pts)[None],
                                        labels=all_labs[None].to(eng.device),
                                        mask_input=prev_logits)
        low = out.masks
        _consolidate_clicked(eng, g, j, t, feats, out, mem_t)
        g.inputs.setdefault(obj_id, {})[t] = "points"
        g.points[(obj_id, t)] = (all_pts, all_labs)
        # detector-added conditioning frames near a corrected frame stop conditioning
        for f, kind in list(g.inputs.get(obj_id, {}).items()):
            if kind == "mask" and abs(f - t) <= REFINE_COND_FRAME_WINDOW:
                for o in list(g.obj_ids):
                    clear_inputs(g, o, f)
    # metadata: a clicked object is confirmed by the user
    st.confirm_user_object(obj_id)
    state.user_ids.add(obj_id)
    state.prompt_frames.add(t)
    # output: this object's mask at video resolution (holes filled), merged with the frame's
    # last output
    up = F.interpolate(low.float(), size=state.size, mode="bilinear", align_corners=False)
    up = fill_holes_in_mask_logits(up[:, 0], state.config.fill_hole_area)
    res = _merge_click_output(state, t, obj_id, up[0] > 0)
    res.clicked_obj_id = obj_id
    return res


def _scale_points(eng: VideoEngine, pts: Tensor) -> Tensor:
    h, w = eng.size
    s = eng.tcfg.image_size
    return (pts * torch.tensor([s / w, s / h], dtype=torch.float32)).to(eng.device)


def _consolidate_clicked(eng: VideoEngine, g: Group, j: int, t: int, feats: TrackerFeatures, out,
                         mem_t: FrameMemory | None) -> None:
    """Official consolidation of a clicked frame across the group: the clicked object's new
    output, the others' outputs on this frame (or placeholders), encoded as a binarised
    conditioning memory."""
    n = len(g.obj_ids)
    r = eng.tcfg.low_res_size
    ptr, osl, iou, low = [], [], [], []
    empty_ptr = None
    for k in range(n):
        if k == j:
            ptr.append(out.obj_ptr)
            osl.append(out.object_score_logits)
            iou.append(out.iou_score.reshape(-1))
            low.append(out.masks.float())
        elif mem_t is not None and mem_t.pred_masks is not None:
            ptr.append(mem_t.obj_ptr[k:k + 1])
            osl.append(mem_t.object_score_logits[k:k + 1])
            iou.append(mem_t.iou_score.reshape(-1)[k:k + 1] if mem_t.iou_score is not None
                       else torch.zeros(1, device=eng.device))
            low.append(mem_t.pred_masks[k:k + 1].float())
        else:  # no output on this frame: placeholders as officially
            if empty_ptr is None:
                zero = torch.zeros(1, 1, eng.tcfg.input_mask_size, eng.tcfg.input_mask_size,
                                   device=eng.device)
                empty_ptr = eng.tracker.mask_as_output(feats, zero).obj_ptr
            ptr.append(empty_ptr)
            osl.append(torch.full((1, 1), 10.0, device=eng.device))
            iou.append(torch.zeros(1, device=eng.device))
            low.append(torch.full((1, 1, r, r), NO_OBJ_SCORE, device=eng.device))
    mem = FrameMemory(torch.cat(ptr), torch.cat(osl), iou_score=torch.cat(iou))
    mem.pred_masks = torch.cat(low)
    eng.encode_cond_memory(feats, mem, mem.pred_masks)
    g.bank.add(t, mem, cond=True)


def _merge_click_output(state: SessionState, t: int, obj_id: int, mask: Tensor) -> FrameResult:
    """The clicked object's new mask merged into frame t's last output (non-overlap by the
    stored tracker scores), released as the frame's result."""
    h, w = state.size
    prev = state.store.get(t)
    ids, scores, masks, tscores = [], [], [], {}
    tracked = set(state.obj_ids)
    if prev is not None:
        old = prev.masks((h, w))
        for k, o in enumerate(prev.obj_ids):
            if o != obj_id and o in tracked:
                ids.append(o)
                scores.append(prev.scores[k])
                masks.append(old[k])
        tscores = dict(prev.tracker_scores)
    ids.append(obj_id)
    scores.append(1.0)
    masks.append(mask.cpu())
    tscores[obj_id] = 1.0
    order = sorted(range(len(ids)), key=lambda k: ids[k])
    ids = [ids[k] for k in order]
    scores = [scores[k] for k in order]
    m = torch.stack([masks[k] for k in order])
    keep = m.flatten(1).any(1)
    if not bool(keep.all()):
        idx = torch.nonzero(keep).flatten().tolist()
        ids, scores, m = [ids[k] for k in idx], [scores[k] for k in idx], m[keep]
    if m.shape[0] > 1:
        keys = [state.owner(o).key for o in ids]
        m = non_overlap_per_concept(
            m, torch.tensor([tscores.get(o, 0.0) for o in ids], dtype=torch.float32), keys)
    res = frame_result(t, ids, scores, m, prev.frame_stats if prev is not None else None)
    return state.release(res, tscores)
