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
  (see :mod:`conceptseg.evaluate.saco`, whose accumulation code is reused).

cgF1 is reported on the paper's 0-100 scale (the official JSON has it in [0, 1]; see
:meth:`VideoReport.official_metrics`).  Without ``video_np_pairs`` in the GT the official evaluator
does not report cgF1 / IL_MCC (negatives are unknown): they are NaN here then.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from ._rle import RLEError, check_rle, to_compressed_rle
from .io import EvalInputError, _is_int, _is_number, load_json
from .saco import (IOU_THRESHOLDS, ImageLevelMetrics, ThresholdMetrics, _Accumulator, _nan_to_none,
                   _official_mean, _score)

__all__ = [
    "VideoInfo", "GTMasklet", "VideoGroundTruth", "VideoPrediction", "PairResult", "VideoReport",
    "HOTA_FIELDS", "load_video_ground_truth", "load_video_predictions", "evaluate_video",
    "masklet_iou", "track_json_to_ytvis", "tracks_to_ytvis", "video_summary_markdown",
    "write_video_report",
]

#: HOTA sub-metrics collected by the official evaluator (means over the 19 alphas).
HOTA_FIELDS = ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA", "OWTA")

PairKey = tuple[int, int]  # (video_id, category_id)


# ------------------------------------------------------------------------------ data model


@dataclass(frozen=True)
class VideoInfo:
    id: int
    name: str
    length: int
    height: int
    width: int


@dataclass
class GTMasklet:
    """One ground-truth masklet: compressed RLE (str counts) or None per frame."""

    id: int
    segmentations: list[dict | None]
    iscrowd: bool = False
    object_id: Any = None


@dataclass
class VideoGroundTruth:
    """Validated video GT.  ``masklets[(video_id, category_id)]`` lists the GT masklets of a
    pair; ``np_pairs`` the (video, phrase) datapoints of ``video_np_pairs`` (negatives
    included); ``has_np_pairs`` is False when the file has no ``video_np_pairs`` key."""

    videos: dict[int, VideoInfo]
    categories: dict[int, str]
    masklets: dict[PairKey, list[GTMasklet]]
    np_pairs: list[PairKey]
    has_np_pairs: bool = True
    source: str = ""

    def phrase(self, category_id: int) -> str:
        return self.categories.get(category_id, str(category_id))


@dataclass
class VideoPrediction:
    """One predicted masklet; ``index`` is its position in the input list."""

    index: int
    video_id: int
    category_id: int
    score: float
    segmentations: list[dict | None]


# ------------------------------------------------------------------------------ loading


def _source(obj: Any, what: str) -> tuple[Any, str]:
    if isinstance(obj, (str, os.PathLike)):
        return load_json(obj), os.fspath(obj)
    return obj, what


def load_video_ground_truth(src: str | os.PathLike | Mapping[str, Any]) -> VideoGroundTruth:
    """Read + validate a YTVIS / SA-Co-VEval GT file (or dict).  Uncompressed RLEs are
    compressed; a missing annotation height/width is taken from its video (as the official
    ``_fill_in_ann_height_width``).  Raises :class:`EvalInputError` on malformed input."""
    data, where = _source(src, "ground truth")
    if not isinstance(data, Mapping) or not isinstance(data.get("videos"), list):
        raise EvalInputError(f"{where}: video ground truth must be a dict with a 'videos' list")
    videos: dict[int, VideoInfo] = {}
    for i, v in enumerate(data["videos"]):
        vid = v.get("id") if isinstance(v, Mapping) else None
        if not _is_int(vid):
            raise EvalInputError(f"{where}: videos[{i}]: missing or non-integer 'id'", i, vid)
        if vid in videos:
            raise EvalInputError(f"{where}: videos[{i}]: duplicate video id {vid}", i, vid)
        files = v.get("file_names")
        length = len(files) if isinstance(files, list) and files else v.get("length")
        h, w = v.get("height"), v.get("width")
        if not (_is_int(length) and length > 0 and _is_int(h) and _is_int(w) and h > 0 and w > 0):
            raise EvalInputError(f"{where}: video {vid}: needs file_names (or length), height and width", i, vid)
        name = v.get("video_name") or (files[0].split("/")[0] if isinstance(files, list) and files else str(vid))
        videos[vid] = VideoInfo(vid, str(name), int(length), int(h), int(w))
    categories: dict[int, str] = {}
    for i, c in enumerate(data.get("categories") or []):
        if not isinstance(c, Mapping) or not _is_int(c.get("id")):
            raise EvalInputError(f"{where}: categories[{i}]: missing or non-integer 'id'", i)
        categories[c["id"]] = str(c.get("name", c["id"]))
    masklets: dict[PairKey, list[GTMasklet]] = defaultdict(list)
    for i, a in enumerate(data.get("annotations") or []):
        if not isinstance(a, Mapping):
            raise EvalInputError(f"{where}: annotations[{i}] is not an object", i)
        aid, vid, cid = a.get("id", i + 1), a.get("video_id"), a.get("category_id")
        if vid not in videos:
            raise EvalInputError(f"{where}: annotation {aid}: unknown video_id {vid!r}", i, aid)
        if not _is_int(cid):
            raise EvalInputError(f"{where}: annotation {aid}: missing or non-integer category_id", i, aid)
        v = videos[vid]
        segs = a.get("segmentations")
        if not isinstance(segs, list) or len(segs) != v.length:
            raise EvalInputError(f"{where}: annotation {aid}: 'segmentations' must list one RLE or null per "
                                 f"frame ({v.length} for video {vid})", i, aid)
        h, w = a.get("height", v.height), a.get("width", v.width)
        try:
            segs = [None if s is None else to_compressed_rle(s, h, w) for s in segs]
        except (RLEError, TypeError, ValueError, KeyError) as e:
            raise EvalInputError(f"{where}: annotation {aid}: bad segmentation ({e})", i, aid) from e
        masklets[(vid, cid)].append(GTMasklet(aid, segs, bool(a.get("iscrowd", 0)), a.get("object_id")))
    has_np = "video_np_pairs" in data
    np_pairs: list[PairKey] = []
    for i, p in enumerate(data.get("video_np_pairs") or []):
        if not isinstance(p, Mapping) or p.get("video_id") not in videos or not _is_int(p.get("category_id")):
            raise EvalInputError(f"{where}: video_np_pairs[{i}]: needs a known video_id and an integer "
                                 "category_id", i)
        np_pairs.append((p["video_id"], p["category_id"]))
    return VideoGroundTruth(videos, categories, dict(masklets), sorted(set(np_pairs)), has_np, where)


def load_video_predictions(src: str | os.PathLike | Sequence[Mapping[str, Any]], gt: VideoGroundTruth,
                           validate_rle: bool = True) -> list[VideoPrediction]:
    """Read + validate a YTVIS results list against ``gt``: known ``video_id``, integer
    ``category_id`` (a phrase id; ids absent from the GT make extra negative pairs, as
    officially), finite ``score``, one RLE or null per frame of the video.  ``validate_rle``
    also checks every RLE decodes to the video's height x width."""
    data, where = _source(src, "predictions")
    if not isinstance(data, list):
        raise EvalInputError(f"{where}: video predictions must be a list of YTVIS results")
    out = []
    for i, d in enumerate(data):
        if not isinstance(d, Mapping):
            raise EvalInputError(f"{where}: entry {i} is not an object", i)
        vid, cid, score = d.get("video_id"), d.get("category_id"), d.get("score")
        if vid not in gt.videos:
            raise EvalInputError(f"{where}: entry {i}: unknown video_id {vid!r}", i, vid)
        if not _is_int(cid):
            raise EvalInputError(f"{where}: entry {i}: missing or non-integer category_id", i, vid)
        if not _is_number(score):
            raise EvalInputError(f"{where}: entry {i}: 'score' must be a finite number", i, vid)
        v = gt.videos[vid]
        segs = d.get("segmentations")
        if not isinstance(segs, list) or len(segs) != v.length:
            raise EvalInputError(f"{where}: entry {i}: 'segmentations' must list one RLE or null per frame "
                                 f"({v.length} for video {vid}), got "
                                 f"{len(segs) if isinstance(segs, list) else type(segs).__name__}", i, vid)
        clean = []
        for t, s in enumerate(segs):
            if s is None:
                clean.append(None)
                continue
            try:
                if validate_rle:
                    check_rle(s, v.height, v.width)
                clean.append(to_compressed_rle(s, v.height, v.width))
            except (RLEError, TypeError, ValueError, KeyError) as e:
                raise EvalInputError(f"{where}: entry {i}, frame {t}: {e}", i, vid) from e
        out.append(VideoPrediction(i, vid, cid, float(score), clean))
    return out


# ------------------------------------------------------------------------------ converters


def track_json_to_ytvis(doc: Mapping[str, Any] | str | os.PathLike, video_id: int, category_id: int,
                        num_frames: int | None = None) -> list[dict]:
    """Convert the per-frame JSON of ``conceptseg track --json`` (``frames`` -> ``objects`` with
    ``id``, ``score``, ``box`` xyxy, ``rle``) to YTVIS results: one masklet per object id with
    ``segmentations`` / ``bboxes`` (xywh) / ``areas`` per frame (None where the object is absent
    or the frame was not processed) and ``score`` = the mean of its per-frame scores (what the
    official video post-processor uses as tracklet score)."""
    doc, where = _source(doc, "tracker JSON")
    if not isinstance(doc, Mapping) or not isinstance(doc.get("frames"), list):
        raise EvalInputError(f"{where}: not a tracker JSON (no 'frames' list)")
    T = num_frames if num_frames is not None else doc.get("num_frames")
    if T is None:
        T = 1 + max((int(f["frame"]) for f in doc["frames"]), default=-1)
    T = int(T)
    tracks: dict[int, dict] = {}
    for f in doc["frames"]:
        t = int(f["frame"])
        if not 0 <= t < T:
            raise EvalInputError(f"{where}: frame {t} is outside the video's {T} frames")
        for o in f.get("objects", []):
            tr = tracks.setdefault(int(o["id"]), {"segmentations": [None] * T, "bboxes": [None] * T,
                                                  "areas": [None] * T, "scores": []})
            rle = dict(o["rle"])
            area = int(mask_utils.area(rle))
            tr["segmentations"][t] = rle
            tr["areas"][t] = area
            tr["bboxes"][t] = [float(v) for v in mask_utils.toBbox(rle)] if area else None
            tr["scores"].append(float(o["score"]))
    return [{"video_id": int(video_id), "category_id": int(category_id),
             "score": float(np.mean(tr["scores"])), "segmentations": tr["segmentations"],
             "bboxes": tr["bboxes"], "areas": tr["areas"], "track_id": oid}
            for oid, tr in sorted(tracks.items())]


def _video_keys(v: VideoInfo) -> set[str]:
    return {v.name, str(v.id)}


def tracks_to_ytvis(docs: Iterable[Mapping[str, Any] | str | os.PathLike], gt: VideoGroundTruth) -> list[dict]:
    """Convert several tracker JSONs, resolving each to a (video, phrase) of ``gt``: the video by
    the stem or folder name of its ``video`` path (against ``video_name`` / the frame folder /
    the id), the phrase by its ``text`` (exact, then case-insensitive)."""
    by_key: dict[str, int] = {}
    for v in gt.videos.values():
        for k in _video_keys(v):
            by_key.setdefault(k, v.id)
    by_phrase = {name: cid for cid, name in gt.categories.items()}
    by_lower = {name.strip().lower(): cid for cid, name in gt.categories.items()}
    out: list[dict] = []
    for d in docs:
        doc, where = _source(d, "tracker JSON")
        if not isinstance(doc, Mapping) or "frames" not in doc:
            raise EvalInputError(f"{where}: not a tracker JSON (no 'frames' list)")
        p = Path(str(doc.get("video", "")))
        vid = next((by_key[k] for k in (p.name, p.stem) if k in by_key), None)
        if vid is None:
            raise EvalInputError(f"{where}: video {str(p)!r} matches no video of the ground truth")
        text = str(doc.get("text", ""))
        cid = by_phrase.get(text, by_lower.get(text.strip().lower()))
        if cid is None:
            raise EvalInputError(f"{where}: phrase {text!r} is not a category of the ground truth")
        out += track_json_to_ytvis(doc, vid, cid, gt.videos[vid].length)
    return out


# ------------------------------------------------------------------------------ per pair geometry


def _areas(rles: list[dict]) -> np.ndarray:
    return np.asarray(mask_utils.area(rles), dtype=np.int64).reshape(-1) if rles else np.zeros(0, np.int64)


def _frame_ious(d: list[dict], g: list[dict]) -> np.ndarray:
    if not d or not g:
        return np.zeros((len(d), len(g)))
    return np.asarray(mask_utils.iou(d, g, [0] * len(g)), dtype=float).reshape(len(d), len(g))


@dataclass
class _PairGeometry:
    masklet_iou: np.ndarray  # (n_pred, n_gt) spatio-temporal IoU
    frame_iou: list[np.ndarray]  # per frame (n_pred_present, n_gt_present) mask IoU
    pred_present: list[np.ndarray]  # per frame: indices of predictions with a mask
    gt_present: list[np.ndarray]
    pred_area: list[np.ndarray]  # per frame, aligned with pred_present


def _pair_geometry(preds: list[VideoPrediction], gts: list[GTMasklet], T: int) -> _PairGeometry:
    n_p, n_g = len(preds), len(gts)
    inter = np.zeros((n_p, n_g), dtype=np.int64)
    tot_p, tot_g = np.zeros(n_p, np.int64), np.zeros(n_g, np.int64)
    frame_iou, p_idx, g_idx, p_area = [], [], [], []
    for t in range(T):
        pi = np.array([k for k, p in enumerate(preds) if p.segmentations[t]], dtype=np.int64)
        gi = np.array([k for k, g in enumerate(gts) if g.segmentations[t]], dtype=np.int64)
        d = [preds[k].segmentations[t] for k in pi]
        g = [gts[k].segmentations[t] for k in gi]
        ap, ag = _areas(d), _areas(g)
        tot_p[pi] += ap
        tot_g[gi] += ag
        iou = _frame_ious(d, g)
        if iou.size:
            # pycocotools gives iou = I / (ap + ag - I): recover the integer intersection exactly
            s = (ap[:, None] + ag[None, :]).astype(float)
            inter[np.ix_(pi, gi)] += np.rint(iou * s / (1.0 + iou)).astype(np.int64)
        frame_iou.append(iou)
        p_idx.append(pi)
        g_idx.append(gi)
        p_area.append(ap)
    union = tot_p[:, None] + tot_g[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        miou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)  # official: empty union -> IoU 1
    return _PairGeometry(miou.reshape(n_p, n_g), frame_iou, p_idx, g_idx, p_area)


def masklet_iou(pred: Sequence[dict | None], gt: Sequence[dict | None]) -> float:
    """Spatio-temporal mask IoU of two masklets (lists of RLE or None per frame)."""
    if len(pred) != len(gt):
        raise ValueError(f"masklets have {len(pred)} and {len(gt)} frames")
    p = VideoPrediction(0, 0, 0, 1.0, list(pred))
    return float(_pair_geometry([p], [GTMasklet(0, list(gt))], len(gt)).masklet_iou[0, 0])


def _sequence_data(geo: _PairGeometry, kept: np.ndarray, T: int) -> dict:
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


def _trackeval_metrics():
    try:
        from trackeval.metrics import CLEAR, HOTA, Identity
    except ImportError as e:  # pragma: no cover - trackeval is in the [eval] extra
        raise ImportError("video metrics need the 'trackeval' package: pip install 'conceptseg[eval]' "
                          "(or pip install trackeval)") from e
    cfg = {"THRESHOLD": 0.5, "PRINT_CONFIG": False}
    return HOTA(), CLEAR(dict(cfg)), Identity(dict(cfg))


# ------------------------------------------------------------------------------ report


@dataclass
class PairResult:
    """Outcome of one (video, phrase) pair.  HOTA fields are means over alpha and None when the
    pair is not a HOTA sequence (no GT and no kept prediction).  ``F1`` / ``F1_50`` follow the
    official per-pair output (2TP / (2TP + FP + FN), 1.0 when both are empty)."""

    video_id: int
    category_id: int
    phrase: str
    num_gt: int  # non-crowd GT masklets
    num_pred: int
    num_kept: int  # score >= threshold (cgF1)
    max_score: float | None
    il: str  # "TP" | "FP" | "TN" | "FN"
    tp: list[int]
    fp: list[int]
    fn: list[int]
    F1: float
    F1_50: float
    HOTA: float | None = None
    DetA: float | None = None
    AssA: float | None = None
    LocA: float | None = None
    IDSW: int | None = None
    IDF1: float | None = None


@dataclass
class VideoReport:
    """Video evaluation result.  HOTA family in [0, 1] (means over the 19 alphas, combined over
    the evaluated pairs); ``cgF1`` in 0-100, pmF1 / IL_MCC / precision / recall in [0, 1]
    (means over IoU 0.50:0.95).  NaN where undefined (no HOTA sequence; cgF1 / IL_MCC without
    ``video_np_pairs``)."""

    score_threshold: float
    iou_thresholds: list[float]
    pHOTA: float
    DetA: float
    AssA: float
    DetRe: float
    DetPr: float
    AssRe: float
    AssPr: float
    LocA: float
    OWTA: float
    hota_per_alpha: dict[str, list[float]]
    IDSW: int
    MOTA: float
    MOTP: float
    Frag: int
    IDF1: float
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
    counts: dict[str, Any]
    official_eps: bool = True
    pairs: list[PairResult] = field(default_factory=list, repr=False)

    def to_dict(self, include_pairs: bool = False) -> dict:
        """JSON-ready dict (NaN -> None)."""
        d = asdict(self)
        if not include_pairs:
            d.pop("pairs")
        return _nan_to_none(d)

    def official_metrics(self, dataset_name: str = "video") -> dict[str, float]:
        """Dataset-level numbers under the key names of the official VEval evaluator
        (``<name>_mask_all_phrase_<HOTA field>`` and ``<name>_mask_demo_*``; cgF1 in [0, 1])."""
        pre = f"{dataset_name}_mask_"
        out = {f"{pre}all_phrase_{k}": float(getattr(self, "pHOTA" if k == "HOTA" else k)) for k in HOTA_FIELDS}
        out.update({
            f"{pre}demo_cgf1_micro_50_95": self.cgF1 / 100.0,
            f"{pre}demo_ilmcc_50_95": self.IL_MCC,
            f"{pre}demo_positive_micro_f1_50_95": self.pmF1,
        })
        for thr, cg, pm in ((50, self.cgF1_50, self.pmF1_50), (75, self.cgF1_75, self.pmF1_75)):
            out[f"{pre}demo_cgf1_micro_{thr}"] = cg / 100.0
            out[f"{pre}demo_ilmcc_{thr}"] = (cg / 100.0) / pm if pm else float("nan")
            out[f"{pre}demo_positive_micro_f1_{thr}"] = pm
        return out


def _mean(v: Any) -> float:
    return float(np.mean(v))


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
    hota_m, clear_m, id_m = _trackeval_metrics()

    by_pair: dict[PairKey, list[VideoPrediction]] = defaultdict(list)
    for p in preds:
        by_pair[(p.video_id, p.category_id)].append(p)
    gt_pairs = {k for k, v in gt.masklets.items() if v}
    pairs = sorted(set(gt.np_pairs) | gt_pairs | set(by_pair))
    acc = _Accumulator(len(thrs))
    k50, k75 = (np.flatnonzero(np.isclose(thrs, x)) for x in (0.5, 0.75))
    records: list[PairResult] = []
    hota_res, clear_res, id_res = {}, {}, {}
    for key in pairs:
        vid, cid = key
        T = gt.videos[vid].length
        plist, glist = by_pair.get(key, []), gt.masklets.get(key, [])
        geo = _pair_geometry(plist, glist, T)
        scores = np.array([p.score for p in plist], dtype=float)
        # cgF1: kept predictions x non-crowd GT
        keep = scores >= score_threshold
        crowd = np.array([g.iscrowd for g in glist], dtype=bool)
        tp, fp, fn, f1, n_gt, n_dt = _score(geo.masklet_iou[:, ~crowd], keep, thrs, official_eps)
        il = acc.add((tp, fp, fn, f1, n_gt, n_dt))
        den = 2 * tp + fp + fn
        pair_f1 = np.where(den > 0, 2 * tp / np.maximum(den, 1), 1.0)
        rec = PairResult(vid, cid, gt.phrase(cid), int(n_gt), len(plist), int(n_dt),
                         float(scores.max()) if len(scores) else None, il, tp.tolist(), fp.tolist(), fn.tolist(),
                         float(pair_f1.mean()), float(pair_f1[k50[0]]) if len(k50) else float("nan"))
        # HOTA / CLEAR / Identity: sequences with GT or kept (score > thr) predictions
        hkeep = scores > score_threshold
        if key in gt_pairs or hkeep.any():
            data = _sequence_data(geo, hkeep, T)
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

    # --- cgF1 family (CGF1Eval.accumulate / summarize)
    m = acc.metrics(official_eps)
    mcc = m["IL_MCC"] if gt.has_np_pairs else nan
    cg = m["cgF1"] if gt.has_np_pairs else np.full(len(thrs), nan)
    per_thr = [ThresholdMetrics(float(t), int(acc.tp[j]), int(acc.fp[j]), int(acc.pfp[j]), int(acc.fn[j]),
                                float(m["precision"][j]), float(m["positive_micro_precision"][j]),
                                float(m["recall"][j]), float(m["F1"][j]), float(m["pmF1"][j]),
                                100.0 * float(cg[j]), float(m["positive_macro_F1"][j]))
               for j, t in enumerate(thrs)]

    def at(arr: np.ndarray, idx: np.ndarray) -> float:
        return float(arr[idx[0]]) if len(idx) else nan

    cg_mean = 100.0 * _official_mean(m["cgF1"]) if gt.has_np_pairs else nan
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
        score_threshold=float(score_threshold), iou_thresholds=[float(t) for t in thrs],
        pHOTA=hota_vals["HOTA"], **{f: hota_vals[f] for f in HOTA_FIELDS if f != "HOTA"},
        hota_per_alpha=per_alpha, IDSW=clear_vals[0], MOTA=clear_vals[1], MOTP=clear_vals[2],
        Frag=clear_vals[3], IDF1=clear_vals[4],
        cgF1=cg_mean, pmF1=_official_mean(m["pmF1"]), IL_MCC=float(mcc),
        precision=_official_mean(m["precision"]),
        positive_micro_precision=_official_mean(m["positive_micro_precision"]),
        recall=_official_mean(m["recall"]), F1=_official_mean(m["F1"]),
        positive_macro_F1=float(np.mean(m["positive_macro_F1"])),
        cgF1_50=100.0 * at(cg, k50), cgF1_75=100.0 * at(cg, k75),
        pmF1_50=at(m["pmF1"], k50), pmF1_75=at(m["pmF1"], k75),
        per_threshold=per_thr, image_level=m["image_level"], counts=counts,
        official_eps=official_eps, pairs=records,
    )


# ------------------------------------------------------------------------------ writers


def _f(v: Any, pct: bool = False, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{100 * v:.2f}" if pct else f"{v:.{digits}f}"


def video_summary_markdown(report: VideoReport, top_k: int = 10) -> str:
    """Markdown summary: headline table, presence confusion, counts, per-threshold table and the
    worst (video, phrase) pairs by HOTA."""
    r, il = report, report.image_level
    lines = [
        "# Video evaluation (SA-Co/VEval style, masks)", "",
        f"Score threshold {r.score_threshold:g} (HOTA keeps score > thr, cgF1 score >= thr); "
        f"cgF1 IoU thresholds 0.50:0.95 ({len(r.iou_thresholds)}); HOTA alphas 0.05:0.95.", "",
        "| pHOTA | DetA | AssA | IDSW | IDF1 | cgF1 | pmF1 | IL_MCC | cgF1@0.5 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {_f(r.pHOTA, True)} | {_f(r.DetA, True)} | {_f(r.AssA, True)} | {r.IDSW} | {_f(r.IDF1, True)} | "
        f"{_f(r.cgF1, digits=2)} | {_f(r.pmF1, True)} | {_f(r.IL_MCC)} | {_f(r.cgF1_50, digits=2)} |", "",
        "pHOTA, DetA, AssA, IDF1, pmF1 in %.  "
        f"DetRe {_f(r.DetRe, True)} · DetPr {_f(r.DetPr, True)} · AssRe {_f(r.AssRe, True)} · "
        f"AssPr {_f(r.AssPr, True)} · LocA {_f(r.LocA, True)} · MOTA {_f(r.MOTA, True)} · Frag {r.Frag}.", "",
        "## Pair level (presence)", "",
        f"TP {il.tp} · FP {il.fp} · TN {il.tn} · FN {il.fn} — precision {il.precision:.4f}, "
        f"recall {il.recall:.4f}, MCC {_f(r.IL_MCC)}.", "",
        "## Counts", "",
    ]
    lines += [f"- {k}: {v}" for k, v in r.counts.items()]
    lines += ["", "## Masklets per IoU threshold", "",
              "| IoU | TP | FP | FP (pos.) | FN | precision | recall | pmF1 | cgF1 |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in r.per_threshold:
        lines.append(f"| {t.iou:.2f} | {t.tp} | {t.fp} | {t.positive_fp} | {t.fn} | {_f(t.precision)} | "
                     f"{_f(t.recall)} | {_f(t.pmF1)} | {_f(t.cgF1, digits=2)} |")
    scored = sorted((p for p in r.pairs if p.HOTA is not None), key=lambda p: (p.HOTA, p.video_id, p.category_id))
    if scored:
        lines += ["", "## Worst pairs by HOTA", "", "| video | phrase | GT | kept | HOTA | DetA | AssA | IDSW | F1 |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for p in scored[:top_k]:
            lines.append(f"| {p.video_id} | {p.phrase.replace('|', '/')} | {p.num_gt} | {p.num_kept} | "
                         f"{_f(p.HOTA, True)} | {_f(p.DetA, True)} | {_f(p.AssA, True)} | {p.IDSW} | {p.F1:.3f} |")
    lines.append("")
    return "\n".join(lines)


def write_video_report(report: VideoReport, out_dir: str | os.PathLike) -> dict[str, str]:
    """Write ``report.json`` (+ the official key names), ``pairs.jsonl`` (one line per pair)
    and ``summary.md`` into ``out_dir``, each atomically.  Returns {name: path}."""
    from ..atomic import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = report.to_dict()
    payload["official_metrics"] = _nan_to_none(report.official_metrics())
    pairs = report.to_dict(include_pairs=True)["pairs"]
    paths = {"json": out / "report.json", "pairs": out / "pairs.jsonl", "markdown": out / "summary.md"}
    atomic_write(paths["json"], lambda t: Path(t).write_text(json.dumps(payload, indent=1, default=float)))
    atomic_write(paths["pairs"], lambda t: Path(t).write_text("".join(json.dumps(p) + "\n" for p in pairs)))
    atomic_write(paths["markdown"], lambda t: Path(t).write_text(video_summary_markdown(report)))
    return {k: str(v) for k, v in paths.items()}
