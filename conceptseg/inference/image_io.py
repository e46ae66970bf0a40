"""Reading user images safely and preprocessing them exactly like the official processor.

Every input becomes an H x W x 3 uint8 RGB array, or a one-line :class:`InputError`. The
pixel values are scaled by their real range, never clipped:

======================  ==========================================================
input                   rule
======================  ==========================================================
uint8 / PIL 8-bit modes as is (PIL converts P, CMYK, YCbCr, HSV, 1, ... to RGB)
bool / PIL mode "1"     False -> 0, True -> 255
uint16, uint32, uint64  scaled by the dtype's range: ``v / max * 255`` (uint16: 65535)
PIL I;16*, I            16-bit data: ``v / 65535 * 255``; values outside 0..65535 refused
signed integers         read as 8-bit values (``np.array([[...]])`` of 0..255 gives
                        int64); values outside 0..255 refused
float16/32/64, PIL F    must lie in [0, 1]: ``v * 255``; outside [0, 1] refused (an
                        image in 0..255 as float is ambiguous: divide it by 255)
NaN / inf, complex,     refused
object, strings...
======================  ==========================================================

Shapes: H x W (gray), H x W x 1 (gray), x 2 (gray + alpha), x 3 (RGB), x 4 (RGBA); alpha is
dropped as the official processor does (no compositing). Rounding is to the nearest integer.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageTooLargeError, InputError

MAX_PIXELS = 100_000_000  # refuse larger images before decoding them (100 MP, ~10000 x 10000)
MIN_SIDE = 8  # a smaller image carries no segmentable content at the model's 14 px patches
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # PIL modes of 16-bit data
SQUASH_NOTE_RATIO = 2.5  # longer / shorter side above which set_image warns about squashing
UNSUPPORTED_MODES = ("LAB",)  # PIL's convert("RGB") copies LAB channels instead of converting


def _check_size(w: int, h: int, what: str) -> None:
    if w * h > MAX_PIXELS:
        raise InputError(f"{what} is {w}x{h} pixels, above the limit of {MAX_PIXELS:,} pixels "
                         "(conceptseg.inference.image_io.MAX_PIXELS)")
    if min(w, h) < MIN_SIDE:
        raise InputError(f"{what} is {w}x{h} pixels; both sides must be at least {MIN_SIDE}")


def load_image(image) -> np.ndarray:
    """PIL image, H x W / H x W x {1,2,3,4} numpy array or tensor, or a path -> H x W x 3 uint8
    RGB (a fresh, writable array). EXIF orientation is applied. Paths are checked against the
    size limit from the header, before any pixel is decoded. See the module docstring for the
    value rules."""
    if isinstance(image, (str, os.PathLike)):
        return _load_path(Path(image))
    if isinstance(image, Image.Image):
        _check_size(*image.size, what="image")
        return _pil_to_rgb(ImageOps.exif_transpose(image))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        return array_to_rgb(image)
    raise InputError(f"unsupported image type {type(image).__name__}; pass a path, PIL image "
                     "or numpy array")


def _load_path(path: Path) -> np.ndarray:
    if path.is_dir():
        raise InputError(f"image {path} is a directory, not an image file")
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    return decode_image(path, what=f"image {path.name}")


def decode_image(source: Path | bytes, what: str = "image", max_pixels: int = MAX_PIXELS,
                 formats: tuple[str, ...] | None = None) -> np.ndarray:
    """An image file or its encoded bytes -> H x W x 3 uint8 RGB, EXIF orientation applied.
    The size is read from the header and checked before any pixel is decoded (more than
    ``max_pixels``: :class:`ImageTooLargeError`); empty, unknown (or not in ``formats``, PIL
    format names), corrupt or truncated data give one-line InputErrors. The one decoder of the
    CLI, the Python API, the HTTP server and the LLM tool."""
    if isinstance(source, (bytes, bytearray)) and not source:
        raise InputError(f"{what} is empty (0 bytes)")
    try:
        im = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    except Image.DecompressionBombError as e:  # PIL's own, larger, limit fired first
        size = str(e).split(" pixels")[0].split("(")[-1]
        raise ImageTooLargeError(f"{what} has {size} pixels, above the limit of {max_pixels:,} "
                                 "pixels (refused before decoding)") from None
    except UnidentifiedImageError:
        raise InputError(f"cannot decode {what}: it is not an image (no known image format)"
                         ) from None
    except Exception as e:  # noqa: BLE001  PIL raises OSError, SyntaxError, ... on bad headers
        raise InputError(f"cannot decode {what} (corrupt, truncated or not an image): "
                         f"{_first_line(e)}") from None
    with im:
        w, h = im.size
        if formats is not None and im.format not in formats:
            raise InputError(f"{what} is a {im.format} file; use one of {', '.join(formats)}")
        if w * h > max_pixels:
            raise ImageTooLargeError(f"{what} is {w}x{h} = {w * h:,} pixels, above the limit of "
                                     f"{max_pixels:,} pixels (refused before decoding)")
        _check_size(w, h, what)
        try:
            rotated = ImageOps.exif_transpose(im)
            rotated.load()
        except Exception as e:  # noqa: BLE001  as above, while decoding the pixels
            raise InputError(f"cannot decode {what} (corrupt, truncated or not an image): "
                             f"{_first_line(e)}") from None
        return _pil_to_rgb(rotated, what=what)


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0][:120] if str(e) else type(e).__name__


def _pil_to_rgb(im: Image.Image, what: str = "image") -> np.ndarray:
    if im.mode in SIXTEEN_BIT_MODES:
        a = np.asarray(im).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise InputError(f"{what} (mode {im.mode}) has values {a.min()}..{a.max()}, outside "
                             "the 16-bit range 0..65535")
        return _gray_to_rgb(_scale(a, 65535))
    if im.mode == "F":
        return array_to_rgb(np.asarray(im), what=f"{what} (mode F)")
    if im.mode in UNSUPPORTED_MODES:
        raise InputError(f"{what} has colour mode {im.mode}; convert it to RGB first")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")  # drop alpha as the official processor does (no compositing)
    try:
        rgb = im.convert("RGB")
    except ValueError:
        raise InputError(f"{what} has colour mode {im.mode}, which cannot be read as RGB") from None
    return np.array(rgb, dtype=np.uint8)


def _scale(a: np.ndarray, top: float) -> np.ndarray:
    """Values in [0, top] -> uint8, rounded to nearest."""
    return np.rint(a.astype(np.float64) * (255.0 / top)).astype(np.uint8)


def _gray_to_rgb(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(a[..., None], 3, axis=2))


def array_to_rgb(image: np.ndarray, what: str = "image") -> np.ndarray:
    """H x W or H x W x {1,2,3,4} array of any supported dtype -> H x W x 3 uint8 (a copy)."""
    arr = image if image.ndim != 2 else image[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        hint = ("; channels first? move the channels last (C x H x W -> H x W x C)"
                if image.ndim == 3 and image.shape[0] in (1, 3, 4) else "")
        raise InputError(f"{what} array must be HxW or HxWx{{1,2,3,4}}, got shape "
                         f"{tuple(image.shape)}{hint}")
    _check_size(arr.shape[1], arr.shape[0], what=what)
    arr = arr[..., :1] if arr.shape[2] == 2 else arr[..., :3]  # drop alpha
    arr = _to_uint8(arr, what)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.array(arr, dtype=np.uint8, order="C", copy=True)


def _to_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    kind, dt = arr.dtype.kind, arr.dtype
    if dt == np.uint8:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * np.uint8(255)
    if kind == "u":
        return _scale(arr, float(np.iinfo(dt).max))
    if kind == "i":
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise InputError(f"{what} of {dt} has values {arr.min()}..{arr.max()}; signed "
                             "integers are read as 0..255: pass uint8, or uint16 for 16-bit data")
        return arr.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(arr).all():
            raise InputError(f"{what} of {dt} has NaN or infinite values")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise InputError(f"{what} of {dt} has values {lo:g}..{hi:g}; float images must lie "
                             "in [0, 1] (divide 0..255 data by 255, or pass uint8)")
        return np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)
    raise InputError(f"{what} has dtype {dt}, which is not an image type (use uint8, uint16, "
                     "bool or float in [0, 1])")


def squash_note(width: int, height: int, size: int) -> str | None:
    """A one-line note when the square resize squashes the image by more than
    SQUASH_NOTE_RATIO (the official processor does not letterbox), else None."""
    ratio = max(width, height) / min(width, height)
    if ratio <= SQUASH_NOTE_RATIO:
        return None
    return (f"the {width}x{height} image ({ratio:.1f}:1) is squashed to a {size}x{size} square "
            "for the model, which can miss or distort objects: crop or tile it for better results")


def preprocess(rgb: np.ndarray, size: int) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xSxS float in [-1, 1].

    The official processor squashes (no letterbox) with an antialiased bilinear resize *on the
    uint8 tensor*, which rounds back to uint8, then maps [0, 255] to [-1, 1]. torch's uint8
    antialias kernel reproduces it bit for bit (checked against the fixture).
    """
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (t.float() / 255.0 - 0.5) / 0.5
