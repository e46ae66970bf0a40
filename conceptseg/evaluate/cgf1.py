"""The core of the official ``CGF1Eval``, shared by images (datapoints) and videos (pairs):
one Hungarian assignment, TP / FP / FN per IoU threshold, the presence confusion, accumulation
with the official epsilons, and the cgF1 family of numbers that image and video reports share.

Definitions: see :mod:`conceptseg.evaluate.saco` (images) and
:mod:`conceptseg.evaluate.video` (masklets).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["IOU_THRESHOLDS", "ThresholdMetrics", "ImageLevelMetrics", "CgF1Metrics", "Accumulator",
           "score_datapoint", "match", "summarize", "official_mean", "nan_to_none"]

#: Same values as pycocotools ``Params.iouThrs`` (note 0.8999999999999999, not 0.9).
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)


@dataclass
class ThresholdMetrics:
    """Accumulated counts and metrics at one IoU threshold (cgF1 in 0-100, others in [0, 1])."""

    iou: float
    tp: int
    fp: int
    positive_fp: int
    fn: int
    precision: float
    positive_micro_precision: float
    recall: float
    F1: float
    pmF1: float
    cgF1: float
    positive_macro_F1: float  # NaN when no datapoint has both GT and kept predictions


@dataclass
class ImageLevelMetrics:
    """Presence ("any kept prediction" vs "any GT") confusion counts and metrics."""

    tp: int
    fp: int
    tn: int
    fn: int
    precision: float
    recall: float
    F1: float
    FPR: float
    MCC: float


@dataclass
class CgF1Metrics:
    """The cgF1 family: ``cgF1`` in 0-100 (paper scale); pmF1, IL_MCC, precision, recall in
    [0, 1]; threshold-dependent numbers are means over the IoU thresholds (``_50`` / ``_75``:
    at IoU 0.5 / 0.75)."""

    cgF1: float
    pmF1: float
    IL_MCC: float
    precision: float
    positive_micro_precision: float
    recall: float
    F1: float
    positive_macro_F1: float
    cgF1_50: float
    cgF1_75: float
    pmF1_50: float
    pmF1_75: float
    per_threshold: list[ThresholdMetrics]
    image_level: ImageLevelMetrics

    def _json(self, records: str, include_records: bool) -> dict:
        """JSON-ready dict of a report (NaN -> None), its per-datapoint ``records`` optional."""
        d = asdict(self)
        if not include_records:
            d.pop(records)
        return nan_to_none(d)


def nan_to_none(x: Any) -> Any:
    """A JSON-ready copy of nested dicts / lists with NaN floats as None."""
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def official_mean(s: np.ndarray) -> float:
    """CGF1Eval.summarize: mean over IoU thresholds of the entries > -1 (else -1)."""
    s = s[s > -1]
    return float(np.mean(s)) if len(s) else -1.0


def _ratio(num: np.ndarray | float, den: np.ndarray | float, eps: float, official: bool) -> Any:
    """``num / (den + eps)`` as in the official code, or exact with 0/0 -> 0."""
    if official:
        return num / (den + eps)
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    out = np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)
    return out if out.ndim else float(out)


def _f1(p: Any, r: Any, eps: float, official: bool) -> Any:
    return _ratio(2 * p * r, p + r, eps, official)


def match(ious: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one assignment of CGF1Eval.evaluateImg: (prediction rows, GT columns) of the
    Hungarian matching that maximises the summed IoU of an ``(n_pred, n_gt)`` matrix."""
    if ious.shape[0] and ious.shape[1]:
        return linear_sum_assignment(-ious)
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)


def score_datapoint(ious: np.ndarray, keep: np.ndarray, thrs: np.ndarray, official: bool):
    """(tp, fp, fn, local_f1|None, n_gt, n_dt) of one datapoint / annotator (CGF1Eval.evaluateImg)
    from its ``(n_pred, n_gt)`` IoU matrix and the kept predictions ``keep`` ``(n_pred,)``."""
    m = ious[keep]
    n_dt, n_gt = m.shape
    if n_gt == 0 and n_dt == 0:  # true negative: no box-level entry at all
        z = np.zeros(len(thrs), dtype=np.int64)
        return z, z, z, None, 0, 0
    rows, cols = match(m)
    matched = m[rows, cols] if len(rows) else np.zeros(0)
    tp = np.array([(matched >= t).sum() for t in thrs], dtype=np.int64)
    fp, fn = n_dt - tp, n_gt - tp
    if n_dt == 0:  # official FN branch sets local F1 to exactly 0
        f1 = np.zeros(len(thrs))
    else:
        prec, rec = _ratio(tp, tp + fp, 1e-4, official), _ratio(tp, tp + fn, 1e-4, official)
        f1 = _f1(prec, rec, 1e-4, official)
    return tp, fp, fn, np.asarray(f1, dtype=float), n_gt, n_dt


class Accumulator:
    """Running sums of CGF1Eval.accumulate over datapoints (``n`` IoU thresholds)."""

    def __init__(self, n: int):
        self.tp, self.fp, self.pfp, self.fn = (np.zeros(n, dtype=np.int64) for _ in range(4))
        self.macro_sum, self.macro_count = np.zeros(n), 0
        self.il = {"TP": 0, "FP": 0, "TN": 0, "FN": 0}

    def add(self, r: tuple) -> str:
        """Add one :func:`score_datapoint` result; returns its presence outcome ("TP" ...)."""
        tp, fp, fn, f1, n_gt, n_dt = r
        il = ("TP" if n_dt else "FN") if n_gt else ("FP" if n_dt else "TN")
        self.il[il] += 1
        if f1 is None:
            return il
        self.tp += tp
        self.fp += fp
        self.fn += fn
        if n_gt:  # "local_positive_F1s" exists only for datapoints with GT
            self.pfp += fp
            self.macro_sum += f1
            self.macro_count += int(n_dt > 0)
        return il

    def metrics(self, official: bool) -> dict:
        tp, fp, pfp, fn = self.tp, self.fp, self.pfp, self.fn
        prec = _ratio(tp, tp + fp, 1e-4, official)
        pprec = _ratio(tp, tp + pfp, 1e-4, official)
        rec = _ratio(tp, tp + fn, 1e-4, official)
        il = self.il
        il_rec = _ratio(il["TP"], il["TP"] + il["FN"], 1e-6, official)
        il_prec = _ratio(il["TP"], il["TP"] + il["FP"], 1e-6, official)
        den = math.sqrt(float(il["TP"] + il["FP"]) * float(il["TP"] + il["FN"])
                        * float(il["TN"] + il["FP"]) * float(il["TN"] + il["FN"]))
        mcc = _ratio(float(il["TP"] * il["TN"] - il["FP"] * il["FN"]), den, 1e-6, official)
        pmf1 = np.asarray(_f1(pprec, rec, 1e-4, official), dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):  # official: 0/0 -> nan here
            macro = self.macro_sum / self.macro_count if self.macro_count else np.full(len(tp), np.nan)
        return {
            "precision": np.asarray(prec, float), "positive_micro_precision": np.asarray(pprec, float),
            "recall": np.asarray(rec, float), "F1": np.asarray(_f1(prec, rec, 1e-4, official), float),
            "pmF1": pmf1, "positive_macro_F1": macro, "IL_MCC": float(mcc),
            "cgF1": pmf1 * float(mcc),  # official: eval["cgF1"] = positive_micro_F1 * IL_MCC, per threshold
            "image_level": ImageLevelMetrics(
                il["TP"], il["FP"], il["TN"], il["FN"], float(il_prec), float(il_rec),
                float(_f1(il_prec, il_rec, 1e-6, official)),
                float(_ratio(il["FP"], il["FP"] + il["TN"], 1e-6, official)), float(mcc)),
        }


def summarize(acc: Accumulator, thrs: np.ndarray, official: bool, has_negatives: bool = True) -> dict:
    """The :class:`CgF1Metrics` fields of an accumulation (CGF1Eval.accumulate / summarize), as
    keyword arguments of a report.  Without known negatives (``has_negatives=False``: a video GT
    without ``video_np_pairs``) cgF1 and IL_MCC are NaN, as the official evaluator omits them."""
    m = acc.metrics(official)
    nan = float("nan")
    cg = m["cgF1"] if has_negatives else np.full(len(thrs), nan)
    per_thr = [ThresholdMetrics(float(t), int(acc.tp[i]), int(acc.fp[i]), int(acc.pfp[i]), int(acc.fn[i]),
                                float(m["precision"][i]), float(m["positive_micro_precision"][i]),
                                float(m["recall"][i]), float(m["F1"][i]), float(m["pmF1"][i]),
                                100.0 * float(cg[i]), float(m["positive_macro_F1"][i]))
               for i, t in enumerate(thrs)]

    def at(arr: np.ndarray, thr: float) -> float:
        hits = np.flatnonzero(np.isclose(thrs, thr))
        return float(arr[hits[0]]) if len(hits) else nan

    return dict(
        cgF1=100.0 * official_mean(m["cgF1"]) if has_negatives else nan, pmF1=official_mean(m["pmF1"]),
        IL_MCC=float(m["IL_MCC"] if has_negatives else nan), precision=official_mean(m["precision"]),
        positive_micro_precision=official_mean(m["positive_micro_precision"]),
        recall=official_mean(m["recall"]), F1=official_mean(m["F1"]),
        positive_macro_F1=float(np.mean(m["positive_macro_F1"])),
        cgF1_50=100.0 * at(cg, 0.5), cgF1_75=100.0 * at(cg, 0.75),
        pmF1_50=at(m["pmF1"], 0.5), pmF1_75=at(m["pmF1"], 0.75),
        per_threshold=per_thr, image_level=m["image_level"],
    )
