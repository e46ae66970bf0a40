"""One :class:`~conceptseg.inference.results.Prediction` → the API's PhraseResult (docs/API.md),
with the masks in any of the contract's formats (:func:`phrase_result`); likewise a
:class:`~conceptseg.inference.results.Refinement` (:func:`refine_masks`) and a video
:class:`~conceptseg.inference.video.FrameResult` (:func:`frame_objects`). Shared by the HTTP
server and the MCP tool.

Formats (:data:`MASK_FORMATS`):
- ``"rle"``: COCO compressed RLE ``{"size": [h, w], "counts": str}`` (pycocotools);
- ``"polygon"``: list of flat ``[x0, y0, x1, y1, ...]`` outer outlines in pixels, simplified
  within ``tolerance`` px (:func:`conceptseg.ops.encode.masks_to_polygons`);
- ``"png"``: base64 of a 1-bit PNG at the image size;
- ``"none"``: no mask (``null``), boxes, scores and areas only.
"""

from __future__ import annotations

import base64
import io

import torch
from PIL import Image

from ..errors import InputError
from ..inference.results import Prediction, Refinement
from ..inference.video import FrameResult
from ..ops.boxes import masks_to_boxes
from ..ops.encode import POLYGON_TOLERANCE, masks_to_polygons, rle_encode

__all__ = ["MASK_FORMATS", "encode_masks", "mask_areas", "phrase_result", "png_base64",
           "check_format", "mask_boxes", "refine_masks", "frame_objects"]

MASK_FORMATS = ("rle", "polygon", "png", "none")  # the contract's mask formats


def check_format(fmt: str) -> str:
    """``fmt`` if it is one of :data:`MASK_FORMATS`, else a one-line :class:`InputError`."""
    if fmt not in MASK_FORMATS:
        raise InputError(f"format must be one of {', '.join(MASK_FORMATS)}, got {fmt!r}")
    return fmt


def png_base64(mask: torch.Tensor) -> str:
    """One (H, W) bool mask → base64 of a 1-bit PNG of the same size."""
    img = Image.fromarray(mask.detach().cpu().bool().numpy()).convert("1")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def encode_masks(masks: torch.Tensor, fmt: str, tolerance: float = POLYGON_TOLERANCE) -> list:
    """(N, H, W) bool masks → N masks in format ``fmt`` (``None`` each for ``"none"``)."""
    check_format(fmt)
    n = int(masks.shape[0])
    if n == 0 or fmt == "none":
        return [None] * n
    if fmt == "rle":
        return rle_encode(masks)
    if fmt == "polygon":
        if not tolerance >= 0:  # also refuses NaN
            raise InputError(f"tolerance must be >= 0 pixels, got {tolerance}")
        return masks_to_polygons(masks, tolerance)
    return [png_base64(m) for m in masks]


def mask_areas(masks: torch.Tensor) -> list[int]:
    """(N, H, W) bool → N pixel counts."""
    if masks.shape[0] == 0:
        return []
    return [int(a) for a in masks.flatten(1).sum(1).tolist()]


def phrase_result(pred: Prediction, fmt: str = "rle", tolerance: float = POLYGON_TOLERANCE,
                  concept_id: str | None = None, max_instances: int | None = None) -> dict:
    """The contract's PhraseResult for one prompt on one image::

        {"text", "concept_id", "presence", "no_match", "count",
         "instances": [{"id", "score", "box_xyxy", "area", "mask"}]}

    Instances keep the prediction's order (best score first) and are numbered 0.. within the
    phrase; ``max_instances`` keeps the first that many. ``no_match`` is true when no instance
    passed the threshold the prediction was made with.
    """
    check_format(fmt)
    n = len(pred) if max_instances is None else min(len(pred), max(0, int(max_instances)))
    masks = pred.masks[:n]
    h, w = pred.image_size
    boxes = pred.boxes[:n].float().clamp(min=0)
    if n:
        boxes[:, 0::2] = boxes[:, 0::2].clamp(max=float(w))
        boxes[:, 1::2] = boxes[:, 1::2].clamp(max=float(h))
    encoded = encode_masks(masks, fmt, tolerance)
    instances = [{"id": i, "score": float(s), "box_xyxy": [float(v) for v in b],
                  "area": a, "mask": m}
                 for i, (s, b, a, m) in enumerate(zip(pred.scores[:n].tolist(), boxes.tolist(),
                                                      mask_areas(masks), encoded))]
    return {"text": pred.text, "concept_id": concept_id, "presence": float(pred.presence),
            "no_match": n == 0, "count": n, "instances": instances}


def mask_boxes(masks: torch.Tensor) -> list[list[float]]:
    """(N, H, W) bool → N pixel-edge boxes ``[x0, y0, x1, y1]`` (x1, y1 one past the last mask
    pixel; zeros for an empty mask)."""
    if masks.shape[0] == 0:
        return []
    b = masks_to_boxes(masks).float()
    b = torch.where(masks.flatten(1).any(1)[:, None], b + torch.tensor([0.0, 0.0, 1.0, 1.0]), b)
    return [[float(v) for v in row] for row in b.tolist()]


def refine_masks(ref: Refinement, fmt: str = "rle", tolerance: float = POLYGON_TOLERANCE
                 ) -> list[dict]:
    """A :class:`~conceptseg.inference.results.Refinement` → ``[{"score", "box_xyxy", "area",
    "mask"}]``, best first."""
    masks = ref.masks
    return [{"score": float(s), "box_xyxy": b, "area": a, "mask": m}
            for s, b, a, m in zip(ref.scores.tolist(), mask_boxes(masks), mask_areas(masks),
                                  encode_masks(masks, fmt, tolerance))]


def frame_objects(fr: FrameResult, fmt: str = "rle", tolerance: float = POLYGON_TOLERANCE
                  ) -> list[dict]:
    """One video frame's objects with pixels (objects emptied by the non-overlap step are left
    out) → ``[{"obj_id", "phrase", "score", "box_xyxy", "area", "mask"}]``."""
    if not len(fr):
        return []
    keep = torch.nonzero(~fr.empty).flatten()
    masks = fr.masks[keep]
    phrases = list(fr.phrases) if fr.phrases else [None] * len(fr)
    return [{"obj_id": int(fr.obj_ids[i]), "phrase": phrases[i], "score": float(fr.scores[i]),
             "box_xyxy": [float(v) for v in fr.boxes[i].tolist()], "area": a, "mask": m}
            for i, a, m in zip(keep.tolist(), mask_areas(masks),
                               encode_masks(masks, fmt, tolerance))]
