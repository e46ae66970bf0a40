"""SA-Co evaluation of images and videos.

Images: cgF1 / pmF1 / IL_MCC (``saco``, on the shared ``cgf1`` core), COCO AP (``coco``), ground
truth and predictions loading + validation (``ground_truth``, ``predictions``, ``segmentation``,
``inputs``), a resumable prediction writer (``writer``), reports (``report``), running a model
on a dataset (``predict``, ``exemplar``).  Videos: the ``video`` subpackage (pHOTA, IDSW,
masklet cgF1; ``video.run`` runs a video model).

Quick use::

    from conceptseg.evaluate import evaluate_predictions, write_report
    rep = evaluate_predictions(["gold_crowded_merged_a_release_test.json",
                                "gold_crowded_merged_b_release_test.json",
                                "gold_crowded_merged_c_release_test.json"], "preds.json")
    print(rep.cgF1, rep.pmF1, rep.IL_MCC)
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from ..errors import EvalInputError
from .cgf1 import IOU_THRESHOLDS, ImageLevelMetrics, ThresholdMetrics
from .coco import COCO_STAT_NAMES, coco_ap
from .ground_truth import SACO_GOLD_SUBSETS, Datapoint, GroundTruth, load_ground_truth, restrict, saco_gold_paths
from .inputs import load_json
from .predictions import Prediction, Predictions, load_predictions
from .report import write_report
from .saco import DatapointResult, PhraseStats, SacoReport, evaluate_cgf1, score_threshold_sweep
from .video import (VideoReport, evaluate_video, load_video_ground_truth, load_video_predictions,
                    track_json_to_ytvis, tracks_to_ytvis, write_video_report)
from .writer import PredictionWriter

__all__ = [
    "evaluate_predictions", "evaluate_cgf1", "score_threshold_sweep", "coco_ap", "write_report",
    "load_ground_truth", "load_predictions", "load_json", "restrict", "saco_gold_paths", "PredictionWriter",
    "EvalInputError", "SacoReport", "ThresholdMetrics", "ImageLevelMetrics", "PhraseStats", "DatapointResult",
    "GroundTruth", "Datapoint", "Predictions", "Prediction", "IOU_THRESHOLDS", "COCO_STAT_NAMES",
    "SACO_GOLD_SUBSETS", "VideoReport", "evaluate_video", "load_video_ground_truth",
    "load_video_predictions", "track_json_to_ytvis", "tracks_to_ytvis", "write_video_report",
]


def evaluate_predictions(
    gt_json_or_paths: GroundTruth | str | os.PathLike | Mapping[str, Any] | Sequence[Any],
    preds: Predictions | str | os.PathLike | Sequence[Mapping[str, Any]],
    iou_type: str = "segm",
    score_threshold: float = 0.5,
    exhaustive_only: bool = True,
    official_eps: bool = True,
    validate_rle: bool = True,
    normalized_boxes: bool | None = None,
) -> SacoReport:
    """Load + validate GT (one file/dict, or a list = one per annotator) and predictions
    (COCO results list or path), then compute the SA-Co cgF1 report.

    ``normalized_boxes`` is passed to :func:`load_ground_truth` (None = auto-detect GT boxes
    stored normalised to [0, 1]).  ``validate_rle=False`` skips the (pure numpy, ~0.1 ms per mask) check that every RLE
    decodes to exactly height*width pixels.  Raises :class:`EvalInputError` on malformed inputs.
    """
    gt = gt_json_or_paths if isinstance(gt_json_or_paths, GroundTruth) else load_ground_truth(
        gt_json_or_paths, exhaustive_only=exhaustive_only, normalized_boxes=normalized_boxes)
    if not isinstance(preds, Predictions):
        preds = load_predictions(preds, gt, validate_rle=validate_rle)
    return evaluate_cgf1(gt, preds, iou_type=iou_type, score_threshold=score_threshold, official_eps=official_eps)
