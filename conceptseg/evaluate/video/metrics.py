"""pHOTA (via trackeval), CLEAR IDSW, IDF1 and masklet cgF1 over the (video, phrase) pairs of
a video ground truth: :func:`evaluate_video`.  Definitions: see :mod:`conceptseg.evaluate.video`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..cgf1 import IOU_THRESHOLDS, Accumulator, score_datapoint, summarize
from .geometry import pair_geometry
from .ground_truth import PairKey, VideoGroundTruth, load_video_ground_truth
from .hota import HOTA_FIELDS, sequence_data, trackeval_metrics
from .predictions import VideoPrediction, load_video_predictions
from .report import PairResult, VideoReport

__all__ = ["evaluate_video", "scored_pairs"]


def _mean(v: Any) -> float:
    return float(np.mean(v))


def scored_pairs(gt: VideoGroundTruth, predicted: Iterable[PairKey] = ()) -> list[PairKey]:
    """The (video, phrase) pairs an evaluation scores: every ``video_np_pairs`` entry, every pair
    with GT masklets and every ``predicted`` pair, sorted."""
    return sorted(set(gt.np_pairs) | {k for k, v in gt.masklets.items() if v} | set(predicted))


def evaluate_video(gt: VideoGroundTruth | str | os.PathLike | Mapping[str, Any],
                   preds: Sequence[VideoPrediction] | str | os.PathLike | Sequence[Mapping[str, Any]],
                   score_threshold: float = 0.5, iou_thresholds: Sequence[float] | None = None,
                   official_eps: bool = True, validate_rle: bool = True) -> VideoReport:
    """pHOTA (+ DetA, AssA ...), CLEAR IDSW / MOTA, IDF1 and masklet cgF1 / pmF1 / IL_MCC.

    ``gt``/``preds`` may be loaded objects, paths or JSON objects (see the loaders).  HOTA keeps
    predictions with ``score > score_threshold``, cgF1 those with ``score >= score_threshold``
    (the two official evaluators differ there).  ``official_eps`` as in
    :func:`conceptseg.evaluate.evaluate_cgf1`.  See the module docstring for definitions.
    """
    if not isinstance(gt, VideoGroundTruth):
        gt = load_video_ground_truth(gt)
    if not (isinstance(preds, (list, tuple)) and all(isinstance(p, VideoPrediction) for p in preds)):
        preds = load_video_predictions(preds, gt, validate_rle=validate_rle)
    thrs = IOU_THRESHOLDS if iou_thresholds is None else np.asarray(iou_thresholds, dtype=float)
    hota_m, clear_m, id_m = trackeval_metrics()

    by_pair: dict[PairKey, list[VideoPrediction]] = defaultdict(list)
    for p in preds:
        by_pair[(p.video_id, p.category_id)].append(p)
    gt_pairs = {k for k, v in gt.masklets.items() if v}
    pairs = scored_pairs(gt, by_pair)
    acc = Accumulator(len(thrs))
    k50 = np.flatnonzero(np.isclose(thrs, 0.5))
    records: list[PairResult] = []
    hota_res, clear_res, id_res = {}, {}, {}
    for key in pairs:
        vid, cid = key
        T = gt.videos[vid].length
        plist, glist = by_pair.get(key, []), gt.masklets.get(key, [])
        geo = pair_geometry(plist, glist, T)
        scores = np.array([p.score for p in plist], dtype=float)
        # cgF1: kept predictions x non-crowd GT
        keep = scores >= score_threshold
        crowd = np.array([g.iscrowd for g in glist], dtype=bool)
        tp, fp, fn, f1, n_gt, n_dt = score_datapoint(geo.masklet_iou[:, ~crowd], keep, thrs, official_eps)
        il = acc.add((tp, fp, fn, f1, n_gt, n_dt))
        den = 2 * tp + fp + fn
        pair_f1 = np.where(den > 0, 2 * tp / np.maximum(den, 1), 1.0)
        rec = PairResult(vid, cid, gt.phrase(cid), int(n_gt), len(plist), int(n_dt),
                         float(scores.max()) if len(scores) else None, il, tp.tolist(), fp.tolist(), fn.tolist(),
                         float(pair_f1.mean()), float(pair_f1[k50[0]]) if len(k50) else float("nan"))
        # HOTA / CLEAR / Identity: sequences with GT or kept (score > thr) predictions
        hkeep = scores > score_threshold
        if key in gt_pairs or hkeep.any():
            data = sequence_data(geo, hkeep, T)
            h, c, i = hota_m.eval_sequence(data), clear_m.eval_sequence(data), id_m.eval_sequence(data)
            hota_res[key], clear_res[key], id_res[key] = h, c, i
            rec.HOTA, rec.DetA, rec.AssA, rec.LocA = (_mean(h[f]) for f in ("HOTA", "DetA", "AssA", "LocA"))
            rec.IDSW, rec.IDF1 = int(c["IDSW"]), float(i["IDF1"])
        records.append(rec)

    # --- HOTA family, combined over sequences (official: COMBINED_SEQ / cls_comb_cls_av, one class)
    nan = float("nan")
    if hota_res:
        hc = hota_m.combine_sequences(hota_res)
        cc = clear_m.combine_sequences(clear_res)
        ic = id_m.combine_sequences(id_res)
        hota_vals = {f: _mean(hc[f]) for f in HOTA_FIELDS}
        per_alpha = {f: [float(x) for x in hc[f]] for f in ("HOTA", "DetA", "AssA")}
        clear_vals = (int(cc["IDSW"]), float(cc["MOTA"]), float(cc["MOTP"]), int(cc["Frag"]), float(ic["IDF1"]))
    else:  # nothing to evaluate (no GT masklet, no kept prediction): HOTA is undefined
        hota_vals = {f: nan for f in HOTA_FIELDS}
        per_alpha = {f: [] for f in ("HOTA", "DetA", "AssA")}
        clear_vals = (0, nan, nan, 0, nan)

    counts = {
        "num_pairs": len(pairs),
        "num_np_pairs": len(gt.np_pairs),
        "num_positive_pairs": sum(r.num_gt > 0 for r in records),
        "num_negative_pairs": sum(r.num_gt == 0 for r in records),
        "num_extra_pairs": len(set(pairs) - set(gt.np_pairs)) if gt.has_np_pairs else 0,
        "num_hota_sequences": len(hota_res),
        "num_videos": len(gt.videos),
        "num_gt_masklets": sum(len(v) for v in gt.masklets.values()),
        "num_predictions": len(preds),
        "num_predictions_kept": sum(r.num_kept for r in records),
        "has_video_np_pairs": gt.has_np_pairs,
    }
    return VideoReport(
        **summarize(acc, thrs, official_eps, has_negatives=gt.has_np_pairs),
        score_threshold=float(score_threshold), iou_thresholds=[float(t) for t in thrs],
        pHOTA=hota_vals["HOTA"], **{f: hota_vals[f] for f in HOTA_FIELDS if f != "HOTA"},
        hota_per_alpha=per_alpha, IDSW=clear_vals[0], MOTA=clear_vals[1], MOTP=clear_vals[2],
        Frag=clear_vals[3], IDF1=clear_vals[4], counts=counts, official_eps=official_eps, pairs=records,
    )
