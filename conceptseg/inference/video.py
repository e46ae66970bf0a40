"""VideoSession: promptable concept segmentation and tracking on a video.

>>> model = load_video_model("sam3.pt")
>>> with VideoSession(model, "clip.mp4") as s:
...     first = s.add_text("red car", frame=0)          # detections on frame 0
...     for t, r in s.propagate("both"):                  # every frame, each once
...         print(t, r.obj_ids.tolist(), r.scores.tolist())
...     s.add_clicks(None, [(120, 80)], [1], frame=40)   # one more object, from a click
...     s.add_clicks(3, [(300, 200)], [0], frame=40)     # correct object 3 on frame 40
...     s.remove_object(1)

What a frame goes through (``_step``, the official ``Sam3VideoBase._det_track_one_frame`` with
one process): the ViT trunk runs once and feeds both necks; the detector runs when new
detections are allowed on that frame (a text prompt, or exemplar boxes on it); every group of
tracked objects is propagated by the tracker (memory attention + SAM heads, memory encoding
deferred); :class:`~conceptseg.video.association.Associator` matches detections and tracks and
decides new / removed / re-seeded objects; then, in the official order, re-seeded objects get
the detection mask as a conditioning frame, every group encodes this frame's memory from the
processed track masks (sigmoid path, area-shrinkage suppression, +-10 object scores), objects
first seen on this frame form one new group whose conditioning memory comes from their
detection masks (through the video resolution, as officially), and removed objects leave their
groups. Outputs are released through the hotstart buffer (15 frames by default; everything at
the end of a propagation).

Official behaviours kept on purpose (see ``conceptseg/video/association.py`` for the rest):

* ``add_text`` / ``add_exemplars`` start over (the official ``add_prompt`` resets the session);
  the prompted frame is processed at once and again as the first frame of a forward
  propagation that starts there;
* a re-seeded frame keeps the detection mask's pointer but its memory is re-encoded from the
  propagated mask;
* clicks never read memory (``use_prev_mem_frame=False``): a clicked frame becomes a
  conditioning frame of the object's group; corrections feed the previous logits of that frame
  (clamped to +-32) with all the clicks given so far; detector-added conditioning frames within
  16 frames of a corrected one stop being conditioning frames;
* removing an object clears its inputs, which may turn its group's conditioning frames back
  into tracked frames.

Where we differ from the official code (which keeps every frame's state for the whole video):

* memory is bounded: per group only what later frames can read (see
  :mod:`conceptseg.tracker.bank`), decoded frames and features for at most ``feature_cache``
  frames, detections for the last frame. A propagation that starts where an earlier one started
  (``"both"``, or forward then backward) gets the first ``window`` frames of the earlier pass
  back; memories further away are gone (the official code could still select them);
* propagation always runs detector + tracker + association ("full" propagation). Objects added
  by clicks are tracked like the others but are never removed by the hotstart heuristics (the
  official code switches to tracker-only "partial" propagation after clicks, which needs every
  frame's cached output). Their score is 1.0;
* ``propagate("backward")`` starts at ``start`` (default: the last prompted frame); in
  ``"both"`` the backward pass starts at ``start - 1`` so that no frame is output twice
  (official: backward always skips ``start``); ``max_frames`` counts the frames processed by
  each pass (official: ``max_frame_num_to_track + 1``).
* ``add_exemplars`` accepts several boxes (all are the geometric prompt of that frame; the
  official API takes one).

Results of the frames released so far are kept compactly (COCO RLE, a few bytes per object per
frame) and returned by :meth:`VideoSession.results`; ``keep_results=False`` keeps nothing.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..model.detector import ImageFeatures, TextFeatures
from ..ops.boxes import inverse_sigmoid
from ..ops.masks import rle_decode, rle_encode
from ..text.tokenizer import ClipTokenizer
from ..tracker.bank import FrameMemory, MemoryBank, memory_score
from ..tracker.tracker import NO_OBJ_SCORE, TrackerFeatures, non_overlap
from ..video.association import AssociationConfig, Associator
from ..video.io import open_video
from ..video.matching import Detections, select_detections
from ..video.model import VideoModel
from ..video.postprocess import (FrameOutput, OutputBuffer, apply_object_wise_non_overlap,
                                 fill_holes_in_mask_logits, finalize_frame, masks_for_tracker_input,
                                 masks_to_boxes_xyxy, memory_encoder_masks)
from ..video.preprocess import to_model_input
from ..video.source import VideoSource
from .image import validate_exemplars, validate_text

__all__ = ["VideoSession", "FrameResult", "VideoResults", "DIRECTIONS"]

DIRECTIONS = ("forward", "backward", "both")
_FAR = 10 ** 9  # first-frame index given to click objects: never "within the hotstart window"
REFINE_COND_FRAME_WINDOW = 16  # official refinement_detector_cond_frame_removal_window
PREV_LOGITS_CLAMP = 32.0


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------

@dataclass
class FrameResult:
    """The objects output on one frame.

    obj_ids (N,) int64 ascending; masks (N, H, W) bool at the video size; boxes (N, 4) float32
    pixel xyxy, (x0, y0) the top-left mask pixel and (x1, y1) one past the bottom-right one
    (the box of the mask before the non-overlap constraint, as officially); scores (N,) the
    detection score of each object when it was created (1.0 for click objects);
    boxes_xywh (N, 4) the official normalised xywh boxes; clicked_obj_id the object that
    :meth:`VideoSession.add_clicks` created or refined (also when its mask came out empty and
    it is not among ``obj_ids``).
    """

    frame_idx: int
    obj_ids: Tensor
    masks: Tensor
    boxes: Tensor
    scores: Tensor
    boxes_xywh: Tensor
    frame_stats: dict | None = None
    clicked_obj_id: int | None = None

    def __len__(self) -> int:
        return int(self.obj_ids.numel())

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.masks.shape[-2:])

    @classmethod
    def from_output(cls, out: FrameOutput, size: tuple[int, int]) -> "FrameResult":
        h, w = size
        xywh = out.boxes_xywh.float()
        px = torch.round(xywh * torch.tensor([w, h, w, h], dtype=torch.float32))
        boxes = torch.stack([px[:, 0], px[:, 1], px[:, 0] + px[:, 2] + 1,
                             px[:, 1] + px[:, 3] + 1], dim=1) if len(px) else px.reshape(0, 4)
        return cls(out.frame_idx, out.obj_ids.long(), out.masks.bool(), boxes,
                   out.probs.float(), xywh, out.frame_stats)

    def as_official_dict(self) -> dict:
        """The official ``propagate_in_video`` output keys."""
        return {"out_obj_ids": self.obj_ids, "out_probs": self.scores,
                "out_boxes_xywh": self.boxes_xywh, "out_binary_masks": self.masks,
                "frame_stats": self.frame_stats}

    def to_json(self) -> dict:
        rles = rle_encode(self.masks) if len(self) else []
        return {"frame": self.frame_idx, "objects": [
            {"id": int(i), "score": float(s), "box": [float(v) for v in b], "rle": r}
            for i, s, b, r in zip(self.obj_ids.tolist(), self.scores.tolist(),
                                  self.boxes.tolist(), rles)]}


@dataclass
class _Stored:
    """A released frame kept as RLE (plus what merging a later click result needs)."""

    obj_ids: list[int]
    scores: list[float]
    boxes: Tensor
    boxes_xywh: Tensor
    rles: list[dict]
    tracker_scores: dict[int, float]
    frame_stats: dict | None


class VideoResults(Mapping):
    """Frame index -> :class:`FrameResult` for every frame released so far (masks decoded on
    access; the store itself holds RLE)."""

    def __init__(self, store: dict[int, _Stored], size: tuple[int, int]):
        self._store = store
        self._size = size

    def __getitem__(self, t: int) -> FrameResult:
        s = self._store[t]
        h, w = self._size
        masks = rle_decode(s.rles) if s.rles else torch.zeros(0, h, w, dtype=torch.bool)
        return FrameResult(t, torch.tensor(s.obj_ids, dtype=torch.int64), masks, s.boxes.clone(),
                           torch.tensor(s.scores, dtype=torch.float32), s.boxes_xywh.clone(),
                           s.frame_stats)

    def __iter__(self):
        return iter(sorted(self._store))

    def __len__(self) -> int:
        return len(self._store)

    @property
    def obj_ids(self) -> list[int]:
        """Every object id output on some frame, ascending."""
        return sorted({i for s in self._store.values() for i in s.obj_ids})

    def to_json(self) -> dict:
        """Per-frame COCO RLE masks per object id (``frames`` sorted by index)."""
        h, w = self._size
        frames = []
        for t in self:
            s = self._store[t]
            frames.append({"frame": t, "objects": [
                {"id": i, "score": sc, "box": [float(v) for v in b], "rle": r}
                for i, sc, b, r in zip(s.obj_ids, s.scores, s.boxes.tolist(), s.rles)]})
        return {"height": h, "width": w, "obj_ids": self.obj_ids, "frames": frames}


# --------------------------------------------------------------------------------------------
# tracker groups
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# the session
# --------------------------------------------------------------------------------------------

class VideoSession:
    """Concept prompts (text, exemplar boxes), clicks and propagation on one video.

    ``video``: a video file, a folder of frames or one image (see
    :func:`conceptseg.video.io.open_video`). Frames are decoded and encoded when needed; per-frame
    features are dropped once the frame is processed, tracker memory is bounded per object group.

    Bad input raises :class:`~conceptseg.errors.InputError` (unreadable / empty video, frame
    index out of range, click outside the frame, unknown object id, empty prompt...) and leaves
    the session as it was.
    """

    def __init__(self, model: VideoModel, video, *, association: AssociationConfig | None = None,
                 precision: str = "fp32", file_preprocessing: str = "cv2",
                 keep_results: bool = True, feature_cache: int = 2,
                 device: str | torch.device | None = None):
        if not isinstance(model, VideoModel):
            raise TypeError("VideoSession needs a VideoModel (conceptseg.build.load_video_model)")
        if precision not in ("fp32", "bf16"):
            raise ValueError("precision must be 'fp32' or 'bf16'")
        self.model = model.eval()
        self.device = torch.device(device) if device else model.device
        self.model.to(self.device)
        self.precision = precision
        self.config = association or AssociationConfig()
        self.keep_results = keep_results
        self.source: VideoSource = open_video(video, file_preprocessing=file_preprocessing,
                                              cache_size=2)
        if len(self.source) == 0:  # pragma: no cover - open_video already refuses these
            raise InputError(f"{video}: the video has no frames")
        self.num_frames = len(self.source)
        self.size = self.source.size  # (H, W)
        self.tracker = model.tracker
        self.tcfg = model.tracker_config
        self.tokenizer = ClipTokenizer(context_length=model.config.text.context_length)
        self._feature_cache: OrderedDict[int, tuple[ImageFeatures, TrackerFeatures]] = OrderedDict()
        self._feature_cache_size = max(1, int(feature_cache))
        self._text_cache: dict[str, TextFeatures] = {}
        self._closed = False
        self._reset(keep_text=False)

    # -- context manager ------------------------------------------------------------------------
    def __enter__(self) -> "VideoSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self.source.close()
            self._feature_cache.clear()
            self._groups = []
            self._closed = True

    # -- state ----------------------------------------------------------------------------------
    def _reset(self, keep_text: bool) -> None:
        if not keep_text:
            self._text: str | None = None
        self._exemplars: dict[int, tuple[Tensor, Tensor]] = {}
        self._assoc = Associator(self.config)
        self._groups: list[_Group] = []
        self._user_ids: set[int] = set()
        self._store: dict[int, _Stored] = {}
        self._prompt_frames: set[int] = set()
        self._det_cache: tuple[tuple, Detections] | None = None
        self._prompt_version = getattr(self, "_prompt_version", 0) + 1
        self._anchor_start: int | None = None

    @property
    def obj_ids(self) -> list[int]:
        """The objects tracked now, in tracker order."""
        return list(self._assoc.state.obj_ids)

    @property
    def text(self) -> str | None:
        return self._text

    def results(self) -> VideoResults:
        """Every frame released so far (prompted frames, propagated frames, clicked frames)."""
        return VideoResults(self._store, self.size)

    def memory_frames(self) -> int:
        """Frames held in all tracker memory banks (bounded; for tests and benchmarks)."""
        return sum(len(g.bank) + len(g.anchor) for g in self._groups)

    # -- validation -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise InputError("this video session is closed")

    def _check_frame(self, frame) -> int:
        if isinstance(frame, (bool, np.bool_)) or not isinstance(frame, (int, np.integer)):
            raise InputError(f"frame index must be an integer, got {frame!r}")
        t = int(frame)
        if not 0 <= t < self.num_frames:
            raise InputError(f"frame index {t} is out of range: the video has {self.num_frames} "
                             f"frames (0..{self.num_frames - 1})")
        return t

    def _check_obj(self, obj_id) -> int:
        if isinstance(obj_id, (bool, np.bool_)) or not isinstance(obj_id, (int, np.integer)):
            raise InputError(f"object id must be an integer, got {obj_id!r}")
        if int(obj_id) not in self._assoc.state.obj_ids:
            known = self._assoc.state.obj_ids
            raise InputError(f"object {int(obj_id)} does not exist (tracked objects: "
                             f"{known if known else 'none'})")
        return int(obj_id)

    def _check_clicks(self, points, labels) -> tuple[Tensor, Tensor]:
        h, w = self.size
        try:
            pts = torch.as_tensor(np.asarray(points, dtype=np.float64), dtype=torch.float32)
        except (TypeError, ValueError):
            raise InputError("points must be a list of (x, y) pixel coordinates") from None
        if pts.dim() == 1 and pts.numel() == 2:
            pts = pts[None]
        if pts.dim() != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
            raise InputError(f"points must be N x 2 (x, y) with N >= 1, got shape "
                             f"{tuple(pts.shape)}")
        if not torch.isfinite(pts).all():
            raise InputError("points must be finite numbers")
        if labels is None:
            labs = torch.ones(pts.shape[0], dtype=torch.int32)
        else:
            try:
                labs = torch.as_tensor(np.asarray(labels).reshape(-1).astype(np.int64))
                labs = labs.to(torch.int32)
            except (TypeError, ValueError):
                raise InputError("labels must be 1 (positive) or 0 (negative) per point") from None
            if labs.numel() != pts.shape[0]:
                raise InputError(f"{pts.shape[0]} points but {labs.numel()} labels")
            if not bool(((labs == 0) | (labs == 1)).all()):
                raise InputError("labels must be 1 (positive) or 0 (negative)")
        for x, y in pts.tolist():
            if not (0 <= x <= w and 0 <= y <= h):
                raise InputError(f"click ({x:g}, {y:g}) lies outside the {w}x{h} frame")
        return pts, labs

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
    def _new_bank(self, reverse: bool) -> MemoryBank:
        return self.tracker.new_bank(self.num_frames, reverse)

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

    def _group_of(self, obj_id: int) -> tuple[_Group, int]:
        for g in self._groups:
            if obj_id in g.obj_ids:
                return g, g.obj_ids.index(obj_id)
        raise KeyError(obj_id)

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

    # -- results --------------------------------------------------------------------------------
    def _keep(self, res: FrameResult, tracker_scores: dict[int, float]) -> None:
        if not self.keep_results:
            return
        self._store[res.frame_idx] = _Stored(
            res.obj_ids.tolist(), res.scores.tolist(), res.boxes.clone(), res.boxes_xywh.clone(),
            rle_encode(res.masks) if len(res) else [],
            {int(k): float(v) for k, v in tracker_scores.items()}, res.frame_stats)

    def _output(self, out: FrameOutput, tracker_scores: dict[int, float]) -> FrameResult:
        res = FrameResult.from_output(out, self.size)
        self._keep(res, tracker_scores)
        return res

    # -- prompts --------------------------------------------------------------------------------
    @torch.inference_mode()
    def add_text(self, text: str, frame: int = 0) -> FrameResult:
        """Segment every instance of a concept: starts over (objects, memories and results are
        cleared, as the official ``add_prompt``), detects on ``frame`` and returns that frame's
        objects. Later frames come from :meth:`propagate`."""
        self._check_open()
        text = validate_text(text)
        t = self._check_frame(frame)
        self._reset(keep_text=False)
        self._text = text
        return self._prompt_frame(t)

    @torch.inference_mode()
    def add_exemplars(self, boxes: Sequence, frame: int = 0,
                      labels: Sequence[bool] | None = None) -> FrameResult:
        """Exemplar boxes (pixel xyxy on ``frame``; ``labels`` True/1 positive, False/0
        negative, default all positive) as the concept prompt, together with the current text
        if any (else the official "visual" placeholder). Starts over like :meth:`add_text`;
        without text, new objects are only detected on ``frame``."""
        self._check_open()
        t = self._check_frame(frame)
        try:
            items = list(boxes)
        except TypeError:
            raise InputError("boxes must be a list of (x0, y0, x1, y1)") from None
        if not items:
            raise InputError("give at least one exemplar box")
        if labels is None:
            labels = [True] * len(items)
        labels = list(labels)
        if len(labels) != len(items):
            raise InputError(f"{len(items)} boxes but {len(labels)} labels")
        h, w = self.size
        b, lab = validate_exemplars(list(zip(items, [bool(v) for v in labels])), w, h)
        text = self._text
        self._reset(keep_text=True)
        self._text = text
        self._exemplars[t] = (b, lab)
        return self._prompt_frame(t)

    def _prompt_frame(self, t: int) -> FrameResult:
        self._prompt_frames.add(t)
        plan = self._step(t, reverse=False)
        out = finalize_frame(plan.record, self.size)  # official add_prompt: nothing hidden
        return self._output(out, plan.record.obj_id_to_tracker_score)

    # -- clicks ---------------------------------------------------------------------------------
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

    # -- removing -------------------------------------------------------------------------------
    @torch.inference_mode()
    def remove_object(self, obj_id: int) -> None:
        """Stop tracking an object and drop it from the results (its id is not reused)."""
        self._check_open()
        obj_id = self._check_obj(obj_id)
        self._drop_from_groups(obj_id)
        self._forget(obj_id)

    # -- propagation ----------------------------------------------------------------------------
    def propagate(self, direction: str = "forward", start: int | None = None,
                  max_frames: int | None = None) -> Iterator[tuple[int, FrameResult]]:
        """Track through the video, yielding ``(frame_idx, FrameResult)`` as frames are released
        (hotstart delay: up to 15 frames late, everything at the end of each pass).

        direction: "forward" (frames start, start+1, ...), "backward" (start, start-1, ...) or
        "both" (forward, then backward from start-1). start: default the first prompted frame
        (the last one for "backward"). max_frames: frames per pass (default: to the end).
        Arguments are checked at once (InputError); tracking happens as the iterator is consumed.
        Stopping early is allowed: frames still held by the hotstart buffer are then kept in
        :meth:`results` without being yielded.
        """
        self._check_open()
        if direction not in DIRECTIONS:
            raise InputError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if not self._prompt_frames:
            raise InputError("nothing to propagate: add a text prompt, exemplars or clicks first")
        if start is None:
            pick = max if direction == "backward" else min
            start = pick(self._prompt_frames)
        start = self._check_frame(start)
        if max_frames is not None:
            if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) \
                    or max_frames < 1:
                raise InputError(f"max_frames must be a positive integer, got {max_frames!r}")
            max_frames = int(max_frames)
        passes = []
        if direction in ("forward", "both"):
            passes.append((start, False))
        if direction == "backward":
            passes.append((start, True))
        elif direction == "both" and start > 0:
            passes.append((start - 1, True))
        return self._run(passes, max_frames)

    def _order(self, start: int, reverse: bool, max_frames: int | None) -> range:
        n = self.num_frames if max_frames is None else max_frames
        if reverse:
            return range(start, max(-1, start - n), -1)
        return range(start, min(self.num_frames, start + n))

    def _begin_pass(self, start: int, reverse: bool) -> None:
        """Point every bank in the new direction, give back the frames around the previous
        pass's start, reset the anchors, and place click objects outside the hotstart window."""
        for g in self._groups:
            for t, (mem, cond) in g.anchor.items():
                if t not in g.bank.cond and t not in g.bank.non_cond:
                    (g.bank.cond if cond else g.bank.non_cond)[t] = mem
            g.anchor = {}
            g.bank.reverse = reverse
        self._anchor_start = start
        self._anchor_reverse = reverse
        st = self._assoc.state
        for o in self._user_ids:
            st.obj_first_frame_idx[o] = _FAR if reverse else -_FAR

    def _record_anchor(self) -> None:
        """Keep (references to) this pass's first frames, for a later pass in the other
        direction from the same place (bounded: ``window`` frames per group)."""
        s, rev = self._anchor_start, self._anchor_reverse
        for g in self._groups:
            w = g.bank.window + 1
            for store, cond in ((g.bank.cond, True), (g.bank.non_cond, False)):
                for t, mem in store.items():
                    d = s - t if rev else t - s
                    if 0 <= d <= w:
                        g.anchor[t] = (mem, cond)

    def _run(self, passes, max_frames) -> Iterator[tuple[int, FrameResult]]:
        # inference mode is entered per frame, never across a yield (it is thread-local and
        # would otherwise leak into the caller's loop body)
        for start, reverse in passes:
            order = self._order(start, reverse, max_frames)
            if len(order) == 0:
                continue
            with torch.inference_mode():
                self._begin_pass(start, reverse)
            buf = OutputBuffer(self.config.hotstart_delay, self.size)
            pending: dict[int, dict] = {}
            try:
                for i, t in enumerate(order):
                    with torch.inference_mode():
                        plan = self._step(t, reverse)
                        pending[t] = plan.record.obj_id_to_tracker_score
                        if abs(t - start) <= self._window():
                            self._record_anchor()
                        outs = buf.push(plan.record, is_last=(i == len(order) - 1))
                        released = [(o.frame_idx, self._output(o, pending.pop(o.frame_idx, {})))
                                    for o in outs]
                    yield from released
            finally:
                with torch.inference_mode():
                    for out in buf.flush():
                        self._output(out, pending.pop(out.frame_idx, {}))

    def _window(self) -> int:
        c = self.tcfg
        return max(c.num_maskmem, c.max_obj_ptrs) + 1
