"""Opt-in domain randomisation of the first engine's scenes: everything that is not the concept.

``SceneConfig(randomize=RandomizeConfig())`` (``conceptseg train --randomize``) re-renders each
scene of :func:`~conceptseg.data.scene.make_scene` from its draw parameters (the same objects,
attributes, layout, occlusion order and phrases) with: a procedural background (the engine's
four kinds plus radial gradients, multi-octave noise and paper) under a random brightness,
clutter strokes that are no vocabulary shape, object scale relative to the image
(``scale``), a canvas of another aspect ratio resized back to the output size (which
stretches the shapes), anti-aliasing variants (aliased to 8x supersampling), dark outlines,
per-object colour and lighting jitter kept within the colour's name (:data:`COLOR_BOUNDS`),
blur, Gaussian noise and JPEG. The default (``randomize=None``) is untouched: the same bytes.

Colour rule: every object's base colour stays inside its name's HSV box (:func:`reads_as`):
red hue 348-12 deg, orange 20-38, yellow 45-62, green 95-150, blue 210-240, purple 265-300,
each with a minimum saturation and value; white saturation <= 0.10 and value >= 0.85; black
value <= 0.18. Stripes, shading and the photometric noise then vary around it.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from .scene_sampling import mask_box
from .shapes import (Raster, composite, degrade, make_background, rasterize, sample_appearance,
                     stripe_contrast, to_uint8_hwc)

__all__ = ["RandomizeConfig", "COLOR_BOUNDS", "reads_as", "jitter_in_name", "randomize_scene",
           "RANDOM_BACKGROUNDS"]

#: name -> (hue low, hue high in degrees (low > high wraps through 0), min saturation, max
#: saturation, min value, max value)
COLOR_BOUNDS: dict[str, tuple[float, float, float, float, float, float]] = {
    "red": (348.0, 12.0, 0.60, 1.0, 0.45, 1.0),
    "orange": (20.0, 38.0, 0.70, 1.0, 0.70, 1.0),
    "yellow": (45.0, 62.0, 0.60, 1.0, 0.75, 1.0),
    "green": (95.0, 150.0, 0.50, 1.0, 0.40, 1.0),
    "blue": (210.0, 240.0, 0.60, 1.0, 0.50, 1.0),
    "purple": (265.0, 300.0, 0.45, 1.0, 0.40, 1.0),
    "white": (0.0, 360.0, 0.0, 0.10, 0.85, 1.0),
    "black": (0.0, 360.0, 0.0, 1.0, 0.0, 0.18),
}
RANDOM_BACKGROUNDS = ("noise", "gradient", "stripes", "checker", "radial", "octaves", "paper")


@dataclass(frozen=True)
class RandomizeConfig:
    backgrounds: tuple[str, ...] = RANDOM_BACKGROUNDS  # kinds drawn uniformly
    background_light: tuple[float, float] = (0.6, 1.35)  # brightness factor of the background
    hue_jitter: float = 0.6  # share of the name's hue window an object's hue may move
    saturation: tuple[float, float] = (0.8, 1.1)  # object saturation factor (then kept in bounds)
    lighting: tuple[float, float] = (0.75, 1.15)  # object brightness factor (then kept in bounds)
    scale: tuple[float, float] = (0.4, 1.0)  # object size relative to the engine's (10-32 % of the side)
    aspect: tuple[float, float] = (0.7, 1.45)  # canvas width / height before resizing back
    supersample: tuple[int, ...] = (1, 2, 4, 8)  # anti-aliasing variants (1 = aliased)
    p_outline: float = 0.25  # chance of a dark outline per object
    clutter: tuple[int, int] = (0, 10)  # clutter strokes (lines and arcs) under the objects
    p_blur: float = 0.3  # chance of a Gaussian blur ...
    blur_radius: tuple[float, float] = (0.3, 1.3)  # ... of this radius (pixels)
    p_noise: float = 0.4  # chance of Gaussian pixel noise ...
    noise_sigma: tuple[float, float] = (2.0, 8.0)  # ... of this standard deviation (0-255 units)
    p_jpeg: float = 0.5  # chance of JPEG re-encoding ...
    jpeg_quality: tuple[int, int] = (25, 95)  # ... at this quality
    min_pixels: int = 8  # an object smaller than this after resizing forces a milder redraw


def _hsv(rgb) -> tuple[float, float, float]:
    h, s, v = colorsys.rgb_to_hsv(*(np.asarray(rgb, np.float64) / 255.0))
    return h * 360.0, s, v


def _in_hue(h: float, lo: float, hi: float) -> bool:
    return lo <= h <= hi if lo <= hi else (h >= lo or h <= hi)


def reads_as(rgb, name: str) -> bool:
    """True when an RGB colour (0-255) lies in ``name``'s box of :data:`COLOR_BOUNDS`."""
    h, s, v = _hsv(rgb)
    lo, hi, s0, s1, v0, v1 = COLOR_BOUNDS[name]
    return _in_hue(h, lo, hi) and s0 <= s <= s1 and v0 <= v <= v1


def jitter_in_name(rng: np.random.Generator, name: str, rgb, cfg: RandomizeConfig) -> np.ndarray:
    """``rgb`` moved in hue, saturation and brightness, clamped into ``name``'s bounds."""
    h, s, v = _hsv(rgb)
    lo, hi, s0, s1, v0, v1 = COLOR_BOUNDS[name]
    width = (hi - lo) % 360.0 if (lo, hi) != (0.0, 360.0) else 0.0
    centre = (lo + width / 2) % 360.0
    off = ((h - centre + 180.0) % 360.0) - 180.0 + rng.uniform(-1, 1) * cfg.hue_jitter * width / 2
    off = float(np.clip(off, -width / 2 * 0.95, width / 2 * 0.95))  # margin against rounding
    s = float(np.clip(s * rng.uniform(*cfg.saturation), s0 + 0.02 if s0 > 0 else 0.0,
                      s1 - 0.005 if s1 < 1 else 1.0))
    v = float(np.clip(v * rng.uniform(*cfg.lighting), v0 + 0.02 if v0 > 0 else 0.0, v1 - 0.01))
    hue = (centre + off) % 360.0 if width else h  # white and black keep their (faint) hue
    out = np.asarray(colorsys.hsv_to_rgb(hue / 360.0, s, v), np.float32) * 255
    return np.clip(out, 0, 255)


def _background(rng: np.random.Generator, H: int, W: int, cfg: RandomizeConfig) -> np.ndarray:
    """(3, H, W) float32."""
    kind = cfg.backgrounds[int(rng.integers(len(cfg.backgrounds)))]
    if kind in ("noise", "gradient", "stripes", "checker"):
        bg = make_background(rng, H, W, kind)
    else:
        base = make_background(rng, H, W, "gradient")  # muted colour pair of the engine
        lo, hi = base.reshape(3, -1).min(1), base.reshape(3, -1).max(1)
        if kind == "radial":
            ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
            t = np.hypot(xs - rng.uniform(0, W), ys - rng.uniform(0, H))
        elif kind == "octaves":
            t = sum(np.asarray(Image.fromarray(rng.uniform(0, 255, (g, g)).astype(np.uint8), "L")
                               .resize((W, H), Image.BICUBIC), np.float32) / (1 + k)
                    for k, g in enumerate((3, 7, 17, 41)))
        else:  # paper: light, fine grain and horizontal fibres
            lo = np.maximum(lo, 170.0)
            t = np.asarray(Image.fromarray(rng.uniform(0, 255, (H // 3 + 1, 5)).astype(np.uint8), "L")
                           .resize((W, H), Image.BICUBIC), np.float32) + rng.normal(0, 30, (H, W))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        bg = (lo[:, None, None] + t[None] * (hi - lo)[:, None, None]).astype(np.float32)
    return np.clip(bg * np.float32(rng.uniform(*cfg.background_light)), 0, 255)


def _clutter(rng: np.random.Generator, canvas: np.ndarray, cfg: RandomizeConfig) -> None:
    """Strokes (lines and arcs) in muted colours near the background's, drawn in place."""
    H, W = canvas.shape[1:]
    n = int(rng.integers(cfg.clutter[0], cfg.clutter[1] + 1))
    if n == 0:
        return
    layer = Image.new("L", (W, H), 0)
    draw = ImageDraw.Draw(layer)
    for _ in range(n):
        x, y = rng.uniform(0, W, 2), rng.uniform(0, H, 2)
        width = int(rng.integers(1, 4))
        if rng.random() < 0.5:
            draw.line([(x[0], y[0]), (x[1], y[1])], fill=255, width=width)
        else:
            box = [min(x), min(y), max(x) + 2, max(y) + 2]
            start = float(rng.uniform(0, 360))  # open arcs only: no closed ring reads as a circle
            draw.arc(box, start, start + float(rng.uniform(30, 240)), fill=255, width=width)
    a = np.asarray(layer, np.float32)[None] / 255.0
    tone = canvas.reshape(3, -1).mean(1)[:, None, None] * np.float32(rng.choice([0.6, 1.35]))
    canvas += a * (np.clip(tone, 0, 255) - canvas)


def _ring(outer: Raster, inner: Raster) -> Raster:
    """The part of ``outer`` not covered by ``inner`` (which lies inside it)."""
    alpha = outer.alpha.copy()
    dy, dx = inner.y0 - outer.y0, inner.x0 - outer.x0
    h, w = inner.alpha.shape
    alpha[dy: dy + h, dx: dx + w] = np.clip(alpha[dy: dy + h, dx: dx + w] - inner.alpha, 0, 1)
    return Raster(outer.x0, outer.y0, alpha, outer.full_area)


def _render(scene, cfg: RandomizeConfig, rng: np.random.Generator, scale: float, aspect: float):
    """(image (H, W, 3) uint8, label (H, W) int: top instance per pixel, full areas, [(centre,
    diameter)] in output pixels)."""
    H, W = scene.image.shape[:2]
    Hc, Wc = max(8, round(H / math.sqrt(aspect))), max(8, round(W * math.sqrt(aspect)))
    s = min(Hc, Wc) / min(H, W)
    z = min(scale, Wc / (W * s), Hc / (H * s))
    ox, oy = rng.uniform(0, Wc - W * s * z), rng.uniform(0, Hc - H * s * z)
    canvas = _background(rng, Hc, Wc, cfg)
    _clutter(rng, canvas, cfg)
    ss = int(cfg.supersample[int(rng.integers(len(cfg.supersample)))])
    label = np.full((Hc, Wc), -1, np.int32)
    full, placed = [], []
    for k, inst in enumerate(scene.instances):
        a = inst.attributes
        cx, cy = ox + inst.center[0] * s * z, oy + inst.center[1] * s * z
        d = inst.diameter * s * z
        r = rasterize(a["shape"], cx, cy, d, inst.angle, ss)
        app = sample_appearance(rng, a, d)
        app.rgb = jitter_in_name(rng, a["color"], app.rgb, cfg)
        if app.stripe_rgb is not None:
            app.stripe_rgb = stripe_contrast(a["color"], app.rgb)
        composite(canvas, r, app, cx, cy, inst.angle)
        if d > 8 and rng.random() < cfg.p_outline:
            inner = rasterize(a["shape"], cx, cy, d - 2 * rng.uniform(1.0, 2.5), inst.angle, ss)
            dark = replace(app, rgb=np.full(3, 20.0, np.float32), stripe_rgb=None, shade_amp=0.0)
            composite(canvas, _ring(r, inner), dark, cx, cy, inst.angle)
        label[r.binary_mask(Hc, Wc)] = k
        full.append(max(r.full_area, 1) / (Hc * Wc))
        placed.append(((cx * W / Wc, cy * H / Hc), d * math.sqrt(H * W / (Hc * Wc))))
    image = Image.fromarray(to_uint8_hwc(canvas))
    if (Hc, Wc) != (H, W):
        image = image.resize((W, H), Image.LANCZOS)
        label = np.asarray(Image.fromarray(label).resize((W, H), Image.NEAREST))
    return np.asarray(image, np.uint8), label, [f * H * W for f in full], placed


def randomize_scene(scene, cfg: RandomizeConfig):
    """The same scene (objects, layout, phrases) re-rendered with randomised appearance."""
    rng = np.random.default_rng(np.random.SeedSequence([scene.seed, 0xD0A1]))
    draws = (float(rng.uniform(*cfg.scale)), float(rng.uniform(*cfg.aspect)))
    for scale, aspect in (draws, (1.0, 1.0)):  # a milder redraw if an object got too small
        image, label, full, placed = _render(scene, cfg, rng, scale, aspect)
        masks = [label == k for k in range(len(scene.instances))]
        if all(m.sum() >= cfg.min_pixels for m in masks):
            break
    else:
        return scene
    blur = float(rng.uniform(*cfg.blur_radius)) if rng.random() < cfg.p_blur else None
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)) if rng.random() < cfg.p_jpeg else None
    if rng.random() < cfg.p_noise:
        noisy = image + rng.normal(0, rng.uniform(*cfg.noise_sigma), image.shape)
        image = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    image = degrade(image, blur, quality)
    instances = [replace(inst, mask=m, box=mask_box(m), area=int(m.sum()), center=c, diameter=d,
                         visible_fraction=float(min(1.0, m.sum() / f)))
                 for inst, m, f, (c, d) in zip(scene.instances, masks, full, placed)]
    return replace(scene, image=image, instances=instances)
