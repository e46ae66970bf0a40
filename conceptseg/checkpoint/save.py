"""Writing image and video models in the three layouts, and converting files between them.

* ours: safetensors, the configs in the metadata (a video file is also an image checkpoint);
* official: ``torch.save({"model": ..., "conceptseg": {configs}})`` in the ``sam3.pt`` naming;
  the official loader reads ``model`` and ignores the rest;
* hf: safetensors in transformers' naming: ``Sam3Model`` for an image model, ``Sam3VideoModel``
  (``detector_model.*``, ``tracker_model.*``, ``tracker_neck.*``) for a video model; our configs
  go into ``conceptseg_*`` metadata, which transformers ignores.

So every layout keeps our config, including the calibration ``score_bias`` (which the official
and transformers code do not apply). Writes are atomic; tensors keep their dtype unless asked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import safetensors.torch as st  # called as st.save_file: late-bound, so tests can fail it
import torch
from torch import Tensor

from ..atomic import atomic_write
from ..config import Sam3Config
from ..errors import CheckpointError, InputError
from ..model.detector import Sam3Detector
from ..model.video_model import VideoModel
from ..tracker.neck import TrackerNeck
from ..tracker.tracker import Tracker
from .formats import (CONFIG_KEY, HF_META_PREFIX, OURS_FORMAT, PT_META_KEY, TRACKER_CONFIG_KEY,
                      Layout, Parts, read_checkpoint)
from .hf import official_to_hf
from .hf_tracker import HF_TRACKER_PREFIX
from .hf_tracker import official_to_hf as tracker_to_hf
from .infer import fill_derivable, infer_config, infer_tracker_config
from .load import check_state_dict
from .official import join

LAYOUTS = ("ours", "official", "hf")


def save(model: Sam3Detector | VideoModel | Parts, path: str | os.PathLike,
         layout: Layout = "ours", *, dtype: torch.dtype | None = None) -> Path:
    """Write an image model, a video model (detector + tracker neck + tracker) or read
    :class:`Parts` in ``layout``, atomically. ``dtype`` casts the floating tensors (e.g.
    ``torch.float16``); None keeps each tensor's dtype."""
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r} (choose one of {', '.join(LAYOUTS)})")
    parts = model if isinstance(model, Parts) else _parts_of(model)
    if parts.config is None:
        raise CheckpointError("no config to write with the weights")
    det, trk, neck = (_prepare(sd, dtype) for sd in (parts.detector, parts.tracker, parts.neck))
    configs = {CONFIG_KEY: json.dumps(parts.config.to_dict())}
    if trk:
        configs[TRACKER_CONFIG_KEY] = json.dumps(parts.tracker_config.to_dict())
    if layout != "hf":
        det = fill_derivable(det, parts.config)
    if layout == "ours":
        sd = _unshared(join(det, trk, neck, prefixed_detector=False))
        meta = {"format": OURS_FORMAT, **configs}
        return atomic_write(path, lambda t: st.save_file(sd, t, metadata=meta))
    if layout == "official":
        sd = join(det, trk, neck, prefixed_detector=True)
        return atomic_write(path, lambda t: torch.save({"model": sd, PT_META_KEY: configs}, t))
    sd = official_to_hf(det)
    if trk:
        sd = {"detector_model." + k: v for k, v in sd.items()}
        sd.update(tracker_to_hf({**trk, **neck}, prefix=HF_TRACKER_PREFIX))
    sd = _unshared(sd)
    meta = {"format": "pt", **{HF_META_PREFIX + k: v for k, v in configs.items()}}
    return atomic_write(path, lambda t: st.save_file(sd, t, metadata=meta))


def _parts_of(model) -> Parts:
    if isinstance(model, VideoModel):
        return Parts(model.detector.state_dict(), model.tracker.state_dict(),
                     model.neck.state_dict(), model.config, model.tracker_config, "ours",
                     "safetensors", "model")
    if isinstance(model, Sam3Detector):
        return Parts(model.state_dict(), {}, {}, model.config, None, "ours", "safetensors",
                     "model")
    raise InputError(f"cannot save a {type(model).__name__} (expected Sam3Detector or VideoModel)")


def _prepare(sd: dict[str, Tensor], dtype: torch.dtype | None) -> dict[str, Tensor]:
    out = {}
    for k, v in sd.items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point() and v.dtype != dtype:
            v = v.to(dtype)
        out[k] = v.contiguous()
    return out


def _unshared(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """safetensors refuses tensors that share memory: give repeats their own copy."""
    seen: set[int] = set()
    out = {}
    for k, v in sd.items():
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen and v.numel() else v
        seen.add(ptr)
    return out


def save_checkpoint(model_or_sd, path: str | os.PathLike, layout: Layout = "ours",
                    config: Sam3Config | None = None) -> Path:
    """Write an image model, or a detector state dict (official image layout; its config
    given or read off its shapes), in ``layout``."""
    if isinstance(model_or_sd, dict):
        cfg = config or infer_config(model_or_sd)
        return save(Parts(model_or_sd, {}, {}, cfg, None, "ours", "safetensors", "state dict"),
                    path, layout)
    if config is not None and config != model_or_sd.config:
        parts = _parts_of(model_or_sd)
        parts.config = config
        return save(parts, path, layout)
    return save(model_or_sd, path, layout)


def save_video_checkpoint(model: VideoModel, path: str | os.PathLike, layout: Layout = "ours",
                          half: bool = False, dtype: torch.dtype | None = None) -> Path:
    """Write a video model: ``ours`` (also loads as an image model), ``official`` (the
    ``sam3.pt`` naming) or ``hf``. ``half`` stores float tensors as float16 (loading casts them
    back); ``dtype`` any other float dtype."""
    return save(model, path, layout, dtype=torch.float16 if half else dtype)


def convert(src: str | os.PathLike, dst: str | os.PathLike, layout: Layout,
            config: Sam3Config | None = None) -> Layout:
    """Read any layout, write ``layout`` (a video checkpoint stays one, tensors keep their dtype).
    The weights are checked against the model they belong to first. Returns the source layout."""
    return convert_parts(src, dst, layout, config).layout


def convert_parts(src: str | os.PathLike, dst: str | os.PathLike, layout: Layout,
                  config: Sam3Config | None = None) -> Parts:
    """:func:`convert`, returning what was written (configs complete; ``layout``: the source's)."""
    parts = read_checkpoint(src)
    parts.config = config or parts.config or infer_config(parts.detector, parts.source)
    with torch.device("meta"):
        expected = Sam3Detector(parts.config).state_dict()
    check_state_dict(expected, fill_derivable(parts.detector, parts.config), parts.source)
    if parts.has_tracker:
        parts.tracker_config = parts.tracker_config or infer_tracker_config(
            parts.config, parts.tracker, parts.neck, parts.source)
        with torch.device("meta"):
            tracker, neck = Tracker(parts.tracker_config), TrackerNeck(parts.tracker_config)
        check_state_dict(tracker.state_dict(), parts.tracker, f"{parts.source} (tracker.*)")
        check_state_dict(neck.state_dict(), parts.neck, f"{parts.source} (tracker neck)")
    save(parts, dst, layout)
    return parts
