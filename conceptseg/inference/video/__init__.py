"""Video inference: :class:`VideoSession` (the façade), :class:`SessionState` (all it
remembers), :class:`VideoEngine` (one frame), :class:`FrameResult` / :class:`VideoResults`
(what it outputs) and the detection <-> track association it runs on every frame.

What a frame goes through (:meth:`.engine.VideoEngine.step`, the official ``Sam3VideoBase._det_track_one_frame`` with
one process): the ViT trunk runs once and feeds both necks; the detector runs when new
detections are allowed on that frame (a text prompt, or exemplar boxes on it); every group of
tracked objects is propagated by the tracker (memory attention + SAM heads, memory encoding
deferred); :class:`~.association.Associator` matches detections and tracks and
decides new / removed / re-seeded objects; then, in the official order, re-seeded objects get
the detection mask as a conditioning frame, every group encodes this frame's memory from the
processed track masks (sigmoid path, area-shrinkage suppression, +-10 object scores), objects
first seen on this frame form one new group whose conditioning memory comes from their
detection masks (through the video resolution, as officially), and removed objects leave their
groups. Outputs are released through the hotstart buffer (15 frames by default; everything at
the end of a propagation).

Official behaviours kept on purpose (see :mod:`.association` for the rest):

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
  official API takes one);
* boxes come from the final masks (after the non-overlap step); an object left without pixels
  is marked (:attr:`FrameResult.empty`) and listed under ``"empty"`` in the JSON;
* a re-prompt, a click, a removal or :meth:`VideoSession.close` ends a running
  :meth:`VideoSession.propagate` pass, and one pass runs at a time
  (:class:`~conceptseg.errors.SessionError`).

Several concepts (``add_text(..., replace=False)``, ``add_exemplars(..., replace=False)``,
``add_concept(concept, replace=False)``; not in the official code, which tracks one prompt): each
concept keeps its own prompt, tracker groups and association state
(:class:`~.state.TrackedConcept`). Per frame the trunk and both necks run once; then each
concept runs the detector's prompt part (fusion, decoder, heads) on the shared features, the
tracker on its groups and its own association (a detection of concept B is never matched to an
object of A; object limits and hotstart counters are per concept); ids come from one counter,
so they are unique across concepts; the output non-overlap step applies within a concept
(objects of different concepts may share pixels). Every result carries ``phrases``, one per
object. Hence a concept's masklets are exactly those it would have alone (up to its ids), and
:meth:`VideoSession.remove_concept` leaves the others' untouched. A new concept is processed on
its prompt frame alone (the others keep their state); a later :meth:`VideoSession.propagate`
runs all of them.

Results of the frames released so far are kept compactly (COCO RLE, a few bytes per object per
frame) and returned by :meth:`VideoSession.results`; ``keep_results=False`` keeps nothing.

How it is built: :class:`VideoSession` is a thin façade over one :class:`~.state.SessionState`
(everything that decides later outputs, declared in one dataclass: copy it with
``session.state.clone()``, save it with :meth:`VideoSession.save_state`, restore it with
:meth:`VideoSession.restore`) and one :class:`~.engine.VideoEngine` (model, video, caches;
``step`` runs one frame, mutating the state). :mod:`.clicks`, :mod:`.groups` and
:mod:`.propagation` are plain functions over (engine, state); the association
(:mod:`.association`, :mod:`.matching`, :mod:`.heuristics`, :mod:`.postprocess`) works on
tensors only; the public API is in :mod:`.session`.
"""

from .association_state import AssociationConfig, AssociationState
from .engine import VideoEngine
from .results import FrameResult, VideoResults
from .session import DIRECTIONS, VideoSession
from .state import SessionState, TrackedConcept

__all__ = ["VideoSession", "SessionState", "TrackedConcept", "VideoEngine", "FrameResult", "VideoResults",
           "AssociationConfig", "AssociationState", "DIRECTIONS"]
