"""Results of a :class:`~conceptseg.inference.video.VideoSession`: :class:`FrameResult` (the
objects output on one frame), the compact per-frame store (COCO RLE, a few bytes per object
per frame) and its read-only view :class:`VideoResults`, and :class:`ResultStore`, the part of
the session that turns released frames into results and keeps them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ..ops.masks import rle_decode, rle_encode
from ..video.postprocess import FrameOutput

__all__ = ["FrameResult", "VideoResults", "ResultStore"]


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


class ResultStore:
    """VideoSession mixin: released frames -> :class:`FrameResult`, kept in ``self._store``
    unless ``self.keep_results`` is False."""

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
