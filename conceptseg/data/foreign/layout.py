"""Scenes of the second (foreign) renderer: image size, objects, absolute sizes, placement with
occlusion, and the phrases asked of each scene (one positive and one hard negative per phrase
form).

Size rule: image sizes run from 320x240 to 640x480 (width 320-640, height 0.6-0.85 of the width,
within 240-480). Each scene draws a base diameter ``s`` in [5 %, 16 %] of the image's shorter
side; its "small" objects get diameters in [s, 1.25 s], its "large" ones in [2 s, min(4 s, 33 %)]
(diameter = the circumscribed circle's). So within one image every large object is at least
1.6 times any small one, and every image shows both sizes; across images the absolute sizes
overlap (a large object in one image may be smaller than a small one in another): "small" and
"large" are only relative to the other objects of the same image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..phrases import COLORS, FILLS, SHAPES, SIZES
from .geometry import coverage
from .paint import background, fill_layer, finish, paint

__all__ = ["FORMS", "ForeignObject", "ForeignDatapoint", "ForeignScene", "render_foreign",
           "phrase_for", "SMALL_BASE", "LARGE_FACTOR"]

SMALL_BASE = (0.05, 0.16)  # base diameter s, share of the shorter image side
SMALL_SPREAD = 1.25  # small objects: [s, 1.25 s]
LARGE_FACTOR = (2.0, 4.0)  # large objects: [2 s, 4 s], capped at MAX_SIDE_SHARE
MAX_SIDE_SHARE = 0.33
MIN_VISIBLE = 0.55  # each object keeps at least this share of its own mask visible
_VALUES = {"size": SIZES, "fill": FILLS, "color": COLORS, "shape": SHAPES}
_ORDER = ("size", "fill", "color", "shape")

#: phrase form -> the attributes it names ("colour+object" says "object" for the noun)
FORMS: dict[str, tuple[str, ...]] = {
    "colour+object": ("color",),
    "colour+shape": ("color", "shape"),
    "size+colour+shape": ("size", "color", "shape"),
    "fill+shape": ("fill", "shape"),
    "shape": ("shape",),
}


@dataclass
class ForeignObject:
    attributes: dict[str, str]  # size, fill, color, shape
    mask: np.ndarray  # (H, W) bool, the visible part
    box: tuple[float, float, float, float]  # xyxy of the visible mask (x2, y2 exclusive)
    visible_fraction: float  # visible pixels / pixels of the unoccluded mask
    center: tuple[float, float]
    diameter: float  # pixels (circumscribed circle)
    angle: float  # radians


@dataclass
class ForeignDatapoint:
    phrase: str
    form: str  # a key of FORMS
    instance_ids: tuple[int, ...]  # every matching object (empty: a hard negative)


@dataclass
class ForeignScene:
    seed: int
    image: np.ndarray  # (H, W, 3) uint8
    objects: list[ForeignObject]
    datapoints: list[ForeignDatapoint] = field(default_factory=list)


def phrase_for(query: dict[str, str]) -> str:
    words = [query[a] for a in _ORDER if a in query and a != "shape"]
    return " ".join(words + [query.get("shape", "object")])


def _image_size(rng: np.random.Generator) -> tuple[int, int]:
    W = int(rng.integers(320, 641))
    H = int(np.clip(round(W * rng.uniform(0.6, 0.85)), 240, 480))
    return H, W


def _attributes(rng: np.random.Generator, n: int) -> list[dict[str, str]]:
    """Random objects; about half repeat an earlier one (exhaustivity) or change one of its
    attributes (confusable distractors); both sizes always present."""
    out: list[dict[str, str]] = []
    for _ in range(n):
        if out and rng.random() < 0.5:
            o = dict(out[int(rng.integers(len(out)))])
            if rng.random() < 0.6:
                a = _ORDER[int(rng.integers(4))]
                o[a] = str(rng.choice([v for v in _VALUES[a] if v != o[a]]))
        else:
            o = {a: str(rng.choice(_VALUES[a])) for a in _ORDER}
        out.append(o)
    sizes = {o["size"] for o in out}
    if len(sizes) == 1:
        out[int(rng.integers(n))]["size"] = "large" if "small" in sizes else "small"
    return out


def _place(rng, H: int, W: int, attrs: list[dict], aa: int):
    """Sequential placement (later objects on top); a position is refused when any object would
    keep less than MIN_VISIBLE of its mask. Returns [(attrs, Coverage, cx, cy, d, angle)], label."""
    side = min(H, W)
    s = rng.uniform(*SMALL_BASE) * side
    label = np.full((H, W), -1, np.int32)
    full, placed = [], []
    for o in attrs:
        if o["size"] == "small":
            d = s * rng.uniform(1.0, SMALL_SPREAD)
        else:
            d = min(s * rng.uniform(*LARGE_FACTOR), MAX_SIDE_SHARE * side)
        r = d / 2
        for _ in range(40):
            cx, cy, ang = rng.uniform(r, W - r), rng.uniform(r, H - r), rng.uniform(0, 2 * math.pi)
            cov = coverage(o["shape"], cx, cy, r, ang, aa)
            sub, m = _window(label, cov)
            if m.sum() < 12:
                continue
            hit = np.bincount(sub[m] + 1, minlength=len(placed) + 1)[1:]
            vis = [int((label == j).sum()) for j in np.flatnonzero(hit)]
            if any(v - hit[j] < MIN_VISIBLE * full[j] for v, j in zip(vis, np.flatnonzero(hit))):
                continue
            sub[m] = len(placed)
            full.append(int(m.sum()))
            placed.append((o, cov, cx, cy, d, ang))
            break
    return placed, label, full


def _datapoints(rng, objs: list[dict]) -> list[ForeignDatapoint]:
    out = []
    for form, attrs in FORMS.items():
        present = sorted({tuple(o[a] for a in attrs) for o in objs})
        pos = present[int(rng.integers(len(present)))]
        q = dict(zip(attrs, pos))
        out.append(ForeignDatapoint(phrase_for(q), form, tuple(
            i for i, o in enumerate(objs) if all(o[a] == v for a, v in q.items()))))
        for _ in range(30):  # hard negative: one attribute of a present combination changed
            src = present[int(rng.integers(len(present)))]
            k = int(rng.integers(len(attrs)))
            neg = list(src)
            neg[k] = str(rng.choice([v for v in _VALUES[attrs[k]] if v != src[k]]))
            if tuple(neg) not in present:
                out.append(ForeignDatapoint(phrase_for(dict(zip(attrs, neg))), form, ()))
                break
    return out


def _box(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def render_foreign(seed: int) -> ForeignScene:
    """One scene; the same seed gives the same bytes."""
    for attempt in range(50):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xF0E1, attempt]))
        H, W = _image_size(rng)
        aa = int(rng.choice([1, 2, 3, 5]))  # 1: aliased; else supersampled + LANCZOS
        attrs = _attributes(rng, int(rng.integers(3, 8)))
        placed, label, full = _place(rng, H, W, attrs, aa)
        if len({p[0]["size"] for p in placed}) == 2:
            break
    else:
        raise RuntimeError(f"foreign renderer: could not place objects for seed {seed}")
    canvas = background(rng, H, W)
    objects = []
    for k, (o, cov, cx, cy, d, ang) in enumerate(placed):
        h, w = cov.picture.shape
        paint(canvas, cov.x0, cov.y0, cov.picture, fill_layer(rng, o["color"], o["fill"], h, w, d))
        if rng.random() < 0.25:  # a dark outline, inside the mask
            inner = coverage(o["shape"], cx, cy, d / 2 - rng.uniform(1.0, 2.5), ang, aa)
            ring = np.clip(cov.picture - _pad(inner, cov), 0, 1)
            paint(canvas, cov.x0, cov.y0, ring, np.broadcast_to(np.float32(25.0), (h, w, 3)))
        mask = label == k
        objects.append(ForeignObject(dict(o), mask, _box(mask), float(mask.sum()) / full[k],
                                     (float(cx), float(cy)), float(d), float(ang)))
    image = finish(rng, canvas)
    return ForeignScene(int(seed), image, objects, _datapoints(rng, [o.attributes for o in objects]))


def _window(label: np.ndarray, cov):
    """(view of ``label`` under the crop, the crop's mask cut to the image)."""
    H, W = label.shape
    h, w = cov.mask.shape
    x0, y0 = max(cov.x0, 0), max(cov.y0, 0)
    x1, y1 = min(cov.x0 + w, W), min(cov.y0 + h, H)
    sub = label[y0:y1, x0:x1]
    return sub, cov.mask[y0 - cov.y0: y1 - cov.y0, x0 - cov.x0: x1 - cov.x0]


def _pad(inner, outer) -> np.ndarray:
    """``inner``'s picture coverage moved into ``outer``'s crop (inner lies within it)."""
    out = np.zeros_like(outer.picture)
    dy, dx = inner.y0 - outer.y0, inner.x0 - outer.x0
    h, w = inner.picture.shape
    out[dy: dy + h, dx: dx + w] = inner.picture[: out.shape[0] - dy, : out.shape[1] - dx]
    return out
