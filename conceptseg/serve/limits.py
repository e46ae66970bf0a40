"""The server's limits (flags of ``conceptseg serve``) and the checks on uploaded bytes that
run before anything is decoded: upload size, and image pixels read from the file header."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ImageTooLargeError, InputError, ServeError
from ..inference.image_io import decode_image as decode_image_bytes

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov")  # clip containers the video routes accept


@dataclass(frozen=True)
class Limits:
    """Every limit of one server; defaults as in docs/API.md."""

    max_upload_bytes: int = 20 * 1024 * 1024  # any request body (413)
    max_pixels: int = 40_000_000  # width x height of an image, from its header (413)
    max_sessions: int = 8  # image sessions (LRU-evicted) and, separately, video sessions (429)
    session_ttl: float = 600.0  # seconds a session may stay idle before it expires (404)
    queue_depth: int = 32  # inference jobs waiting; more -> 429 + Retry-After
    timeout: float = 60.0  # seconds a request may wait for its inference (504)
    max_prompt_chars: int = 500  # characters of one text prompt (422)
    max_images_per_batch: int = 16  # images in one /v1/segment/batch call (422)
    max_texts: int = 32  # phrases in one request (422)


def too_large(message: str) -> ServeError:
    return ServeError(message, 413, "too_large")


def check_upload(data: bytes, limits: Limits, what: str = "upload") -> bytes:
    """``data`` if it is within the upload limit and not empty."""
    if len(data) > limits.max_upload_bytes:
        raise too_large(f"{what} is {len(data):,} bytes, above the limit of "
                       f"{limits.max_upload_bytes:,} bytes (--max-upload-mb)")
    if not data:
        raise InputError(f"{what} is empty")
    return data


def decode_image(data: bytes, limits: Limits) -> np.ndarray:
    """Uploaded image bytes -> H x W x 3 uint8 RGB (``inference.image_io.decode_image``): more
    pixels than the limit, read from the header before decoding, is a 413; corrupt, truncated
    or non-image bytes a one-line InputError (422)."""
    check_upload(data, limits, "image")
    try:
        return decode_image_bytes(data, "image", max_pixels=limits.max_pixels)
    except ImageTooLargeError as e:
        raise too_large(f"{e} (--max-pixels)") from None


def video_suffix(filename: str | None, content_type: str | None) -> str:
    """The container suffix of an uploaded clip (from its name, else its content type)."""
    name = (filename or "").lower()
    for suffix in VIDEO_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    ct = (content_type or "").lower()
    by_type = {"video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov"}
    if ct in by_type:
        return by_type[ct]
    raise InputError(f"video must be one of {', '.join(VIDEO_SUFFIXES)} (file name or content "
                     f"type), got {filename or '(no name)'!r} ({content_type or 'no type'})")


def check_unit(value: float, what: str) -> float:
    """A threshold-like number within [0, 1] (NaN refused)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InputError(f"{what} must be within [0, 1], got {value}")
    return float(value)
