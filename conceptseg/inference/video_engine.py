"""The per-frame engine of a :class:`~conceptseg.inference.video.VideoSession` (the official
``Sam3VideoBase._det_track_one_frame`` with one process): frame features (the ViT trunk once,
both necks, a small cache), the detection step, tracker propagation of every group,
association, then re-seeding, memory updates, new objects and removals in the official order.
See the module docstring of :mod:`conceptseg.inference.video`."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.detector import ImageFeatures, TextFeatures
from ..ops.boxes import inverse_sigmoid
from ..tracker.bank import FrameMemory, memory_score
from ..tracker.tracker import NO_OBJ_SCORE, TrackerFeatures, non_overlap
from ..video.matching import Detections, select_detections
from ..video.postprocess import masks_for_tracker_input, memory_encoder_masks
from ..video.preprocess import to_model_input
from .video_groups import _Group, _pred_masks

__all__ = ["FrameEngine"]


class FrameEngine:
    """VideoSession mixin: features, detection and :meth:`_step` (one frame)."""

    # -- features -------------------------------------------------------------------------------
    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _features(self, t: int) -> tuple[ImageFeatures, TrackerFeatures]:
        hit = self._feature_cache.get(t)
        if hit is not None:
            self._feature_cache.move_to_end(t)
            return hit
        x = to_model_input(self.source.preprocess(t, self.model.config.vision.image_size))
        x = x[None].to(self.device)
        with self._autocast():
            trunk = self.model.trunk(x)
            det = self.model.detector_features(trunk)
        det = ImageFeatures([v.float() for v in det.levels], [p.float() for p in det.pos])
        trk = self.model.tracker_features(trunk.float())
        self._feature_cache[t] = (det, trk)
        while len(self._feature_cache) > self._feature_cache_size:
            self._feature_cache.popitem(last=False)
        return det, trk

    def _text_features(self) -> TextFeatures:
        text = self._text if self._text is not None else "visual"
        tf = self._text_cache.get(text)
        if tf is None:
            tokens = self.tokenizer([text]).to(self.device)
            with self._autocast():
                tf = self.model.detector.encode_text(tokens)
            tf = TextFeatures(tf.feats.float(), tf.padding, tf.embeds.float())
            self._text_cache = {text: tf}  # only the current prompt, as officially
        return tf

    # -- detection ------------------------------------------------------------------------------
    def _detection_allowed(self, t: int) -> bool:
        return self._text is not None or t in self._exemplars

    def _detect(self, t: int, det_feats: ImageFeatures) -> Detections:
        key = (t, self._prompt_version)
        if self._det_cache is not None and self._det_cache[0] == key:
            return self._det_cache[1]
        tf = self._text_features()
        boxes = labels = None
        if t in self._exemplars:
            b, lab = self._exemplars[t]
            boxes, labels = b[None].to(self.device), lab[None].to(self.device)
        with self._autocast():
            out = self.model.detector.forward_grounding(det_feats, tf, boxes, labels)
        # the video detector folds presence into the query logits (clamped to +-10)
        joint = out["pred_logits"].float().sigmoid() * \
            out["presence_logit_dec"].float().sigmoid().unsqueeze(2)
        probs = inverse_sigmoid(joint).clamp(-10.0, 10.0)[0, :, 0].sigmoid()
        dets = select_detections(probs, out["pred_masks"][0].float(),
                                 out["pred_boxes_xyxy"][0].float(), self.config)
        self._det_cache = (key, dets)
        return dets

    def _empty_detections(self) -> Detections:
        r = self.tcfg.low_res_size
        dev = self.device
        return Detections(torch.zeros(0, device=dev), torch.zeros(0, r, r, device=dev),
                          torch.zeros(0, 4, device=dev))

    # -- tracker helpers ------------------------------------------------------------------------
    def _video_res(self, mask: Tensor) -> Tensor:
        """A tracker-input mask (S x S bool) -> the video-resolution mask that the official
        ``add_new_mask`` keeps (bilinear, antialiased, > 0.5): 1 x 1 x H x W bool."""
        return F.interpolate(mask[None, None].float(), size=self.size, mode="bilinear",
                             align_corners=False, antialias=True) > 0.5

    def _consolidate(self, vres: Tensor) -> Tensor:
        """Video-resolution +-1024 masks (K x 1 x H x W bool) -> low-res logits K x 1 x r x r
        (antialiased, as the official consolidation of mask inputs)."""
        r = self.tcfg.low_res_size
        logits = torch.where(vres, -NO_OBJ_SCORE, NO_OBJ_SCORE).float()
        return F.interpolate(logits, size=(r, r), mode="bilinear", align_corners=False,
                             antialias=True)

    def _encode_cond_memory(self, feats: TrackerFeatures, mem: FrameMemory, low: Tensor) -> None:
        """Conditioning-frame memory from consolidated low-res masks: upsampled to the image
        size, pixel-wise non-overlap within the group, binarised."""
        high = non_overlap(self.tracker.upsample_masks(low))
        maskmem, pos = self.tracker.encode_memory(feats.expand(low.shape[0]), high,
                                                  mem.object_score_logits, True)
        self.tracker.attach_memory(mem, maskmem, pos)

    def _masks_as_inputs(self, feats: TrackerFeatures, masks: Tensor):
        """Official ``add_new_mask`` for several objects of one group on one frame, in order:
        masks K x S x S bool -> (SAM outputs, video-resolution masks with later objects
        winning overlaps)."""
        outs, vres = [], []
        for k in range(masks.shape[0]):
            outs.append(self.tracker.mask_as_output(feats, masks[k][None, None].float()))
            v = self._video_res(masks[k])
            vres = [p & ~v for p in vres]
            vres.append(v)
        return outs, vres

    # -- one frame ------------------------------------------------------------------------------
    def _propagate_groups(self, t: int, feats: TrackerFeatures) -> tuple[Tensor, Tensor]:
        r = self.tcfg.low_res_size
        masks, scores = [], []
        for g in self._groups:
            mem = g.bank.cond.get(t)
            if mem is not None and _pred_masks(mem) is not None:
                # a frame with inputs: its consolidated output, no tracking
                masks.append(_pred_masks(mem)[:, 0].float())
                scores.append(mem.object_score_logits[:, 0].float())
                continue
            out = self.tracker.track(feats.expand(len(g.obj_ids)), g.bank, t, encode=False)
            g.bank.non_cond[t].pred_masks = out.masks
            masks.append(out.masks[:, 0].float())
            scores.append(out.object_score_logits[:, 0].float())
        if not masks:
            return torch.zeros(0, r, r, device=self.device), torch.zeros(0, device=self.device)
        return torch.cat(masks), torch.cat(scores)

    def _recondition(self, t: int, plan, feats: TrackerFeatures) -> None:
        """Re-seed tracks with high-confidence detection masks (official
        ``_recondition_masklets`` + consolidation). The binarised memory the official code
        encodes here is always overwritten by :meth:`_update_memories`, so it is skipped."""
        if not plan.recondition:
            return
        s = self.tcfg.input_mask_size
        for g in list(self._groups):
            todo = [(o, d) for o, d in plan.recondition.items() if o in g.obj_ids]
            if not todo:
                continue
            tracked = g.frame_memory(t)
            masks = masks_for_tracker_input(plan.detections.masks[[d for _, d in todo]], s)
            outs, vres = self._masks_as_inputs(feats, masks)
            low_new = self._consolidate(torch.cat(vres))
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
                    low.append(_pred_masks(tracked)[j:j + 1].float())
            mem = FrameMemory(torch.cat(ptr), torch.cat(osl), iou_score=torch.cat(iou))
            mem.pred_masks = torch.cat(low)
            g.bank.add(t, mem, cond=True)
            for o, _ in todo:
                g.inputs.setdefault(o, {})[t] = "mask"

    def _update_memories(self, t: int, plan, feats: TrackerFeatures) -> None:
        """Official ``_tracker_update_memories``: every group's memory of this frame from the
        processed track masks (sigmoid path)."""
        trk = plan.track_mask_logits
        if trk.shape[0] == 0:
            return
        size = self.tcfg.mask_interpol_size
        high, obj = memory_encoder_masks(trk.float(), (size, size),
                                         self.config.memory_shrink_threshold)
        i = 0
        for g in self._groups:
            n = len(g.obj_ids)
            mem = g.frame_memory(t)
            if mem is not None:
                maskmem, pos = self.tracker.encode_memory(feats.expand(n), high[i:i + n, None],
                                                          obj[i:i + n, None], False)
                self.tracker.attach_memory(mem, maskmem, pos)
            i += n

    def _add_new_objects(self, t: int, plan, feats: TrackerFeatures, reverse: bool) -> None:
        """Objects first seen on this frame: one new group, conditioned on their detection
        masks (official ``_tracker_add_new_objects``)."""
        ids = list(plan.new_obj_ids)
        if not ids:
            return
        masks = masks_for_tracker_input(plan.new_obj_mask_logits, self.tcfg.input_mask_size)
        outs, vres = self._masks_as_inputs(feats, masks)
        low = self._consolidate(torch.cat(vres))
        osl = torch.cat([o.object_score_logits for o in outs])
        iou = torch.cat([o.iou_score.reshape(-1) for o in outs])
        mem = FrameMemory(torch.cat([o.obj_ptr for o in outs]), osl, iou_score=iou,
                          eff_iou_score=memory_score(osl, iou))
        mem.pred_masks = low
        self._encode_cond_memory(feats, mem, low)
        g = _Group(list(ids), self._new_bank(reverse), {o: {t: "mask"} for o in ids})
        g.bank.add(t, mem, cond=True)
        self._groups.append(g)

    def _step(self, t: int, reverse: bool):
        det_feats, feats = self._features(t)
        dets = (self._detect(t, det_feats) if self._detection_allowed(t)
                else self._empty_detections())
        masks, scores = self._propagate_groups(t, feats)
        plan = self._assoc.step(t, dets, masks, scores, reverse=reverse,
                                is_image_only=self.source.is_image)
        self._recondition(t, plan, feats)
        self._update_memories(t, plan, feats)
        self._add_new_objects(t, plan, feats, reverse)
        for obj_id in sorted(plan.removed_obj_ids):
            self._drop_from_groups(obj_id)
        return plan
