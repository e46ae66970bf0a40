"""The SAM 3 tracker (SAM 2 style memory tracker) and its FPN neck."""

from .bank import FrameMemory, MemoryBank, MemorySelection, memory_score
from .config import TRACKER_PRESETS, TrackerConfig, get_tracker_config
from .neck import TrackerNeck
from .tracker import NO_OBJ_SCORE, SamOutput, Tracker, TrackerFeatures

__all__ = ["FrameMemory", "MemoryBank", "MemorySelection", "memory_score", "TRACKER_PRESETS",
           "TrackerConfig", "get_tracker_config", "TrackerNeck", "NO_OBJ_SCORE", "SamOutput",
           "Tracker", "TrackerFeatures"]
