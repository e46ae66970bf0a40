"""``load``: build an image model, a video model or a tracker from any checkpoint, strictly.

    cs.load(path)                        -> Sam3Detector
    load(path, kind="video")             -> VideoModel (detector + tracker neck + tracker)
    load(path, kind="tracker")           -> (Tracker, TrackerNeck)

The file is read into :class:`~.formats.Parts` (:func:`.formats.read_checkpoint`: format and
layout detection, key tables); configs come from the caller, else the file, else the tensor
shapes (:mod:`.infer`). Every tensor must fit: a missing, unexpected or mis-shaped one is a
one-line :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from ..config import Sam3Config, get_config
from ..errors import CheckpointError, InputError, NoTrackerError
from ..model.detector import Sam3Detector
from ..model.video_model import VideoModel, check_compatible, resolve_tracker_config
from ..runtime import resolve_device
from ..tracker.config import TrackerConfig
from ..tracker.neck import TrackerNeck
from ..tracker.tracker import Tracker
from .formats import Parts, read_checkpoint
from .infer import fill_derivable, infer_config, infer_tracker_config, is_derivable
from .official import NECK_KEY_PREFIX, neck_state_dict, tracker_state_dict

Kind = Literal["image", "video", "tracker"]
DEFAULT_WEIGHTS = "tiny.safetensors"  # shipped in conceptseg/assets


def default_weights_path() -> Path:
    """The small video model shipped inside the package."""
    return Path(str(resources.files("conceptseg") / "assets" / DEFAULT_WEIGHTS))


def load(path: str | os.PathLike | None = None, kind: Kind = "image", *,
         config: Sam3Config | str | None = None,
         tracker_config: TrackerConfig | str | None = None,
         device: str | torch.device = "cpu"):
    """Load a model from a local checkpoint in any layout (ours, official ``sam3.pt``, HF
    ``facebook/sam3`` file or directory); with no path, the model shipped in the package.
    ``config`` / ``tracker_config`` (objects or preset names) override what the file says."""
    if kind not in ("image", "video", "tracker"):
        raise InputError(f"unknown model kind {kind!r} (image, video or tracker)")
    dev = resolve_device(device)
    config = resolve_config(config)
    if path is None:
        path = default_weights_path()
        if not path.exists():
            raise CheckpointError(f"the shipped default model is missing ({path}); reinstall "
                                  "conceptseg or pass a checkpoint path")
    parts = read_checkpoint(path)
    det_cfg = config or parts.config or infer_config(parts.detector, parts.source)
    if kind == "image":
        return build_detector(parts.detector, det_cfg, parts.source).to(dev).eval()
    tracker, neck = _tracker_parts(parts, det_cfg, tracker_config)
    if kind == "tracker":
        return tracker.to(dev).eval(), neck.to(dev).eval()
    detector = build_detector(parts.detector, det_cfg, parts.source)
    return VideoModel(detector, tracker, neck).to(dev).eval()


def resolve_config(spec: Sam3Config | str | os.PathLike | None) -> Sam3Config | None:
    """A config as given, a preset name, or the path of a config JSON file (our format)."""
    if spec is None or isinstance(spec, Sam3Config):
        return spec
    if Path(spec).suffix == ".json" or Path(spec).is_file():
        try:
            return Sam3Config.from_dict(json.loads(Path(spec).read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise InputError(f"config {spec}: {str(e).splitlines()[0]}") from None
    return get_config(str(spec))


def _tracker_parts(parts: Parts, det_cfg: Sam3Config, tracker_config
                   ) -> tuple[Tracker, TrackerNeck]:
    src = parts.source
    if not parts.has_tracker:
        raise NoTrackerError(f"{src} holds no tracker weights (tracker.*): it is an image-model "
                              "checkpoint; video tracking needs a video checkpoint such as the "
                              "official sam3.pt")
    if not parts.neck:
        raise CheckpointError(f"{src} has tracker weights but no tracker neck "
                              f"({NECK_KEY_PREFIX}*)")
    if tracker_config is not None:
        trk_cfg = resolve_tracker_config(tracker_config, det_cfg)
    else:
        trk_cfg = parts.tracker_config or infer_tracker_config(det_cfg, parts.tracker, parts.neck,
                                                               src)
    try:
        check_compatible(det_cfg, trk_cfg)
    except ValueError as e:
        raise CheckpointError(f"{src}: {e}") from None
    tracker, neck = Tracker(trk_cfg), TrackerNeck(trk_cfg)
    load_strict(tracker, parts.tracker, f"{src} (tracker.*)")
    load_strict(neck, parts.neck, f"{src} (tracker neck {NECK_KEY_PREFIX}*)")
    return tracker, neck


def build_detector(sd: dict[str, Tensor], config: Sam3Config, source: str) -> Sam3Detector:
    """A :class:`Sam3Detector` strictly loaded from an official image-layout state dict (built on
    the meta device and the tensors assigned, so a 3.4 GB checkpoint is not held twice)."""
    with torch.device("meta"):
        model = Sam3Detector(config)
    expected = model.state_dict()
    if any(k not in sd and is_derivable(k) for k in expected):
        sd = fill_derivable(sd, config)
    check_state_dict(expected, sd, source)
    sd = {k: v.to(dtype=expected[k].dtype) if v.dtype != expected[k].dtype else v
          for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval()


def load_strict(module: nn.Module, sd: dict[str, Tensor], what: str) -> None:
    """Load ``sd`` into ``module`` after :func:`check_state_dict`, cast to the module's dtypes."""
    expected = module.state_dict()
    check_state_dict(expected, sd, what)
    module.load_state_dict({k: v.to(dtype=expected[k].dtype) for k, v in sd.items()}, strict=True)


def load_tracker(sd: dict[str, Tensor], cfg: TrackerConfig) -> tuple[Tracker, TrackerNeck]:
    """(tracker, neck) strictly loaded from an official video state dict, in eval mode."""
    tracker, neck = Tracker(cfg), TrackerNeck(cfg)
    load_strict(tracker, tracker_state_dict(sd), "tracker.*")
    load_strict(neck, neck_state_dict(sd), "tracker neck")
    return tracker.eval(), neck.eval()


def check_state_dict(expected: dict[str, Tensor], got: dict[str, Tensor], source: str) -> None:
    """Strict comparison of names and shapes; raises CheckpointError naming the keys."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = sorted(k for k in set(expected) & set(got)
                    if tuple(expected[k].shape) != tuple(got[k].shape))
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
            if label == "mis-shaped":
                k = keys[0]
                shown += f" [{tuple(got[k].shape)} vs expected {tuple(expected[k].shape)}]"
            problems.append(f"{len(keys)} {label}: {shown}")
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))
