"""Serialising instance results: one function per format, shared by the image results, the
command line, video results and the server.

- COCO RLE: :func:`conceptseg.ops.masks.rle_encode` (pycocotools), re-exported here.
- Polygons: :func:`masks_to_polygons`, COCO ``segmentation`` polygons traced along the pixel
  edges (exact at ``tolerance=0``) and simplified with Douglas-Peucker: every dropped vertex
  lies within ``tolerance`` pixels of the simplified outline (default
  :data:`POLYGON_TOLERANCE` = 1 px). COCO polygons cannot hold holes, so only outer outlines
  are written (one polygon per connected part); use RLE for exact masks.
- Boxes: :func:`boxes_to_xywh`, pixel ``[x, y, w, h]`` as COCO ``bbox``.

No OpenCV: the contour tracer below is some forty lines of numpy and a dictionary walk.
"""

from __future__ import annotations

from typing import List, Union

import numpy as np
from torch import Tensor

from .masks import rle_encode

__all__ = ["rle_encode", "masks_to_polygons", "mask_to_polygons", "boxes_to_xywh",
           "POLYGON_TOLERANCE"]

POLYGON_TOLERANCE = 1.0  # pixels: the default Douglas-Peucker tolerance of written polygons

_RIGHT_TURN = {(1, 0): (0, 1), (0, 1): (-1, 0), (-1, 0): (0, -1), (0, -1): (1, 0)}  # y down


def boxes_to_xywh(boxes: Union[Tensor, np.ndarray]) -> List[List[float]]:
    """``(N, 4)`` pixel xyxy -> N COCO ``[x, y, w, h]`` lists (Python floats)."""
    rows = boxes.tolist() if hasattr(boxes, "tolist") else [list(b) for b in boxes]
    return [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in rows]


def masks_to_polygons(masks: Union[Tensor, np.ndarray], tolerance: float = POLYGON_TOLERANCE
                      ) -> List[List[List[float]]]:
    """``(N, H, W)`` binary masks -> per mask a list of COCO polygons ``[x0, y0, x1, y1, ...]``
    in pixel coordinates (pixel ``(x, y)`` covers ``[x, x+1] x [y, y+1]``)."""
    m = masks.detach().cpu().bool().numpy() if isinstance(masks, Tensor) else np.asarray(masks, bool)
    if m.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {m.shape}")
    return [mask_to_polygons(x, tolerance) for x in m]


def mask_to_polygons(mask: np.ndarray, tolerance: float = POLYGON_TOLERANCE) -> List[List[float]]:
    """One ``(H, W)`` bool mask -> its outer outlines as flat COCO polygons (>= 3 points each),
    largest first."""
    rings = [r for r in _trace_rings(np.asarray(mask, bool)) if _signed_area(r) > 0]
    out = []
    for ring in sorted(rings, key=_signed_area, reverse=True):
        simple = _simplify_ring(ring, tolerance) if tolerance > 0 else ring
        if len(simple) < 3:
            simple = ring
        out.append([float(v) for v in simple.reshape(-1)])
    return out


def _trace_rings(m: np.ndarray) -> List[np.ndarray]:
    """Closed outlines along pixel edges, foreground on the right of travel (y down): outer
    outlines have positive :func:`_signed_area`, holes negative. Diagonal touches are split
    (4-connected parts), by turning right where two outlines meet at a corner."""
    p = np.pad(m, 1)
    fg = p[1:-1, 1:-1]
    edges = {}
    # side of each foreground pixel that faces background, as (start corner, direction)
    for (dy, dx), start, step in (((-1, 0), (0, 0), (1, 0)), ((0, 1), (1, 0), (0, 1)),
                                  ((1, 0), (1, 1), (-1, 0)), ((0, -1), (0, 1), (0, -1))):
        nb = p[1 + dy:p.shape[0] - 1 + dy, 1 + dx:p.shape[1] - 1 + dx]
        ys, xs = np.nonzero(fg & ~nb)
        for x, y in zip((xs + start[0]).tolist(), (ys + start[1]).tolist()):
            edges.setdefault((x, y), []).append(step)
    rings = []
    while edges:
        start = next(iter(edges))
        pt, ring, heading = start, [], None
        while True:
            outs = edges[pt]
            step = outs[0]
            if len(outs) > 1 and heading is not None and _RIGHT_TURN[heading] in outs:
                step = _RIGHT_TURN[heading]
            outs.remove(step)
            if not outs:
                del edges[pt]
            if step != heading:
                ring.append(pt)  # a corner: straight runs keep only their ends
            heading = step
            pt = (pt[0] + step[0], pt[1] + step[1])
            if pt == start:
                break
        rings.append(np.asarray(ring, dtype=np.float64))
    return rings


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _simplify_ring(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on a closed ring: split at the vertex farthest from vertex 0."""
    far = int(np.argmax(((ring - ring[0]) ** 2).sum(1)))
    if far == 0:
        return ring[:1]
    a = _simplify_open(ring[:far + 1], tolerance)
    b = _simplify_open(np.concatenate([ring[far:], ring[:1]]), tolerance)
    return np.concatenate([a[:-1], b[:-1]])


def _simplify_open(pts: np.ndarray, tolerance: float) -> np.ndarray:
    keep = np.zeros(len(pts), bool)
    keep[[0, -1]] = True
    stack = [(0, len(pts) - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        seg, rel = pts[j] - pts[i], pts[i + 1:j] - pts[i]
        norm = float(np.hypot(*seg))
        d = (np.abs(seg[0] * rel[:, 1] - seg[1] * rel[:, 0]) / norm if norm > 0
             else np.hypot(rel[:, 0], rel[:, 1]))
        k = int(np.argmax(d))
        if d[k] > tolerance:
            keep[i + 1 + k] = True
            stack += [(i, i + 1 + k), (i + 1 + k, j)]
    return pts[keep]

