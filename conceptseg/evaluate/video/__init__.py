"""SA-Co/VEval-style video metrics: phrase HOTA (pHOTA, DetA, AssA ...), CLEAR ID switches,
IDF1, and cgF1 / pmF1 / IL_MCC over masklets.

Independent re-implementation of the behaviour of the official ``sam3/eval/saco_veval_evaluators.py``
(``VideoPhraseHotaEvaluator`` and ``VideoCGF1Evaluator``), ``segm`` IoU type only.

Inputs
------
* Ground truth: YTVIS-style JSON as written by :func:`conceptseg.data.synthetic_video.write_video_dataset`
  and used by the public SA-Co/VEval files: ``videos`` (id, file_names, height, width, length),
  ``categories`` (one per noun phrase), ``annotations`` (one masklet per (video, phrase, object),
  per-frame ``segmentations``: RLE or None) and ``video_np_pairs`` (every (video, phrase)
  datapoint, negatives included).
* Predictions: a YTVIS results list, one masklet per entry: ``video_id``, ``category_id`` (the
  phrase), ``score``, ``segmentations`` (one RLE or None per frame).  :func:`track_json_to_ytvis`
  converts the per-frame JSON of ``conceptseg track --json`` into that format.

Definitions (each (video, phrase) pair is one "sequence" / datapoint)
-----------------------------------------------------------------------
pHOTA (``VideoPhraseHotaEvaluator``):

* predictions with ``score > score_threshold`` (strictly) are kept and their scores set to 1;
  frames where a kept prediction's mask is empty (area 0) are not detections;
* GT frames with a segmentation are detections (``iscrowd`` GT is *not* ignored here, as in the
  TrackEval YouTubeVIS dataset class); track ids without any detection are dropped;
* per-frame similarity = mask IoU; HOTA / DetA / AssA ... are computed by ``trackeval``'s own
  ``HOTA`` metric class on per-sequence data dicts (no hand-written HOTA), combined over the
  evaluated pairs with ``HOTA.combine_sequences`` (detections summed, AssA weighted by TP) and
  averaged over the 19 alpha thresholds, like the official ``cls_comb_cls_av`` with its single
  remapped class.  Evaluated pairs: those with GT annotations or kept predictions (a negative pair
  without kept predictions contributes nothing, officially it is not even listed).
* ``IDSW`` / ``MOTA`` / ``Frag`` come from ``trackeval``'s ``CLEAR`` (match threshold 0.5) and
  ``IDF1`` from ``Identity``, on the same per-sequence data (not part of the official VEval output).

cgF1 over masklets (``VideoCGF1Evaluator`` = ``CGF1Eval`` with masklet IoU):

* pairs: every ``video_np_pairs`` entry plus any (video, phrase) with GT or predictions;
* predictions with ``score >= score_threshold`` are kept; GT with ``iscrowd`` is ignored;
* spatio-temporal masklet IoU = sum over frames of intersection / sum over frames of union
  (frames where only one side has a mask add its area to the union; IoU 1 if the union is 0);
* ONE Hungarian assignment (max summed IoU) per pair, then TP/FP/FN at IoU 0.50:0.95 and the
  pair-level presence confusion (IL_TP/FP/TN/FN) exactly as for images
  (see :mod:`conceptseg.evaluate.cgf1`, shared with images).

cgF1 is reported on the paper's 0-100 scale (the official JSON has it in [0, 1]; see
:meth:`VideoReport.official_metrics`).  Without ``video_np_pairs`` in the GT the official evaluator
does not report cgF1 / IL_MCC (negatives are unknown): they are NaN here then.

Files: ``ground_truth`` / ``predictions`` (loading), ``tracks`` (tracker JSON -> YTVIS),
``geometry`` (per-frame and masklet IoU), ``hota`` (trackeval glue), ``metrics``
(:func:`evaluate_video`), ``report`` (results and files), ``run`` (running a video model).
"""

from .geometry import masklet_iou
from .ground_truth import (GTMasklet, PairKey, VideoGroundTruth, VideoInfo, load_video_ground_truth,
                           restrict_pairs)
from .hota import HOTA_FIELDS
from .metrics import evaluate_video, scored_pairs
from .predictions import VideoPrediction, load_video_predictions
from .report import PairResult, VideoReport, video_summary_markdown, write_video_report
from .tracks import track_json_to_ytvis, tracks_by_pair, tracks_to_ytvis

__all__ = [
    "VideoInfo", "GTMasklet", "VideoGroundTruth", "VideoPrediction", "PairResult", "VideoReport", "PairKey",
    "HOTA_FIELDS", "load_video_ground_truth", "load_video_predictions", "evaluate_video", "scored_pairs",
    "restrict_pairs", "masklet_iou", "track_json_to_ytvis", "tracks_by_pair", "tracks_to_ytvis",
    "video_summary_markdown", "write_video_report",
]
