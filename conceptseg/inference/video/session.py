"""VideoSession: promptable concept segmentation and tracking on a video.

>>> model = load_video_model("sam3.pt")
>>> with VideoSession(model, "clip.mp4") as s:
...     first = s.add_text("red car", frame=0)          # detections on frame 0
...     for t, r in s.propagate("both"):                  # every frame, each once
...         print(t, r.obj_ids.tolist(), r.scores.tolist())
...     s.add_clicks(None, [(120, 80)], [1], frame=40)   # one more object, from a click
...     s.add_clicks(3, [(300, 200)], [0], frame=40)     # correct object 3 on frame 40
...     s.remove_object(1)

How a frame is processed, the official behaviours kept and where we differ: see the package
docstring (:mod:`conceptseg.inference.video`). This module holds the public API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import torch

from ...errors import InputError, SessionError
from ...model.video_model import VideoModel
from ...video.io import open_video
from ...video.source import VideoSource
from ..prompts import parse_clicks, validate_exemplars, validate_text
from .association_state import AssociationConfig
from .clicks import add_clicks as click_objects
from .engine import VideoEngine
from .groups import drop_from_groups, forget
from .postprocess import finalize_frame
from .propagation import run_passes
from .requests import DIRECTIONS, check_frame, check_obj, exemplar_items, plan_passes
from .results import FrameResult, VideoResults
from .snapshot import load_state, save_state as write_state
from .state import SessionState

__all__ = ["VideoSession", "DIRECTIONS"]

PRECISIONS = ("fp32", "bf16")


class VideoSession:
    """Concept prompts (text, exemplar boxes), clicks and propagation on one video.

    ``video``: a video file, a folder of frames or one image (see
    :func:`conceptseg.video.io.open_video`; every frame's header is checked when it is opened).
    Frames are decoded and encoded when needed; per-frame features are dropped once the frame is
    processed, tracker memory is bounded per object group.

    Bad input raises :class:`~conceptseg.errors.InputError` (unreadable / empty video, frame
    index out of range, click outside the frame, unknown object id, empty prompt...) and leaves
    the session as it was; using it out of order (closed; a pass ended by a re-prompt; two passes
    at once) raises :class:`~conceptseg.errors.SessionError`.

    Attributes: ``state`` (:class:`~.state.SessionState`, all the session remembers),
    ``engine`` (:class:`~.engine.VideoEngine`: model, video, caches), ``source`` (the frames).
    """

    def __init__(self, model: VideoModel, video, *, association: AssociationConfig | None = None,
                 precision: str = "fp32", file_preprocessing: str = "cv2",
                 keep_results: bool = True, feature_cache: int = 2,
                 device: str | torch.device | None = None):
        if not isinstance(model, VideoModel):
            raise InputError(f"VideoSession needs a video model (detector + tracker, from "
                             f"conceptseg.load_video_model), got {type(model).__name__}")
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.model = model.eval()
        self.device = torch.device(device) if device else model.device
        self.model.to(self.device)
        self.source: VideoSource = open_video(video, file_preprocessing=file_preprocessing,
                                              cache_size=2)
        self.engine = VideoEngine(model, self.source, self.device, precision, feature_cache)
        self.state = SessionState(video=str(video), num_frames=len(self.source),
                                  size=self.source.size, is_image=self.source.is_image,
                                  config=association or AssociationConfig(),
                                  keep_results=keep_results)

    def __repr__(self) -> str:
        h, w = self.size
        closed = ", closed" if self.state.closed else ""
        return (f"VideoSession({self.state.video!r}, {self.num_frames} frames {w}x{h}, "
                f"text={self.text!r}, obj_ids={self.obj_ids}{closed})")

    # -- context manager ------------------------------------------------------------------------
    def __enter__(self) -> "VideoSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the video and caches; a running pass stops at its next step."""
        if not self.state.closed:
            self.state.end_passes("the session was closed")
            self.state.closed = True
            self.source.close()
            self.engine.clear_caches()
            self.state.groups = []

    # -- saving and restoring ----------------------------------------------------------------------
    def save_state(self, path) -> Path:
        """Write the session's state (not the model, not the video) to ``path`` (see
        :mod:`.snapshot`); refused while a pass runs."""
        self._check_open()
        if self.state.running_pass is not None:
            raise SessionError("cannot save while a propagate() pass is running: finish it first")
        return write_state(self.state, path)

    @classmethod
    def restore(cls, model: VideoModel, video, path, **kwargs) -> "VideoSession":
        """A session on ``video`` continuing from a state written by :meth:`save_state`
        (``kwargs``: the constructor's options, e.g. ``precision``, ``device``; the association
        config and ``keep_results`` come from the saved state)."""
        s = cls(model, video, **kwargs)
        state = load_state(path, s.device)
        if (state.num_frames, tuple(state.size)) != (s.num_frames, tuple(s.size)):
            s.close()
            raise InputError(f"{path} was saved on a video of {state.num_frames} frames of "
                             f"{state.size[1]}x{state.size[0]}; {video} has {s.num_frames} of "
                             f"{s.size[1]}x{s.size[0]}")
        s.state = state
        return s

    # -- read-only views ------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return self.state.num_frames

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the frames."""
        return self.state.size

    @property
    def config(self) -> AssociationConfig:
        return self.state.config

    @property
    def obj_ids(self) -> list[int]:
        """The objects tracked now, in tracker order."""
        return self.state.obj_ids

    @property
    def text(self) -> str | None:
        return self.state.text

    def results(self) -> VideoResults:
        """Every frame released so far (prompted frames, propagated frames, clicked frames)."""
        return VideoResults(self.state.store, self.size)

    def memory_frames(self) -> int:
        """Frames held in all tracker memory banks (bounded; for tests and benchmarks)."""
        return sum(len(g.bank) + len(g.anchor) for g in self.state.groups)

    # -- validation -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.state.closed:
            raise InputError("this video session is closed")

    def _check_frame(self, frame) -> int:
        return check_frame(self.state, frame)

    def _check_obj(self, obj_id) -> int:
        return check_obj(self.state, obj_id)

    # -- prompts --------------------------------------------------------------------------------
    @torch.inference_mode()
    def add_text(self, text: str, frame: int = 0) -> FrameResult:
        """Segment every instance of a concept: starts over (objects, memories and results are
        cleared, as the official ``add_prompt``; a running pass ends), detects on ``frame`` and
        returns that frame's objects. Later frames come from :meth:`propagate`."""
        self._check_open()
        text = validate_text(text)
        t = self._check_frame(frame)
        self.state.end_passes("add_text() re-prompted the session")
        self.state.restart(keep_text=False)
        self.state.text = text
        return self._prompt_frame(t)

    @torch.inference_mode()
    def add_exemplars(self, boxes: Sequence, frame: int = 0,
                      labels: Sequence | None = None) -> FrameResult:
        """Exemplar boxes on ``frame`` as the concept prompt, together with the current text if
        any (else the official "visual" placeholder). ``boxes``: pixel ``(x0, y0, x1, y1)`` each
        with ``labels`` (default all positive), or the image API's form ``[((x0, y0, x1, y1),
        label), ...]``; a label is True/1/"pos" (positive) or False/0/"neg" (negative), as
        :func:`conceptseg.inference.prompts.validate_exemplars` reads it. Starts over like
        :meth:`add_text`; without text, new objects are only detected on ``frame``."""
        self._check_open()
        t = self._check_frame(frame)
        items = exemplar_items(boxes, labels)
        h, w = self.size
        b, lab = validate_exemplars(items, w, h)
        text = self.state.text
        self.state.end_passes("add_exemplars() re-prompted the session")
        self.state.restart(keep_text=True)
        self.state.text = text
        self.state.exemplars[t] = (b, lab)
        return self._prompt_frame(t)

    def _prompt_frame(self, t: int) -> FrameResult:
        self.state.prompt_frames.add(t)
        plan = self.engine.step(self.state, t, reverse=False)
        out = finalize_frame(plan.record, self.size)  # official add_prompt: nothing hidden
        return self.state.release(out, plan.record.obj_id_to_tracker_score)

    def add_clicks(self, obj_id: int | None, points, labels=None, frame: int = 0) -> FrameResult:
        """Clicks on ``frame``: ``obj_id=None`` starts a new object (its id is returned in the
        result's ``clicked_obj_id``: the largest id so far + 1), an existing id refines that
        object. ``points``: N x (x, y) pixels; ``labels`` 1 positive / 0 negative (default all
        positive). Clicks on the same object and frame accumulate. Returns the frame's objects,
        with this one updated (other objects as last output on that frame, if it was output).
        A running pass ends."""
        self._check_open()
        t = self._check_frame(frame)
        h, w = self.size
        pts, labs = parse_clicks(points, labels, w, h, "frame")
        if obj_id is not None:
            obj_id = self._check_obj(obj_id)
        self.state.end_passes("add_clicks() changed the objects")
        return click_objects(self.engine, self.state, obj_id, pts, labs, t)

    @torch.inference_mode()
    def remove_object(self, obj_id: int) -> None:
        """Stop tracking an object and drop it from the results (its id is not reused). A
        running pass ends."""
        self._check_open()
        obj_id = self._check_obj(obj_id)
        self.state.end_passes("remove_object() changed the objects")
        drop_from_groups(self.state, obj_id)
        forget(self.state, obj_id)

    # -- propagation ----------------------------------------------------------------------------
    def propagate(self, direction: str = "forward", start: int | None = None,
                  max_frames: int | None = None) -> Iterator[tuple[int, FrameResult]]:
        """Track through the video, yielding ``(frame_idx, FrameResult)`` as frames are released
        (hotstart delay: up to 15 frames late, everything at the end of each pass).

        direction: "forward" (frames start, start+1, ...), "backward" (start, start-1, ...) or
        "both" (forward, then backward from start-1). start: default the first prompted frame
        (the last one for "backward"). max_frames: frames per pass (default: to the end).
        Arguments are checked at once (InputError); tracking happens as the iterator is consumed.
        Stopping early is allowed: frames still held by the hotstart buffer are then kept in
        :meth:`results` without being yielded. One pass at a time: a second iterator started
        while one runs raises :class:`~conceptseg.errors.SessionError`, and a re-prompt, a
        removal or :meth:`close` ends the running one (its next step raises SessionError).
        """
        self._check_open()
        passes, max_frames = plan_passes(self.state, direction, start, max_frames)
        return run_passes(self.engine, self.state, passes, max_frames, self.state.generation)

