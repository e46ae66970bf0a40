"""Overlay videos: coloured masks blended onto frames, written as H.264 mp4 files.

:func:`write_overlay_video` writes H.264 (libx264, yuv420p) mp4 files atomically (a temporary
file in the same folder, then ``os.replace``); odd frame sizes are padded by one replicated
row / column because yuv420p needs even sizes.  :func:`draw_overlay` blends coloured masks
onto a frame.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_write
from ..errors import VideoInputError
from .file_source import _import_av
from .preprocess import _as_uint8_rgb

__all__ = ["write_overlay_video", "draw_overlay"]

PathLike = Union[str, os.PathLike]


def _palette(obj_id: int) -> np.ndarray:
    # deterministic, well-spread colours (golden-ratio hue walk), HSV -> RGB with s=0.75, v=1
    h = (obj_id * 0.618033988749895) % 1.0
    i = int(h * 6)
    f = h * 6 - i
    s, v = 0.75, 1.0
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6]
    return np.array([round(255 * c) for c in rgb], dtype=np.float32)


def draw_overlay(frame: np.ndarray, masks, obj_ids: Optional[Sequence[int]] = None,
                 alpha: float = 0.5, draw_ids: bool = False,
                 labels: Optional[Sequence[str]] = None) -> np.ndarray:
    """Blend binary ``masks`` (``N x H x W``) onto an ``H x W x 3`` uint8 frame, one colour per
    object id (``obj_ids``, default ``0..N-1``); ``draw_ids`` writes each object's id (or its
    ``labels`` entry, one per mask) at the top-left corner of its mask (empty masks get
    nothing)."""
    frame = _as_uint8_rgb(frame)
    m = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    m = m.astype(bool)
    if m.ndim != 3 or m.shape[1:] != frame.shape[:2]:
        raise VideoInputError(f"masks must be N x {frame.shape[0]} x {frame.shape[1]}, got {m.shape}")
    ids = list(range(len(m))) if obj_ids is None else [int(i) for i in obj_ids]
    out = frame.astype(np.float32)
    for k, mk in enumerate(m):
        if mk.any():
            out[mk] = (1 - alpha) * out[mk] + alpha * _palette(ids[k])
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return _draw_ids(out, m, ids, labels) if draw_ids else out


def _draw_ids(frame: np.ndarray, masks: np.ndarray, ids: Sequence[int],
              labels: Optional[Sequence[str]] = None) -> np.ndarray:
    """Each object's id on a dark box at its mask's top-left corner, font scaled to the frame."""
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    size = max(10, min(frame.shape[:2]) // 24)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        font = ImageFont.load_default()
    for k, mk in enumerate(masks):
        ys, xs = np.nonzero(mk)
        if len(xs) == 0:
            continue
        x, y = int(xs.min()), int(ys.min())
        text = str(ids[k]) if labels is None else str(labels[k])
        x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
        draw.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), fill=(0, 0, 0))
        draw.text((x, y), text, fill=tuple(int(c) for c in _palette(ids[k])), font=font)
    return np.asarray(img).copy()


def write_overlay_video(path: PathLike, frames: Iterable[np.ndarray], fps: float, *,
                        crf: int = 18) -> Path:
    """Write ``H x W x 3`` uint8 RGB frames as an H.264 / yuv420p mp4, atomically.

    The file appears at ``path`` only once complete (temporary file + ``os.replace``); on any
    error no file is left behind.  Odd sizes are padded by one replicated row / column.
    All frames must have the size of the first.  Returns the path written.
    """
    av = _import_av()
    path = Path(path)
    if not fps or fps <= 0:
        raise VideoInputError(f"fps must be positive, got {fps}")
    rate = Fraction(fps).limit_denominator(100_000)

    def encode(tmp: str) -> None:
        container = av.open(tmp, mode="w", format="mp4")
        try:
            stream = None
            size = None
            count = 0
            for frame in frames:
                frame = _as_uint8_rgb(frame)
                if size is None:
                    size = frame.shape[:2]
                    h, w = size
                    stream = container.add_stream("libx264", rate=rate)
                    stream.width, stream.height = w + (w % 2), h + (h % 2)
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": str(crf)}
                elif frame.shape[:2] != size:
                    raise VideoInputError(f"frame {count} is {frame.shape[1]}x{frame.shape[0]}, "
                                          f"expected {size[1]}x{size[0]}")
                h, w = size
                if h % 2 or w % 2:
                    frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                for packet in stream.encode(vf):
                    container.mux(packet)
                count += 1
            if count == 0:
                raise VideoInputError("no frames to write")
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()

    return atomic_write(path, encode)
