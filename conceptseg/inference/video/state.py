"""The whole state of one video session, as one declared object.

:class:`SessionState` is everything that decides what later frames will output: the video's
shape, the prompts, the tracker groups with their memory banks, the association's memory, the
bookkeeping of propagation passes and the results released so far. It holds no model, no open
file and no cache: :class:`~.engine.VideoEngine` (the model, the decoded frames, feature and
detection caches) works on it, and :class:`~.session.VideoSession` is a thin façade holding one
engine and one state. A state can be copied (:meth:`SessionState.clone`, a deep copy that keeps
shared frame memories shared) and saved / restored (:mod:`.snapshot`).

Who changes what: the engine's ``step`` (one frame) and the click / removal functions of
:mod:`.clicks` and :mod:`.groups` mutate the state they are given, in place; nothing else does.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from torch import Tensor

from ...tracker.bank import FrameMemory, MemoryBank
from .association_state import AssociationConfig, AssociationState
from .results import FrameResult, StoredFrame

__all__ = ["Group", "SessionState"]


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
class SessionState:
    """Everything a video session remembers (see the module docstring)."""

    # -- frames / source (the video itself is reopened from its path; these check it)
    video: str  # the video as given to the session (path of a file, folder or image)
    num_frames: int  # frames in the video
    size: tuple[int, int]  # (H, W) of every frame
    is_image: bool  # one still image (no object limit, as officially)
    # -- settings
    config: AssociationConfig  # association thresholds
    keep_results: bool = True  # keep released frames in `store`
    # -- prompts (one phrase per session today; `phrases` of results carry it per object)
    text: str | None = None  # the concept text; None: exemplars only ("visual")
    # frame -> exemplar boxes on it (K x 4 normalised cxcywh, K labels 1/0)
    exemplars: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    prompt_frames: set[int] = field(default_factory=set)  # frames given a prompt or clicks
    # -- per-object tracker groups and their memory banks
    groups: list[Group] = field(default_factory=list)  # in creation order
    # -- association
    assoc: AssociationState = field(default_factory=AssociationState)  # official tracker_metadata
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
                f"text={self.text!r}, obj_ids={self.obj_ids}, groups={len(self.groups)}, "
                f"results={len(self.store)} frames)")

    @property
    def obj_ids(self) -> list[int]:
        """The objects tracked now, in tracker order."""
        return list(self.assoc.obj_ids)

    def clone(self) -> "SessionState":
        """A deep copy (tensors included; memories shared between a bank and its anchor stay
        shared in the copy). A copy taken during a pass has no running pass."""
        new = copy.deepcopy(self)
        new.running_pass = None
        return new

    def restart(self, keep_text: bool) -> None:
        """Start over for a new concept prompt (the official ``add_prompt`` resets the session):
        objects, memories, association and results are cleared (the caller ends the passes)."""
        if not keep_text:
            self.text = None
        self.exemplars = {}
        self.groups = []
        self.assoc = AssociationState()
        self.user_ids = set()
        self.store = {}
        self.prompt_frames = set()
        self.anchor_start = None

    def end_passes(self, why: str) -> None:
        """Any running pass stops at its next step with a SessionError saying ``why``."""
        self.generation += 1
        self.running_pass = None
        self.ended_by = why

    def release(self, res: FrameResult, tracker_scores: dict[int, float]) -> FrameResult:
        """A frame leaves the session: its objects get their phrase, and it is stored (unless
        ``keep_results`` is off). Returns ``res``."""
        res.phrases = [None if o in self.user_ids else self.text for o in res.obj_ids.tolist()]
        if self.keep_results:
            self.store[res.frame_idx] = StoredFrame.of(res, tracker_scores)
        return res
