"""HOTA, CLEAR and Identity through ``trackeval``'s own metric classes: the per-sequence data
dict they take, built from a pair's geometry (no hand-written HOTA)."""

from __future__ import annotations

import numpy as np

from ...errors import require
from .geometry import PairGeometry

__all__ = ["HOTA_FIELDS", "sequence_data", "trackeval_metrics"]

#: HOTA sub-metrics collected by the official evaluator (means over the 19 alphas).
HOTA_FIELDS = ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA", "OWTA")


def sequence_data(geo: PairGeometry, kept: np.ndarray, T: int) -> dict:
    """The per-sequence dict trackeval metrics take (what ``YouTubeVIS.get_preprocessed_seq_data``
    builds): contiguous ids of GT / kept-prediction tracks with at least one detection, and
    per-frame GT x tracker IoUs.  Prediction frames with an empty mask are not detections."""
    gt_ids, tr_ids, sims = [], [], []
    for t in range(T):
        pmask = kept[geo.pred_present[t]] & (geo.pred_area[t] > 0)
        gt_ids.append(geo.gt_present[t])
        tr_ids.append(geo.pred_present[t][pmask])
        sims.append(geo.frame_iou[t][pmask].T if geo.frame_iou[t].size else
                    np.zeros((len(geo.gt_present[t]), int(pmask.sum()))))
    ug = np.unique(np.concatenate(gt_ids)) if T else np.zeros(0, np.int64)
    ut = np.unique(np.concatenate(tr_ids)) if T else np.zeros(0, np.int64)
    gmap, tmap = {int(k): j for j, k in enumerate(ug)}, {int(k): j for j, k in enumerate(ut)}
    relabel = lambda ids, m: np.array([m[int(k)] for k in ids], dtype=int)  # noqa: E731
    return {
        "gt_ids": [relabel(x, gmap) for x in gt_ids], "tracker_ids": [relabel(x, tmap) for x in tr_ids],
        "similarity_scores": sims, "num_timesteps": T, "num_gt_ids": len(ug), "num_tracker_ids": len(ut),
        "num_gt_dets": int(sum(len(x) for x in gt_ids)), "num_tracker_dets": int(sum(len(x) for x in tr_ids)),
    }


def trackeval_metrics():
    """(HOTA, CLEAR, Identity) metric objects; CLEAR and Identity match at IoU 0.5."""
    metrics = require("trackeval.metrics", "eval")  # optional: the [eval] extra, imported on use
    cfg = {"THRESHOLD": 0.5, "PRINT_CONFIG": False}
    return metrics.HOTA(), metrics.CLEAR(dict(cfg)), metrics.Identity(dict(cfg))
