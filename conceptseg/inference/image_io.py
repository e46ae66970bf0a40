"""Reading user images safely and preprocessing them exactly like the official processor."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..errors import InputError

MAX_PIXELS = 100_000_000  # refuse larger images before decoding them (100 MP, ~10000 x 10000)
MIN_SIDE = 8  # a smaller image carries no segmentable content at the model's 14 px patches


def _check_size(w: int, h: int, what: str) -> None:
    if w * h > MAX_PIXELS:
        raise InputError(f"{what} is {w}x{h} pixels, above the limit of {MAX_PIXELS:,} pixels "
                         "(conceptseg.inference.image_io.MAX_PIXELS)")
    if min(w, h) < MIN_SIDE:
        raise InputError(f"{what} is {w}x{h} pixels; both sides must be at least {MIN_SIDE}")


def load_image(image) -> np.ndarray:
    """PIL image, HxW / HxWx{1,3,4} numpy array, or a path -> HxWx3 uint8 RGB.

    EXIF orientation is applied; alpha is dropped; grayscale is replicated to three channels.
    Paths are checked against the size limit from the header, before any pixel is decoded.
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InputError(f"image not found: {path}")
        try:
            with Image.open(path) as im:
                _check_size(*im.size, what=f"image {path.name}")
                im = ImageOps.exif_transpose(im)
                im.load()
                return _pil_to_rgb(im)
        except InputError:
            raise
        except Image.DecompressionBombError as e:  # PIL's own, larger, limit fired first
            size = str(e).split(" pixels")[0].split("(")[-1]
            raise InputError(f"image {path.name} has {size} pixels, above the limit of "
                             f"{MAX_PIXELS:,} pixels (refused before decoding)") from None
        except Exception as e:
            raise InputError(f"cannot decode image {path.name} (corrupt, truncated or not an "
                             f"image): {str(e).splitlines()[0][:120]}") from None
    if isinstance(image, Image.Image):
        _check_size(*image.size, what="image")
        return _pil_to_rgb(ImageOps.exif_transpose(image))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise InputError(f"image array must be HxW or HxWx{{1,3,4}}, got shape {image.shape}")
        _check_size(arr.shape[1], arr.shape[0], what="image")
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0:
                arr = arr * 255.0
            arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        return np.ascontiguousarray(arr[..., :3])
    raise InputError(f"unsupported image type {type(image).__name__}; pass a path, PIL image "
                     "or numpy array")


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")  # drop alpha as the official processor does (no compositing)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def preprocess(rgb: np.ndarray, size: int) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xSxS float in [-1, 1].

    The official processor squashes (no letterbox) with an antialiased bilinear resize *on the
    uint8 tensor*, which rounds back to uint8, then maps [0, 255] to [-1, 1]. torch's uint8
    antialias kernel reproduces it bit for bit (checked against the fixture).
    """
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (t.float() / 255.0 - 0.5) / 0.5
