"""Images handed to the LLM tool: a local path or base64 bytes -> H x W x 3 uint8 RGB, with the
byte and pixel limits checked before any pixel is decoded, or a one-line
:class:`~conceptseg.errors.InputError` saying what is wrong.

Paths: ``~`` expanded, symlinks resolved, relative paths taken from the first root (else the
working directory); with roots given, the resolved file must lie under one of them. Only
regular files are opened (a FIFO or device would block or never end), and at most
``max_bytes + 1`` bytes are read, so a file growing under us cannot exceed the limit.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..inference.image_io import decode_image as decode_image_bytes

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "MPO")  # PIL formats accepted


@dataclass(frozen=True)
class ImageLimits:
    """What one image handed to the tool may weigh."""

    max_bytes: int = 20 * 2**20  # encoded file size (base64 is checked before decoding it)
    max_pixels: int = 40_000_000  # width x height, read from the header before decoding
    roots: tuple[Path, ...] = field(default=())  # allowed directories for paths; () = anywhere


def resolve_path(text: str, limits: ImageLimits) -> Path:
    """A user-given path -> the resolved regular file it names (checked, not yet read)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("image_path is empty")
    if "\x00" in text:
        raise InputError("image_path contains a NUL character")
    p = Path(text.strip()).expanduser()
    if not p.is_absolute():
        p = (limits.roots[0] if limits.roots else Path.cwd()) / p
    try:
        real = p.resolve(strict=True)
    except FileNotFoundError:
        raise InputError(f"image not found: {text}") from None
    except (OSError, RuntimeError) as e:  # a symlink loop, permissions...
        raise InputError(f"cannot open image {text}: {e.strerror or e}") from None
    if limits.roots and not any(real.is_relative_to(r.resolve()) for r in limits.roots):
        raise InputError(f"image {text} lies outside the allowed directories "
                         f"({', '.join(str(r) for r in limits.roots)})")
    mode = real.stat().st_mode
    if stat.S_ISDIR(mode):
        raise InputError(f"image {text} is a directory, not an image file")
    if not stat.S_ISREG(mode):
        raise InputError(f"image {text} is not a regular file")
    return real


def read_path(text: str, limits: ImageLimits) -> bytes:
    """The bytes of the image file a path names, at most ``limits.max_bytes``."""
    path = resolve_path(text, limits)
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise InputError(f"image {text} is {size / 2**20:.1f} MiB, above the limit of "
                         f"{limits.max_bytes / 2**20:.0f} MiB")
    try:
        with open(path, "rb") as f:
            data = f.read(limits.max_bytes + 1)
    except OSError as e:
        raise InputError(f"cannot read image {text}: {e.strerror or e}") from None
    if len(data) > limits.max_bytes:
        raise InputError(f"image {text} is above the limit of "
                         f"{limits.max_bytes / 2**20:.0f} MiB")
    return data


def decode_base64(text: str, limits: ImageLimits) -> bytes:
    """base64 text (optionally a ``data:image/...;base64,`` URL) -> bytes, size checked first."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("image_base64 is empty")
    body = text.strip()
    if body.startswith("data:"):
        head, sep, body = body.partition(",")
        if not sep or ";base64" not in head:
            raise InputError("image_base64: a data URL must be 'data:<type>;base64,<data>'")
    body = "".join(body.split())  # line breaks of wrapped base64
    if len(body) * 3 // 4 > limits.max_bytes:
        raise InputError(f"image_base64 holds about {len(body) * 3 / 4 / 2**20:.1f} MiB, above "
                         f"the limit of {limits.max_bytes / 2**20:.0f} MiB")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InputError("image_base64 is not valid base64") from None


def decode_image(data: bytes, what: str, limits: ImageLimits) -> np.ndarray:
    """Encoded image bytes -> H x W x 3 uint8 RGB; the pixel limit is read from the header."""
    return decode_image_bytes(data, what, max_pixels=limits.max_pixels, formats=IMAGE_FORMATS)


def read_image(args: dict, limits: ImageLimits) -> tuple[np.ndarray, str]:
    """The image of a tool call given as ``image_path`` or ``image_base64`` -> (RGB, a short
    description for messages)."""
    if args.get("image_path") is not None:
        text = args["image_path"]
        name = os.path.basename(str(text)) or str(text)
        return decode_image(read_path(text, limits), f"image {name}", limits), str(text)
    return decode_image(decode_base64(args["image_base64"], limits), "image_base64",
                        limits), "base64 image"
