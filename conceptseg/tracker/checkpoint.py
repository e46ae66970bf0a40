"""Loading the tracker and its neck from an official video checkpoint (``sam3.pt`` layout).

The official file holds ``tracker.*`` (309 tensors) and, under the detector,
``detector.backbone.vision_backbone.sam2_convs.*`` (22 tensors). :class:`Tracker` takes the
former with ``tracker.`` stripped, :class:`TrackerNeck` the latter with
``detector.backbone.vision_backbone.`` stripped. Loading is strict.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from .config import TrackerConfig
from .neck import NECK_PREFIX, TrackerNeck
from .tracker import Tracker

TRACKER_PREFIX = "tracker."
# the image model with the interactive predictor stores the same tracker under this prefix
INST_PREFIX = "inst_interactive_predictor.model."


def _unwrap(sd) -> dict[str, Tensor]:
    if isinstance(sd, (str, os.PathLike)):
        sd = torch.load(sd, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    return sd


def tracker_state_dict(sd) -> dict[str, Tensor]:
    """The ``tracker.*`` (or ``inst_interactive_predictor.model.*``) tensors, prefix stripped."""
    sd = _unwrap(sd)
    for prefix in (TRACKER_PREFIX, INST_PREFIX):
        out = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if out:
            return out
    raise KeyError("no tracker.* tensors in this checkpoint")


def neck_state_dict(sd) -> dict[str, Tensor]:
    """The ``sam2_convs`` tensors as :class:`TrackerNeck` keys. Accepts the video layout
    (``detector.backbone...``) and the image layout (``backbone...``)."""
    sd = _unwrap(sd)
    out = {}
    for k, v in sd.items():
        i = k.find("sam2_convs.")
        if i >= 0 and k[:i] in (NECK_PREFIX, NECK_PREFIX[len("detector."):]):
            out[k[i:]] = v
    if not out:
        raise KeyError("no sam2_convs.* tensors in this checkpoint")
    return out


def load_tracker(sd, cfg: TrackerConfig) -> tuple[Tracker, TrackerNeck]:
    """Build and strictly load (tracker, neck) from an official video checkpoint (a path or a
    state dict), in eval mode."""
    sd = _unwrap(sd)
    tracker, neck = Tracker(cfg), TrackerNeck(cfg)
    tracker.load_state_dict(tracker_state_dict(sd), strict=True)
    neck.load_state_dict(neck_state_dict(sd), strict=True)
    return tracker.eval(), neck.eval()
