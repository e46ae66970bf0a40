"""COCO-style image predictions: loading and validating a results list against the ground truth.

Each entry needs ``image_id`` (a GT datapoint id), ``score`` in [0, 1] and a ``segmentation``
(RLE dict of the image's size) and/or ``bbox`` (xywh).  Both the plain COCO results list and
the line format of :class:`~conceptseg.evaluate.writer.PredictionWriter` are read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ..errors import EvalInputError
from .ground_truth import GroundTruth
from .inputs import PathLike, is_number, load_json
from .segmentation import parse_geometry

__all__ = ["Prediction", "Predictions", "load_predictions"]


@dataclass(frozen=True)
class Prediction:
    """One validated prediction; ``index`` is its position in the input list."""

    index: int
    image_id: int
    score: float
    segmentation: dict | None
    bbox: tuple[float, float, float, float] | None


@dataclass
class Predictions:
    """Validated predictions grouped by datapoint, each list in input order."""

    by_image: dict[int, list[Prediction]]
    count: int

    def for_image(self, image_id: int) -> list[Prediction]:
        return self.by_image.get(image_id, [])


def _flatten_jsonl_records(records: Iterable[Any]) -> list[Any]:
    """Accept both plain result lists and the PredictionWriter line format."""
    out: list[Any] = []
    for r in records:
        if isinstance(r, dict) and set(r) == {"header"}:
            continue  # the writer's resume key line
        if isinstance(r, dict) and "predictions" in r and "score" not in r:
            out.extend(r["predictions"])
        else:
            out.append(r)
    return out


def load_predictions(preds: PathLike | Sequence[Mapping[str, Any]], gt: GroundTruth, validate_rle: bool = True) -> Predictions:
    """Validate a COCO results list (or a path to one) against ``gt``.

    ``category_id`` is ignored: every datapoint has exactly one concept.  ``validate_rle=False``
    skips the (pure numpy, ~0.1 ms per mask) check that every RLE decodes to height*width pixels.
    """
    if isinstance(preds, (str, os.PathLike)):
        preds = load_json(preds)
    if not isinstance(preds, (list, tuple)):
        raise EvalInputError(f"predictions must be a list of objects, got {type(preds).__name__}")
    preds = _flatten_jsonl_records(preds)
    by_image: dict[int, list[Prediction]] = {}
    for i, p in enumerate(preds):
        iid = p.get("image_id") if isinstance(p, dict) else None
        where = f"prediction {i} (image_id={iid!r})"
        if not isinstance(p, dict):
            raise EvalInputError(f"{where}: not an object", i, iid)
        if "image_id" not in p:
            raise EvalInputError(f"{where}: missing 'image_id'", i, iid)
        if iid not in gt.datapoints:
            raise EvalInputError(f"{where}: unknown image_id (not a datapoint of the ground truth)", i, iid)
        if "score" not in p:
            raise EvalInputError(f"{where}: missing 'score'", i, iid)
        score = p["score"]
        if not is_number(score) or not 0.0 <= float(score) <= 1.0:
            raise EvalInputError(f"{where}: score must be a number in [0, 1], got {score!r}", i, iid)
        dp = gt.datapoints[iid]
        try:
            rle, box = parse_geometry(p.get("segmentation"), p.get("bbox"), dp.height, dp.width,
                                      polygons=False, validate=validate_rle,
                                      seg_problem="malformed segmentation: ")
        except EvalInputError as e:
            raise EvalInputError(f"{where}: {e}", i, iid) from e
        by_image.setdefault(iid, []).append(Prediction(i, iid, float(score), rle, box))
    return Predictions(by_image, len(preds))
