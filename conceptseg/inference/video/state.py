"""The whole state of one video session, as one declared object.

:class:`SessionState` is everything that decides what later frames will output: the video's
shape, the prompts, the tracker groups with their memory banks, the association's memory, the
bookkeeping of propagation passes and the results released so far. It holds no model, no open
file and no cache: :class:`~.engine.VideoEngine` (the model, the decoded frames, feature and
detection caches) works on it, and :class:`~.session.VideoSession` is a thin façade holding one
engine and one state. A state can be copied (:meth:`SessionState.clone`, a deep copy that keeps
shared frame memories shared) and saved / restored (:mod:`.snapshot`).

Several concepts (``add_text(..., replace=False)``): each is a :class:`TrackedConcept` with its
own prompt, tracker groups and association state; what they share is the frame (the trunk runs
once per frame for all), the id counter (ids are unique across concepts) and the results.

Who changes what: the engine's ``step`` (one frame) and the click / removal functions of
:mod:`.clicks` and :mod:`.groups` mutate the state they are given, in place; nothing else does.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from torch import Tensor

from ...errors import SessionError
from ...tracker.bank import FrameMemory, MemoryBank
from ..concept import Concept
from .association_state import AssociationConfig, AssociationState
from .results import FrameResult, StoredFrame

__all__ = ["Group", "TrackedConcept", "SessionState"]


@dataclass(repr=False)
class Group:
    """Objects tracked together (the official "tracker inference state"): objects first seen on
    the same frame, or one clicked object. One memory bank for all of them."""

    obj_ids: list[int]  # the group's objects, in tracker order (rows of every memory tensor)
    bank: MemoryBank  # per-frame memories of the group (conditioning and tracked frames)
    # obj -> frame -> "mask" (detection) or "points" (clicks): the inputs given per frame
    inputs: dict[int, dict[int, str]] = field(default_factory=dict)
    # (obj, frame) -> the clicks given so far (pixel xy N x 2 float32, labels N int32)
    points: dict[tuple[int, int], tuple[Tensor, Tensor]] = field(default_factory=dict)
    # the first frames of the last pass, kept for a later pass the other way from the same
    # place: frame -> (memory, was a conditioning frame)
    anchor: dict[int, tuple[FrameMemory, bool]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"Group(obj_ids={self.obj_ids}, cond={sorted(self.bank.cond)}, "
                f"tracked={sorted(self.bank.non_cond)})")

    def frame_memory(self, t: int) -> FrameMemory | None:
        mem = self.bank.cond.get(t)
        return mem if mem is not None else self.bank.non_cond.get(t)

    def has_input(self, t: int) -> bool:
        return any(t in frames for frames in self.inputs.values())


@dataclass(repr=False)
class TrackedConcept:
    """One concept prompt of a session and everything tracked under it: its objects are
    detected with this prompt only, associated with this concept's detections only (an object
    of concept A is never matched to a detection of concept B) and carry its phrase."""

    key: int  # session-unique number of the concept (never reused; records refer to it)
    text: str | None = None  # the phrase; None: exemplars / clicks only (official "visual")
    # frame -> exemplar boxes on it (K x 4 normalised cxcywh, K labels 1/0)
    exemplars: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    concept: Concept | None = None  # a reusable concept prompt: detects on every frame
    groups: list[Group] = field(default_factory=list)  # its tracker groups, in creation order
    assoc: AssociationState = field(default_factory=AssociationState)  # its tracker_metadata
    clicked: set[int] = field(default_factory=set)  # its objects created by clicks (no phrase)

    def __repr__(self) -> str:
        return (f"TrackedConcept({self.key}, phrase={self.phrase!r}, "
                f"obj_ids={self.assoc.obj_ids})")

    @property
    def phrase(self) -> str | None:
        """What its objects are labelled with: the text, else the Concept's label."""
        if self.text is not None or self.concept is None:
            return self.text
        return self.concept.label

    def detects_on(self, t: int) -> bool:
        """New detections are allowed on frame t (a text or Concept prompt: every frame;
        exemplars alone: their frames only)."""
        return self.text is not None or self.concept is not None or t in self.exemplars


@dataclass(repr=False)
class SessionState:
    """Everything a video session remembers (see the module docstring)."""

    # -- frames / source (the video itself is reopened from its path; these check it)
    video: str  # the video as given to the session (path of a file, folder or image)
    num_frames: int  # frames in the video
    size: tuple[int, int]  # (H, W) of every frame
    is_image: bool  # one still image (no object limit, as officially)
    # -- settings
    config: AssociationConfig  # association thresholds (each concept's association uses them)
    keep_results: bool = True  # keep released frames in `store`
    # -- concepts: one entry per concept prompt, in the order added (official: exactly one).
    # Each holds its prompt (text, exemplars per frame, Concept), its tracker groups with their
    # memory banks and its association state; tracker order = concept order, then group order.
    concepts: list[TrackedConcept] = field(default_factory=list)
    next_concept: int = 0  # key of the next concept added (keys are never reused)
    max_obj_id: int = -1  # largest object id given so far in any concept: ids stay unique
    prompt_frames: set[int] = field(default_factory=set)  # frames given a prompt or clicks
    user_ids: set[int] = field(default_factory=set)  # objects created or refined by clicks
    # -- pass bookkeeping
    anchor_start: int | None = None  # start frame of the last pass (its anchor frames)
    anchor_reverse: bool = False  # direction of the last pass
    generation: int = 0  # bumped by every re-prompt, removal and close: older passes stop
    running_pass: int | None = None  # id of the pass being iterated (None: none)
    next_pass: int = 0  # id for the next pass
    ended_by: str = ""  # what ended the last passes (for the error message)
    closed: bool = False  # the session was closed
    # -- stored results
    store: dict[int, StoredFrame] = field(default_factory=dict)  # released frames, by index

    def __repr__(self) -> str:
        h, w = self.size
        return (f"SessionState({self.video!r}, {self.num_frames} frames {w}x{h}, "
                f"phrases={self.phrases}, obj_ids={self.obj_ids}, groups={len(self.groups)}, "
                f"results={len(self.store)} frames)")

    # -- views over the concepts ----------------------------------------------------------------
    @property
    def obj_ids(self) -> list[int]:
        """The objects tracked now, in tracker order (concept by concept)."""
        return [o for c in self.concepts for o in c.assoc.obj_ids]

    @property
    def groups(self) -> list[Group]:
        """Every tracker group, concept by concept (a new list: add groups to a concept)."""
        return [g for c in self.concepts for g in c.groups]

    @property
    def phrases(self) -> list[str | None]:
        """Each concept's phrase, in the order added."""
        return [c.phrase for c in self.concepts]

    def _only(self, what: str) -> TrackedConcept:
        if len(self.concepts) != 1:
            raise SessionError(f"state.{what} needs exactly one concept (this session has "
                               f"{len(self.concepts)}): use state.concepts[i].{what}")
        return self.concepts[0]

    @property
    def text(self) -> str | None:
        """The phrase of a one-concept session (None without concepts)."""
        return self._only("text").text if self.concepts else None

    @property
    def exemplars(self) -> dict[int, tuple[Tensor, Tensor]]:
        """The exemplars of a one-concept session."""
        return self._only("exemplars").exemplars

    @property
    def assoc(self) -> AssociationState:
        """The association state of a one-concept session."""
        return self._only("assoc").assoc

    def owner(self, obj_id: int) -> TrackedConcept:
        """The concept an object belongs to (KeyError if none)."""
        for c in self.concepts:
            if obj_id in c.assoc.obj_ids:
                return c
        raise KeyError(obj_id)

    def add_concept(self, text: str | None = None, concept=None) -> TrackedConcept:
        """A new concept beside the others (no objects yet)."""
        c = TrackedConcept(self.next_concept, text, concept=concept)
        self.next_concept += 1
        self.concepts.append(c)
        return c

    # -- life cycle -----------------------------------------------------------------------------
    def clone(self) -> "SessionState":
        """A deep copy (tensors included; memories shared between a bank and its anchor stay
        shared in the copy). A copy taken during a pass has no running pass."""
        new = copy.deepcopy(self)
        new.running_pass = None
        return new

    def restart(self) -> None:
        """Start over for a new concept prompt (the official ``add_prompt`` resets the session):
        concepts, objects, memories, association and results are cleared, ids start at 0 again
        (the caller ends the passes)."""
        self.concepts = []
        self.max_obj_id = -1
        self.user_ids = set()
        self.store = {}
        self.prompt_frames = set()
        self.anchor_start = None

    def end_passes(self, why: str) -> None:
        """Any running pass stops at its next step with a SessionError saying ``why``."""
        self.generation += 1
        self.running_pass = None
        self.ended_by = why

    def phrase_of(self, obj_id: int) -> str | None:
        """The phrase an object carries: its concept's (None for objects made by clicks)."""
        for c in self.concepts:
            if obj_id in c.assoc.obj_ids or obj_id in c.assoc.obj_id_to_score:
                return None if obj_id in c.clicked else c.phrase
        return None

    def release(self, res: FrameResult, tracker_scores: dict[int, float]) -> FrameResult:
        """A frame leaves the session: its objects get their phrase, and it is stored (unless
        ``keep_results`` is off). Returns ``res``."""
        res.phrases = [self.phrase_of(o) for o in res.obj_ids.tolist()]
        if self.keep_results:
            self.store[res.frame_idx] = StoredFrame.of(res, tracker_scores)
        return res
