"""Video predictions: a YTVIS results list (one masklet per entry), loaded and validated
against the ground truth."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ...errors import EvalInputError
from ..inputs import is_int, is_number, load_source
from ..segmentation import check_rle, to_compressed_rle
from .ground_truth import VideoGroundTruth

__all__ = ["VideoPrediction", "load_video_predictions"]


@dataclass
class VideoPrediction:
    """One predicted masklet; ``index`` is its position in the input list."""

    index: int
    video_id: int
    category_id: int
    score: float
    segmentations: list[dict | None]


def load_video_predictions(src: str | os.PathLike | Sequence[Mapping[str, Any]], gt: VideoGroundTruth,
                           validate_rle: bool = True) -> list[VideoPrediction]:
    """Read + validate a YTVIS results list against ``gt``: known ``video_id``, integer
    ``category_id`` (a phrase id; ids absent from the GT make extra negative pairs, as
    officially), finite ``score``, one RLE or null per frame of the video.  ``validate_rle``
    also checks every RLE decodes to the video's height x width."""
    data, where = load_source(src, "predictions")
    if not isinstance(data, list):
        raise EvalInputError(f"{where}: video predictions must be a list of YTVIS results")
    out = []
    for i, d in enumerate(data):
        if not isinstance(d, Mapping):
            raise EvalInputError(f"{where}: entry {i} is not an object", i)
        vid, cid, score = d.get("video_id"), d.get("category_id"), d.get("score")
        if vid not in gt.videos:
            raise EvalInputError(f"{where}: entry {i}: unknown video_id {vid!r}", i, vid)
        if not is_int(cid):
            raise EvalInputError(f"{where}: entry {i}: missing or non-integer category_id", i, vid)
        if not is_number(score):
            raise EvalInputError(f"{where}: entry {i}: 'score' must be a finite number", i, vid)
        v = gt.videos[vid]
        segs = d.get("segmentations")
        if not isinstance(segs, list) or len(segs) != v.length:
            raise EvalInputError(f"{where}: entry {i}: 'segmentations' must list one RLE or null per frame "
                                 f"({v.length} for video {vid}), got "
                                 f"{len(segs) if isinstance(segs, list) else type(segs).__name__}", i, vid)
        clean = []
        for t, s in enumerate(segs):
            if s is None:
                clean.append(None)
                continue
            try:
                if validate_rle:
                    check_rle(s, v.height, v.width)
                clean.append(to_compressed_rle(s, v.height, v.width))
            except (EvalInputError, TypeError, ValueError, KeyError) as e:
                raise EvalInputError(f"{where}: entry {i}, frame {t}: {e}", i, vid) from e
        out.append(VideoPrediction(i, vid, cid, float(score), clean))
    return out
