"""Colours, backgrounds, fills and photometric finish of the second (foreign) renderer.

Its own colour definitions: each colour name has a few anchor shades (crimson and scarlet for
"red", ...) jittered by a few units; its own backgrounds, generated procedurally (linear and
radial gradients, multi-octave value noise, soft stripes, checkerboards, paper with grain,
fibres and ruled lines), all muted (saturation <= 0.3) so that no background reads as an
object; its own stripes (light tints on dark colours, dark shades on light ones, any angle);
optional dark outlines; blur, sensor noise and JPEG.
"""

from __future__ import annotations

import colorsys
import io
import math

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["PALETTE", "object_colour", "stripe_colour", "background", "BACKGROUNDS", "paint",
           "finish"]

#: anchor shades per colour name (RGB); one is picked per object and jittered by +-8
PALETTE: dict[str, tuple[tuple[int, int, int], ...]] = {
    "red": ((205, 25, 35), (225, 45, 40), (180, 20, 30)),
    "green": ((40, 150, 60), (30, 175, 80), (70, 160, 40)),
    "blue": ((30, 80, 210), (40, 105, 235), (25, 60, 170)),
    "yellow": ((240, 210, 40), (250, 225, 60), (230, 195, 20)),
    "orange": ((245, 135, 25), (240, 115, 20), (250, 150, 40)),
    "purple": ((125, 50, 175), (145, 60, 190), (110, 40, 150)),
    "white": ((245, 245, 245), (235, 235, 228), (250, 247, 238)),
    "black": ((20, 20, 20), (35, 35, 42), (15, 15, 25)),
}
_LIGHT = ("white", "yellow")  # colours whose stripes are darker shades instead of light tints

BACKGROUNDS = ("linear", "radial", "noise", "stripes", "checker", "paper")


def object_colour(rng: np.random.Generator, name: str) -> np.ndarray:
    anchors = PALETTE[name]
    base = np.asarray(anchors[int(rng.integers(len(anchors)))], dtype=np.float32)
    return np.clip(base + rng.uniform(-8, 8, 3).astype(np.float32), 0, 255)


def stripe_colour(name: str, rgb: np.ndarray) -> np.ndarray:
    """Second colour of a striped object: a light tint, or a dark shade for light colours."""
    if name in _LIGHT:
        return rgb * 0.45
    if name == "black":
        return np.full(3, 150.0, np.float32)
    return rgb + (255.0 - rgb) * 0.6


def _muted(rng: np.random.Generator, v_range=(0.35, 0.9)) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.3), rng.uniform(*v_range))
    return np.asarray(rgb, dtype=np.float32) * 255.0


def _smooth_noise(rng: np.random.Generator, H: int, W: int, octaves: int) -> np.ndarray:
    """Sum of bilinearly enlarged random grids, scaled to [0, 1]."""
    out = np.zeros((H, W), np.float32)
    for o in range(octaves):
        g = 2 + 3 * 2 ** o
        grid = Image.fromarray(rng.uniform(0, 255, (g, g)).astype(np.uint8), "L")
        out += np.asarray(grid.resize((W, H), Image.BILINEAR), np.float32) * (0.5 ** o)
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def _blend(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[None, None, :] + t[..., None] * (b - a)[None, None, :]


def background(rng: np.random.Generator, H: int, W: int, kind: str | None = None) -> np.ndarray:
    """(H, W, 3) float32 in [0, 255]."""
    kind = kind or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    a, b = _muted(rng), _muted(rng)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    th = rng.uniform(0, 2 * math.pi)
    u = xs * math.cos(th) + ys * math.sin(th)
    if kind == "linear":
        t = (u - u.min()) / max(float(u.max() - u.min()), 1.0)
    elif kind == "radial":
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        t = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
        t = t / max(float(t.max()), 1.0)
    elif kind == "noise":
        t = _smooth_noise(rng, H, W, int(rng.integers(2, 5)))
    elif kind == "stripes":
        period = rng.uniform(12, 60)
        t = 0.5 + 0.5 * np.sin(u * (2 * math.pi / period))
    elif kind == "checker":
        cell = rng.uniform(16, 64)
        v = -xs * math.sin(th) + ys * math.cos(th)
        t = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
        b = a + np.clip(b - a, -45, 45)  # capped contrast: no cell reads as an object
    elif kind == "paper":
        a = _muted(rng, (0.78, 0.95)) * 0.3 + np.array([235, 228, 210], np.float32) * 0.7
        fibres = np.asarray(Image.fromarray(rng.uniform(0, 255, (H // 2 + 1, 6)).astype(np.uint8), "L")
                            .resize((W, H), Image.BICUBIC), np.float32) / 255.0
        img = _blend(fibres * 0.5, a, a * 0.9)
        if rng.random() < 0.5:  # ruled lines
            step = int(rng.integers(18, 32))
            img[int(rng.integers(step)):: step, :, :] = img[0, 0] * np.array([0.75, 0.8, 0.95], np.float32)
        return np.clip(img + rng.normal(0, 3.0, (H, W, 1)).astype(np.float32), 0, 255)
    else:
        raise ValueError(f"unknown background {kind!r}")
    img = _blend(t.astype(np.float32), a, b)
    return np.clip(img + rng.normal(0, rng.uniform(1, 5), (H, W, 1)).astype(np.float32), 0, 255)


def paint(canvas: np.ndarray, x0: int, y0: int, alpha: np.ndarray, layer: np.ndarray) -> None:
    """Blend ``layer`` (h, w, 3) over ``canvas`` (H, W, 3) with ``alpha`` (h, w) at (x0, y0), in
    place; parts outside the canvas are dropped."""
    H, W = canvas.shape[:2]
    h, w = alpha.shape
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if ix0 >= ix1 or iy0 >= iy1:
        return
    a = alpha[iy0 - y0: iy1 - y0, ix0 - x0: ix1 - x0, None]
    region = canvas[iy0:iy1, ix0:ix1]
    region += a * (layer[iy0 - y0: iy1 - y0, ix0 - x0: ix1 - x0] - region)


def fill_layer(rng: np.random.Generator, name: str, fill: str, h: int, w: int,
               diameter: float) -> np.ndarray:
    """(h, w, 3) paint of one object's crop: its colour with a faint light falloff; striped
    objects alternate with :func:`stripe_colour` at any angle, period 18-30 % of the diameter."""
    rgb = object_colour(rng, name)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    th = rng.uniform(0, 2 * math.pi)
    u = xs * math.cos(th) + ys * math.sin(th)
    light = 1.0 + rng.uniform(0.0, 0.08) * (u / max(float(np.abs(u).max()), 1.0) - 0.5)
    layer = np.broadcast_to(rgb, (h, w, 3)).astype(np.float32)
    if fill == "striped":
        period = max(5.0, diameter * rng.uniform(0.18, 0.30))
        phase = rng.uniform(0, period)
        d = np.abs(((u + phase) % period) - period / 2) - period / 4  # signed distance to a band edge
        t = np.clip(d + 0.5, 0.0, 1.0)[..., None]
        layer = layer + t * (stripe_colour(name, rgb) - layer)
    return np.clip(layer * light[..., None], 0, 255)


def finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """float (H, W, 3) -> uint8, with (each by chance) blur, Gaussian noise and JPEG."""
    out = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    pil = Image.fromarray(out)
    if rng.random() < 0.3:
        pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
    if rng.random() < 0.3:
        noisy = np.asarray(pil, np.float32) + rng.normal(0, rng.uniform(2, 6), (pil.height, pil.width, 3))
        pil = Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    if rng.random() < 0.4:
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(rng.integers(50, 96)))
        pil = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.array(pil, dtype=np.uint8)
