"""Lazy video reading (:func:`open_video`), with the official SAM 3 video preprocessing and
overlay-video writing re-exported.

Reading
-------
``open_video(path)`` returns a :class:`VideoSource` for

* a video file (``.mp4 .mov .avi .mkv .webm``, decoded with PyAV, the ``[video]`` extra),
* a folder of frames (``.jpg .jpeg .png .bmp .tiff .webp``, the official list), or
* a single image file (a one-frame video, as the official loader does).

Frames are decoded when asked for, never all at once: ``source[i]`` returns an ``H x W x 3``
uint8 RGB array and at most ``cache_size`` decoded frames are kept (an LRU cache).  Video files
are decoded sequentially; going backward re-positions the decoder on the closest key frame
already seen (or re-opens the file).  Per frame only three integers of bookkeeping are kept
(presentation timestamp, key-frame flag), never pixels.  A source is not thread-safe.

Frame order in a folder: the official code sorts by ``int(stem)`` and falls back to a plain
lexicographic sort when some name is not a number.  We sort "naturally" (digit runs compare as
numbers, ``frame2 < frame10``), which gives the same order for all-numeric names and a
sensible one otherwise.  Every frame of a folder must have the size of the first one
(the official loader silently resizes all of them to the model size and reports the size of
the *last* one; we raise an :class:`VideoInputError` instead).  EXIF orientation is *not*
applied, as in the official folder loader.

Preprocessing (:mod:`conceptseg.video.preprocess`)
--------------------------------------------------
Each source preprocesses its frames as the official loader does for that kind of input
(:meth:`VideoSource.preprocess`): frame folders / single images go through
:func:`preprocess_frame_folder`, video files through :func:`preprocess_frame_cv2` (the
official default) or :func:`preprocess_frame_torchcodec`, chosen by ``open_video(...,
file_preprocessing=...)``.

Decoding itself can differ from OpenCV's FFmpeg backend by small amounts (YUV -> RGB conversion
and chroma upsampling of libswscale as PyAV calls it vs as OpenCV calls it).  Display-matrix
rotation (phone videos) is applied by default, as OpenCV does (``CAP_PROP_ORIENTATION_AUTO``).

Writing (:mod:`conceptseg.video.writer`)
----------------------------------------
:func:`write_overlay_video` writes H.264 (libx264, yuv420p) mp4 files atomically (a temporary
file in the same folder, then ``os.replace``); odd frame sizes are padded by one replicated
row / column because yuv420p needs even sizes.  :func:`draw_overlay` blends coloured masks
onto a frame.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Union

from ..errors import VideoInputError
from .file_source import VideoFileSource
from .preprocess import (preprocess_frame_cv2, preprocess_frame_folder, preprocess_frame_torchcodec,
                         resize_cubic_uint8, to_model_input)
from .source import FrameFolderSource, VideoSource
from .writer import draw_overlay, write_overlay_video

__all__ = [
    "IMAGE_EXTS", "VIDEO_EXTS", "VideoInputError", "VideoSource", "FrameFolderSource",
    "VideoFileSource", "open_video", "preprocess_frame_folder", "preprocess_frame_cv2",
    "preprocess_frame_torchcodec", "resize_cubic_uint8", "to_model_input",
    "write_overlay_video", "draw_overlay",
]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tiff", ".webp")  # official list
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm")  # official list

PathLike = Union[str, os.PathLike]


_DIGITS = re.compile(r"(\d+)")


def _natural_key(name: str):
    parts = _DIGITS.split(name)
    return [(0, int(p), p) if p.isdigit() else (1, 0, p.lower()) for p in parts]


def open_video(path: PathLike, *, fps: Optional[float] = None, cache_size: int = 8,
               file_preprocessing: str = "cv2", auto_rotate: bool = True) -> VideoSource:
    """Open a video file, a folder of frames or a single image as a lazy :class:`VideoSource`.

    Args:
        path: video file (``VIDEO_EXTS``), folder of ``IMAGE_EXTS`` frames, or one image.
        fps: frame rate to report; default: the file's average rate (30 when it has none,
            and for folders / images).
        cache_size: how many decoded frames to keep (LRU).
        file_preprocessing: ``"cv2"`` (official default loader, see
            :mod:`conceptseg.video.preprocess`) or ``"torchcodec"``; used by
            :meth:`VideoSource.preprocess` for video files.
        auto_rotate: apply the display-matrix rotation of video files (as OpenCV does).
    Raises:
        VideoInputError (an ``InputError``): missing path, unsupported extension, unreadable
        or corrupt file, no frames.
    """
    if file_preprocessing not in ("cv2", "torchcodec"):
        raise VideoInputError(f"file_preprocessing must be 'cv2' or 'torchcodec', got "
                              f"{file_preprocessing!r}")
    p = Path(path)
    if not p.exists():
        raise VideoInputError(f"video not found: {p}")
    if p.is_dir():
        try:
            names = [q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTS]
        except OSError as e:
            raise VideoInputError(f"cannot list frame folder {p}: {e}") from None
        if not names:
            raise VideoInputError(f"no frames ({', '.join(IMAGE_EXTS)}) found in folder {p}")
        names.sort(key=lambda q: _natural_key(q.name))
        return FrameFolderSource(p, names, 30.0 if fps is None else fps, cache_size)
    ext = p.suffix.lower()
    if ext in IMAGE_EXTS:
        return FrameFolderSource(p, [p], 30.0 if fps is None else fps, cache_size, kind="image")
    if ext in VIDEO_EXTS:
        return VideoFileSource(p, fps, cache_size, auto_rotate, file_preprocessing)
    raise VideoInputError(f"unsupported video input {p.name}: expected a folder of frames, an "
                          f"image ({', '.join(IMAGE_EXTS)}) or a video ({', '.join(VIDEO_EXTS)})")
