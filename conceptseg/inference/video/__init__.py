"""Video inference: :class:`VideoSession` (the façade), :class:`SessionState` (all it
remembers), :class:`VideoEngine` (one frame), :class:`FrameResult` / :class:`VideoResults`
(what it outputs) and the detection <-> track association it runs on every frame."""

from .association_state import AssociationConfig, AssociationState
from .engine import VideoEngine
from .results import FrameResult, VideoResults
from .session import DIRECTIONS, VideoSession
from .state import SessionState

__all__ = ["VideoSession", "SessionState", "VideoEngine", "FrameResult", "VideoResults",
           "AssociationConfig", "AssociationState", "DIRECTIONS"]
