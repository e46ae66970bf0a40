"""Shape outlines and pixel coverage of the second (foreign) renderer.

Written separately from the first engine's drawing code: only the shape *names* are shared.
An object is described by its centre, its circumscribed radius (every vertex lies on or inside
the circle of that radius, so "diameter" means the same for every shape) and a rotation.
Coverage is drawn with ``PIL.ImageDraw`` at ``aa`` times the final resolution inside the
object's crop; the picture's coverage is the LANCZOS down-sample (ringing clipped to [0, 1]),
the mask's coverage the exact box average (a pixel belongs to the mask when at least half of
it is covered). ``aa == 1`` draws aliased, hard-edged shapes (picture coverage = mask).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["Coverage", "outline", "coverage", "STAR_INNER", "CROSS_HALF_WIDTH"]

STAR_INNER = 0.45  # inner radius of the five-pointed star, as a share of the outer radius
CROSS_HALF_WIDTH = 0.30  # half width of the cross's arms, as a share of the radius


@dataclass
class Coverage:
    """One object's coverage in a crop of the final image (the crop may leave the image)."""

    x0: int  # column of the crop's left edge in the image
    y0: int  # row of the crop's top edge in the image
    picture: np.ndarray  # (h, w) float32 in [0, 1]: alpha used to paint the picture
    mask: np.ndarray  # (h, w) bool: the object's full (unoccluded) mask


def _ring(n: int, radius: float, start: float) -> list[tuple[float, float]]:
    return [(radius * math.cos(start + 2 * math.pi * k / n), radius * math.sin(start + 2 * math.pi * k / n))
            for k in range(n)]


def outline(shape: str, radius: float, angle: float) -> np.ndarray:
    """(N, 2) polygon vertices (x, y; y down) around the origin, rotated by ``angle`` radians."""
    up = -math.pi / 2
    if shape == "circle":
        pts = _ring(120, radius, 0.0)
    elif shape == "square":
        pts = _ring(4, radius, math.pi / 4)
    elif shape == "triangle":
        pts = _ring(3, radius, up)
    elif shape == "hexagon":
        pts = _ring(6, radius, 0.0)
    elif shape == "star":
        pts = [((radius if k % 2 == 0 else radius * STAR_INNER) * math.cos(up + k * math.pi / 5),
                (radius if k % 2 == 0 else radius * STAR_INNER) * math.sin(up + k * math.pi / 5))
               for k in range(10)]
    elif shape == "cross":
        w = CROSS_HALF_WIDTH * radius
        arm = math.sqrt(radius * radius - w * w)  # the arm's corners touch the circumscribed circle
        pts = [(-w, -arm), (w, -arm), (w, -w), (arm, -w), (arm, w), (w, w),
               (w, arm), (-w, arm), (-w, w), (-arm, w), (-arm, -w), (-w, -w)]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    p = np.asarray(pts, dtype=np.float64)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([p[:, 0] * c - p[:, 1] * s, p[:, 0] * s + p[:, 1] * c], 1)


def coverage(shape: str, cx: float, cy: float, radius: float, angle: float, aa: int) -> Coverage:
    """Coverage of one shape centred at (cx, cy) pixels (pixel centres at +0.5)."""
    x0, y0 = math.floor(cx - radius) - 2, math.floor(cy - radius) - 2
    w, h = math.ceil(cx + radius) + 2 - x0, math.ceil(cy + radius) + 2 - y0
    big = Image.new("L", (w * aa, h * aa), 0)
    draw = ImageDraw.Draw(big)
    ox, oy = (cx - x0) * aa, (cy - y0) * aa
    if shape == "circle":  # a true ellipse primitive, not a polygon
        r = radius * aa
        draw.ellipse([ox - r, oy - r, ox + r, oy + r], fill=255)
    else:
        pts = outline(shape, radius * aa, angle) + np.array([ox, oy])
        draw.polygon([tuple(p) for p in pts.tolist()], fill=255)
    if aa == 1:
        hard = np.asarray(big, dtype=np.float32) / 255.0
        return Coverage(x0, y0, hard, hard >= 0.5)
    box = np.asarray(big, dtype=np.float32).reshape(h, aa, w, aa).mean(axis=(1, 3)) / 255.0
    soft = np.asarray(big.resize((w, h), Image.LANCZOS), dtype=np.float32) / 255.0
    return Coverage(x0, y0, np.clip(soft, 0.0, 1.0), box >= 0.5)
