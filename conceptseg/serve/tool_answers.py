"""Answers shaped for a language model: the HTTP API's PhraseResult
(:func:`.results.phrase_result`) plus what an LLM needs to reason without being misled.

Per phrase:
- ``present``: at least one instance scored above the threshold (score = query probability x
  presence, so ``present`` implies ``presence`` > threshold). When the presence score passes the
  threshold but no instance does, ``present`` is false and the summary says the concept may be
  there at a lower threshold.
- ``count``: every instance above the threshold; ``listed``: how many are in ``instances``
  (the ``max_instances`` best, the only ones whose full-size masks are decoded).
- ``summary``: one plain line, e.g. "3 instances of 'red car', scores 0.91-0.62",
  "no 'zebra' found (presence 0.03)".
Polygons are outer outlines as ``[[x, y], ...]`` integer pixel corners, simplified with
Douglas-Peucker within :func:`polygon_tolerance` (coarser, doubling, for an outline that would
keep more than :data:`MAX_POLYGON_POINTS` points); at most :data:`MAX_PARTS` parts, largest first.
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from ..inference.results import Prediction, Refinement
from ..ops.boxes import masks_to_boxes
from ..ops.encode import mask_to_polygons
from .results import encode_masks, phrase_result

MAX_POLYGON_POINTS = 64  # vertices per instance outline (all parts together) in an answer
MAX_PARTS = 4  # connected parts listed per instance, largest first


def polygon_tolerance(width: int, height: int) -> float:
    """The base outline tolerance for an image: 1 px, or 0.5 % of its longer side if larger."""
    return round(max(1.0, 0.005 * max(width, height)), 2)


def clip_box(box, width: int, height: int, what: str) -> list[float]:
    """A pixel xyxy box clipped to the image; one that misses the image, is inverted or empty
    after clipping, or is not four finite numbers is an :class:`InputError`."""
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be [x0, y0, x1, y1] in pixels") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise InputError(f"{what} has a non-finite coordinate")
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"{what} [{x0:g}, {y0:g}, {x1:g}, {y1:g}] needs x0 < x1 and y0 < y1")
    c = [min(max(x0, 0.0), width), min(max(y0, 0.0), height),
         min(max(x1, 0.0), width), min(max(y1, 0.0), height)]
    if c[2] - c[0] < 1 or c[3] - c[1] < 1:
        raise InputError(f"{what} [{x0:g}, {y0:g}, {x1:g}, {y1:g}] lies outside the "
                         f"{width}x{height} image")
    return c


def model_label(shipped: bool, parameters: int) -> str:
    """One line naming the model in every answer."""
    if shipped:
        return "conceptseg shipped demo model (synthetic colours and shapes only)"
    return f"SAM 3 checkpoint ({parameters / 1e6:.0f}M parameters)"


def outline(mask: torch.Tensor, tolerance: float) -> list[list[list[int]]]:
    """One (H, W) bool mask -> at most MAX_PARTS simplified outer outlines as [[x, y], ...]."""
    m = mask.detach().cpu().numpy()
    tol = tolerance
    while True:
        parts = mask_to_polygons(m, tol)[:MAX_PARTS]
        if sum(len(p) // 2 for p in parts) <= MAX_POLYGON_POINTS or tol > max(m.shape):
            break
        tol *= 2
    return [[[round(p[i]), round(p[i + 1])] for i in range(0, len(p), 2)]
            for p in parts]


def _box(b) -> list[float]:
    return [round(float(v), 1) for v in b]


def summary(phrase: str, count: int, listed: int, scores: list[float], presence: float,
            threshold: float) -> str:
    if count == 0:
        if presence > threshold:
            return (f"no instance of {phrase!r} scored above the threshold {threshold:g}, though "
                    f"the concept's presence score is {presence:.2f}: it may be there (try a "
                    "lower threshold)")
        return f"no {phrase!r} found (presence {presence:.2f})"
    noun = "instance" if count == 1 else "instances"
    if listed < count:
        return (f"{count} {noun} of {phrase!r}; the {listed} best listed, scores "
                f"{scores[0]:.2f}-{scores[listed - 1]:.2f}")
    return f"{count} {noun} of {phrase!r}, " + (
        f"score {scores[0]:.2f}" if count == 1 else f"scores {scores[0]:.2f}-{scores[-1]:.2f}")


def phrase_answer(pred: Prediction, threshold: float, max_instances: int, output: str) -> dict:
    """One phrase's answer: PhraseResult fields for the LLM (see the module docstring)."""
    base = phrase_result(pred, fmt="rle" if output == "rle" else "none",
                         max_instances=max_instances)
    listed = base["count"]
    count = listed if pred.num_found is None else max(pred.num_found, listed)
    tol = polygon_tolerance(pred.image_size[1], pred.image_size[0])
    instances = []
    for inst, mask in zip(base["instances"], pred.masks[:listed]):
        item = {"id": inst["id"], "score": round(inst["score"], 3), "box": _box(inst["box_xyxy"]),
                "area": inst["area"]}
        if output == "polygons":
            item["polygons"] = outline(mask, tol)
        elif output == "rle":
            item["rle"] = inst["mask"]
        instances.append(item)
    scores = [float(s) for s in pred.scores.tolist()]
    return {"phrase": pred.text, "present": count > 0, "presence": round(base["presence"], 4),
            "count": count, "listed": listed,
            "summary": summary(pred.text, count, listed, scores, base["presence"], threshold),
            "instances": instances}


def refine_answer(ref: Refinement, output: str, instance) -> dict:
    """The best refined mask: score (predicted IoU), box (pixel edges), area, outline/RLE."""
    mask = ref.masks[0]
    area = int(mask.sum())
    box = (masks_to_boxes(mask[None])[0] + torch.tensor([0.0, 0.0, 1.0, 1.0])).tolist() \
        if area else [0.0, 0.0, 0.0, 0.0]
    h, w = mask.shape
    item = {"score": round(float(ref.scores[0]), 3), "box": _box(box), "area": area}
    if output == "polygons":
        item["polygons"] = outline(mask, polygon_tolerance(w, h))
    elif output == "rle":
        item["rle"] = encode_masks(mask[None], "rle")[0]
    start = (f" of {instance[0].text!r} #{instance[1]}" if instance is not None else "")
    text = (f"refined mask{start}: {area} pixels, box {[round(v) for v in box]}, predicted "
            f"IoU {item['score']:.2f}") if area else \
        f"the refined mask{start} is empty: try other points or a box"
    return {"mask": item, "summary": text}
