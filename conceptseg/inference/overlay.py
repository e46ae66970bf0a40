"""Drawing image results: translucent masks, boxes and labels over the picture.

Colours run on across all the results drawn together (two prompts never share a colour); the
label font scales with the image; labels stay inside the picture and, where there is room
around their boxes, never cover one another.
"""

from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError
from .image_io import load_image

FONT_FRACTION = 1 / 40  # label height as a fraction of the image's longer side
MIN_FONT = 11  # pixels: PIL's bitmap default is 11 px high


def palette(n: int) -> list[tuple[int, int, int]]:
    """n well-separated colours (golden-ratio hue steps)."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((0.08 + i * 0.618034) % 1.0, 0.75, 1.0)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def label_font(width: int, height: int) -> ImageFont.ImageFont:
    """PIL's default font at a size that scales with the image (Pillow >= 10.1; older Pillow
    has only the fixed bitmap font)."""
    size = max(MIN_FONT, round(max(width, height) * FONT_FRACTION))
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: no size argument
        return ImageFont.load_default()


def draw_overlay(image, results: Sequence, alpha: float = 0.5, draw_boxes: bool = True,
                 label: bool = True) -> Image.Image:
    """Every instance of every result (``Prediction``s of this image) over ``image``: masks
    first, then boxes and "<text> <score>" labels on top, one colour per instance."""
    rgb = load_image(image)
    H, W = rgb.shape[:2]
    for r in results:
        if tuple(r.image_size) != (H, W):
            raise InputError(f"results were made on a {r.image_size[1]}x{r.image_size[0]} image; "
                             f"cannot draw them over this {W}x{H} one")
    colours = iter(palette(sum(len(r) for r in results)))
    drawn = []  # (box, text, colour) per instance, in drawing order
    canvas = rgb.astype(np.float32)
    for r in results:
        for m, box, score in zip(r.masks.cpu().numpy(), r.boxes.tolist(), r.scores.tolist()):
            c = next(colours)
            canvas[m] = canvas[m] * (1 - alpha) + np.array(c, np.float32) * alpha
            drawn.append((_clip(box, W, H), f"{r.text or 'exemplar'} {score:.2f}", c))
    im = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    width = max(1, round(max(W, H) / 400))
    font = label_font(W, H)
    for box, _, c in drawn:
        if draw_boxes:
            draw.rectangle(box, outline=c, width=width)
    if label:
        placed: list[tuple[float, float, float, float]] = []  # label rectangles drawn so far
        for box, text, c in drawn:
            placed.append(_draw_label(draw, box, text, c, font, W, H, placed))
    return im


def _clip(box, W: int, H: int) -> list[float]:
    x0, y0, x1, y1 = box
    return [min(max(x0, 0.0), W), min(max(y0, 0.0), H), min(max(x1, 0.0), W), min(max(y1, 0.0), H)]


def _draw_label(draw: ImageDraw.ImageDraw, box, text: str, colour, font, W: int, H: int,
                placed: Sequence[tuple]) -> tuple[float, float, float, float]:
    """The label at the first of a few spots around its box (above, inside the top, below,
    inside the bottom; left then right) that overlaps no label drawn before and lies whole in
    the picture; where every spot is taken, the least covered one. Returns its rectangle."""
    l, t, r, b = draw.textbbox((0, 0), text, font=font)
    tw, th = r - l + 2, b - t + 2
    x0, y0, x1, y1 = box
    spots = [(x, y) for y in (y0 - th, y0, y1, y1 - th) for x in (x0, x1 - tw)]
    best, best_cover = None, None
    for x, y in spots:
        x = min(max(x, 0.0), max(W - tw, 0))
        y = min(max(y, 0.0), max(H - th, 0))
        rect = (x, y, x + tw, y + th)
        cover = sum(_overlap(rect, q) for q in placed)
        if best_cover is None or cover < best_cover:
            best, best_cover = rect, cover
        if cover == 0:
            break
    draw.rectangle(best, fill=(0, 0, 0))
    draw.text((best[0] + 1 - l, best[1] + 1 - t), text, fill=colour, font=font)
    return best


def _overlap(a, b) -> float:
    """Area shared by two (x0, y0, x1, y1) rectangles."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0
