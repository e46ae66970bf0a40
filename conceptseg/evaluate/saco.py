"""SA-Co promptable-concept-segmentation metrics: cgF1 = 100 * pmF1 * IL_MCC.

Independent re-implementation of the behaviour of the official ``sam3/eval/cgf1_eval.py``
(``CGF1Eval`` / ``CGF1Evaluator``).  Definitions, per datapoint (= image-phrase pair):

* predictions with ``score >= 0.5`` are kept (``CGF1Eval.evaluateImg``); GT with
  ``iscrowd`` is ignored (pycocotools ``_prepare`` sets ``ignore = iscrowd``), so a
  datapoint with only crowd GT counts as negative;
* ONE Hungarian assignment maximising the summed IoU (``linear_sum_assignment(-ious)``)
  is computed over kept predictions x GT, then for each IoU threshold t in
  ``linspace(0.5, 0.95, 10)``: TP = #matched pairs with IoU >= t, FP = #kept - TP,
  FN = #GT - TP.  (Not a separate matching per threshold.)
* image level: IL_TP = GT and kept preds, IL_FP = no GT but kept preds, IL_TN = neither,
  IL_FN = GT but no kept preds.

Accumulation (``CGF1Eval.accumulate``): TP/FN summed over all datapoints; FPs on
negative datapoints count in ``precision``/``F1`` but NOT in ``positive_micro_precision``
/ ``pmF1``, which only sum FPs of datapoints that have GT.  ``recall`` is shared.
``IL_MCC`` is the Matthews correlation of the image-level confusion counts.
Per threshold ``cgF1_t = pmF1_t * IL_MCC``; the headline numbers are plain means over
the 10 thresholds (``summarize``: ``np.mean(s[s > -1])``).  Because IL_MCC does not
depend on the IoU threshold, mean(cgF1_t) == mean(pmF1_t) * IL_MCC exactly.

The official code adds epsilons to every denominator (1e-4 for box-level precision /
recall / F1, 1e-6 for image level and MCC), so 0/0 evaluates to 0 and a perfect
prediction scores ~99.99 rather than 100.  ``official_eps=True`` (default) reproduces
that; ``official_eps=False`` uses exact ratios with the same 0/0 -> 0 convention.
Consequently an all-negative split (no GT anywhere) has pmF1 = 0 (TP = FN = 0) and
IL_MCC = 0 (zero denominator), hence cgF1 = 0, whatever is predicted.

Multiple annotators (SA-Co/Gold, ``CGF1Evaluator._select_best_scoring``): each datapoint is
scored against every annotator; starting from annotator 0, the current choice is replaced
by a later annotator whose per-datapoint F1 (mean over thresholds) is strictly higher,
or unconditionally by one giving a true negative (no GT, no kept predictions).  The
chosen annotator's counts are then accumulated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..ops.masks import rle_iou
from .cgf1 import (IOU_THRESHOLDS, Accumulator, CgF1Metrics, ImageLevelMetrics, ThresholdMetrics,
                   official_mean, score_datapoint, summarize)
from .ground_truth import GroundTruth
from .predictions import Predictions
from .segmentation import box_to_rle, rle_to_box

__all__ = ["IOU_THRESHOLDS", "SacoReport", "ThresholdMetrics", "ImageLevelMetrics", "PhraseStats",
           "DatapointResult", "evaluate_cgf1", "score_threshold_sweep", "score_datapoint", "geometries"]


@dataclass
class PhraseStats:
    """Counts summed over the datapoints sharing one noun phrase; lists are per IoU threshold.
    ``f1`` = mean over thresholds of 2TP/(2TP+FP+FN) (None if the phrase has no GT and no
    kept prediction); ``f1_50`` at IoU 0.5."""

    phrase: str
    num_datapoints: int
    num_positive: int
    tp: list[int]
    fp: list[int]
    fn: list[int]
    f1: float | None
    f1_50: float | None
    il_tp: int = 0
    il_fp: int = 0
    il_tn: int = 0
    il_fn: int = 0


@dataclass
class DatapointResult:
    """Outcome of one datapoint against its selected annotator."""

    image_id: int
    phrase: str
    annotator: int
    num_gt: int
    num_pred: int  # kept (score >= threshold)
    max_score: float | None  # over all predictions of the datapoint
    il: str  # "TP" | "FP" | "TN" | "FN"
    tp: list[int]
    fp: list[int]
    fn: list[int]
    local_f1: list[float] | None  # None for true negatives (official: no box-level entry)


@dataclass
class SacoReport(CgF1Metrics):
    """cgF1 evaluation result: the :class:`~conceptseg.evaluate.cgf1.CgF1Metrics` numbers
    (cgF1 in 0-100; pmF1, IL_MCC, precision, recall in [0, 1]; means over ``iou_thresholds``)
    plus per-phrase statistics, counts and (``datapoints``) one record per datapoint."""

    iou_type: str
    score_threshold: float
    iou_thresholds: list[float]
    per_phrase: dict[str, PhraseStats]
    counts: dict[str, Any]
    official_eps: bool = True
    datapoints: list[DatapointResult] = field(default_factory=list, repr=False)

    def to_dict(self, include_datapoints: bool = False) -> dict:
        """JSON-ready dict (NaN -> None)."""
        return self._json("datapoints", include_datapoints)

    def official_metrics(self) -> dict[str, float]:
        """The 26 numbers of the official ``CGF1Evaluator.evaluate`` with its key names and
        scale (``cgF1_eval_<iou_type>_<metric>[@thr]``; cgF1 there is in [0, 1])."""
        pre = f"cgF1_eval_{self.iou_type}_"
        attrs = {"cgF1": "cgF1", "precision": "precision", "recall": "recall", "F1": "F1",
                 "positive_macro_F1": "positive_macro_F1", "positive_micro_F1": "pmF1",
                 "positive_micro_precision": "positive_micro_precision"}
        arr = {n: np.array([getattr(t, a) for t in self.per_threshold], dtype=float) for n, a in attrs.items()}
        arr["cgF1"] = arr["cgF1"] / 100.0
        il = self.image_level
        out = {pre + n: official_mean(v) for n, v in arr.items()}
        out.update({pre + "IL_precision": il.precision, pre + "IL_recall": il.recall, pre + "IL_F1": il.F1,
                    pre + "IL_FPR": il.FPR, pre + "IL_MCC": il.MCC})
        thrs = np.asarray(self.iou_thresholds)
        for thr in (0.5, 0.75):
            hit = np.flatnonzero(np.isclose(thrs, thr))
            for n, v in arr.items():  # summarize(iouThr=...) also filters entries <= -1
                out[f"{pre}{n}@{thr}"] = official_mean(v[hit])
        return out


# ---------------------------------------------------------------------------- per datapoint


def geometries(gt: GroundTruth, preds: Predictions, image_id: int, iou_type: str):
    """Prediction scores (input order) and per-annotator IoU matrices [n_pred x n_gt]."""
    dp = gt.datapoints[image_id]
    plist = preds.for_image(image_id)
    scores = np.array([p.score for p in plist], dtype=float)
    if iou_type == "segm":  # box-only results are rasterised as a polygon, as official loadRes does
        d = [p.segmentation if p.segmentation is not None else box_to_rle(p.bbox, dp.height, dp.width) for p in plist]
    else:  # mask-only results get their tight box (official loadRes: toBbox)
        d = [list(p.bbox) if p.bbox is not None else rle_to_box(p.segmentation) for p in plist]
    ious = []
    for inst in gt.instances:
        gts = [g for g in inst[image_id] if not g["iscrowd"]]
        if iou_type == "segm":
            g = [x["segmentation"] if x["segmentation"] is not None else box_to_rle(x["bbox"], dp.height, dp.width)
                 for x in gts]
        else:
            g = [list(x["bbox"]) if x["bbox"] is not None else rle_to_box(x["segmentation"]) for x in gts]
        ious.append(rle_iou(d, g))
    return scores, ious


def _select(results: list[tuple]) -> int:
    """Index of the annotator kept by the official oracle rule (see module docstring)."""
    best = 0
    for k in range(1, len(results)):
        b, c = results[best][3], results[k][3]
        if b is not None and c is not None:
            if c.mean() > b.mean():
                best = k
        elif c is None:
            best = k
    return best


def _run(gt: GroundTruth, preds: Predictions, iou_type: str, score_thresholds: Sequence[float],
         thrs: np.ndarray, official: bool, collect: bool):
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    accs = [Accumulator(len(thrs)) for _ in score_thresholds]
    records: list[DatapointResult] = []
    for iid in gt.eval_ids:
        scores, ious = geometries(gt, preds, iid, iou_type)
        for s_idx, s_thr in enumerate(score_thresholds):
            keep = scores >= s_thr
            results = [score_datapoint(m, keep, thrs, official) for m in ious]
            k = _select(results)
            il = accs[s_idx].add(results[k])
            if collect and s_idx == 0:
                tp, fp, fn, f1, n_gt, n_dt = results[k]
                records.append(DatapointResult(
                    iid, gt.datapoints[iid].text, k, n_gt, n_dt, float(scores.max()) if len(scores) else None,
                    il, tp.tolist(), fp.tolist(), fn.tolist(), None if f1 is None else f1.tolist()))
    return accs, records


def _phrase_stats(records: list[DatapointResult], thrs: np.ndarray) -> dict[str, PhraseStats]:
    out: dict[str, PhraseStats] = {}
    n = len(thrs)
    for r in records:
        ps = out.get(r.phrase)
        if ps is None:
            ps = out[r.phrase] = PhraseStats(r.phrase, 0, 0, [0] * n, [0] * n, [0] * n, None, None)
        ps.num_datapoints += 1
        ps.num_positive += int(r.num_gt > 0)
        for i in range(n):
            ps.tp[i] += r.tp[i]
            ps.fp[i] += r.fp[i]
            ps.fn[i] += r.fn[i]
        setattr(ps, "il_" + r.il.lower(), getattr(ps, "il_" + r.il.lower()) + 1)
    k50 = int(np.argmin(np.abs(thrs - 0.5)))
    for ps in out.values():
        tp, fp, fn = (np.asarray(v, dtype=float) for v in (ps.tp, ps.fp, ps.fn))
        den = 2 * tp + fp + fn  # = n_pred + n_gt: the same at every threshold
        if den[0] > 0:
            f1 = 2 * tp / den
            ps.f1, ps.f1_50 = float(f1.mean()), float(f1[k50])
    return out


def evaluate_cgf1(gt: GroundTruth, preds: Predictions, iou_type: str = "segm", score_threshold: float = 0.5,
                  iou_thresholds: Sequence[float] | None = None, official_eps: bool = True) -> SacoReport:
    """Compute cgF1 / pmF1 / IL_MCC and friends; see the module docstring for definitions."""
    thrs = IOU_THRESHOLDS if iou_thresholds is None else np.asarray(iou_thresholds, dtype=float)
    (acc,), records = _run(gt, preds, iou_type, [score_threshold], thrs, official_eps, collect=True)
    n_annot = [0] * gt.num_annotators
    for r in records:
        n_annot[r.annotator] += 1
    eval_set = set(gt.eval_ids)
    counts = {
        "num_datapoints": len(gt.datapoints),
        "num_evaluated": len(gt.eval_ids),
        "num_excluded_non_exhaustive": len(gt.datapoints) - len(gt.eval_ids),
        "num_positive": sum(r.num_gt > 0 for r in records),
        "num_negative": sum(r.num_gt == 0 for r in records),
        "num_gt_instances": sum(r.num_gt for r in records),
        "num_predictions": sum(len(v) for k, v in preds.by_image.items() if k in eval_set),
        "num_predictions_kept": sum(r.num_pred for r in records),
        "num_annotators": gt.num_annotators,
        "annotator_selected": n_annot,
    }
    return SacoReport(
        **summarize(acc, thrs, official_eps), iou_type=iou_type, score_threshold=float(score_threshold),
        iou_thresholds=[float(t) for t in thrs], per_phrase=_phrase_stats(records, thrs),
        counts=counts, official_eps=official_eps, datapoints=records,
    )


def score_threshold_sweep(gt: GroundTruth, preds: Predictions, score_thresholds: Sequence[float],
                          iou_type: str = "segm", official_eps: bool = True) -> list[dict[str, float]]:
    """Re-evaluate at several score thresholds (IoUs computed once per datapoint).

    Returns one dict per threshold with ``precision`` (all datapoints),
    ``positive_micro_precision``, ``recall``, ``pmF1``, ``IL_MCC``, ``cgF1`` (0-100), each
    averaged over the IoU thresholds 0.50:0.95 like the headline numbers.
    """
    accs, _ = _run(gt, preds, iou_type, list(score_thresholds), IOU_THRESHOLDS, official_eps, collect=False)
    out = []
    for s, acc in zip(score_thresholds, accs):
        m = acc.metrics(official_eps)
        out.append({"score_threshold": float(s), "precision": official_mean(m["precision"]),
                    "positive_micro_precision": official_mean(m["positive_micro_precision"]),
                    "recall": official_mean(m["recall"]), "pmF1": official_mean(m["pmF1"]),
                    "IL_MCC": m["IL_MCC"], "cgF1": 100.0 * official_mean(m["cgF1"])})
    return out
