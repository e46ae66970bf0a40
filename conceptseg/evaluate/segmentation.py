"""COCO segmentations as the evaluators take them: validated, normalised to compressed RLE, and
box-only entries rasterised the way the official loader does.

pycocotools' C parser of a compressed ``counts`` string silently accepts garbage and then scores
a wrong mask; inputs of an evaluation come from outside, so :func:`check_rle` parses the string
first (``ops.masks.rle_counts``) and rejects a malformed one with a message.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from ..errors import EvalInputError, InputError
from ..ops.masks import rle_counts, rle_to_xywh
from .inputs import check_box

__all__ = ["decode_counts_string", "check_rle", "to_compressed_rle", "box_to_rle", "rle_to_box",
           "parse_geometry"]


def decode_counts_string(s: str) -> np.ndarray:
    """:func:`conceptseg.ops.masks.rle_counts`, its errors as :class:`EvalInputError`."""
    try:
        return rle_counts(s)
    except EvalInputError:
        raise
    except InputError as e:
        raise EvalInputError(str(e)) from None


def check_rle(rle: Any, height: int | None = None, width: int | None = None) -> None:
    """Validate an RLE dict (compressed string or uncompressed list counts); raise
    :class:`EvalInputError` naming the defect.

    Checks: dict with ``size`` [h, w] and ``counts``; size equals (height, width) when
    given; run lengths are non-negative and sum to h*w.
    """
    if not isinstance(rle, dict):
        raise EvalInputError(f"segmentation must be an RLE dict, got {type(rle).__name__}")
    if "size" not in rle or "counts" not in rle:
        raise EvalInputError("RLE must have 'size' and 'counts'")
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and v >= 0 for v in size)
    ):
        raise EvalInputError(f"RLE size must be [height, width] of non-negative ints, got {size!r}")
    h, w = int(size[0]), int(size[1])
    if height is not None and width is not None and (h, w) != (int(height), int(width)):
        raise EvalInputError(f"RLE size {[h, w]} does not match image size {[int(height), int(width)]}")
    counts = rle["counts"]
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError as e:
            raise EvalInputError("counts bytes are not ASCII") from e
    if isinstance(counts, str):
        runs = decode_counts_string(counts)
    elif isinstance(counts, (list, tuple)):
        if not all(isinstance(v, (int, np.integer)) for v in counts):
            raise EvalInputError("uncompressed RLE counts must be integers")
        runs = [int(v) for v in counts]
    else:
        raise EvalInputError(f"RLE counts must be a string or a list of ints, got {type(counts).__name__}")
    if len(runs) and min(runs) < 0:
        raise EvalInputError("RLE has a negative run length")
    total = int(sum(runs))
    if total != h * w:
        raise EvalInputError(f"RLE run lengths sum to {total}, expected height*width = {h * w}")


def to_compressed_rle(seg: Any, height: int, width: int) -> dict:
    """Convert a COCO segmentation (polygon list, uncompressed or compressed RLE) to a
    compressed RLE dict with ``str`` counts (what ``COCO.annToRLE`` does)."""
    if isinstance(seg, list):  # polygons -> merge parts into one mask
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    elif isinstance(seg, dict):
        rle = dict(seg)
    else:
        raise EvalInputError(f"unsupported segmentation type {type(seg).__name__}")
    if isinstance(rle.get("counts"), bytes):
        rle["counts"] = rle["counts"].decode("ascii")
    rle["size"] = [int(rle["size"][0]), int(rle["size"][1])]
    return rle


def box_to_rle(box: Sequence[float], height: int, width: int) -> dict:
    """Rasterise an xywh box the way the official loader does for box-only results
    (a 4-point polygon ``[x1,y1, x1,y2, x2,y2, x2,y1]`` passed to ``frPyObjects``)."""
    x, y, w, h = (float(v) for v in box)
    poly = [[x, y, x, y + h, x + w, y + h, x + w, y]]
    return to_compressed_rle(poly, height, width)


def rle_to_box(rle: dict) -> list[float]:
    """Tight xywh box of an RLE mask, as the official loader gives mask-only results."""
    return [float(v) for v in rle_to_xywh([rle])[0]]


def parse_geometry(seg: Any, box: Any, height: int, width: int, *, polygons: bool,
                   validate: bool = True, seg_problem: str = "") -> tuple[dict | None, tuple | None]:
    """(compressed RLE or None, xywh float tuple or None) of one GT annotation or prediction,
    or :class:`EvalInputError` naming the defect (the caller prefixes where it is).

    ``polygons``: polygon lists are accepted (ground truth); otherwise only RLE dicts, as the
    official ``loadRes`` ("only support compressed RLE format as segmentation results").
    ``validate``: check the RLE run lengths (see :func:`check_rle`). ``seg_problem`` prefixes
    the message of a bad segmentation."""
    if seg is None and box is None:
        raise EvalInputError("needs 'segmentation' and/or 'bbox'")
    if box is not None and (problem := check_box(box)):
        raise EvalInputError(problem)
    rle = None
    if seg is not None:
        try:
            if isinstance(seg, dict):
                if validate:
                    check_rle(seg, height, width)
            elif not polygons:
                raise EvalInputError("segmentation must be an RLE dict")
            elif not (isinstance(seg, list) and seg and all(isinstance(p, list) and len(p) >= 6 for p in seg)):
                raise EvalInputError("segmentation must be an RLE dict or a non-empty list of polygons")
            rle = to_compressed_rle(seg, height, width)
        except EvalInputError as e:
            raise EvalInputError(f"{seg_problem}{e}") from e
    return rle, tuple(float(v) for v in box) if box is not None else None
