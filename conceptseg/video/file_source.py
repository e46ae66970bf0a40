"""Video files decoded with PyAV (the ``[video]`` extra), lazily and with random access.

Decoding is sequential; going backward re-positions the decoder on the closest key frame
already seen (or re-opens the file).  Per frame only three integers of bookkeeping are kept
(presentation timestamp, key-frame flag), never pixels.  Display-matrix rotation (phone videos)
is applied by default, as OpenCV does (``CAP_PROP_ORIENTATION_AUTO``).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import VideoInputError
from .source import VideoSource

__all__ = ["VideoFileSource"]


def _import_av():
    try:
        import av  # noqa: F401  (optional: the [video] extra)
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
