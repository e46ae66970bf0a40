"""Results of a :class:`~conceptseg.inference.video.VideoSession`: :class:`FrameResult` (the one
public per-frame type: the objects output on one frame), :class:`StoredFrame` (the compact
record a session keeps per released frame: COCO RLE, a few bytes per object), its read-only
view :class:`VideoResults`, and :func:`objects_json`, the one JSON form of a frame's objects
(used by :meth:`FrameResult.to_json`, :meth:`VideoResults.to_json` and ``conceptseg track
--json``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ...ops.boxes import masks_to_boxes
from ...ops.masks import rle_area, rle_decode, rle_encode

__all__ = ["FrameResult", "StoredFrame", "VideoResults", "frame_result", "objects_json",
           "with_stored_objects"]


@dataclass(repr=False)
class FrameResult:
    """The objects output on one frame.

    obj_ids (N,) int64 ascending; masks (N, H, W) bool at the video size; boxes (N, 4) float32
    pixel xyxy of the final mask, (x0, y0) the top-left mask pixel and (x1, y1) one past the
    bottom-right one (all zeros for an empty mask); scores (N,) the detection score of each
    object when it was created (1.0 for click objects); boxes_xywh (N, 4) the same boxes in
    the official normalised xywh form (inclusive pixel indices / video size); frame_stats the
    official per-frame counters; clicked_obj_id the object that
    :meth:`VideoSession.add_clicks` created or refined (also when its mask came out empty and
    it is not among ``obj_ids``); phrases (N,) the concept prompt each object came from
    (``None`` for click objects), aligned with ``obj_ids``.

    A tracked object can lose every pixel to the non-overlap constraint: it stays in
    ``obj_ids`` (as officially) and :attr:`empty` marks it; :meth:`to_json` lists it under
    ``"empty"`` instead of ``"objects"``.
    """

    frame_idx: int
    obj_ids: Tensor
    masks: Tensor
    boxes: Tensor
    scores: Tensor
    boxes_xywh: Tensor
    frame_stats: dict | None = None
    clicked_obj_id: int | None = None
    phrases: list = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.obj_ids.numel())

    def __repr__(self) -> str:
        h, w = self.size
        return (f"FrameResult(frame={self.frame_idx}, obj_ids={self.obj_ids.tolist()}, "
                f"empty={self.obj_ids[self.empty].tolist()}, size={w}x{h})")

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.masks.shape[-2:])

    @property
    def empty(self) -> Tensor:
        """(N,) bool: objects with no pixel on this frame (lost to the non-overlap step)."""
        return ~self.masks.flatten(1).any(1) if len(self) else torch.zeros(0, dtype=torch.bool)

    def as_official_dict(self) -> dict:
        """The official ``propagate_in_video`` output keys."""
        return {"out_obj_ids": self.obj_ids, "out_probs": self.scores,
                "out_boxes_xywh": self.boxes_xywh, "out_binary_masks": self.masks,
                "frame_stats": self.frame_stats}

    def to_json(self) -> dict:
        """``{"frame", "objects": [{id, score, box, rle, phrase}], "empty": [ids]}``."""
        rles = rle_encode(self.masks) if len(self) else []
        return {"frame": self.frame_idx, **objects_json(
            self.obj_ids.tolist(), self.scores.tolist(), self.boxes.tolist(), rles, self.phrases)}


def frame_result(frame_idx: int, obj_ids: list[int], scores: list[float], masks: Tensor,
                 frame_stats: dict | None = None, phrases: list | None = None) -> FrameResult:
    """A :class:`FrameResult` from final masks (N, H, W) bool: boxes computed from them."""
    h, w = masks.shape[-2:]
    b = masks_to_boxes(masks).float()  # inclusive pixel indices, zeros when empty
    if len(obj_ids):
        xywh = torch.stack([b[:, 0] / w, b[:, 1] / h, (b[:, 2] - b[:, 0]) / w,
                            (b[:, 3] - b[:, 1]) / h], dim=1)
        nonempty = masks.flatten(1).any(1)[:, None]
        px = torch.where(nonempty, b + torch.tensor([0.0, 0.0, 1.0, 1.0]), b)
    else:
        xywh = px = torch.zeros(0, 4)
    return FrameResult(frame_idx, torch.tensor(obj_ids, dtype=torch.int64), masks.bool(), px,
                       torch.tensor(scores, dtype=torch.float32), xywh, frame_stats,
                       phrases=list(phrases) if phrases is not None else [None] * len(obj_ids))


def with_stored_objects(res: FrameResult, prev: StoredFrame, obj_ids: set[int],
                        num_tracked: int) -> FrameResult:
    """``res`` with the objects ``obj_ids`` of the stored frame ``prev`` (the same frame) added
    as they were stored (another concept's objects: no non-overlap between them)."""
    keep = [k for k, o in enumerate(prev.obj_ids) if o in obj_ids]
    if not keep:
        return res
    ids = [prev.obj_ids[k] for k in keep] + res.obj_ids.tolist()
    scores = [prev.scores[k] for k in keep] + res.scores.tolist()
    masks = torch.cat([prev.masks(res.size)[keep], res.masks])
    order = sorted(range(len(ids)), key=lambda k: ids[k])
    stats = dict(res.frame_stats or {}, num_obj_tracked=num_tracked)
    return frame_result(res.frame_idx, [ids[k] for k in order], [scores[k] for k in order],
                        masks[order], stats)


def objects_json(obj_ids, scores, boxes, rles, phrases) -> dict:
    """The one JSON form of a frame's objects: non-empty ones under ``"objects"`` (id, score,
    pixel box xyxy, COCO RLE, phrase), the ids of empty ones under ``"empty"``."""
    objects, empty = [], []
    phrases = list(phrases) if phrases else [None] * len(obj_ids)
    for i, s, b, r, p, a in zip(obj_ids, scores, boxes, rles, phrases, rle_area(rles).tolist()):
        if a == 0:
            empty.append(int(i))
            continue
        objects.append({"id": int(i), "score": float(s), "box": [float(v) for v in b], "rle": r,
                        "phrase": p})
    return {"objects": objects, "empty": empty}


@dataclass(repr=False)
class StoredFrame:
    """A released frame as a session keeps it (plus what merging a later click result needs)."""

    obj_ids: list[int]  # ascending
    scores: list[float]  # detection score at creation per object
    boxes: Tensor  # (N, 4) float32 pixel xyxy of the final masks
    boxes_xywh: Tensor  # (N, 4) float32 official normalised xywh
    rles: list[dict]  # COCO RLE of the final masks
    tracker_scores: dict[int, float]  # this frame's tracker score per object (non-overlap ties)
    frame_stats: dict | None  # official per-frame counters
    phrases: list = field(default_factory=list)  # concept prompt per object (None: clicks)

    def __repr__(self) -> str:
        return f"StoredFrame(obj_ids={self.obj_ids})"

    @classmethod
    def of(cls, res: FrameResult, tracker_scores: dict) -> "StoredFrame":
        return cls(res.obj_ids.tolist(), res.scores.tolist(), res.boxes.clone(),
                   res.boxes_xywh.clone(), rle_encode(res.masks) if len(res) else [],
                   {int(k): float(v) for k, v in tracker_scores.items()}, res.frame_stats,
                   list(res.phrases))

    def drop(self, obj_id: int) -> None:
        """Remove one object (a removed object disappears from every stored frame)."""
        if obj_id not in self.obj_ids:
            return
        keep = [i for i, o in enumerate(self.obj_ids) if o != obj_id]
        self.obj_ids = [self.obj_ids[i] for i in keep]
        self.scores = [self.scores[i] for i in keep]
        self.rles = [self.rles[i] for i in keep]
        if self.phrases:
            self.phrases = [self.phrases[i] for i in keep]
        self.boxes = self.boxes[keep]
        self.boxes_xywh = self.boxes_xywh[keep]

    def masks(self, size: tuple[int, int]) -> Tensor:
        h, w = size
        return rle_decode(self.rles) if self.rles else torch.zeros(0, h, w, dtype=torch.bool)


class VideoResults(Mapping):
    """Frame index -> :class:`FrameResult` for every frame released so far (masks decoded on
    access; the store itself holds RLE)."""

    def __init__(self, store: dict[int, StoredFrame], size: tuple[int, int]):
        self._store = store
        self._size = size

    def __repr__(self) -> str:
        return f"VideoResults({len(self)} frames, obj_ids={self.obj_ids})"

    def __getitem__(self, t: int) -> FrameResult:
        s = self._store[t]
        return FrameResult(t, torch.tensor(s.obj_ids, dtype=torch.int64), s.masks(self._size),
                           s.boxes.clone(), torch.tensor(s.scores, dtype=torch.float32),
                           s.boxes_xywh.clone(), s.frame_stats,
                           phrases=list(s.phrases) or [None] * len(s.obj_ids))

    def __iter__(self):
        return iter(sorted(self._store))

    def __len__(self) -> int:
        return len(self._store)

    @property
    def obj_ids(self) -> list[int]:
        """Every object id output with a non-empty mask on some frame, ascending."""
        return sorted({i for s in self._store.values()
                       for i, a in zip(s.obj_ids, rle_area(s.rles).tolist()) if a > 0})

    def to_json(self) -> dict:
        """Per-frame COCO RLE masks per object id (``frames`` sorted by index; see
        :func:`objects_json`)."""
        h, w = self._size
        frames = [{"frame": t, **objects_json(s.obj_ids, s.scores, s.boxes.tolist(), s.rles,
                                              s.phrases)}
                  for t, s in ((t, self._store[t]) for t in self)]
        return {"height": h, "width": w, "obj_ids": self.obj_ids, "frames": frames}
