"""The official layout (``sam3.pt``) and ours, which uses the same tensor names: the key table.

Official names are our module names, so the table is a set of prefixes::

    official sam3.pt                                  ours (safetensors)   our module
    detector.<k>                                      <k>                  Sam3Detector <k>
    detector.backbone.vision_backbone.sam2_convs.<k>  (as official)        TrackerNeck sam2_convs.*
    tracker.<k>                                       tracker.<k>          Tracker <k>

An official image-only state dict may also come unprefixed (``backbone.vision_backbone...``,
then its tracker neck is ``backbone.vision_backbone.sam2_convs.*``), and the image model with the
interactive predictor stores the tracker as ``inst_interactive_predictor.model.*``.
"""

from __future__ import annotations

from torch import Tensor

from ..tracker.neck import NECK_PREFIX

DETECTOR_PREFIX = "detector."
TRACKER_PREFIX = "tracker."
INST_PREFIX = "inst_interactive_predictor.model."  # the image model's copy of the tracker
NECK_KEY_PREFIX = NECK_PREFIX + "sam2_convs."  # detector.backbone.vision_backbone.sam2_convs.
_IMAGE_NECK_PREFIX = NECK_PREFIX[len(DETECTOR_PREFIX):]  # backbone.vision_backbone.
_DETECTOR_START = "backbone.vision_backbone."


def looks_like_official(keys) -> bool:
    """Whether state-dict keys are in the official layout (video or image)."""
    return any(k.startswith((DETECTOR_PREFIX, _DETECTOR_START)) for k in keys)


def tracker_state_dict(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """The ``tracker.*`` (or ``inst_interactive_predictor.model.*``) tensors, prefix stripped;
    empty when there are none."""
    for prefix in (TRACKER_PREFIX, INST_PREFIX):
        out = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if out:
            return out
    return {}


def neck_state_dict(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """The ``sam2_convs`` tensors as :class:`TrackerNeck` keys, from the video layout
    (``detector.backbone...``) or the image layout (``backbone...``); empty when there are none."""
    out = {}
    for k, v in sd.items():
        i = k.find("sam2_convs.")
        if i >= 0 and k[:i] in (NECK_PREFIX, _IMAGE_NECK_PREFIX):
            out[k[i:]] = v
    return out


def split(sd: dict[str, Tensor], prefixed_detector: bool
          ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """(detector, tracker, neck) state dicts in our module naming. ``prefixed_detector``: the
    official layout, whose image model may sit under ``detector.``; else ours (unprefixed)."""
    other = (TRACKER_PREFIX, "inst_interactive_predictor.", DETECTOR_PREFIX)
    if prefixed_detector and any(k.startswith(DETECTOR_PREFIX) for k in sd):
        det = {k[len(DETECTOR_PREFIX):]: v for k, v in sd.items() if k.startswith(DETECTOR_PREFIX)}
    else:
        det = {k: v for k, v in sd.items() if not k.startswith(other)}
        stray = [k for k in sd
                 if k.startswith(DETECTOR_PREFIX) and not k.startswith(NECK_KEY_PREFIX)]
        if stray:
            raise KeyError(f"unexpected keys {stray[:3]} in a conceptseg checkpoint")
    det = {k: v for k, v in det.items() if not k.startswith(_IMAGE_NECK_PREFIX + "sam2_convs.")}
    return det, tracker_state_dict(sd), neck_state_dict(sd)


def join(detector: dict[str, Tensor], tracker: dict[str, Tensor], neck: dict[str, Tensor],
         prefixed_detector: bool) -> dict[str, Tensor]:
    """The inverse of :func:`split`: one state dict in the official (``prefixed_detector``) or
    our layout."""
    head = DETECTOR_PREFIX if prefixed_detector else ""
    out = {head + k: v for k, v in detector.items()}
    out.update({NECK_PREFIX + k: v for k, v in neck.items()})
    out.update({TRACKER_PREFIX + k: v for k, v in tracker.items()})
    return out
