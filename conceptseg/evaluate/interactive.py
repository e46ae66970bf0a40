"""Interaction metrics: how many clicks the SAM path needs to segment an instance.

The standard click simulator (as in RITM / SAM evaluations): the next click goes to the interior
point farthest from the boundary of the largest error region (4-connected; the image border counts
as boundary) - a positive click in a missed (false negative) region, a negative click in a false
positive one (the larger region wins; a tie goes to the positive click). After each click the model
refines with every click so far and the previous low-resolution logits as ``mask_input``
(``ImagePredictor.refine``, one mask, no multimask). Each instance gets up to ``max_clicks``.

NoC@t: the clicks needed to reach IoU >= t; an instance that never reaches t counts as
``max_clicks`` (the standard convention; 0 when the starting mask already reaches it).
Two starting points: from nothing, and from the text prompt's mask (the predicted instance of the
instance's phrase that best matches it, fed as mask logits before the first click).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from ..ops.masks import mask_iou as ops_mask_iou

__all__ = ["Click", "MAX_CLICKS", "IOU_TARGETS", "next_click", "mask_iou", "noc", "simulate_instance",
           "start_from_text", "summarize_curves"]

MAX_CLICKS = 20  # clicks per instance
IOU_TARGETS = (0.85, 0.90)  # NoC@85, NoC@90


@dataclass(frozen=True)
class Click:
    """One simulated click at pixel column ``x``, row ``y``."""

    x: int  # column (pixels)
    y: int  # row (pixels)
    positive: bool  # True: add this region (false negative); False: remove it (false positive)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two H x W bool masks (:func:`conceptseg.ops.masks.mask_iou`: 0 when both are empty)."""
    return float(ops_mask_iou(torch.from_numpy(np.asarray(a, bool)[None]), torch.from_numpy(np.asarray(b, bool)[None]))[0, 0])


def _largest_region(err: np.ndarray) -> tuple[int, np.ndarray | None]:
    lab, n = ndimage.label(err)
    if n == 0:
        return 0, None
    areas = np.bincount(lab.ravel())[1:]
    k = int(np.argmax(areas))
    return int(areas[k]), lab == k + 1


def next_click(pred: np.ndarray, gt: np.ndarray) -> Click | None:
    """The simulator's next click for prediction ``pred`` against ``gt`` (H x W bool), or None
    when they agree everywhere."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    fn_area, fn_region = _largest_region(gt & ~pred)
    fp_area, fp_region = _largest_region(pred & ~gt)
    if fn_region is None and fp_region is None:
        return None
    positive = fn_area >= fp_area
    region = fn_region if positive else fp_region
    dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return Click(int(x), int(y), positive)


def noc(curve: list[float], target: float, max_clicks: int) -> int:
    """Clicks to reach IoU >= ``target`` on an IoU curve (index k = after k clicks; index 0 =
    the starting mask); ``max_clicks`` when never reached."""
    return next((k for k, v in enumerate(curve[: max_clicks + 1]) if v >= target), max_clicks)


def simulate_instance(predictor, gt: np.ndarray, max_clicks: int = MAX_CLICKS,
                      start: np.ndarray | None = None) -> list[float]:
    """IoU after 0, 1, ..., ``max_clicks`` clicks on the predictor's current image.

    ``start``: the starting mask (H x W bool, e.g. the text prompt's), fed as mask logits
    (+-10) with the first click; None starts from nothing. Once the mask equals the ground truth
    the remaining entries stay at 1.0 (nothing left to click)."""
    gt = np.asarray(gt, bool)
    pred = np.zeros_like(gt) if start is None else np.asarray(start, bool)
    logits = None if start is None else pred.astype(np.float32) * 20.0 - 10.0
    curve = [mask_iou(pred, gt) if start is not None else 0.0]
    points: list[list[int]] = []
    labels: list[int] = []
    for _ in range(max_clicks):
        click = next_click(pred, gt)
        if click is None:
            curve.append(1.0)
            continue
        points.append([click.x, click.y])
        labels.append(int(click.positive))
        r = predictor.refine(points=points, labels=labels, mask_input=logits)
        pred = r.masks[0].numpy().astype(bool)
        logits = r.logits[0]
        curve.append(mask_iou(pred, gt))
    return curve


def start_from_text(prediction, gt: np.ndarray) -> tuple[np.ndarray | None, float]:
    """The instance of a text :class:`~conceptseg.inference.results.Prediction` that best matches
    ``gt`` (its mask and IoU), or (None, 0.0) when the prompt found nothing."""
    if len(prediction) == 0:
        return None, 0.0
    masks = prediction.masks.numpy().astype(bool)
    ious = [mask_iou(m, gt) for m in masks]
    k = int(np.argmax(ious))
    return masks[k], float(ious[k])


def summarize_curves(curves: list[list[float]], max_clicks: int,
                     targets: tuple[float, ...] = IOU_TARGETS) -> dict:
    """NoC@t, mIoU after k clicks (k = 0..max_clicks) and the share of instances never reaching
    each target within ``max_clicks``, over the IoU curves of one starting point."""
    if not curves:
        return {"num_instances": 0}
    arr = np.asarray([c[: max_clicks + 1] for c in curves], dtype=float)
    out: dict = {"num_instances": len(curves), "mIoU_at_clicks": [float(v) for v in arr.mean(0)]}
    for t in targets:
        tag = f"{round(100 * t)}"
        counts = [noc(c, t, max_clicks) for c in curves]
        out[f"NoC@{tag}"] = float(np.mean(counts))
        out[f"never_{tag}"] = float(np.mean([(arr[i] < t).all() for i in range(len(curves))]))
    return out
