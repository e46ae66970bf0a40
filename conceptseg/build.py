"""One place that wires models: ``build_model`` (random weights) and ``load`` (weights) for the
image model; ``build_video_model``, ``load_video_model`` and ``save_video_checkpoint`` for the
video model (detector + tracker, see :mod:`conceptseg.video.checkpoint`)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_detector
from .config import PRESETS, Sam3Config, get_config
from .model.detector import Sam3Detector

DEFAULT_WEIGHTS = "tiny.safetensors"  # shipped in conceptseg/assets


def build_model(config: str | Sam3Config = "tiny", seed: int | None = None) -> Sam3Detector:
    """A model with freshly initialised weights (for training or tests)."""
    cfg = get_config(config) if isinstance(config, str) else config
    if seed is not None:
        torch.manual_seed(seed)
    return Sam3Detector(cfg).eval()


def default_weights_path() -> Path:
    return Path(str(resources.files("conceptseg") / "assets" / DEFAULT_WEIGHTS))


def load(path: str | os.PathLike | None = None, *, config: Sam3Config | str | None = None,
         device: str | torch.device = "cpu") -> Sam3Detector:
    """Load a model from a local checkpoint in any supported layout (official ``sam3.pt``,
    HF ``facebook/sam3`` safetensors or directory, or ours, image or video). With no path, the
    small model shipped inside the package."""
    if isinstance(config, str):
        config = get_config(config)
    if path is None:
        path = default_weights_path()
        if not path.exists():
            raise CheckpointError(f"the shipped default model is missing ({path}); reinstall "
                                  "conceptseg or pass a checkpoint path")
    from .video.checkpoint import is_ours_video_checkpoint, load_detector_part

    if is_ours_video_checkpoint(path):  # our video format: the image tensors plus tracker.*
        return load_detector_part(path, config=config, device=device)
    return load_detector(path, config=config, device=device)


# -- video model ------------------------------------------------------------------------------
def _tracker_config(tracker_config, detector_config: Sam3Config):
    from .tracker.config import TrackerConfig, get_tracker_config
    from .model.video_model import tracker_config_for

    if tracker_config is None:
        # the full model pairs with the official tracker, the tiny detector with the tiny
        # tracker; other detectors with the unit-test tracker sizes (fixture: the fixture's)
        name = {"sam3": "sam3", "fixture": "fixture", "tiny": "tiny"}.get(detector_config.name,
                                                                          "test")
        return tracker_config_for(detector_config, get_tracker_config(name))
    if isinstance(tracker_config, str):
        return tracker_config_for(detector_config, get_tracker_config(tracker_config))
    if not isinstance(tracker_config, TrackerConfig):
        raise TypeError("tracker_config must be a preset name or a TrackerConfig")
    return tracker_config


def build_video_model(config: str | Sam3Config = "test", tracker_config=None,
                      seed: int | None = None):
    """A :class:`~conceptseg.video.model.VideoModel` with freshly initialised weights. The
    tracker config defaults to the preset matching the detector, with the detector's geometry."""
    from .tracker.neck import TrackerNeck
    from .tracker.tracker import Tracker
    from .model.video_model import VideoModel

    cfg = get_config(config) if isinstance(config, str) else config
    tcfg = _tracker_config(tracker_config, cfg)
    if seed is not None:
        torch.manual_seed(seed)
    return VideoModel(Sam3Detector(cfg), Tracker(tcfg), TrackerNeck(tcfg)).eval()


def load_video_model(path: str | os.PathLike | None = None, *,
                     config: Sam3Config | str | None = None, tracker_config=None,
                     device: str | torch.device = "cpu"):
    """Load a :class:`~conceptseg.video.model.VideoModel` (detector + tracker neck + tracker)
    from the official video layout (``sam3.pt``: ``detector.*`` + ``tracker.*``), transformers'
    ``facebook/sam3`` or our format (:func:`save_video_checkpoint`). Strict: a checkpoint
    without tracker weights, or with a missing / unexpected / mis-shaped tensor, raises
    :class:`~conceptseg.checkpoint.CheckpointError`. With no path, the model shipped inside
    the package (which must carry tracker weights)."""
    from .video.checkpoint import load_video_model as _load

    if isinstance(config, str):
        config = get_config(config)
    if path is None:
        path = default_weights_path()
        if not path.exists():
            raise CheckpointError(f"the shipped default model is missing ({path}); reinstall "
                                  "conceptseg or pass a video checkpoint path")
    if isinstance(tracker_config, str):
        if config is None:
            raise ValueError("a tracker preset name needs the detector config too; pass a "
                             "TrackerConfig instead")
        tracker_config = _tracker_config(tracker_config, config)
    return _load(path, config=config, tracker_config=tracker_config, device=device)


def save_video_checkpoint(model, path: str | os.PathLike, layout: str = "ours",
                          half: bool = False) -> Path:
    """Write a video model: ``ours`` (safetensors, configs in the metadata; also loads as an
    image model with :func:`load`) or ``official`` (the ``sam3.pt`` key layout)."""
    from .video.checkpoint import save_video_checkpoint as _save

    return _save(model, path, layout, half=half)


__all__ = ["build_model", "load", "PRESETS", "default_weights_path", "build_video_model",
           "load_video_model", "save_video_checkpoint"]
