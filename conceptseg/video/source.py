"""Lazily decoded frame sources: the :class:`VideoSource` base (random access, LRU cache of
decoded frames, preprocessing) and :class:`FrameFolderSource` (a folder of frames or a single
image).  Video files are :class:`~conceptseg.video.file_source.VideoFileSource`; open any of
them with :func:`conceptseg.video.io.open_video`.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ..errors import VideoInputError
from .preprocess import _PREPROCESS

__all__ = ["VideoSource", "FrameFolderSource"]


class VideoSource:
    """A random-access, lazily decoded sequence of ``H x W x 3`` uint8 RGB frames.

    Attributes: ``path``, ``kind`` (``"frames"``, ``"image"`` or ``"file"``), ``fps`` (float),
    ``height``, ``width``; ``size`` is ``(height, width)`` (torch order, not PIL's).
    ``len(source)`` is the number of frames; ``source[i]`` accepts negative indices and returns
    a writable array of the caller's own (the decoded-frame cache keeps read-only ones).
    """

    kind: str = ""

    def __init__(self, path: Path, fps: float, height: int, width: int, num_frames: int,
                 cache_size: int, preprocessing: str):
        if cache_size < 1:
            raise VideoInputError(f"cache_size must be >= 1, got {cache_size}")
        self.path = path
        self.fps = float(fps)
        self.height = int(height)
        self.width = int(width)
        self._num_frames = int(num_frames)
        self.cache_size = int(cache_size)
        self._cache: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self.preprocessing = preprocessing

    # -- sequence protocol --
    @property
    def size(self) -> Tuple[int, int]:
        return (self.height, self.width)

    @property
    def is_image(self) -> bool:
        return self.kind == "image"

    def __len__(self) -> int:
        return self._num_frames

    def _check_index(self, index) -> int:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"frame index must be an int, got {type(index).__name__}")
        i = int(index)
        n = self._num_frames
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise VideoInputError(f"frame index {int(index)} is out of range for {self.path.name} "
                                  f"({n} frames)")
        return i

    def __getitem__(self, index) -> np.ndarray:
        return self.frame(index).copy()

    def frame(self, index) -> np.ndarray:
        """Frame ``index`` as the cached, read-only array (no copy; for readers that do not
        keep or modify it)."""
        i = self._check_index(index)
        hit = self._cache.get(i)
        if hit is not None:
            self._cache.move_to_end(i)
            return hit
        frame = self._load(i)
        self._remember(i, frame)
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def _remember(self, i: int, frame: np.ndarray) -> None:
        frame.setflags(write=False)  # cached frames are shared: keep them read-only
        self._cache[i] = frame
        self._cache.move_to_end(i)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    @property
    def cached_indices(self) -> Tuple[int, ...]:
        """Indices of the decoded frames currently held (least recently used first)."""
        return tuple(self._cache)

    def _load(self, i: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- preprocessing --
    def preprocess(self, index: int, image_size: int) -> torch.Tensor:
        """Frame ``index`` preprocessed as the official loader does for this kind of source
        (see :mod:`conceptseg.video.preprocess`): ``(3, S, S)`` float16 (float32 for
        ``"cv2"``)."""
        return _PREPROCESS[self.preprocessing](self.frame(index), image_size)

    def preprocess_all(self, image_size: int, indices: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Stack of preprocessed frames ``(T, 3, S, S)`` (``T * 3 * S * S`` values: use
        :meth:`preprocess` frame by frame for long videos)."""
        idx = range(len(self)) if indices is None else indices
        return torch.stack([self.preprocess(i, image_size) for i in idx])

    # -- resources --
    def close(self) -> None:
        self._cache.clear()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, frames={len(self)}, "
                f"size={self.width}x{self.height}, fps={self.fps:g})")


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise VideoInputError(f"frame file disappeared: {path}") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise VideoInputError(f"cannot read frame {path}: {e}") from None


def _image_size(path: Path) -> Tuple[int, int]:
    try:
        with Image.open(path) as im:
            w, h = im.size
            return h, w
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise VideoInputError(f"cannot read frame {path}: {e}") from None


class FrameFolderSource(VideoSource):
    """A folder of image frames (or a single image file, ``kind == "image"``)."""

    def __init__(self, path: Path, files: Sequence[Path], fps: float, cache_size: int,
                 kind: str = "frames"):
        self.kind = kind
        self.files = list(files)
        h, w = _image_size(self.files[0])
        for f in self.files[1:]:  # headers only: a bad frame fails now, not after tracking
            fh, fw = _image_size(f)
            if (fh, fw) != (h, w):
                raise VideoInputError(
                    f"frame {f.name} is {fw}x{fh}, but the first frame of {path.name} is "
                    f"{w}x{h}; all frames must have the same size")
        super().__init__(path, fps, h, w, len(self.files), cache_size, "folder")

    def _load(self, i: int) -> np.ndarray:
        frame = _read_image(self.files[i])
        if frame.shape[:2] != (self.height, self.width):
            raise VideoInputError(
                f"frame {self.files[i].name} is {frame.shape[1]}x{frame.shape[0]}, but the first "
                f"frame of {self.path.name} is {self.width}x{self.height}; all frames must have "
                "the same size")
        return frame
