"""Lazy video reading, the official SAM 3 video preprocessing, and overlay-video writing.

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

Preprocessing (what the official ``sam3.model.io_utils`` does, checked on its fixture)
--------------------------------------------------------------------------------------
* **Frame folders / single images** (:func:`preprocess_frame_folder`): PIL
  ``resize((S, S), BILINEAR)`` (what ``torchvision.transforms.functional.resize`` does on a
  PIL image; PIL's filter is antialiased by construction) -> ``to_tensor`` (float32 / 255) ->
  float16 -> ``(x - 0.5) / 0.5`` computed in float16.  Frames are stored in float16 and cast
  to float32 before the backbone (:func:`to_model_input`).  Bit-exact with the fixture.
* **Video files, official default loader "cv2"** (:func:`preprocess_frame_cv2`): OpenCV
  decodes, ``cv2.resize(..., INTER_CUBIC)`` on the uint8 RGB frame, then float32
  ``(x - 0.5) / 0.5`` **without dividing by 255** (the official code really does this: inputs
  lie in [-1, 509]; upstream issue facebookresearch/sam3#493, unfixed in the snapshot we
  read).  We have no OpenCV: the resize is ``torch`` bicubic (a = -0.75, half-pixel centres,
  replicated border, no antialias) in float64, rounded half-to-even and clamped to uint8.
  Measured against ``opencv-python-headless`` 4.14 ``cv2.resize`` on random uint8 images
  (96x128, 480x640, 1080x1920, 2160x3840 -> 112/1008 squares): identical except about 1e-5 of
  the values, which differ by 1.  The tensor stays float32, as in the official code.
* **Video files, official "torchcodec" loader** (:func:`preprocess_frame_torchcodec`):
  ``F.interpolate(bicubic, align_corners=False)`` on the float32 frame (no rounding back to
  uint8) -> float16 -> ``/255`` -> ``(x - 0.5) / 0.5``, all in float16.

Which of the two file paths :meth:`VideoSource.preprocess` uses is ``open_video(...,
file_preprocessing=...)``; the default ``"cv2"`` is the official predictor's default.

Decoding itself can differ from OpenCV's FFmpeg backend by small amounts (YUV -> RGB conversion
and chroma upsampling of libswscale as PyAV calls it vs as OpenCV calls it).  Display-matrix
rotation (phone videos) is applied by default, as OpenCV does (``CAP_PROP_ORIENTATION_AUTO``).

Writing
-------
:func:`write_overlay_video` writes H.264 (libx264, yuv420p) mp4 files atomically (a temporary
file in the same folder, then ``os.replace``); odd frame sizes are padded by one replicated
row / column because yuv420p needs even sizes.  :func:`draw_overlay` blends coloured masks
onto a frame.
"""

from __future__ import annotations

import os
import re
import tempfile
from array import array
from bisect import bisect_left
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError

__all__ = [
    "IMAGE_EXTS", "VIDEO_EXTS", "VideoInputError", "VideoSource", "FrameFolderSource",
    "VideoFileSource", "open_video", "preprocess_frame_folder", "preprocess_frame_cv2",
    "preprocess_frame_torchcodec", "resize_cubic_uint8", "to_model_input",
    "write_overlay_video", "draw_overlay",
]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tiff", ".webp")  # official list
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm")  # official list

PathLike = Union[str, os.PathLike]


class VideoInputError(InputError):
    """A video (file, frame folder, frame index) that cannot be used."""


# --------------------------------------------------------------------------------------------
# preprocessing
# --------------------------------------------------------------------------------------------

def _as_uint8_rgb(frame) -> np.ndarray:
    if isinstance(frame, Image.Image):
        frame = np.asarray(frame.convert("RGB"))
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise VideoInputError(f"expected an H x W x 3 uint8 frame, got {frame.dtype} {frame.shape}")
    return frame


def _tensor_hwc(frame: np.ndarray) -> torch.Tensor:
    # cached frames are read-only; torch warns on non-writable arrays, so copy those
    return torch.from_numpy(frame if frame.flags.writeable else frame.copy())


def preprocess_frame_folder(frame, image_size: int) -> torch.Tensor:
    """The official frame-folder path: ``(3, S, S)`` float16, values ``(x/255 - 0.5) / 0.5``.

    ``frame``: ``H x W x 3`` uint8 RGB array or a PIL image.
    """
    if isinstance(frame, Image.Image):
        img = frame.convert("RGB")
    else:
        img = Image.fromarray(_as_uint8_rgb(frame), mode="RGB")
    img = img.resize((image_size, image_size), Image.BILINEAR)
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
    x = x.to(torch.float16)
    half = torch.tensor(0.5, dtype=torch.float16)
    x -= half  # float16 arithmetic, as the official in-place ops on the float16 buffer
    x /= half
    return x


def resize_cubic_uint8(frame: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Emulation of ``cv2.resize(frame, (W, H), interpolation=cv2.INTER_CUBIC)`` on uint8.

    ``size`` is ``(H, W)``.  Bicubic (a = -0.75), half-pixel centres, replicated border, no
    antialias, computed in float64 then rounded half-to-even and clamped to [0, 255].
    """
    frame = _as_uint8_rgb(frame)
    h, w = size
    if frame.shape[:2] == (h, w):
        return frame.copy()  # cv2.resize copies when the size does not change
    t = _tensor_hwc(frame).permute(2, 0, 1)[None].to(torch.float64)
    out = F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False)
    out = torch.round(out).clamp_(0, 255).to(torch.uint8)[0].permute(1, 2, 0)
    return np.ascontiguousarray(out.numpy())


def preprocess_frame_cv2(frame, image_size: int) -> torch.Tensor:
    """The official default video-file path (OpenCV loader): ``(3, S, S)`` **float32**.

    INTER_CUBIC resize to ``S x S`` on uint8, then ``(x - 0.5) / 0.5`` on the 0..255 values
    (the official code does not divide by 255 here; see the module docstring).
    """
    resized = resize_cubic_uint8(frame, (image_size, image_size))
    x = torch.from_numpy(resized).permute(2, 0, 1).to(torch.float32)
    half = torch.tensor(0.5, dtype=torch.float16)
    x -= half  # float32 tensor minus a float16 scalar tensor: float32, as in the official code
    x /= half
    return x.contiguous()


def preprocess_frame_torchcodec(frame, image_size: int) -> torch.Tensor:
    """The official "torchcodec" video-file path: ``(3, S, S)`` float16."""
    frame = _as_uint8_rgb(frame)
    t = _tensor_hwc(frame).permute(2, 0, 1).float()
    x = F.interpolate(t[None], size=(image_size, image_size), mode="bicubic",
                      align_corners=False)[0]
    x = x.half()
    x /= 255
    half = torch.tensor(0.5, dtype=torch.float16)
    x -= half
    x /= half
    return x


def to_model_input(frames: torch.Tensor) -> torch.Tensor:
    """Stored (float16) frames -> float32 backbone input, as the official model does."""
    return frames.to(torch.float32)


_PREPROCESS = {"folder": preprocess_frame_folder, "cv2": preprocess_frame_cv2,
               "torchcodec": preprocess_frame_torchcodec}


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------

class VideoSource:
    """A random-access, lazily decoded sequence of ``H x W x 3`` uint8 RGB frames.

    Attributes: ``path``, ``kind`` (``"frames"``, ``"image"`` or ``"file"``), ``fps`` (float),
    ``height``, ``width``; ``size`` is ``(height, width)`` (torch order, not PIL's).
    ``len(source)`` is the number of frames; ``source[i]`` accepts negative indices.
    """

    kind: str = ""

    def __init__(self, path: Path, fps: float, height: int, width: int, num_frames: int,
                 cache_size: int, preprocessing: str):
        if cache_size < 1:
            raise ValueError("cache_size must be >= 1")
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
        (see the module docstring): ``(3, S, S)`` float16 (float32 for ``"cv2"``)."""
        return _PREPROCESS[self.preprocessing](self[index], image_size)

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


_DIGITS = re.compile(r"(\d+)")


def _natural_key(name: str):
    parts = _DIGITS.split(name)
    return [(0, int(p), p) if p.isdigit() else (1, 0, p.lower()) for p in parts]


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
        super().__init__(path, fps, h, w, len(self.files), cache_size, "folder")

    def _load(self, i: int) -> np.ndarray:
        frame = _read_image(self.files[i])
        if frame.shape[:2] != (self.height, self.width):
            raise VideoInputError(
                f"frame {self.files[i].name} is {frame.shape[1]}x{frame.shape[0]}, but the first "
                f"frame of {self.path.name} is {self.width}x{self.height}; all frames must have "
                "the same size")
        return frame


def _import_av():
    try:
        import av  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise VideoInputError("reading video files needs PyAV: pip install 'conceptseg[video]' "
                              "(or pip install av), or pass a folder of frames") from None
    return av


class VideoFileSource(VideoSource):
    """A video file decoded with PyAV.

    The frame count is the number of video packets that carry a frame (demuxed, not decoded,
    at open time); frame 0 is decoded at open time to validate the file and get the displayed
    size.  If a file decodes to fewer frames than that count, asking for a missing frame
    raises a :class:`VideoInputError`.
    """

    kind = "file"

    def __init__(self, path: Path, fps: Optional[float], cache_size: int, auto_rotate: bool,
                 preprocessing: str):
        self._av = _import_av()
        self.auto_rotate = auto_rotate
        self._container = None
        self._frames = None  # iterator of decoded av.VideoFrame
        self._next = 0  # index of the frame the iterator yields next
        self._after_seek = False
        # bookkeeping per decoded frame index (grows with the furthest frame decoded)
        self._pts = array("q")
        self._key = bytearray()
        self._pts_ok = True
        self._pending = None
        num, rate = self._scan(path)
        if num == 0:
            raise VideoInputError(f"video has no frames: {path}")
        if fps is None:
            fps = float(rate) if rate else 30.0
        self._num_frames = num  # needed by _load before super().__init__ sets it
        self.path = path
        first = self._decode_to(0)
        super().__init__(path, fps, first.shape[0], first.shape[1], num, cache_size, preprocessing)
        self._remember(0, first)

    # -- container handling --
    def _open_container(self, path: Path):
        av = self._av
        try:
            container = av.open(str(path), mode="r")
        except (av.FFmpegError, OSError, ValueError) as e:
            raise VideoInputError(f"cannot open video {path}: {e}") from None
        if not container.streams.video:
            container.close()
            raise VideoInputError(f"no video stream in {path}")
        return container

    def _scan(self, path: Path):
        container = self._open_container(path)
        try:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            n = 0
            try:
                for packet in container.demux(stream):
                    if packet.size == 0 or packet.is_discard:
                        continue
                    n += 1
            except (self._av.FFmpegError, OSError, ValueError) as e:
                raise VideoInputError(f"cannot read video {path}: {e}") from None
            return n, rate
        finally:
            container.close()

    def _restart(self, seek_pts: Optional[int] = None) -> None:
        if self._container is None:
            self._container = self._open_container(self.path)
        stream = self._container.streams.video[0]
        if seek_pts is None:
            if self._next != 0 or self._frames is not None:
                self._container.close()
                self._container = self._open_container(self.path)
                stream = self._container.streams.video[0]
            self._next = 0
            self._after_seek = False
        else:
            self._container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
            self._after_seek = True
        self._frames = self._container.decode(stream)

    def _next_frame(self):
        try:
            return next(self._frames)
        except StopIteration:
            return None
        except (self._av.FFmpegError, OSError, ValueError) as e:
            raise VideoInputError(f"cannot decode frame {self._next} of {self.path}: {e}") from None

    def _to_array(self, frame) -> np.ndarray:
        arr = frame.to_ndarray(format="rgb24")
        if self.auto_rotate:
            rot = int(getattr(frame, "rotation", 0) or 0)
            k = int(round(rot / 90.0)) % 4
            if k:
                arr = np.rot90(arr, k=k)
        return np.ascontiguousarray(arr)

    def _record(self, index: int, frame) -> None:
        if index == len(self._pts):
            if frame.pts is None:
                self._pts_ok = False
            self._pts.append(frame.pts if frame.pts is not None else -1)
            self._key.append(1 if frame.key_frame else 0)

    def _index_after_seek(self, frame) -> Optional[int]:
        if frame.pts is None:
            return None
        j = bisect_left(self._pts, frame.pts)
        if j < len(self._pts) and self._pts[j] == frame.pts:
            return j
        return None

    def _reposition(self, target: int) -> None:
        """Place the decoder so that the next frames lead to ``target`` (< self._next)."""
        if self._pts_ok and target < len(self._pts):
            k = target
            while k > 0 and not self._key[k]:
                k -= 1
            if k > 0:
                try:
                    self._restart(seek_pts=self._pts[k])
                    frame = self._next_frame()
                    idx = self._index_after_seek(frame) if frame is not None else None
                    if idx is not None and idx <= target:
                        self._pending = (idx, frame)
                        self._next = idx
                        return
                except self._av.FFmpegError:
                    pass
        self._pending = None
        self._restart(seek_pts=None)

    def _decode_to(self, target: int) -> np.ndarray:
        if self._frames is None:
            self._pending = None
            self._restart(seek_pts=None)
        elif target < self._next:
            self._reposition(target)
        while True:
            pending = self._pending
            if pending is not None:
                idx, frame = pending
                self._pending = None
            else:
                frame = self._next_frame()
                if frame is None:
                    raise VideoInputError(
                        f"{self.path.name} ended after {self._next} decoded frames, but frame "
                        f"{target} was asked for (the file reports {self._num_frames} frames; "
                        "it may be truncated or corrupt)")
                idx = self._next
                if self._after_seek and frame.pts is not None and idx < len(self._pts) \
                        and self._pts[idx] != frame.pts:
                    found = self._index_after_seek(frame)
                    idx = found if found is not None else idx
            self._record(idx, frame)
            self._next = idx + 1
            if idx == target:
                return self._to_array(frame)
            if idx > target:  # should not happen; decode again from the start
                self._pending = None
                self._restart(seek_pts=None)

    def _load(self, i: int) -> np.ndarray:
        return self._decode_to(i)

    def close(self) -> None:
        super().close()
        if self._container is not None:
            self._container.close()
        self._container = None
        self._frames = None
        self._next = 0

    def __del__(self):  # pragma: no cover - best effort
        try:
            if self._container is not None:
                self._container.close()
        except Exception:
            pass


def open_video(path: PathLike, *, fps: Optional[float] = None, cache_size: int = 8,
               file_preprocessing: str = "cv2", auto_rotate: bool = True) -> VideoSource:
    """Open a video file, a folder of frames or a single image as a lazy :class:`VideoSource`.

    Args:
        path: video file (``VIDEO_EXTS``), folder of ``IMAGE_EXTS`` frames, or one image.
        fps: frame rate to report; default: the file's average rate (30 when it has none,
            and for folders / images).
        cache_size: how many decoded frames to keep (LRU).
        file_preprocessing: ``"cv2"`` (official default loader, see module docstring) or
            ``"torchcodec"``; used by :meth:`VideoSource.preprocess` for video files.
        auto_rotate: apply the display-matrix rotation of video files (as OpenCV does).
    Raises:
        VideoInputError (an ``InputError``): missing path, unsupported extension, unreadable
        or corrupt file, no frames.
    """
    if file_preprocessing not in ("cv2", "torchcodec"):
        raise ValueError(f"file_preprocessing must be 'cv2' or 'torchcodec', got {file_preprocessing!r}")
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


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

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
                 alpha: float = 0.5) -> np.ndarray:
    """Blend binary ``masks`` (``N x H x W``) onto an ``H x W x 3`` uint8 frame, one colour per
    object id (``obj_ids``, default ``0..N-1``)."""
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
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.mp4", dir=path.parent)
    os.close(fd)
    container = None
    try:
        container = av.open(tmp, mode="w", format="mp4")
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
        container.close()
        container = None
        os.replace(tmp, path)
        return path
    except BaseException:
        if container is not None:
            try:
                container.close()
            except Exception:
                pass
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
