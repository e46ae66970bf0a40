"""Standard COCO box / mask AP (pycocotools ``COCOeval``) on SA-Co style data.

In SA-Co every ``images`` entry is an (image, noun phrase) datapoint and all annotations
carry ``category_id`` 1; the concept is the phrase, not the category.  We therefore force
``category_id = 1`` on GT and predictions and let pycocotools run its usual per-image
evaluation, so "AP" here is class-agnostic AP over datapoints (the official
``CocoEvaluator`` does the same with ``useCats=False``).  Negative datapoints contribute
only false positives.

SA-Co releases store ``area`` normalised by the image area; the standard small / medium
/ large buckets are in pixels, so by default (``recompute_area=None``) areas are
recomputed from the masks (or boxes) whenever GT areas are missing or all <= 1.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
from typing import Any, Collection, Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..ops.masks import rle_area
from .ground_truth import GroundTruth, load_ground_truth
from .predictions import Predictions, load_predictions
from .segmentation import box_to_rle, rle_to_box

__all__ = ["COCO_STAT_NAMES", "coco_ap"]

#: Names of ``COCOeval.stats`` in order (AR1/AR10/AR100 follow ``max_dets``; others use the largest).
COCO_STAT_NAMES = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)


def _gt_dataset(gt: GroundTruth, annotator: int, iou_type: str, img_ids: set[int], recompute_area: bool | None) -> dict:
    """COCO GT dict of the selected annotator restricted to ``img_ids``, category 1 only."""
    inst = gt.instances[annotator]
    images = [{"id": d.id, "height": d.height, "width": d.width} for d in gt.datapoints.values() if d.id in img_ids]
    if recompute_area is None:
        areas = [g["area"] for im in images for g in inst[im["id"]]]
        recompute_area = any(a is None for a in areas) or (bool(areas) and max(areas) <= 1.0)
    anns = []
    for im in images:
        for g in inst[im["id"]]:
            seg = g["segmentation"] if g["segmentation"] is not None else box_to_rle(g["bbox"], im["height"], im["width"])
            box = list(g["bbox"]) if g["bbox"] is not None else rle_to_box(seg)
            if not recompute_area:
                area = g["area"]
            elif iou_type == "segm" or g["segmentation"] is not None:
                area = float(rle_area([seg])[0])  # COCO convention: mask area, also for bbox AP
            else:
                area = box[2] * box[3]
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": 1, "segmentation": seg,
                         "bbox": box, "area": area, "iscrowd": int(g["iscrowd"])})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}


def _results(gt: GroundTruth, preds: Predictions, iou_type: str, img_ids: set[int]) -> list[dict]:
    out = []
    for iid, plist in preds.by_image.items():
        if iid not in img_ids:
            continue
        dp = gt.datapoints[iid]
        for p in plist:
            r: dict[str, Any] = {"image_id": iid, "category_id": 1, "score": p.score}
            if iou_type == "segm":  # mask only, so loadRes takes area/bbox from the mask
                r["segmentation"] = p.segmentation if p.segmentation is not None else box_to_rle(p.bbox, dp.height, dp.width)
            else:
                r["bbox"] = list(p.bbox) if p.bbox is not None else rle_to_box(p.segmentation)
            out.append(r)
    return out


def coco_ap(
    gt: GroundTruth | Any,
    preds: Predictions | str | os.PathLike | Sequence[Mapping[str, Any]],
    iou_type: str = "segm",
    annotator: int = 0,
    exhaustive_only: bool = False,
    recompute_area: bool | None = None,
    max_dets: Sequence[int] = (1, 10, 100),
    image_ids: Collection[int] | None = None,
) -> dict[str, float]:
    """Run pycocotools ``COCOeval`` and return the 12 standard stats by name.

    Args:
        gt: a :class:`GroundTruth` or anything :func:`load_ground_truth` accepts.
        preds: predictions (list, path or :class:`Predictions`).
        iou_type: ``'segm'`` or ``'bbox'``.
        annotator: which GT file to use when several are given (AP has no oracle variant;
            the official ``CocoEvaluator.select_best_scoring`` raises for several GTs).
        exhaustive_only: restrict to the instance-exhaustive datapoints (as cgF1 does).
        recompute_area: see module docstring; None = auto.
        max_dets: ``Params.maxDets`` (3 values, as COCOeval's summarize expects).
        image_ids: score only these datapoints (e.g. the ones that were predicted).
    """
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    if not isinstance(gt, GroundTruth):
        gt = load_ground_truth(gt, exhaustive_only=exhaustive_only)
    if not isinstance(preds, Predictions):
        preds = load_predictions(preds, gt)
    img_ids = set(gt.eval_ids) if exhaustive_only else set(gt.datapoints)
    if image_ids is not None:
        img_ids &= set(image_ids)
    with contextlib.redirect_stdout(_io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = _gt_dataset(gt, annotator, iou_type, img_ids, recompute_area)
        coco_gt.createIndex()
        results = _results(gt, preds, iou_type, img_ids)
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes cannot take an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": coco_gt.dataset["images"], "annotations": [],
                               "categories": coco_gt.dataset["categories"]}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        ev.params.imgIds = sorted(img_ids)
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    names = list(COCO_STAT_NAMES)
    names[6:9] = [f"AR{m}" for m in max_dets]
    return {name: float(v) for name, v in zip(names, np.asarray(ev.stats))}
