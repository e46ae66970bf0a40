"""Interactive refinement on one image with the tracker's SAM heads: clicks, a box, a mask, or
one instance of a concept :class:`~conceptseg.inference.results.Prediction` -> a
:class:`~conceptseg.inference.results.Refinement`. The official ``predict_inst``: no memory,
``no_mem_embed`` added, small background holes filled before upsampling."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..errors import InputError
from .prompts import parse_clicks
from .results import Prediction, Refinement, plain_cpu

REFINE_MAX_HOLE_AREA = 256  # official SAM3InteractiveImagePredictor default, at 288 x 288


@dataclass
class RefinePrompt:
    """One refine request in tracker-free form, validated against the image."""

    points: tuple[torch.Tensor, torch.Tensor] | None  # (N x 2 pixel xy float32, N int32 labels)
    box: torch.Tensor | None  # 2 x 2 pixel corners [[x0, y0], [x1, y1]]
    mask: torch.Tensor | None  # 1 x 1 x h x w mask logits


def interactive_heads(tracker):
    """(Tracker, TrackerNeck) from a VideoModel, a (tracker, neck) pair or None."""
    if tracker is None:
        return None, None
    if hasattr(tracker, "tracker") and hasattr(tracker, "neck"):
        return tracker.tracker, tracker.neck
    if isinstance(tracker, (tuple, list)) and len(tracker) == 2:
        return tracker[0], tracker[1]
    raise InputError("tracker must be a VideoModel (conceptseg.build.load_video_model) or a "
                     "(Tracker, TrackerNeck) pair")


def fill_small_background(logits: torch.Tensor, max_area: int, value: float) -> torch.Tensor:
    """Background (<= 0) 8-connected components of area <= max_area (also those touching the
    border) set to ``value``: the official SAM 1 predictor's hole filling. K x h x w."""
    if max_area <= 0:
        return logits
    bg = (logits <= 0).cpu().numpy()
    fill = np.zeros_like(bg)
    for k, b in enumerate(bg):
        lab, n = ndimage.label(b, structure=np.ones((3, 3), dtype=bool))
        if n:
            areas = np.bincount(lab.ravel(), minlength=n + 1)
            areas[0] = max_area + 1
            fill[k] = (areas[lab] <= max_area) & b
    return torch.where(torch.from_numpy(fill).to(logits.device),
                       torch.tensor(value, dtype=logits.dtype, device=logits.device), logits)


def parse_box(box, width: int, height: int) -> torch.Tensor:
    """(x0, y0, x1, y1) pixels inside the image -> 2 x 2 float32 corners."""
    try:
        x0, y0, x1, y1 = (float(v) for v in (box.tolist() if torch.is_tensor(box) else box))
    except (TypeError, ValueError):
        raise InputError("box must be (x0, y0, x1, y1) in pixels") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise InputError("box has a non-finite coordinate")
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"box ({x0:g},{y0:g},{x1:g},{y1:g}) needs x0 < x1 and y0 < y1")
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise InputError(f"box ({x0:g},{y0:g},{x1:g},{y1:g}) lies outside the {width}x{height} image")
    return torch.tensor([[x0, y0], [x1, y1]], dtype=torch.float32)


def parse_mask(mask) -> torch.Tensor:
    """h x w mask logits (any leading 1-dims) -> 1 x 1 x h x w float32."""
    try:
        m = torch.as_tensor(mask.detach().cpu().numpy() if torch.is_tensor(mask)
                            else np.asarray(mask, dtype=np.float32), dtype=torch.float32)
    except (TypeError, ValueError):
        raise InputError("mask_input must be an h x w array of mask logits") from None
    while m.dim() > 2 and m.shape[0] == 1:
        m = m[0]
    if m.dim() != 2 or min(m.shape) < 1:
        raise InputError(f"mask_input must be h x w logits, got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise InputError("mask_input has non-finite values")
    return m[None, None]


def build_prompt(points, labels, box, mask_input, instance, image_size: tuple[int, int],
                 image_id: str | None) -> RefinePrompt:
    """Validate a refine request; ``instance=(prediction, i)`` adds that instance's box (unless
    ``box`` is given) and its mask as logits (unless ``mask_input`` is given). The prediction
    must have been made on this very image (same fingerprint)."""
    H, W = image_size
    inst_mask = None
    if instance is not None:
        try:
            pred, idx = instance
            idx = int(idx)
        except (TypeError, ValueError):
            raise InputError("instance must be (prediction, index)") from None
        if not isinstance(pred, Prediction):
            raise InputError("instance must be (Prediction, index) from predict()")
        if tuple(pred.image_size) != (H, W):
            raise InputError(f"instance comes from a {pred.image_size[1]}x"
                             f"{pred.image_size[0]} image, not this {W}x{H} one")
        if pred.image_id != image_id:
            raise InputError("instance comes from a prediction on another image; predict() "
                             "again after set_image() on this one")
        if not 0 <= idx < len(pred):
            raise InputError(f"instance index {idx} is out of range ({len(pred)} instances)")
        if box is None:
            box = [min(max(v, lo), hi) for v, lo, hi in
                   zip(pred.boxes[idx].tolist(), (0, 0, 0, 0), (W, H, W, H))]
        if mask_input is None:
            inst_mask = pred.masks[idx]
    pts = parse_clicks(points, labels, W, H, "image") if points is not None else None
    if pts is None and labels is not None:
        raise InputError("labels given without points")
    box_t = parse_box(box, W, H) if box is not None else None
    mask = parse_mask(mask_input) if mask_input is not None else None
    if inst_mask is not None:
        mask = inst_mask.to(torch.float32)[None, None] * 20.0 - 10.0
    if pts is None and box_t is None and mask is None:
        raise InputError("give points, a box, a mask_input or an instance")
    return RefinePrompt(pts, box_t, mask)


def run_refine(trk, feats, prompt: RefinePrompt, image_size: tuple[int, int],
               device: torch.device, multimask: bool) -> Refinement:
    """The SAM heads on prepared tracker features (no memory) -> masks at the image size."""
    H, W = image_size
    S = trk.cfg.image_size
    scale = torch.tensor([S / W, S / H], dtype=torch.float32)
    coords, labs = [], []
    if prompt.box is not None:
        coords.append(prompt.box * scale)
        labs.append(torch.tensor([2, 3], dtype=torch.int32))
    if prompt.points is not None:
        coords.append(prompt.points[0] * scale)
        labs.append(prompt.points[1])
    enc = trk.sam_prompt_encoder
    r = enc.mask_input_size
    mask = prompt.mask
    if mask is not None:
        mask = mask.to(device)
        if tuple(mask.shape[-2:]) != (r, r):
            mask = F.interpolate(mask, size=(r, r), mode="bilinear", align_corners=False,
                                 antialias=True)
    if coords:
        c = torch.cat(coords)[None].to(device)
        lab = torch.cat(labs)[None].to(device)
        sparse, dense = enc(c, lab, mask, 1)
    else:  # mask only: no sparse tokens at all (official SAM 1 predictor)
        sparse = feats.image.new_zeros(1, 0, trk.cfg.d_model)
        dense = enc.embed_mask(mask)
    dec = trk.sam_mask_decoder(trk.no_memory(feats), enc.dense_pe(), sparse, dense,
                               feats.high_res, bool(multimask))
    low = dec.masks[0].float()  # K x r x r
    ious = dec.ious[0].float()
    hole = int(round(REFINE_MAX_HOLE_AREA * (low.shape[-1] / 288) ** 2))
    filled = fill_small_background(low, hole, 10.0)
    up = F.interpolate(filled[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    order = torch.argsort(ious, descending=True, stable=True)
    return Refinement(plain_cpu((up > 0)[order]), plain_cpu(ious[order]),
                      plain_cpu(low.clamp(-32.0, 32.0)[order]))
