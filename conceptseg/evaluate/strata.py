"""Stratified failure analysis of an image evaluation: precision, recall and F1 at IoU 0.5 and
cgF1 per stratum of object size, occlusion, concept frequency in training, crowding and phrase form.

The matching is the evaluator's own (:func:`~conceptseg.evaluate.cgf1.match` on the IoU matrix of
the kept predictions against the annotator the report selected): a ground-truth instance is a
true positive when its matched prediction has IoU >= 0.5.

* Instance strata (``size``, ``relative_area``, ``occlusion``) split the ground-truth instances.
  A false positive counts in the stratum of its own area (size, as COCO's area ranges do), or of
  the ground-truth instance it overlaps most (occlusion; one overlapping none is *unattributed*).
  cgF1 of such a stratum: every negative datapoint and the positive datapoints with an instance
  in it, keeping only that stratum's instances and the predictions matched or attributed to them.
* Datapoint strata (``concept_frequency``, ``crowding``, ``phrase_form``) split the datapoints;
  cgF1 is the official accumulation over the stratum's datapoints (crowding: plus every negative,
  which has no instance count of its own).

Strata with fewer than :data:`MIN_SUPPORT` ground-truth instances are reported but never named
among the weakest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np

from ..data.phrases import parse_phrase
from ..data.scene_sampling import SceneConfig, sample_object_attrs, scene_datapoints
from ..data.splits import TRAIN_SEED
from ..ops.masks import rle_area, rle_to_xywh
from .cgf1 import IOU_THRESHOLDS, Accumulator, match, official_mean, score_datapoint
from .ground_truth import GroundTruth
from .predictions import Predictions
from .saco import SacoReport, geometries

__all__ = ["MIN_SUPPORT", "RARE_FRACTION", "StratumStats", "stratify", "weakest", "synthetic_frequencies",
           "training_frequencies"]

MIN_SUPPORT = 20  # ground-truth instances a stratum needs to be ranked among the weakest
RARE_FRACTION = 0.005  # a concept in fewer than 0.5 % of the training images is "rare"
SYNTHETIC_SIMULATED_SCENES = 1000  # draws of the engine's sampler that estimate train frequencies
SIZE_BINS = ((0.0, 32.0 ** 2, "small"), (32.0 ** 2, 96.0 ** 2, "medium"), (96.0 ** 2, float("inf"), "large"))
RELATIVE_BINS = ((0.0, 0.01, "<1%"), (0.01, 0.03, "1-3%"), (0.03, 0.1, "3-10%"), (0.1, 0.3, "10-30%"),
                 (0.3, float("inf"), ">=30%"))
VISIBLE_BINS = ((0.0, 0.7, "<70% visible"), (0.7, 0.9, "70-90%"), (0.9, 0.99, "90-99%"),
                (0.99, float("inf"), ">=99% (unoccluded)"))
CROWD_BINS = ((1, 2, "1 instance"), (2, 4, "2-3"), (4, 10, "4-9"), (10, 10 ** 9, "10+"))


@dataclass
class StratumStats:
    """Counts at IoU 0.5 and the metrics of one stratum (precision / recall / F1 None when undefined)."""

    stratification: str  # e.g. "size"
    label: str  # e.g. "small"
    tp: int = 0  # ground-truth instances matched at IoU >= 0.5
    fp: int = 0  # kept predictions of the stratum left unmatched at IoU 0.5
    fn: int = 0  # ground-truth instances of the stratum missed
    num_datapoints: int = 0  # datapoints scored for this stratum's cgF1
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    cgF1: float | None = None  # 0-100, mean over IoU 0.50:0.95 as the headline number
    acc: Accumulator = field(default_factory=lambda: Accumulator(len(IOU_THRESHOLDS)), repr=False)

    @property
    def support(self) -> int:
        """Ground-truth instances in the stratum."""
        return self.tp + self.fn

    def finish(self) -> None:
        t, p, g = self.tp, self.tp + self.fp, self.tp + self.fn
        self.precision = t / p if p else None
        self.recall = t / g if g else None
        self.f1 = 2 * t / (p + g) if p + g else None
        m = self.acc.metrics(True)
        self.cgF1 = 100.0 * official_mean(m["cgF1"]) if self.num_datapoints else None

    def to_dict(self) -> dict:
        return {"label": self.label, "support": self.support, "tp": self.tp, "fp": self.fp, "fn": self.fn,
                "precision": self.precision, "recall": self.recall, "f1": self.f1, "cgF1": self.cgF1,
                "num_datapoints": self.num_datapoints}


def _bin(value: float | None, bins) -> str | None:
    if value is None:
        return None
    return next((lab for lo, hi, lab in bins if lo <= value < hi), None)


@lru_cache(maxsize=4)
def synthetic_frequencies(held_out: frozenset) -> tuple[dict[str, float], int]:
    """Share of training images in which each phrase is a positive datapoint, estimated by
    drawing :data:`SYNTHETIC_SIMULATED_SCENES` scenes of the engine's training sampler (objects and
    phrases; nothing rendered). Held-out colour-shape pairs never occur (they are never rendered)."""
    cfg = SceneConfig(held_out_pairs=held_out)
    rng = np.random.default_rng(np.random.SeedSequence([TRAIN_SEED, 0xF4E9]))
    counts: dict[str, int] = {}
    for _ in range(SYNTHETIC_SIMULATED_SCENES):
        objs = sample_object_attrs(rng, int(rng.integers(cfg.min_objects, cfg.max_objects + 1)), cfg, "train")
        for phrase in {d.phrase for d in scene_datapoints(rng, objs, cfg, "train") if d.presence}:
            counts[phrase] = counts.get(phrase, 0) + 1
    return {k: v / SYNTHETIC_SIMULATED_SCENES for k, v in counts.items()}, SYNTHETIC_SIMULATED_SCENES


def training_frequencies(train: dict) -> tuple[dict[str, float], int]:
    """Share of training images in which each phrase occurs, from a COCO file: SA-Co style
    (``text_input`` per image entry; positive = has annotations; images counted by
    ``original_img_id`` / ``file_name``) or plain COCO (category names, images by ``image_id``)."""
    images, anns = train.get("images") or [], train.get("annotations") or []
    if any("text_input" in im for im in images):
        positive = {a.get("image_id") for a in anns}

        def key(im: dict):  # one training image, however many phrases it carries
            return im.get("original_img_id", im.get("file_name", im.get("id")))

        seen: dict[str, set] = {}
        for im in images:
            if im.get("id") in positive:
                seen.setdefault(str(im["text_input"]).strip().lower(), set()).add(key(im))
        n = len({key(im) for im in images})
    else:
        names = {c["id"]: str(c["name"]).strip().lower() for c in train.get("categories") or []}
        seen = {}
        for a in anns:
            if a.get("category_id") in names:
                seen.setdefault(names[a["category_id"]], set()).add(a.get("image_id"))
        n = len(images)
    return {k: len(v) / max(n, 1) for k, v in seen.items()}, n


def _frequency_label(phrase: str, freqs: dict[str, float]) -> str:
    f = freqs.get(phrase.strip().lower(), 0.0)
    return "never seen" if f == 0 else ("rare" if f < RARE_FRACTION else "frequent")


def phrase_form(phrase: str) -> str:
    """The number of attributes a phrase of the synthetic grammar names (:func:`parse_phrase`:
    size, fill, colour, shape; "shape alone" for one), else its word count (free text)."""
    try:
        n = len(parse_phrase(phrase))
    except ValueError:
        n = len(phrase.split())
        return f"{min(n, 4)}{'+' if n >= 4 else ''} word{'s' if n != 1 else ''} (free text)"
    return f"{n} attribute{'s' if n != 1 else ''}"


def _visible_fractions(gt: GroundTruth) -> list[dict]:
    """Per annotator: annotation id -> ``visible_fraction`` as stored in the raw file."""
    out = []
    for raw in gt.coco:
        anns = raw.get("annotations") or [] if isinstance(raw, dict) else []
        out.append({a.get("id"): float(a["visible_fraction"]) for a in anns
                    if isinstance(a, dict) and isinstance(a.get("visible_fraction"), (int, float))})
    return out


def _pred_area(p, iou_type: str) -> float:
    """Mask area (segm; a box-only result: its box) or box area (bbox) of one prediction."""
    if iou_type == "segm" and p.segmentation is not None:
        return float(rle_area([p.segmentation])[0])
    box = p.bbox if p.bbox is not None else rle_to_xywh([p.segmentation])[0]
    return float(box[2] * box[3])


def _gt_area(g: dict) -> float:
    """The annotation's ``area`` as COCO uses it, else its mask's (else its box's) area."""
    if g["area"] is not None:
        return float(g["area"])
    if g["segmentation"] is not None:
        return float(rle_area([g["segmentation"]])[0])
    return float(g["bbox"][2] * g["bbox"][3])


def stratify(report: SacoReport, gt: GroundTruth, preds: Predictions,
             frequencies: tuple[dict[str, float], int] | None = None) -> tuple[dict[str, list[StratumStats]], list[str]]:
    """The strata of ``report``: ``{stratification: [StratumStats ...]}`` and notes (skipped
    stratifications, unattributed false positives).  ``frequencies``: phrase -> share of training
    images (None: the engine's sampler for synthetic splits, else the stratification is skipped)."""
    notes: list[str] = []
    info = gt.coco[0].get("info", {}) if gt.coco and isinstance(gt.coco[0], dict) else {}
    if frequencies is None and info.get("held_out_pairs") is not None:
        frequencies = synthetic_frequencies(frozenset(tuple(p) for p in info["held_out_pairs"]))
        notes.append(f"concept frequency: the synthetic engine's training sampler ({frequencies[1]} scenes drawn)")
    elif frequencies is None:
        notes.append("concept frequency skipped: pass --train-annotations (the training COCO file)")
    visible = _visible_fractions(gt)
    has_visible = any(visible)
    if not has_visible:
        notes.append("occlusion skipped: the annotations carry no visible_fraction")
    strata: dict[str, dict[str, StratumStats]] = {k: {} for k in (
        "size", "relative_area", "occlusion", "concept_frequency", "crowding", "phrase_form")}
    if not has_visible:
        del strata["occlusion"]
    if frequencies is None:
        del strata["concept_frequency"]

    def get(name: str, label: str) -> StratumStats:
        return strata[name].setdefault(label, StratumStats(name, label))

    unattributed = 0
    negatives: list[tuple] = []
    positives: dict[str, dict[str, list]] = {name: {} for name in ("size", "relative_area", "occlusion")}
    records = {r.image_id: r for r in report.datapoints}
    thr = report.score_threshold
    for iid in gt.eval_ids:
        rec, dp = records[iid], gt.datapoints[iid]
        scores, ious = geometries(gt, preds, iid, report.iou_type)
        keep = np.flatnonzero(scores >= thr)
        gts = [g for g in gt.instances[rec.annotator][iid] if not g["iscrowd"]]
        m = ious[rec.annotator][keep]
        plist = preds.for_image(iid)
        rows, cols = match(m)
        hit = m[rows, cols] >= 0.5 if len(rows) else np.zeros(0, bool)
        gt_tp = np.zeros(len(gts), bool)
        gt_tp[cols[hit]] = True
        pred_tp = np.zeros(len(keep), bool)
        pred_tp[rows[hit]] = True
        pred_gt = np.full(len(keep), -1)
        overlap = m[rows, cols] > 0 if len(rows) else np.zeros(0, bool)
        pred_gt[rows[overlap]] = cols[overlap]  # the assigned instance, when they overlap at all
        # per-instance and per-prediction stratum labels
        p_area = np.array([_pred_area(plist[i], report.iou_type) for i in keep], dtype=float)
        g_area = np.array([_gt_area(g) for g in gts], dtype=float)
        img_area = float(dp.height * dp.width)
        vis = [visible[rec.annotator].get(g["id"]) for g in gts]
        labels = {"size": ([_bin(a, SIZE_BINS) for a in g_area], [_bin(a, SIZE_BINS) for a in p_area]),
                  "relative_area": ([_bin(a / img_area, RELATIVE_BINS) for a in g_area],
                                    [_bin(a / img_area, RELATIVE_BINS) for a in p_area])}
        if has_visible:
            g_vis = [_bin(v, VISIBLE_BINS) for v in vis]
            best = m.argmax(1) if m.shape[1] else np.zeros(len(keep), int)
            p_vis = [g_vis[pred_gt[k]] if pred_gt[k] >= 0 else
                     (g_vis[best[k]] if m.shape[1] and m[k, best[k]] > 0 else None) for k in range(len(keep))]
            unattributed += sum(lab is None and not pred_tp[k] for k, lab in enumerate(p_vis))
            labels["occlusion"] = (g_vis, p_vis)
        for name, (gl, pl) in labels.items():
            for j, lab in enumerate(gl):
                if lab is not None:
                    s = get(name, lab)
                    s.tp, s.fn = s.tp + int(gt_tp[j]), s.fn + int(not gt_tp[j])
            for k, lab in enumerate(pl):  # a true positive is counted with its instance
                if lab is not None and not pred_tp[k]:
                    get(name, lab).fp += 1
            if gts:
                positives[name][iid] = (m, gl, pl, pred_gt, hit, rows)
        if not gts:
            negatives.append((iid, m, labels))
        # datapoint strata
        full = score_datapoint(m, np.ones(len(keep), bool), IOU_THRESHOLDS, True)
        dlabels = {"crowding": _bin(len(gts), CROWD_BINS), "phrase_form": phrase_form(dp.text)}
        if frequencies is not None:
            dlabels["concept_frequency"] = _frequency_label(dp.text, frequencies[0])
        for name, lab in dlabels.items():
            if lab is None:
                continue
            s = get(name, lab)
            k50 = 0  # IOU_THRESHOLDS[0] == 0.5
            s.tp, s.fp, s.fn = s.tp + int(full[0][k50]), s.fp + int(full[1][k50]), s.fn + int(full[2][k50])
            s.num_datapoints += 1
            s.acc.add(full)
        if not gts:  # crowding is about positives: every negative joins every crowding stratum's cgF1
            negatives[-1] = negatives[-1] + (full,)
    for s in strata["crowding"].values():
        for neg in negatives:
            s.acc.add(neg[3])
            s.num_datapoints += 1
    _instance_cgf1(strata, positives, negatives, get)
    if unattributed:
        notes.append(f"occlusion: {unattributed} false positives overlap no ground-truth instance (unattributed)")
    out = {}
    for name, by_label in strata.items():
        order = _order(name)
        stats = sorted(by_label.values(), key=lambda s: (order(s.label), s.label))
        for s in stats:
            s.finish()
        out[name] = stats
    return out, notes


def _instance_cgf1(strata, positives, negatives, get) -> None:
    """cgF1 of the instance strata (see the module docstring)."""
    for name in positives:
        if name not in strata:
            continue
        for label in list(strata[name]):
            s = get(name, label)
            for m, gl, pl, pred_gt, hit, rows in positives[name].values():
                cols = [j for j, lab in enumerate(gl) if lab == label]
                if not cols:
                    continue
                matched_to = {int(r): int(pred_gt[r]) for r, h in zip(rows, hit) if h}
                keep_rows = [k for k in range(m.shape[0]) if
                             (k in matched_to and gl[matched_to[k]] == label) or
                             (k not in matched_to and pl[k] == label)]
                s.acc.add(score_datapoint(m[np.ix_(keep_rows, cols)], np.ones(len(keep_rows), bool),
                                          IOU_THRESHOLDS, True))
                s.num_datapoints += 1
            for neg in negatives:
                pl = neg[2][name][1] if name in neg[2] else []
                rows_in = [k for k, lab in enumerate(pl) if lab == label]
                s.acc.add(score_datapoint(neg[1][rows_in], np.ones(len(rows_in), bool), IOU_THRESHOLDS, True))
                s.num_datapoints += 1


def _order(name: str) -> Callable[[str], int]:
    bins = {"size": SIZE_BINS, "relative_area": RELATIVE_BINS, "occlusion": VISIBLE_BINS, "crowding": CROWD_BINS}
    if name in bins:
        labels = [b[2] for b in bins[name]]
        return lambda lab: labels.index(lab) if lab in labels else len(labels)
    if name == "concept_frequency":
        return lambda lab: ["frequent", "rare", "never seen"].index(lab)
    return lambda lab: int(lab[0]) + (10 if "free" in lab else 0)


def weakest(strata: dict[str, list[StratumStats]], k: int = 3, min_support: int = MIN_SUPPORT) -> list[StratumStats]:
    """The ``k`` strata with the lowest F1 at IoU 0.5 among those with >= ``min_support``
    ground-truth instances (ties: the larger support first)."""
    cands = [s for stats in strata.values() for s in stats if s.support >= min_support and s.f1 is not None]
    return sorted(cands, key=lambda s: (s.f1, -s.support, s.stratification, s.label))[:k]
