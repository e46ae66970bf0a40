"""Wiring models: ``build_model`` / ``build_video_model`` (fresh weights) and, as thin calls
into :mod:`conceptseg.checkpoint`, ``load`` / ``load_video_model`` / ``save_video_checkpoint``."""

from __future__ import annotations

import os

import torch

from .checkpoint import default_weights_path, save_video_checkpoint
from .checkpoint import load as _load
from .config import PRESETS, Sam3Config, get_config
from .model.detector import Sam3Detector
from .model.video_model import VideoModel
from .model.video_model import resolve_tracker_config as _tracker_config
from .tracker.config import TrackerConfig
from .tracker.neck import TrackerNeck
from .tracker.tracker import Tracker


def build_model(config: str | Sam3Config = "tiny", seed: int | None = None) -> Sam3Detector:
    """A model with freshly initialised weights (for training or tests)."""
    cfg = get_config(config) if isinstance(config, str) else config
    if seed is not None:
        torch.manual_seed(seed)
    return Sam3Detector(cfg).eval()


def build_video_model(config: str | Sam3Config = "test",
                      tracker_config: TrackerConfig | str | None = None,
                      seed: int | None = None) -> VideoModel:
    """A :class:`~conceptseg.model.video_model.VideoModel` with freshly initialised weights. The
    tracker config defaults to the preset matching the detector, with the detector's geometry."""
    cfg = get_config(config) if isinstance(config, str) else config
    tcfg = _tracker_config(tracker_config, cfg)
    if seed is not None:
        torch.manual_seed(seed)
    return VideoModel(Sam3Detector(cfg), Tracker(tcfg), TrackerNeck(tcfg)).eval()


def load(path: str | os.PathLike | None = None, *, config: Sam3Config | str | None = None,
         device: str | torch.device = "cpu") -> Sam3Detector:
    """The image model of any checkpoint (see :func:`conceptseg.checkpoint.load`)."""
    return _load(path, "image", config=config, device=device)


def load_video_model(path: str | os.PathLike | None = None, *,
                     config: Sam3Config | str | None = None,
                     tracker_config: TrackerConfig | str | None = None,
                     device: str | torch.device = "cpu") -> VideoModel:
    """The video model (detector + tracker neck + tracker) of a checkpoint that has a tracker
    (see :func:`conceptseg.checkpoint.load`); with no path, the model shipped in the package."""
    return _load(path, "video", config=config, tracker_config=tracker_config, device=device)


__all__ = ["build_model", "load", "PRESETS", "default_weights_path", "build_video_model",
           "load_video_model", "save_video_checkpoint"]
