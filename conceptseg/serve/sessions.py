"""Sessions the server holds between requests.

- Image sessions (:class:`ImageSessions`): one :class:`~conceptseg.inference.image.ImagePredictor`
  per cached image, all sharing the one model and tokenizer, so the LRU holds several image
  encodings at once (each predictor keeps its own ``features``). Keyed by a prefix of the
  uploaded bytes' sha256: the same upload is encoded once. Bounded (least recently used
  evicted) and expired when idle longer than the TTL.
- Video sessions (:class:`VideoSessions`): the uploaded clip is written into a directory the
  server owns (never a path named by a request) and held by a
  :class:`~conceptseg.inference.video.VideoSession`; at most ``max_sessions`` (more -> 429), idle
  ones expire.

Both stores are only bookkeeping and thread-safe; the model work (encoding, prompting,
closing) runs on the service's worker thread.
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ServeError
from ..inference.image import ImagePredictor
from ..inference.results import Prediction
from ..inference.video import VideoSession
from ..ops.masks import rle_decode, rle_encode

IMAGE_ID_CHARS = 16  # hex digits of the sha256 used as an image id
KEPT_PREDICTIONS = 32  # per image session: last result per phrase (as RLE), for refine by instance
KEPT_REFINEMENTS = 16  # per image session: low-res logits of recent refines (mask_input_id)


def unknown(message: str) -> ServeError:
    """A session id that is unknown, deleted or expired (404)."""
    return ServeError(message, 404, "unknown_session")


@dataclass
class ImageEntry:
    """One cached image encoding and what later requests on it need."""

    image_id: str  # sha256 prefix of the uploaded bytes
    sha256: str  # full hex digest
    predictor: ImagePredictor  # holds this image's encoding (features), shares the model
    width: int
    height: int
    last_used: float = field(default_factory=time.monotonic)  # monotonic seconds
    predictions: OrderedDict = field(default_factory=OrderedDict)  # text -> StoredPrediction
    refinements: OrderedDict = field(default_factory=OrderedDict)  # refine_id -> logits (h x w)
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards the two dicts above

    def remember(self, pred: Prediction) -> None:
        """Keep ``pred`` (masks as COCO RLE: a few bytes each) for refine by instance."""
        stored = StoredPrediction(pred.text, rle_encode(pred.masks), pred.boxes, pred.scores,
                                  pred.presence, pred.image_size, pred.image_id)
        key = pred.text or ""
        with self.lock:
            self.predictions[key] = stored
            self.predictions.move_to_end(key)
            while len(self.predictions) > KEPT_PREDICTIONS:
                self.predictions.popitem(last=False)

    def remember_refine(self, logits) -> str:
        rid = secrets.token_hex(8)
        with self.lock:
            self.refinements[rid] = logits
            while len(self.refinements) > KEPT_REFINEMENTS:
                self.refinements.popitem(last=False)
        return rid


@dataclass
class StoredPrediction:
    """A :class:`Prediction` kept compactly between requests (masks as COCO RLE)."""

    text: str | None  # the prompt
    rles: list  # COCO RLE per instance
    boxes: torch.Tensor  # N x 4 pixel xyxy
    scores: torch.Tensor  # N
    presence: float
    image_size: tuple[int, int]  # (height, width)
    image_id: str | None  # the predictor's image fingerprint

    def __len__(self) -> int:
        return len(self.rles)

    def instance(self, i: int) -> Prediction:
        """Instance ``i`` alone, as a one-instance Prediction (its mask decoded)."""
        return Prediction(self.text, rle_decode(self.rles[i:i + 1]).bool(), self.boxes[i:i + 1],
                          self.scores[i:i + 1], self.presence, self.image_size,
                          image_id=self.image_id)


class ImageSessions:
    """Bounded LRU of :class:`ImageEntry` with idle expiry."""

    def __init__(self, max_entries: int, ttl: float):
        self.max_entries, self.ttl = max_entries, ttl
        self._entries: OrderedDict[str, ImageEntry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, image_id: str) -> ImageEntry | None:
        """The live entry or None (refreshes its LRU place and idle clock)."""
        with self._lock:
            self._expire_locked()
            entry = self._entries.get(image_id)
            if entry is not None:
                entry.last_used = time.monotonic()
                self._entries.move_to_end(image_id)
            return entry

    def get(self, image_id: str) -> ImageEntry:
        entry = self.peek(image_id)
        if entry is None:
            raise unknown(f"unknown or expired image id {image_id[:64]!r}: upload it "
                                 "again with POST /v1/images")
        return entry

    def put(self, entry: ImageEntry) -> None:
        with self._lock:
            self._entries[entry.image_id] = entry
            self._entries.move_to_end(entry.image_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def delete(self, image_id: str) -> None:
        with self._lock:
            if self._entries.pop(image_id, None) is None:
                raise unknown(f"unknown or expired image id {image_id[:64]!r}")

    def expire(self) -> int:
        with self._lock:
            return self._expire_locked()

    def _expire_locked(self) -> int:
        cutoff = time.monotonic() - self.ttl
        old = [k for k, e in self._entries.items() if e.last_used < cutoff]
        for k in old:
            del self._entries[k]
        return len(old)


@dataclass
class VideoEntry:
    """One open video session."""

    session_id: str  # random, unguessable
    session: VideoSession
    directory: Path  # server-owned directory holding the uploaded clip
    last_used: float = field(default_factory=time.monotonic)  # monotonic seconds
    streams: int = 0  # propagate streams running (an entry is not expired while > 0)


class VideoSessions:
    """At most ``max_sessions`` open :class:`VideoEntry`, idle ones expired; clips live under
    ``root`` (created by the server, removed at shutdown)."""

    def __init__(self, root: Path, max_sessions: int, ttl: float):
        self.root, self.max_sessions, self.ttl = Path(root), max_sessions, ttl
        self._entries: dict[str, VideoEntry] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def reserve(self) -> tuple[str, Path]:
        """A new session id and its empty directory, or a 429 ServeError."""
        with self._lock:
            if len(self._entries) >= self.max_sessions:
                raise ServeError(f"{len(self._entries)} video sessions are open, the limit "
                                 "(--max-sessions): close one with DELETE /v1/videos/{id}",
                                 429, "too_many_sessions", retry_after=30)
        sid = secrets.token_hex(12)
        directory = self.root / sid
        directory.mkdir(parents=True)
        return sid, directory

    def add(self, entry: VideoEntry) -> None:
        with self._lock:
            if len(self._entries) >= self.max_sessions:
                raise ServeError("video sessions are full (--max-sessions)", 429,
                                 "too_many_sessions", retry_after=30)
            self._entries[entry.session_id] = entry

    def get(self, sid: str) -> VideoEntry:
        with self._lock:
            entry = self._entries.get(sid)
        if entry is None:
            raise unknown(f"unknown or expired video session {sid[:64]!r}")
        entry.last_used = time.monotonic()
        return entry

    def pop(self, sid: str) -> VideoEntry:
        with self._lock:
            entry = self._entries.pop(sid, None)
        if entry is None:
            raise unknown(f"unknown or expired video session {sid[:64]!r}")
        return entry

    def expired(self) -> list[VideoEntry]:
        """Remove and return the entries idle longer than the TTL (not while streaming)."""
        cutoff = time.monotonic() - self.ttl
        with self._lock:
            old = [e for e in self._entries.values() if e.last_used < cutoff and e.streams == 0]
            for e in old:
                del self._entries[e.session_id]
        return old

    def drain(self) -> list[VideoEntry]:
        with self._lock:
            out = list(self._entries.values())
            self._entries.clear()
        return out


def close_video(entry: VideoEntry) -> None:
    """Close the session and delete its clip (run on the model's worker thread)."""
    try:
        entry.session.close()
    finally:
        shutil.rmtree(entry.directory, ignore_errors=True)


def discard_directory(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def check_image_id(image_id: str) -> str:
    if not (0 < len(image_id) <= 64 and all(c in "0123456789abcdef" for c in image_id)):
        raise unknown(f"unknown image id {image_id[:64]!r}")
    return image_id

