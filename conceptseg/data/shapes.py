"""Rendering primitives for the synthetic concept data engine.

Geometry is rasterised with PIL at ``supersample`` x the final resolution inside the object's
bounding crop, then box-downsampled to the final resolution; the resulting coverage (alpha) is used
both for anti-aliased compositing and, thresholded at 0.5, for the binary instance mask, so image
and masks come from the same geometry.
"""

from __future__ import annotations

import colorsys
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

#: Base RGB for each colour name (jittered per instance).
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 35),
    "green": (35, 165, 55),
    "blue": (35, 75, 225),
    "yellow": (245, 215, 30),
    "orange": (250, 130, 15),
    "purple": (135, 45, 180),
    "white": (245, 245, 245),
    "black": (22, 22, 22),
}

#: Size ranges as a fraction of the image side (object "diameter"); clearly separated.
SIZE_RANGES: dict[str, tuple[float, float]] = {"small": (0.10, 0.14), "large": (0.24, 0.32)}


def _regular(n: int, radius: float, phase: float = 0.0) -> np.ndarray:
    a = phase + np.arange(n) * (2 * math.pi / n)
    return np.stack([radius * np.cos(a), radius * np.sin(a)], 1)


def _star(points: int, r_out: float, r_in: float) -> np.ndarray:
    a = -math.pi / 2 + np.arange(2 * points) * (math.pi / points)
    r = np.where(np.arange(2 * points) % 2 == 0, r_out, r_in)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _cross(half_len: float, half_w: float) -> np.ndarray:
    L, w = half_len, half_w
    return np.array(
        [(-w, -L), (w, -L), (w, -w), (L, -w), (L, w), (w, w), (w, L), (-w, L), (-w, w), (-L, w), (-L, -w), (-w, -w)],
        dtype=np.float64,
    )


# Unit outlines for an object of "diameter" 1 (centred at the origin, y down), scaled so that the
# visual extents/areas of the shapes are comparable.
UNIT_SHAPES: dict[str, np.ndarray] = {
    "circle": _regular(64, 0.5),
    "square": _regular(4, 0.46 * math.sqrt(2), math.pi / 4),
    "triangle": _regular(3, 0.62, -math.pi / 2) + np.array([0.0, 0.08]),
    "star": _star(5, 0.62, 0.27),
    "hexagon": _regular(6, 0.52),
    "cross": _cross(0.5, 0.17),
}
#: Max distance of any outline vertex from the centre, per unit diameter.
UNIT_EXTENT: dict[str, float] = {k: float(np.abs(v).max()) for k, v in UNIT_SHAPES.items()}


def shape_polygon(shape: str, cx: float, cy: float, diameter: float, angle: float) -> np.ndarray:
    """Outline vertices (N, 2) in pixel coordinates."""
    c, s = math.cos(angle), math.sin(angle)
    p = UNIT_SHAPES[shape] * diameter
    return np.stack([p[:, 0] * c - p[:, 1] * s + cx, p[:, 0] * s + p[:, 1] * c + cy], 1)


@dataclass
class Raster:
    """Coverage of one object in an (unclipped) crop of the final-resolution image."""

    x0: int
    y0: int
    alpha: np.ndarray  # (h, w) float32 in [0, 1]
    full_area: int  # binary pixels of the unclipped shape

    def clipped(self, H: int, W: int):
        """(image slice ys, xs, crop slice cys, cxs) of the part inside the image, or None."""
        h, w = self.alpha.shape
        ix0, iy0 = max(self.x0, 0), max(self.y0, 0)
        ix1, iy1 = min(self.x0 + w, W), min(self.y0 + h, H)
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        return (
            slice(iy0, iy1),
            slice(ix0, ix1),
            slice(iy0 - self.y0, iy1 - self.y0),
            slice(ix0 - self.x0, ix1 - self.x0),
        )

    def binary_mask(self, H: int, W: int) -> np.ndarray:
        m = np.zeros((H, W), dtype=bool)
        sl = self.clipped(H, W)
        if sl is not None:
            m[sl[0], sl[1]] = self.alpha[sl[2], sl[3]] >= 0.5
        return m


def rasterize(shape: str, cx: float, cy: float, diameter: float, angle: float, supersample: int = 4) -> Raster:
    ext = UNIT_EXTENT[shape] * diameter + 1.0
    x0, y0 = math.floor(cx - ext), math.floor(cy - ext)
    x1, y1 = math.ceil(cx + ext), math.ceil(cy + ext)
    w, h = x1 - x0, y1 - y0
    ss = supersample
    poly = shape_polygon(shape, cx - x0, cy - y0, diameter, angle) * ss - 0.5
    img = Image.new("L", (w * ss, h * ss), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in poly.tolist()], fill=255)
    if ss > 1:
        img = img.resize((w, h), Image.BOX)
    alpha = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)
    return Raster(x0, y0, alpha, int((alpha >= 0.5).sum()))


def jitter_color(rng: np.random.Generator, name: str, amount: float = 12.0) -> np.ndarray:
    base = np.asarray(COLOR_RGB[name], dtype=np.float32)
    return np.clip(base + rng.uniform(-amount, amount, 3).astype(np.float32), 0, 255)


def stripe_contrast(name: str, rgb: np.ndarray) -> np.ndarray:
    """Colour of the alternate stripes: a dark shade (mid grey for white, dark grey for black)."""
    if name == "black":
        return np.full(3, 105.0, dtype=np.float32)
    return rgb * (0.6 if name == "white" else 0.35)


@dataclass
class Appearance:
    """Per-object appearance parameters (drawn once; stable across video frames)."""

    rgb: np.ndarray
    stripe_rgb: np.ndarray | None  # None for solid fill
    stripe_period: float  # pixels
    stripe_phase: float  # radians, relative to the object rotation
    shade_dir: float  # radians
    shade_amp: float


def sample_appearance(rng: np.random.Generator, attrs: dict, diameter: float) -> Appearance:
    rgb = jitter_color(rng, attrs["color"])
    striped = attrs["fill"] == "striped"
    period = max(4.0, diameter * rng.uniform(0.24, 0.32))
    return Appearance(
        rgb=rgb,
        stripe_rgb=stripe_contrast(attrs["color"], rgb) if striped else None,
        stripe_period=float(period),
        stripe_phase=float(rng.choice([0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4])),
        shade_dir=float(rng.uniform(0, 2 * math.pi)),
        shade_amp=float(rng.uniform(0.0, 0.12)),
    )


def composite(canvas: np.ndarray, r: Raster, app: Appearance, cx: float, cy: float, angle: float) -> None:
    """Alpha-blend one object onto ``canvas`` (3, H, W float32, channel-first) in place."""
    H, W = canvas.shape[1:]
    sl = r.clipped(H, W)
    if sl is None:
        return
    ys, xs, cys, cxs = sl
    a = r.alpha[cys, cxs]
    gx = np.arange(xs.start, xs.stop, dtype=np.float32)[None, :] + np.float32(0.5 - cx)
    gy = np.arange(ys.start, ys.stop, dtype=np.float32)[:, None] + np.float32(0.5 - cy)
    rgb = app.rgb[:, None, None]
    layer = rgb
    if app.stripe_rgb is not None:
        phi = angle + app.stripe_phase
        u = gx * np.float32(math.cos(phi) / app.stripe_period) + gy * np.float32(math.sin(phi) / app.stripe_period)
        tri = np.abs(u - np.floor(u) - 0.5) * 2.0  # triangle wave in [0, 1]
        t = np.clip((tri - 0.5) * np.float32(app.stripe_period * 0.5) + 0.5, 0.0, 1.0)  # ~1px soft edge
        layer = rgb + t * (app.stripe_rgb[:, None, None] - rgb)
    if app.shade_amp > 0:
        rad = r.alpha.shape[0] * 0.5
        s = gx * np.float32(math.cos(app.shade_dir) / rad) + gy * np.float32(math.sin(app.shade_dir) / rad)
        layer = layer * (1.0 + np.float32(app.shade_amp) * np.clip(s, -1, 1))
    region = canvas[:, ys, xs]
    region += a * (layer - region)


def to_uint8_hwc(canvas: np.ndarray) -> np.ndarray:
    """(3, H, W) float canvas -> (H, W, 3) uint8 (rounded, clipped)."""
    c = np.clip(canvas + 0.5, 0, 255)
    out = np.empty(canvas.shape[1:] + (3,), np.uint8)
    for k in range(3):
        out[..., k] = c[k]
    return out


# ----------------------------------------------------------------------------------- backgrounds


def _muted_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h = rng.uniform()
    c1 = np.array(colorsys.hsv_to_rgb(h, rng.uniform(0.05, 0.3), rng.uniform(0.35, 0.7)), np.float32) * 255
    h2 = (h + rng.uniform(-0.15, 0.15)) % 1.0
    c2 = np.array(colorsys.hsv_to_rgb(h2, rng.uniform(0.05, 0.3), rng.uniform(0.35, 0.7)), np.float32) * 255
    d = c2 - c1  # cap the contrast so no background region reads as an object
    n = float(np.abs(d).max())
    if n > 40:
        c2 = c1 + d * (40 / n)
    return c1, c2


BACKGROUND_KINDS = ("noise", "gradient", "stripes", "checker")


def make_background(rng: np.random.Generator, H: int, W: int, kind: str | None = None) -> np.ndarray:
    """Muted, low-contrast textured background, channel-first (3, H, W) float32 in [0, 255]."""
    kind = kind or BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    c1, c2 = _muted_pair(rng)
    if kind == "noise":
        g = int(rng.integers(3, 9))
        low = Image.fromarray((rng.uniform(0, 1, (g, g)) * 255).astype(np.uint8), "L")
        t = np.asarray(low.resize((W, H), Image.BICUBIC), np.float32) * (1 / 255)
    else:
        yy = np.arange(H, dtype=np.float32)[:, None]
        xx = np.arange(W, dtype=np.float32)[None, :]
        th = rng.uniform(0, math.pi)
        u = xx * math.cos(th) + yy * math.sin(th)
        if kind == "gradient":
            t = (u - u.min()) / max(float(u.max() - u.min()), 1.0)
        elif kind == "stripes":
            period = rng.uniform(0.04, 0.15) * max(H, W)
            t = np.clip(1.5 * np.sin(u * (2 * math.pi / period)) + 0.5, 0, 1)
        elif kind == "checker":
            period = rng.uniform(0.05, 0.18) * max(H, W)
            v = yy * math.cos(th) - xx * math.sin(th)
            t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
        else:
            raise ValueError(kind)
    noise = rng.standard_normal((H, W), dtype=np.float32) * np.float32(rng.uniform(2.0, 7.0))
    t = np.broadcast_to(t, (H, W))
    bg = np.empty((3, H, W), np.float32)
    for k in range(3):
        np.multiply(t, c2[k] - c1[k], out=bg[k])
        bg[k] += noise + c1[k]
    return bg


def degrade(img: np.ndarray, blur_radius: float | None = None, jpeg_quality: int | None = None) -> np.ndarray:
    """uint8 HxWx3 -> uint8 HxWx3 with optional Gaussian blur and JPEG re-encoding (PIL)."""
    if not blur_radius and jpeg_quality is None:
        return img
    pil = Image.fromarray(img)
    if blur_radius:
        pil = pil.filter(ImageFilter.GaussianBlur(blur_radius))
    if jpeg_quality is not None:
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(jpeg_quality))
        buf.seek(0)
        pil = Image.open(buf).convert("RGB")
    return np.array(pil, dtype=np.uint8)  # writable copy
