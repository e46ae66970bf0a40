"""Video-model checkpoints: detector + tracker neck + tracker, strict loading, our format.

Layouts read by :func:`load_video_model`:

* **official** (``sam3.pt``): ``detector.*`` (the image model, incl. the tracker neck under
  ``detector.backbone.vision_backbone.sam2_convs.*``) and ``tracker.*``;
* **transformers** (``facebook/sam3`` ``Sam3VideoModel``): ``detector_model.*``,
  ``tracker_model.*`` and ``tracker_neck.*``;
* **ours**: safetensors, format ``conceptseg/1`` (the image format) whose tensors are the image
  model's, unprefixed (so that the file is also a valid image checkpoint for
  :func:`conceptseg.build.load`), plus ``tracker.*`` and
  ``detector.backbone.vision_backbone.sam2_convs.*`` exactly as in ``sam3.pt``; the metadata holds
  ``config`` (the detector's) and ``tracker_config``.

Configs: ours carries both; for the other layouts the detector's is inferred from tensor shapes
(as for image checkpoints) and the tracker's by matching the tracker presets, with their geometry
taken from the detector (:func:`conceptseg.video.model.tracker_config_for`). Every load is strict:
a missing, unexpected or mis-shaped tensor is a :class:`~conceptseg.checkpoint.CheckpointError`
naming it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor

from ..atomic import atomic_write
from ..checkpoint import (OURS_FORMAT, CheckpointError, _derivable_tensors, _is_derivable,
                          _read_raw, check_state_dict, infer_config, to_official_image_layout)
from ..config import Sam3Config
from ..tracker.config import TRACKER_PRESETS, TrackerConfig
from ..tracker.neck import NECK_PREFIX, TrackerNeck
from ..tracker.tracker import Tracker
from ..model.video_model import VideoModel, check_compatible, tracker_config_for

TRACKER_PREFIX = "tracker."
NECK_KEY_PREFIX = NECK_PREFIX + "sam2_convs."  # detector.backbone.vision_backbone.sam2_convs.
TRACKER_CONFIG_KEY = "tracker_config"


def _peek_metadata(path: str | os.PathLike) -> dict[str, str] | None:
    """safetensors metadata without reading tensors; None for other files."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        with open(p, "rb") as fh:
            head = fh.read(2)
        if head[:2] == b"PK" or head[:1] == b"\x80":
            return None
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            return f.metadata() or {}
    except Exception:
        return None


def is_ours_video_checkpoint(path: str | os.PathLike) -> bool:
    meta = _peek_metadata(path)
    return bool(meta) and meta.get("format") == OURS_FORMAT and TRACKER_CONFIG_KEY in meta


def _no_tracker(path) -> CheckpointError:
    return CheckpointError(f"{path} holds no tracker weights (tracker.*): it is an image-model "
                           "checkpoint; video tracking needs a video checkpoint such as the "
                           "official sam3.pt")


def split_video_state_dict(raw: dict[str, Tensor], meta: dict[str, str], source: str
                           ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor],
                                      Sam3Config | None, TrackerConfig | None, str]:
    """(detector, tracker, neck) state dicts in our module naming (detector: official image
    layout; tracker: ``tracker.`` stripped; neck: ``sam2_convs.*``), the configs found in the
    metadata (or None) and the layout name."""
    keys = list(raw)
    if meta.get("format") == OURS_FORMAT:
        if TRACKER_CONFIG_KEY not in meta:
            raise _no_tracker(source)
        det = {k: v for k, v in raw.items() if not k.startswith((TRACKER_PREFIX, "detector."))}
        trk = {k[len(TRACKER_PREFIX):]: v for k, v in raw.items() if k.startswith(TRACKER_PREFIX)}
        neck = {k[len(NECK_PREFIX):]: v for k, v in raw.items() if k.startswith(NECK_KEY_PREFIX)}
        stray = [k for k in keys if k.startswith("detector.") and not k.startswith(NECK_KEY_PREFIX)]
        if stray:
            raise CheckpointError(f"{source}: unexpected keys {stray[:3]} in a conceptseg video "
                                  "checkpoint")
        try:
            det_cfg = Sam3Config.from_dict(json.loads(meta["config"]))
            trk_cfg = TrackerConfig.from_dict(json.loads(meta[TRACKER_CONFIG_KEY]))
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{source}: unreadable config in the metadata: {e}") from None
        return det, trk, neck, det_cfg, trk_cfg, "ours"
    if any(k.startswith(TRACKER_PREFIX) for k in keys):
        det, _ = to_official_image_layout(raw)
        trk = {k[len(TRACKER_PREFIX):]: v for k, v in raw.items() if k.startswith(TRACKER_PREFIX)}
        neck = {k[len(NECK_PREFIX):]: v for k, v in raw.items() if k.startswith(NECK_KEY_PREFIX)}
        return det, trk, neck, None, None, "official"
    if any(k.startswith("tracker_model.") for k in keys):
        from ..tracker import checkpoint_hf as tracker_hf

        det, _ = to_official_image_layout(raw)
        try:
            both = tracker_hf.hf_to_official(raw, prefix="tracker_model.")
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{source}: cannot read the transformers tracker: {e}") from None
        trk = {k: v for k, v in both.items() if not k.startswith("sam2_convs.")}
        neck = {k: v for k, v in both.items() if k.startswith("sam2_convs.")}
        return det, trk, neck, None, None, "hf"
    raise _no_tracker(source)


def _shapes(module: torch.nn.Module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def infer_tracker_config(det_cfg: Sam3Config, trk: dict[str, Tensor], neck: dict[str, Tensor],
                         source: str = "checkpoint") -> TrackerConfig:
    """The tracker preset (geometry from the detector) whose tensor names and shapes equal these."""
    got = {**{f"t.{k}": tuple(v.shape) for k, v in trk.items()},
           **{f"n.{k}": tuple(v.shape) for k, v in neck.items()}}
    best, best_diff = None, None
    for name, make in TRACKER_PRESETS.items():
        cfg = tracker_config_for(det_cfg, make())
        with torch.device("meta"):
            ref = {**{f"t.{k}": s for k, s in _shapes(Tracker(cfg)).items()},
                   **{f"n.{k}": s for k, s in _shapes(TrackerNeck(cfg)).items()}}
        diff = {k for k in ref.keys() | got.keys() if ref.get(k) != got.get(k)}
        if not diff:
            return cfg
        if best_diff is None or len(diff) < len(best_diff):
            best, best_diff = name, diff
    raise CheckpointError(f"{source}: tracker sizes match no tracker preset (closest {best!r} "
                          f"differs in {len(best_diff)} tensors, e.g. "
                          f"{sorted(k[2:] for k in best_diff)[:3]}); save it in our format with "
                          "its config")


def detector_from_state_dict(sd: dict[str, Tensor], config: Sam3Config, source: str,
                             device: str | torch.device = "cpu"):
    """Strictly load a :class:`Sam3Detector` from an official image-layout state dict (built on
    the meta device, tensors assigned: nothing is held twice)."""
    from ..model.detector import Sam3Detector

    with torch.device("meta"):
        model = Sam3Detector(config)
    expected = model.state_dict()
    sd = dict(sd)
    missing_derivable = [k for k in expected if k not in sd and _is_derivable(k)]
    if missing_derivable:
        fresh = _derivable_tensors(config)
        for k in missing_derivable:
            sd[k] = fresh[k]
    check_state_dict(expected, sd, f"{source} (detector)")
    sd = {k: v.to(dtype=expected[k].dtype) if v.dtype != expected[k].dtype else v
          for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    return model.to(device).eval()


def _load_strict(module: torch.nn.Module, sd: dict[str, Tensor], what: str) -> None:
    expected = module.state_dict()
    check_state_dict(expected, sd, what)
    module.load_state_dict({k: v.to(dtype=expected[k].dtype) for k, v in sd.items()}, strict=True)


def load_video_model(path: str | os.PathLike, *, config: Sam3Config | None = None,
                     tracker_config: TrackerConfig | None = None,
                     device: str | torch.device = "cpu") -> VideoModel:
    """Build and strictly load a :class:`VideoModel` (eval mode) from any supported layout."""
    raw, meta = _read_raw(path)
    det_sd, trk_sd, neck_sd, det_cfg, trk_cfg, layout = split_video_state_dict(raw, meta, str(path))
    del raw
    if not trk_sd:
        raise _no_tracker(path)
    if not neck_sd:
        raise CheckpointError(f"{path} has tracker weights but no tracker neck "
                              f"({NECK_KEY_PREFIX}*)")
    det_cfg = config or det_cfg or infer_config(det_sd)
    trk_cfg = tracker_config or trk_cfg or infer_tracker_config(det_cfg, trk_sd, neck_sd, str(path))
    try:
        check_compatible(det_cfg, trk_cfg)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    detector = detector_from_state_dict(det_sd, det_cfg, str(path), device)
    tracker, neck = Tracker(trk_cfg), TrackerNeck(trk_cfg)
    _load_strict(tracker, trk_sd, f"{path} (tracker.*)")
    _load_strict(neck, neck_sd, f"{path} (tracker neck {NECK_KEY_PREFIX}*)")
    return VideoModel(detector, tracker.to(device).eval(), neck.to(device).eval()).eval()


def load_detector_part(path: str | os.PathLike, config: Sam3Config | None = None,
                       device: str | torch.device = "cpu"):
    """The detector of a video checkpoint in our format (what :func:`conceptseg.build.load`
    returns for it)."""
    raw, meta = _read_raw(path)
    det_sd, _, _, det_cfg, _, _ = split_video_state_dict(raw, meta, str(path))
    return detector_from_state_dict(det_sd, config or det_cfg, str(path), device)


def video_state_dict(model: VideoModel, layout: str = "ours") -> dict[str, Tensor]:
    """The tensors of ``model`` as stored in ``layout`` ("ours" or "official")."""
    det = model.detector.state_dict()
    out: dict[str, Tensor] = {}
    if layout == "ours":
        out.update(det)
    elif layout == "official":
        out.update({f"detector.{k}": v for k, v in det.items()})
    else:
        raise ValueError(f"unknown video layout {layout!r} (choose 'ours' or 'official')")
    out.update({NECK_PREFIX + k: v for k, v in model.neck.state_dict().items()})
    out.update({TRACKER_PREFIX + k: v for k, v in model.tracker.state_dict().items()})
    return out


def save_video_checkpoint(model: VideoModel, path: str | os.PathLike,
                          layout: str = "ours", half: bool = False) -> Path:
    """Write a video model atomically: ``ours`` (safetensors with both configs, readable as an
    image checkpoint too) or ``official`` (``torch.save({"model": ...})`` in the ``sam3.pt``
    naming). ``half`` stores float32 tensors as float16 (loading casts them back)."""
    sd = {k: v.detach().cpu().contiguous().clone()
          for k, v in video_state_dict(model, layout).items()}
    if half:
        sd = {k: v.half() if v.dtype == torch.float32 else v for k, v in sd.items()}
    if layout == "ours":
        from safetensors.torch import save_file

        meta = {"format": OURS_FORMAT, "config": json.dumps(model.config.to_dict()),
                TRACKER_CONFIG_KEY: json.dumps(model.tracker_config.to_dict())}
        return atomic_write(path, lambda t: save_file(sd, t, metadata=meta))
    return atomic_write(path, lambda t: torch.save({"model": sd}, t))
