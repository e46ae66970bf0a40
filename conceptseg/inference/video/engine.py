"""The per-frame engine of a video session (the official ``Sam3VideoBase._det_track_one_frame``
with one process): :meth:`VideoEngine.step` takes a :class:`~.state.SessionState` and a frame
index, runs the trunk and both necks once, then for each concept (:class:`~.state.TrackedConcept`)
the detection step on the shared features, tracker propagation of its groups and its
association, then re-seeding, memory updates, new objects and removals in the official order.
It **mutates the state in place** and returns a :class:`~.association.FrameStep` (one
:class:`~.association.FramePlan` per concept; its merged ``record`` is released later as a
:class:`~.results.FrameResult`).

The engine holds what a state must not: the model, the opened video and caches (features,
detections). One engine can run several states of the same video one after the other.
See the module docstring of :mod:`conceptseg.inference.video.session` for the whole picture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...model.detector import ImageFeatures
from ...model.video_model import VideoModel
from ...ops.boxes import inverse_sigmoid
from ...tracker.bank import FrameMemory, MemoryBank, memory_score
from ...tracker.tracker import NO_OBJ_SCORE, TrackerFeatures, non_overlap
from ...video.source import VideoSource
from .association import Associator, FramePlan, FrameStep
from .features import FeatureCache
from .groups import drop_from_groups
from .matching import Detections, select_detections
from .postprocess import masks_for_tracker_input, memory_encoder_masks, merge_records
from .state import Group, SessionState, TrackedConcept

__all__ = ["VideoEngine", "DET_CACHE"]

DET_CACHE = 8  # detections kept (frame x concept): a prompted frame is detected once


class VideoEngine:
    """Model + video + caches; runs frames of a :class:`SessionState` (mutating it)."""

    def __init__(self, model: VideoModel, source: VideoSource, device: torch.device,
                 precision: str = "fp32", feature_cache: int = 2):
        self.model = model
        self.tracker = model.tracker
        self.tcfg = model.tracker_config
        self.device = device
        self.source = source
        self.size = source.size  # (H, W)
        self.features = FeatureCache(model, source, device, precision, feature_cache)
        # the last few detections (frame x prompt), each with the Concept its key names by id
        self._det_cache: dict[tuple, tuple[object, Detections]] = {}
        self._config = None  # association config of the state being stepped (set by step)

    def clear_caches(self) -> None:
        self.features.clear()
        self._det_cache = {}

    def new_bank(self, state: SessionState, reverse: bool) -> MemoryBank:
        return self.tracker.new_bank(state.num_frames, reverse)

    # -- detection ------------------------------------------------------------------------------
    def detect(self, concept: TrackedConcept, t: int, det_feats: ImageFeatures) -> Detections:
        """The kept detections of frame t under one concept's prompt, on the frame's shared
        image features (the last few are cached, keyed by everything they depend on)."""
        ex = concept.exemplars.get(t)
        key = (t, concept.text, id(concept.concept), self._config,
               None if ex is None else (tuple(ex[0].flatten().tolist()), tuple(ex[1].tolist())))
        hit = self._det_cache.get(key)
        if hit is not None:
            return hit[1]
        det = self.model.detector
        if concept.concept is not None:  # a reusable concept: its tokens beside its phrase
            tf = self.features.text(concept.concept.query_text)
            with self.features.autocast():
                out = det.forward_prompt(det_feats, *concept.concept.prompt(tf))
        else:
            tf = self.features.text(concept.text)
            boxes = labels = None
            if ex is not None:
                boxes, labels = ex[0][None].to(self.device), ex[1][None].to(self.device)
            with self.features.autocast():
                out = det.forward_grounding(det_feats, tf, boxes, labels)
        # the video detector folds presence into the query logits (clamped to +-10)
        joint = out["pred_logits"].float().sigmoid() * \
            out["presence_logit_dec"].float().sigmoid().unsqueeze(2)
        probs = inverse_sigmoid(joint).clamp(-10.0, 10.0)[0, :, 0].sigmoid()
        dets = select_detections(probs, out["pred_masks"][0].float(),
                                 out["pred_boxes_xyxy"][0].float(), self._config)
        self._det_cache[key] = (concept.concept, dets)  # holding the Concept keeps its id valid
        while len(self._det_cache) > DET_CACHE:
            self._det_cache.pop(next(iter(self._det_cache)))
        return dets

    def _empty_detections(self) -> Detections:
        r = self.tcfg.low_res_size
        dev = self.device
        return Detections(torch.zeros(0, device=dev), torch.zeros(0, r, r, device=dev),
                          torch.zeros(0, 4, device=dev))

    # -- tracker helpers ------------------------------------------------------------------------
    def video_res(self, mask: Tensor) -> Tensor:
        """A tracker-input mask (S x S bool) -> the video-resolution mask that the official
        ``add_new_mask`` keeps (bilinear, antialiased, > 0.5): 1 x 1 x H x W bool."""
        return F.interpolate(mask[None, None].float(), size=self.size, mode="bilinear",
                             align_corners=False, antialias=True) > 0.5

    def consolidate(self, vres: Tensor) -> Tensor:
        """Video-resolution +-1024 masks (K x 1 x H x W bool) -> low-res logits K x 1 x r x r
        (antialiased, as the official consolidation of mask inputs)."""
        r = self.tcfg.low_res_size
        logits = torch.where(vres, -NO_OBJ_SCORE, NO_OBJ_SCORE).float()
        return F.interpolate(logits, size=(r, r), mode="bilinear", align_corners=False,
                             antialias=True)

    def encode_cond_memory(self, feats: TrackerFeatures, mem: FrameMemory, low: Tensor) -> None:
        """Conditioning-frame memory from consolidated low-res masks: upsampled to the image
        size, pixel-wise non-overlap within the group, binarised."""
        high = non_overlap(self.tracker.upsample_masks(low))
        maskmem, pos = self.tracker.encode_memory(feats.expand(low.shape[0]), high,
                                                  mem.object_score_logits, True)
        self.tracker.attach_memory(mem, maskmem, pos)

    def masks_as_inputs(self, feats: TrackerFeatures, masks: Tensor):
        """Official ``add_new_mask`` for several objects of one group on one frame, in order:
        masks K x S x S bool -> (SAM outputs, video-resolution masks with later objects
        winning overlaps)."""
        outs, vres = [], []
        for k in range(masks.shape[0]):
            outs.append(self.tracker.mask_as_output(feats, masks[k][None, None].float()))
            v = self.video_res(masks[k])
            vres = [p & ~v for p in vres]
            vres.append(v)
        return outs, vres

    # -- one frame ------------------------------------------------------------------------------
    def _propagate_groups(self, c: TrackedConcept, t: int,
                          feats: TrackerFeatures) -> tuple[Tensor, Tensor]:
        r = self.tcfg.low_res_size
        masks, scores = [], []
        for g in c.groups:
            mem = g.bank.cond.get(t)
            if mem is not None and mem.pred_masks is not None:
                # a frame with inputs: its consolidated output, no tracking
                masks.append(mem.pred_masks[:, 0].float())
                scores.append(mem.object_score_logits[:, 0].float())
                continue
            out = self.tracker.track(feats.expand(len(g.obj_ids)), g.bank, t, encode=False)
            g.bank.non_cond[t].pred_masks = out.masks
            masks.append(out.masks[:, 0].float())
            scores.append(out.object_score_logits[:, 0].float())
        if not masks:
            return torch.zeros(0, r, r, device=self.device), torch.zeros(0, device=self.device)
        return torch.cat(masks), torch.cat(scores)

    def _recondition(self, c: TrackedConcept, t: int, plan, feats: TrackerFeatures) -> None:
        """Re-seed tracks with high-confidence detection masks (official
        ``_recondition_masklets`` + consolidation). The binarised memory the official code
        encodes here is always overwritten by :meth:`_update_memories`, so it is skipped."""
        if not plan.recondition:
            return
        s = self.tcfg.input_mask_size
        for g in list(c.groups):
            todo = [(o, d) for o, d in plan.recondition.items() if o in g.obj_ids]
            if not todo:
                continue
            tracked = g.frame_memory(t)
            masks = masks_for_tracker_input(plan.detections.masks[[d for _, d in todo]], s)
            outs, vres = self.masks_as_inputs(feats, masks)
            low_new = self.consolidate(torch.cat(vres))
            new = {o: (outs[k], low_new[k:k + 1]) for k, (o, _) in enumerate(todo)}
            ptr, osl, iou, low = [], [], [], []
            for j, o in enumerate(g.obj_ids):
                if o in new:
                    out, lo = new[o]
                    ptr.append(out.obj_ptr)
                    osl.append(out.object_score_logits)
                    iou.append(out.iou_score.reshape(-1))
                    low.append(lo)
                else:
                    ptr.append(tracked.obj_ptr[j:j + 1])
                    osl.append(tracked.object_score_logits[j:j + 1])
                    iou.append(tracked.iou_score.reshape(-1)[j:j + 1])
                    low.append(tracked.pred_masks[j:j + 1].float())
            mem = FrameMemory(torch.cat(ptr), torch.cat(osl), iou_score=torch.cat(iou))
            mem.pred_masks = torch.cat(low)
            g.bank.add(t, mem, cond=True)
            for o, _ in todo:
                g.inputs.setdefault(o, {})[t] = "mask"

    def _update_memories(self, state: SessionState, c: TrackedConcept, t: int, plan,
                         feats: TrackerFeatures) -> None:
        """Official ``_tracker_update_memories``: every group's memory of this frame from the
        processed track masks (sigmoid path)."""
        trk = plan.track_mask_logits
        if trk.shape[0] == 0:
            return
        size = self.tcfg.mask_interpol_size
        high, obj = memory_encoder_masks(trk.float(), (size, size),
                                         state.config.memory_shrink_threshold)
        i = 0
        for g in c.groups:
            n = len(g.obj_ids)
            mem = g.frame_memory(t)
            if mem is not None:
                maskmem, pos = self.tracker.encode_memory(feats.expand(n), high[i:i + n, None],
                                                          obj[i:i + n, None], False)
                self.tracker.attach_memory(mem, maskmem, pos)
            i += n

    def _add_new_objects(self, state: SessionState, c: TrackedConcept, t: int, plan,
                         feats: TrackerFeatures, reverse: bool) -> None:
        """Objects first seen on this frame: one new group, conditioned on their detection
        masks (official ``_tracker_add_new_objects``)."""
        ids = list(plan.new_obj_ids)
        if not ids:
            return
        masks = masks_for_tracker_input(plan.new_obj_mask_logits, self.tcfg.input_mask_size)
        outs, vres = self.masks_as_inputs(feats, masks)
        low = self.consolidate(torch.cat(vres))
        osl = torch.cat([o.object_score_logits for o in outs])
        iou = torch.cat([o.iou_score.reshape(-1) for o in outs])
        mem = FrameMemory(torch.cat([o.obj_ptr for o in outs]), osl, iou_score=iou,
                          eff_iou_score=memory_score(osl, iou))
        mem.pred_masks = low
        self.encode_cond_memory(feats, mem, low)
        g = Group(list(ids), self.new_bank(state, reverse), {o: {t: "mask"} for o in ids})
        g.bank.add(t, mem, cond=True)
        c.groups.append(g)

    # -- one frame ------------------------------------------------------------------------------
    def step(self, state: SessionState, t: int, reverse: bool,
             concepts: list[TrackedConcept] | None = None) -> FrameStep:
        """Frame t of a pass in direction ``reverse`` for every concept (or only
        ``concepts``): the trunk runs once, then each concept in turn runs its detection,
        tracking and association on the shared features. Mutates ``state``."""
        det_feats, feats = self.features.frame(t)
        self._config = state.config
        todo = state.concepts if concepts is None else concepts
        plans = [self._step_concept(state, c, t, reverse, det_feats, feats) for c in todo]
        return FrameStep(t, plans, [c.key for c in todo],
                         merge_records(t, [p.record for p in plans], [c.key for c in todo]))

    def _step_concept(self, state: SessionState, c: TrackedConcept, t: int, reverse: bool,
                      det_feats: ImageFeatures, feats: TrackerFeatures) -> FramePlan:
        """One concept on frame t, in the official order (detect, track, associate, re-seed,
        encode memories, add new objects, remove)."""
        dets = self.detect(c, t, det_feats) if c.detects_on(t) else self._empty_detections()
        masks, scores = self._propagate_groups(c, t, feats)
        plan = Associator(state.config, c.assoc).step(t, dets, masks, scores, reverse=reverse,
                                                      is_image_only=state.is_image,
                                                      next_id=state.max_obj_id + 1)
        state.max_obj_id = max(state.max_obj_id, c.assoc.max_obj_id)
        self._recondition(c, t, plan, feats)
        self._update_memories(state, c, t, plan, feats)
        self._add_new_objects(state, c, t, plan, feats, reverse)
        for obj_id in sorted(plan.removed_obj_ids):
            drop_from_groups(state, obj_id)
        return plan
