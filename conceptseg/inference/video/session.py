"""VideoSession: promptable concept segmentation and tracking on a video.

>>> model = load_video_model("sam3.pt")
>>> with VideoSession(model, "clip.mp4") as s:
...     first = s.add_text("red car", frame=0)          # detections on frame 0
...     for t, r in s.propagate("both"):                  # every frame, each once
...         print(t, r.obj_ids.tolist(), r.scores.tolist())
...     s.add_clicks(None, [(120, 80)], [1], frame=40)   # one more object, from a click
...     s.add_clicks(3, [(300, 200)], [0], frame=40)     # correct object 3 on frame 40
...     s.remove_object(1)
...     s.add_text("bicycle", frame=0, replace=False)    # a second concept beside the first
...     for t, r in s.propagate():                        # r.phrases: each object's concept
...         ...
...     s.remove_concept("red car")                       # the bicycles stay as they were

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
from ..concept import Concept
from ..prompts import parse_clicks, validate_exemplars, validate_text
from .association_state import AssociationConfig
from .clicks import add_clicks as click_objects
from .engine import VideoEngine
from .groups import drop_from_groups, forget, remove_concept
from .postprocess import finalize_frame
from .propagation import run_passes
from .requests import DIRECTIONS, check_frame, check_obj, exemplar_items, plan_passes
from .results import FrameResult, VideoResults, with_stored_objects
from .snapshot import load_state, save_state as write_state
from .state import SessionState, TrackedConcept

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
                f"phrases={self.phrases}, obj_ids={self.obj_ids}{closed})")

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
            for c in self.state.concepts:
                c.groups = []

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
        """The phrase of a one-concept session (with several: :attr:`phrases`)."""
        return self.state.text

    @property
    def phrases(self) -> list[str | None]:
        """The phrase of each concept tracked, in the order added (None: exemplars or clicks
        without text)."""
        return self.state.phrases

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
    def add_text(self, text: str, frame: int = 0, replace: bool = True) -> FrameResult:
        """Segment every instance of a concept: detects on ``frame`` and returns that frame's
        objects; later frames come from :meth:`propagate`. ``replace=True`` (the official
        ``add_prompt``) starts over: objects, memories and results are cleared and ids start
        at 0. ``replace=False`` adds the concept beside the ones tracked (their objects and
        results stay; the returned frame holds every concept's objects). A running pass ends."""
        self._check_open()
        text = validate_text(text)
        t = self._check_frame(frame)
        if not replace:
            self._check_new_phrase(text)
        self.state.end_passes("add_text() re-prompted the session" if replace
                              else "add_text() added a concept")
        if replace:
            self.state.restart()
        return self._prompt_frame(t, self.state.add_concept(text), replace)

    @torch.inference_mode()
    def add_exemplars(self, boxes: Sequence, frame: int = 0, labels: Sequence | None = None,
                      replace: bool = True, text: str | None = None) -> FrameResult:
        """Exemplar boxes on ``frame`` as a concept prompt, with a phrase: ``text``, else (with
        ``replace=True``) the text of the last concept added, else the official "visual"
        placeholder. ``boxes``: pixel ``(x0, y0, x1, y1)`` each with ``labels`` (default all
        positive), or the image API's form ``[((x0, y0, x1, y1), label), ...]``; a label is
        True/1/"pos" (positive) or False/0/"neg" (negative), as
        :func:`conceptseg.inference.prompts.validate_exemplars` reads it. ``replace`` as in
        :meth:`add_text`; without text, new objects are only detected on ``frame``."""
        self._check_open()
        t = self._check_frame(frame)
        items = exemplar_items(boxes, labels)
        h, w = self.size
        b, lab = validate_exemplars(items, w, h)
        if text is not None:
            text = validate_text(text)
        elif replace and self.state.concepts:
            text = self.state.concepts[-1].text
        if not replace and text is not None:
            self._check_new_phrase(text)
        self.state.end_passes("add_exemplars() re-prompted the session" if replace
                              else "add_exemplars() added a concept")
        if replace:
            self.state.restart()
        c = self.state.add_concept(text)
        c.exemplars[t] = (b, lab)
        return self._prompt_frame(t, c, replace)

    @torch.inference_mode()
    def add_concept(self, concept: Concept, frame: int = 0, replace: bool = True) -> FrameResult:
        """A reusable :class:`~conceptseg.inference.concept.Concept` (exemplars boxed on other
        images, with or without a phrase) as a concept prompt: detected on every frame, its
        objects labelled with ``concept.label``. ``replace`` as in :meth:`add_text`. The
        concept must have been made with this session's model (InputError otherwise)."""
        self._check_open()
        if not isinstance(concept, Concept):
            raise InputError(f"add_concept needs a conceptseg Concept, got "
                             f"{type(concept).__name__}")
        t = self._check_frame(frame)
        concept.check_model(self.model)
        if not replace:
            self._check_new_phrase(concept.label)
        self.state.end_passes("add_concept() re-prompted the session" if replace
                              else "add_concept() added a concept")
        if replace:
            self.state.restart()
        return self._prompt_frame(t, self.state.add_concept(None, concept=concept), replace)

    @torch.inference_mode()
    def remove_concept(self, concept: str | int) -> None:
        """Stop tracking a concept: every object of it leaves the trackers and the results;
        the other concepts' objects, memories and results are unchanged. ``concept``: its
        phrase (as in :attr:`phrases`) or its index there. A running pass ends."""
        self._check_open()
        c = self._find_concept(concept)
        self.state.end_passes("remove_concept() changed the objects")
        remove_concept(self.state, c)

    def _check_new_phrase(self, phrase: str) -> None:
        if phrase in self.state.phrases:
            raise InputError(f"concept {phrase!r} is already tracked in this session (concepts: "
                             f"{self.state.phrases})")

    def _find_concept(self, concept) -> TrackedConcept:
        cs = self.state.concepts
        if isinstance(concept, str):
            found = [c for c in cs if c.phrase == concept]
            if len(found) != 1:
                raise InputError(f"no concept {concept!r} in this session (concepts: "
                                 f"{self.state.phrases})")
            return found[0]
        if isinstance(concept, bool) or not isinstance(concept, int):
            raise InputError(f"a concept is named by its phrase or its index, got {concept!r}")
        if not 0 <= concept < len(cs):
            raise InputError(f"concept index {concept} is out of range: this session has "
                             f"{len(cs)} concept(s)")
        return cs[concept]

    def _prompt_frame(self, t: int, c: TrackedConcept, replace: bool) -> FrameResult:
        """Frame t for the new concept ``c`` only (the others keep their state); with
        ``replace=False`` the result also holds the others' last output on that frame."""
        self.state.prompt_frames.add(t)
        step = self.engine.step(self.state, t, reverse=False, concepts=[c])
        out = finalize_frame(step.record, self.size)  # official add_prompt: nothing hidden
        scores = step.record.obj_id_to_tracker_score
        prev = self.state.store.get(t)
        if not replace and prev is not None:
            others = set(self.state.obj_ids) - set(c.assoc.obj_ids)
            out = with_stored_objects(out, prev, others, len(self.state.obj_ids))
            scores = {**prev.tracker_scores, **scores}
        return self.state.release(out, scores)

    def add_clicks(self, obj_id: int | None, points, labels=None, frame: int = 0,
                   concept: str | int | None = None) -> FrameResult:
        """Clicks on ``frame``: ``obj_id=None`` starts a new object (its id is returned in the
        result's ``clicked_obj_id``: the largest id so far + 1; it joins ``concept``, a phrase
        or index of :attr:`phrases`, default the last concept added: that concept's detections
        are matched to it; its phrase is None), an existing id refines that object. ``points``: N x (x, y) pixels; ``labels`` 1 positive / 0 negative (default all
        positive). Clicks on the same object and frame accumulate. Returns the frame's objects,
        with this one updated (other objects as last output on that frame, if it was output).
        A running pass ends."""
        self._check_open()
        t = self._check_frame(frame)
        h, w = self.size
        pts, labs = parse_clicks(points, labels, w, h, "frame")
        if obj_id is not None:
            obj_id = self._check_obj(obj_id)
        c = None if concept is None or obj_id is not None else self._find_concept(concept)
        self.state.end_passes("add_clicks() changed the objects")
        return click_objects(self.engine, self.state, obj_id, pts, labs, t, c)

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

