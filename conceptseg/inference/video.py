"""VideoSession: promptable concept segmentation and tracking on a video.

>>> model = load_video_model("sam3.pt")
>>> with VideoSession(model, "clip.mp4") as s:
...     first = s.add_text("red car", frame=0)          # detections on frame 0
...     for t, r in s.propagate("both"):                  # every frame, each once
...         print(t, r.obj_ids.tolist(), r.scores.tolist())
...     s.add_clicks(None, [(120, 80)], [1], frame=40)   # one more object, from a click
...     s.add_clicks(3, [(300, 200)], [0], frame=40)     # correct object 3 on frame 40
...     s.remove_object(1)

What a frame goes through (``_step``, the official ``Sam3VideoBase._det_track_one_frame`` with
one process): the ViT trunk runs once and feeds both necks; the detector runs when new
detections are allowed on that frame (a text prompt, or exemplar boxes on it); every group of
tracked objects is propagated by the tracker (memory attention + SAM heads, memory encoding
deferred); :class:`~conceptseg.video.association.Associator` matches detections and tracks and
decides new / removed / re-seeded objects; then, in the official order, re-seeded objects get
the detection mask as a conditioning frame, every group encodes this frame's memory from the
processed track masks (sigmoid path, area-shrinkage suppression, +-10 object scores), objects
first seen on this frame form one new group whose conditioning memory comes from their
detection masks (through the video resolution, as officially), and removed objects leave their
groups. Outputs are released through the hotstart buffer (15 frames by default; everything at
the end of a propagation).

Official behaviours kept on purpose (see ``conceptseg/video/association.py`` for the rest):

* ``add_text`` / ``add_exemplars`` start over (the official ``add_prompt`` resets the session);
  the prompted frame is processed at once and again as the first frame of a forward
  propagation that starts there;
* a re-seeded frame keeps the detection mask's pointer but its memory is re-encoded from the
  propagated mask;
* clicks never read memory (``use_prev_mem_frame=False``): a clicked frame becomes a
  conditioning frame of the object's group; corrections feed the previous logits of that frame
  (clamped to +-32) with all the clicks given so far; detector-added conditioning frames within
  16 frames of a corrected one stop being conditioning frames;
* removing an object clears its inputs, which may turn its group's conditioning frames back
  into tracked frames.

Where we differ from the official code (which keeps every frame's state for the whole video):

* memory is bounded: per group only what later frames can read (see
  :mod:`conceptseg.tracker.bank`), decoded frames and features for at most ``feature_cache``
  frames, detections for the last frame. A propagation that starts where an earlier one started
  (``"both"``, or forward then backward) gets the first ``window`` frames of the earlier pass
  back; memories further away are gone (the official code could still select them);
* propagation always runs detector + tracker + association ("full" propagation). Objects added
  by clicks are tracked like the others but are never removed by the hotstart heuristics (the
  official code switches to tracker-only "partial" propagation after clicks, which needs every
  frame's cached output). Their score is 1.0;
* ``propagate("backward")`` starts at ``start`` (default: the last prompted frame); in
  ``"both"`` the backward pass starts at ``start - 1`` so that no frame is output twice
  (official: backward always skips ``start``); ``max_frames`` counts the frames processed by
  each pass (official: ``max_frame_num_to_track + 1``).
* ``add_exemplars`` accepts several boxes (all are the geometric prompt of that frame; the
  official API takes one).

Results of the frames released so far are kept compactly (COCO RLE, a few bytes per object per
frame) and returned by :meth:`VideoSession.results`; ``keep_results=False`` keeps nothing.

The session is assembled from one mixin per concept: :class:`~.video_engine.FrameEngine` (one
frame), :class:`~.video_groups.ObjectGroups` (tracker groups, removing objects),
:class:`~.video_clicks.ClickEditing` (clicks), :class:`~.video_propagation.PropagationPasses`
(passes, hotstart release) and :class:`~.video_results.ResultStore` (:class:`FrameResult`,
RLE store); this module holds the public API and input validation.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..model.detector import ImageFeatures, TextFeatures
from ..text.tokenizer import ClipTokenizer
from ..tracker.tracker import TrackerFeatures
from .prompts import parse_clicks
from ..video.association import AssociationConfig, Associator
from ..video.io import open_video
from ..video.matching import Detections
from ..model.video_model import VideoModel
from ..video.postprocess import finalize_frame
from ..video.source import VideoSource
from .prompts import validate_exemplars, validate_text
from .video_clicks import ClickEditing
from .video_engine import FrameEngine
from .video_groups import ObjectGroups, _Group
from .video_propagation import PropagationPasses
from .video_results import FrameResult, ResultStore, VideoResults, _Stored

__all__ = ["VideoSession", "FrameResult", "VideoResults", "DIRECTIONS"]

DIRECTIONS = ("forward", "backward", "both")


class VideoSession(ClickEditing, PropagationPasses, FrameEngine, ObjectGroups, ResultStore):
    """Concept prompts (text, exemplar boxes), clicks and propagation on one video.

    ``video``: a video file, a folder of frames or one image (see
    :func:`conceptseg.video.io.open_video`). Frames are decoded and encoded when needed; per-frame
    features are dropped once the frame is processed, tracker memory is bounded per object group.

    Bad input raises :class:`~conceptseg.errors.InputError` (unreadable / empty video, frame
    index out of range, click outside the frame, unknown object id, empty prompt...) and leaves
    the session as it was.
    """

    def __init__(self, model: VideoModel, video, *, association: AssociationConfig | None = None,
                 precision: str = "fp32", file_preprocessing: str = "cv2",
                 keep_results: bool = True, feature_cache: int = 2,
                 device: str | torch.device | None = None):
        if not isinstance(model, VideoModel):
            raise TypeError("VideoSession needs a VideoModel (conceptseg.build.load_video_model)")
        if precision not in ("fp32", "bf16"):
            raise ValueError("precision must be 'fp32' or 'bf16'")
        self.model = model.eval()
        self.device = torch.device(device) if device else model.device
        self.model.to(self.device)
        self.precision = precision
        self.config = association or AssociationConfig()
        self.keep_results = keep_results
        self.source: VideoSource = open_video(video, file_preprocessing=file_preprocessing,
                                              cache_size=2)
        if len(self.source) == 0:  # pragma: no cover - open_video already refuses these
            raise InputError(f"{video}: the video has no frames")
        self.num_frames = len(self.source)
        self.size = self.source.size  # (H, W)
        self.tracker = model.tracker
        self.tcfg = model.tracker_config
        self.tokenizer = ClipTokenizer(context_length=model.config.text.context_length)
        self._feature_cache: OrderedDict[int, tuple[ImageFeatures, TrackerFeatures]] = OrderedDict()
        self._feature_cache_size = max(1, int(feature_cache))
        self._text_cache: dict[str, TextFeatures] = {}
        self._closed = False
        self._reset(keep_text=False)

    # -- context manager ------------------------------------------------------------------------
    def __enter__(self) -> "VideoSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self.source.close()
            self._feature_cache.clear()
            self._groups = []
            self._closed = True

    # -- state ----------------------------------------------------------------------------------
    def _reset(self, keep_text: bool) -> None:
        if not keep_text:
            self._text: str | None = None
        self._exemplars: dict[int, tuple[Tensor, Tensor]] = {}
        self._assoc = Associator(self.config)
        self._groups: list[_Group] = []
        self._user_ids: set[int] = set()
        self._store: dict[int, _Stored] = {}
        self._prompt_frames: set[int] = set()
        self._det_cache: tuple[tuple, Detections] | None = None
        self._prompt_version = getattr(self, "_prompt_version", 0) + 1
        self._anchor_start: int | None = None

    @property
    def obj_ids(self) -> list[int]:
        """The objects tracked now, in tracker order."""
        return list(self._assoc.state.obj_ids)

    @property
    def text(self) -> str | None:
        return self._text

    def results(self) -> VideoResults:
        """Every frame released so far (prompted frames, propagated frames, clicked frames)."""
        return VideoResults(self._store, self.size)

    def memory_frames(self) -> int:
        """Frames held in all tracker memory banks (bounded; for tests and benchmarks)."""
        return sum(len(g.bank) + len(g.anchor) for g in self._groups)

    # -- validation -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise InputError("this video session is closed")

    def _check_frame(self, frame) -> int:
        if isinstance(frame, (bool, np.bool_)) or not isinstance(frame, (int, np.integer)):
            raise InputError(f"frame index must be an integer, got {frame!r}")
        t = int(frame)
        if not 0 <= t < self.num_frames:
            raise InputError(f"frame index {t} is out of range: the video has {self.num_frames} "
                             f"frames (0..{self.num_frames - 1})")
        return t

    def _check_obj(self, obj_id) -> int:
        if isinstance(obj_id, (bool, np.bool_)) or not isinstance(obj_id, (int, np.integer)):
            raise InputError(f"object id must be an integer, got {obj_id!r}")
        if int(obj_id) not in self._assoc.state.obj_ids:
            known = self._assoc.state.obj_ids
            raise InputError(f"object {int(obj_id)} does not exist (tracked objects: "
                             f"{known if known else 'none'})")
        return int(obj_id)

    def _check_clicks(self, points, labels) -> tuple[Tensor, Tensor]:
        h, w = self.size
        return parse_clicks(points, labels, w, h, "frame")

    # -- prompts --------------------------------------------------------------------------------
    @torch.inference_mode()
    def add_text(self, text: str, frame: int = 0) -> FrameResult:
        """Segment every instance of a concept: starts over (objects, memories and results are
        cleared, as the official ``add_prompt``), detects on ``frame`` and returns that frame's
        objects. Later frames come from :meth:`propagate`."""
        self._check_open()
        text = validate_text(text)
        t = self._check_frame(frame)
        self._reset(keep_text=False)
        self._text = text
        return self._prompt_frame(t)

    @torch.inference_mode()
    def add_exemplars(self, boxes: Sequence, frame: int = 0,
                      labels: Sequence[bool] | None = None) -> FrameResult:
        """Exemplar boxes (pixel xyxy on ``frame``; ``labels`` True/1 positive, False/0
        negative, default all positive) as the concept prompt, together with the current text
        if any (else the official "visual" placeholder). Starts over like :meth:`add_text`;
        without text, new objects are only detected on ``frame``."""
        self._check_open()
        t = self._check_frame(frame)
        try:
            items = list(boxes)
        except TypeError:
            raise InputError("boxes must be a list of (x0, y0, x1, y1)") from None
        if not items:
            raise InputError("give at least one exemplar box")
        if labels is None:
            labels = [True] * len(items)
        labels = list(labels)
        if len(labels) != len(items):
            raise InputError(f"{len(items)} boxes but {len(labels)} labels")
        h, w = self.size
        b, lab = validate_exemplars(list(zip(items, [bool(v) for v in labels])), w, h)
        text = self._text
        self._reset(keep_text=True)
        self._text = text
        self._exemplars[t] = (b, lab)
        return self._prompt_frame(t)

    def _prompt_frame(self, t: int) -> FrameResult:
        self._prompt_frames.add(t)
        plan = self._step(t, reverse=False)
        out = finalize_frame(plan.record, self.size)  # official add_prompt: nothing hidden
        return self._output(out, plan.record.obj_id_to_tracker_score)

    # -- removing -------------------------------------------------------------------------------
    @torch.inference_mode()
    def remove_object(self, obj_id: int) -> None:
        """Stop tracking an object and drop it from the results (its id is not reused)."""
        self._check_open()
        obj_id = self._check_obj(obj_id)
        self._drop_from_groups(obj_id)
        self._forget(obj_id)

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
        :meth:`results` without being yielded.
        """
        self._check_open()
        if direction not in DIRECTIONS:
            raise InputError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if not self._prompt_frames:
            raise InputError("nothing to propagate: add a text prompt, exemplars or clicks first")
        if start is None:
            pick = max if direction == "backward" else min
            start = pick(self._prompt_frames)
        start = self._check_frame(start)
        if max_frames is not None:
            if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) \
                    or max_frames < 1:
                raise InputError(f"max_frames must be a positive integer, got {max_frames!r}")
            max_frames = int(max_frames)
        passes = []
        if direction in ("forward", "both"):
            passes.append((start, False))
        if direction == "backward":
            passes.append((start, True))
        elif direction == "both" and start > 0:
            passes.append((start - 1, True))
        return self._run(passes, max_frames)
