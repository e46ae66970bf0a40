"""Click objects of a :class:`~conceptseg.inference.video.VideoSession`: a click starts a new
object (its own group, a conditioning frame from the clicks, no memory read) or corrects an
existing one (previous logits of that frame as mask input, consolidated across its group,
detector-added conditioning frames nearby dropped); the clicked frame's output merges the
object into the frame's last output."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops.masks import rle_decode
from ..tracker.bank import FrameMemory
from ..tracker.tracker import NO_OBJ_SCORE, TrackerFeatures
from ..video.postprocess import (FrameOutput, apply_object_wise_non_overlap,
                                 fill_holes_in_mask_logits, masks_to_boxes_xyxy)
from .video_groups import _Group, _pred_masks
from .video_results import FrameResult

__all__ = ["ClickEditing", "REFINE_COND_FRAME_WINDOW", "PREV_LOGITS_CLAMP"]

_FAR = 10 ** 9  # first-frame index given to click objects: never "within the hotstart window"
REFINE_COND_FRAME_WINDOW = 16  # official refinement_detector_cond_frame_removal_window
PREV_LOGITS_CLAMP = 32.0


class ClickEditing:
    """VideoSession mixin: :meth:`add_clicks` and what it needs."""

    @torch.inference_mode()
    def add_clicks(self, obj_id: int | None, points, labels=None, frame: int = 0) -> FrameResult:
        """Clicks on ``frame``: ``obj_id=None`` starts a new object (its id is returned in the
        result: the largest id so far + 1), an existing id refines that object. ``points``:
        N x (x, y) pixels; ``labels`` 1 positive / 0 negative (default all positive). Clicks on
        the same object and frame accumulate. Returns the frame's objects, with this one
        updated (other objects as last output on that frame, if it was output)."""
        self._check_open()
        t = self._check_frame(frame)
        pts, labs = self._check_clicks(points, labels)
        if obj_id is not None:
            obj_id = self._check_obj(obj_id)
        _, feats = self._features(t)
        st = self._assoc.state
        if obj_id is None:
            obj_id = st.max_obj_id + 1
            all_pts, all_labs = pts, labs
            g = _Group([obj_id], self._new_bank(reverse=False), {obj_id: {t: "points"}})
            g.points[(obj_id, t)] = (all_pts, all_labs)
            scaled = self._scale_points(all_pts)
            out = self.tracker.track(feats, g.bank, t, points=scaled[None],
                                     labels=all_labs[None].to(self.device), encode=True)
            g.bank.cond[t].pred_masks = out.masks
            low = out.masks
            self._groups.append(g)
            st.obj_ids.append(obj_id)
            st.max_obj_id = max(st.max_obj_id, obj_id)
            st.trk_keep_alive[obj_id] = self.config.init_trk_keep_alive
        else:
            g, j = self._group_of(obj_id)
            prev = g.points.get((obj_id, t))
            all_pts = pts if prev is None else torch.cat([prev[0], pts])
            all_labs = labs if prev is None else torch.cat([prev[1], labs])
            mem_t = g.frame_memory(t)
            prev_logits = None
            if mem_t is not None and _pred_masks(mem_t) is not None:
                prev_logits = _pred_masks(mem_t)[j:j + 1].float().clamp(-PREV_LOGITS_CLAMP,
                                                                         PREV_LOGITS_CLAMP)
            out = self.tracker.predict_masks(feats, points=self._scale_points(all_pts)[None],
                                             labels=all_labs[None].to(self.device),
                                             mask_input=prev_logits)
            low = out.masks
            self._consolidate_clicked(g, j, t, feats, out, mem_t)
            g.inputs.setdefault(obj_id, {})[t] = "points"
            g.points[(obj_id, t)] = (all_pts, all_labs)
            # detector-added conditioning frames near a corrected frame stop conditioning
            for f, kind in list(g.inputs.get(obj_id, {}).items()):
                if kind == "mask" and abs(f - t) <= REFINE_COND_FRAME_WINDOW:
                    for o in list(g.obj_ids):
                        self._clear_inputs(g, o, f)
        # metadata: a clicked object is confirmed by the user
        st.obj_id_to_score[obj_id] = 1.0
        st.removed_obj_ids.discard(obj_id)
        for ids in st.suppressed_obj_ids.values():
            ids.discard(obj_id)
        st.obj_first_frame_idx[obj_id] = -_FAR
        self._user_ids.add(obj_id)
        self._prompt_frames.add(t)
        self._det_cache = None
        # output: this object's mask at video resolution (holes filled), merged with the frame's
        # last output
        up = F.interpolate(low.float(), size=self.size, mode="bilinear", align_corners=False)
        up = fill_holes_in_mask_logits(up[:, 0], self.config.fill_hole_area)
        res = self._merge_click_output(t, obj_id, up[0] > 0)
        res.clicked_obj_id = obj_id
        return res

    def _scale_points(self, pts: Tensor) -> Tensor:
        h, w = self.size
        s = self.tcfg.image_size
        return (pts * torch.tensor([s / w, s / h], dtype=torch.float32)).to(self.device)

    def _consolidate_clicked(self, g: _Group, j: int, t: int, feats: TrackerFeatures, out,
                             mem_t: FrameMemory | None) -> None:
        """Official consolidation of a clicked frame across the group: the clicked object's new
        output, the others' outputs on this frame (or placeholders), encoded as a binarised
        conditioning memory."""
        n = len(g.obj_ids)
        r = self.tcfg.low_res_size
        ptr, osl, iou, low = [], [], [], []
        empty_ptr = None
        for k in range(n):
            if k == j:
                ptr.append(out.obj_ptr)
                osl.append(out.object_score_logits)
                iou.append(out.iou_score.reshape(-1))
                low.append(out.masks.float())
            elif mem_t is not None and _pred_masks(mem_t) is not None:
                ptr.append(mem_t.obj_ptr[k:k + 1])
                osl.append(mem_t.object_score_logits[k:k + 1])
                iou.append(mem_t.iou_score.reshape(-1)[k:k + 1] if mem_t.iou_score is not None
                           else torch.zeros(1, device=self.device))
                low.append(_pred_masks(mem_t)[k:k + 1].float())
            else:  # no output on this frame: placeholders as officially
                if empty_ptr is None:
                    zero = torch.zeros(1, 1, self.tcfg.input_mask_size, self.tcfg.input_mask_size,
                                       device=self.device)
                    empty_ptr = self.tracker.mask_as_output(feats, zero).obj_ptr
                ptr.append(empty_ptr)
                osl.append(torch.full((1, 1), 10.0, device=self.device))
                iou.append(torch.zeros(1, device=self.device))
                low.append(torch.full((1, 1, r, r), NO_OBJ_SCORE, device=self.device))
        mem = FrameMemory(torch.cat(ptr), torch.cat(osl), iou_score=torch.cat(iou))
        mem.pred_masks = torch.cat(low)
        self._encode_cond_memory(feats, mem, mem.pred_masks)
        g.bank.add(t, mem, cond=True)

    def _merge_click_output(self, t: int, obj_id: int, mask: Tensor) -> FrameResult:
        h, w = self.size
        prev = self._store.get(t)
        ids, scores, masks, tscores = [], [], [], {}
        if prev is not None:
            old = rle_decode(prev.rles) if prev.rles else torch.zeros(0, h, w, dtype=torch.bool)
            for k, o in enumerate(prev.obj_ids):
                if o != obj_id and o in self._assoc.state.obj_ids:
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
        boxes = masks_to_boxes_xyxy(m)
        xywh = torch.stack([boxes[:, 0] / w, boxes[:, 1] / h, (boxes[:, 2] - boxes[:, 0]) / w,
                            (boxes[:, 3] - boxes[:, 1]) / h], dim=1) if len(ids) else boxes
        if m.shape[0] > 1:
            m = apply_object_wise_non_overlap(
                m, torch.tensor([tscores.get(o, 0.0) for o in ids], dtype=torch.float32))
        out = FrameOutput(t, torch.tensor(ids, dtype=torch.int64),
                          torch.tensor(scores, dtype=torch.float32), xywh, m,
                          prev.frame_stats if prev is not None else None)
        return self._output(out, tscores)
