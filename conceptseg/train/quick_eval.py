"""A quick, self-contained check of a concept model on held-out synthetic scenes.

Reports, over every (image, phrase) datapoint of ``num_images`` fresh scenes (seeds never used
for training):

* ``presence_auc`` / ``presence_pos`` / ``presence_neg``: does the presence head separate phrases
  that are in the image from phrases that are not (the first thing that must work);
* ``score_auc``: the same with the image-level score max_q sigmoid(logit_q) * sigmoid(presence);
* ``phrase_presence_auc`` / ``phrase_score_auc``: the same, computed per phrase over the images
  it is asked about (mean over phrases seen both present and absent). A model that only learned
  which phrases are *usually* present (e.g. "large object" almost always is) scores 0.5 here:
  this is the number that shows the image is compared with the phrase;
* ``pmF1``: micro F1 of the thresholded instance masks on positive datapoints, averaged over IoU
  thresholds 0.50:0.05:0.95 (one-to-one matching by mask IoU);
* ``IL_MCC``: Matthews correlation of "any instance predicted" vs "phrase present";
* ``cgF1`` = 100 * pmF1 * IL_MCC (crude version of the SA-Co metric);
* ``mask_recall_iou``: mean over ground-truth instances of the best IoU of any query's mask
  (localisation quality regardless of scores).

``split="test"`` renders the compositional test split (every scene holds a held-out
colour-shape pair); ``heldout_*`` numbers then cover the positive phrases naming such a pair.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from ..build import load
from ..data.concept_dataset import SyntheticConceptDataset
from ..data.phrases import DEFAULT_HELD_OUT_PAIRS, mentions_pair, parse_phrase
from ..data.scene_sampling import SceneConfig
from ..data.splits import QUICK_EVAL_SEED
from ..ops.masks import mask_iou
from ..text.tokenizer import ClipTokenizer

__all__ = ["quick_eval", "collect", "summarize", "Row", "auc"]

IOU_THRESHOLDS = np.arange(0.5, 0.96, 0.05)


def auc(pos, neg) -> float:
    """Probability that a random positive scores above a random negative (ties count 1/2)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sv = allv[order]
    i = 0
    while i < len(sv):  # average ranks of ties
        j = i
        while j + 1 < len(sv) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    r = ranks[: len(pos)].sum()
    return float((r - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _mean(v) -> float:
    return float(np.mean(v)) if len(v) else float("nan")


def _mcc(tp, fp, fn, tn) -> float:
    d = np.sqrt(float(tp + fp) * float(tp + fn) * float(tn + fp) * float(tn + fn))
    return float((tp * tn - fp * fn) / d) if d > 0 else 0.0


@dataclass
class Row:
    """One (image, phrase) datapoint, reduced to what the metrics need: raw logits and the mask
    IoU of every query with every ground-truth instance, so scores can be re-thresholded or
    shifted (calibration) without running the model again."""
    text: str
    query_logits: np.ndarray  # Q
    presence_logit: float
    iou: np.ndarray  # Q x N: mask IoU of each query with each instance
    nonempty: np.ndarray  # Q bool: the query's thresholded mask has a pixel
    held: bool  # a positive phrase naming a held-out colour-shape pair (split "test")

    @property
    def positive(self) -> bool:
        return self.iou.shape[1] > 0


@torch.no_grad()
def collect(model, num_images: int = 64, seed: int = QUICK_EVAL_SEED, split: str = "train",
            max_attributes: int = 4, negative_mode: str = "mixed", batch_images: int = 8,
            scene: SceneConfig | None = None) -> list[Row]:
    """Run ``model`` on every (image, phrase) datapoint of ``num_images`` fresh scenes."""
    was_training = model.training
    model.eval()
    tok = ClipTokenizer(context_length=model.config.text.context_length)
    S = model.config.vision.image_size
    device = next(model.parameters()).device
    cfg = replace(scene or SceneConfig(), max_attributes=max_attributes, negative_mode=negative_mode,
                  split=split)
    held_out = cfg.held_out_pairs or DEFAULT_HELD_OUT_PAIRS
    ds = SyntheticConceptDataset(num_images, seed, S, cfg, phrases_per_image=None)
    rows = []
    for start in range(0, num_images, batch_images):
        items = [ds[i] for i in range(start, min(start + batch_images, num_images))]
        texts, index, gts = [], [], []
        for b, it in enumerate(items):
            for q in it["queries"]:
                texts.append(q["text"])
                index.append(b)
                gts.append(q["masks"])
        images = (torch.stack([it["image"] for it in items]) - 0.5) / 0.5
        out = model(images.to(device), tok(texts).to(device),
                    image_index=torch.tensor(index, device=device))
        presence = out["presence_logit_dec"][:, 0].float().cpu()
        logits = out["pred_logits"][..., 0].float().cpu()
        masks = F.interpolate(out["pred_masks"].float(), size=(S, S), mode="bilinear",
                              align_corners=False).cpu() > 0
        for r, text in enumerate(texts):
            gt = gts[r]
            held = (gt.shape[0] > 0 and split == "test"
                    and mentions_pair(parse_phrase(text), held_out))
            rows.append(Row(text, logits[r].numpy(), float(presence[r]), mask_iou(masks[r], gt).numpy(),
                            masks[r].flatten(1).any(1).numpy(), held))
    model.train(was_training)
    return rows


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def summarize(rows: list[Row], threshold: float = 0.5, presence_shift: float = 0.0,
              score_shift: float = 0.0, split: str = "train") -> dict:
    """The metrics of :func:`quick_eval` from collected rows; the shifts are added to the
    presence and query logits first (what :mod:`conceptseg.train.calibrate` folds into a model)."""
    pres_pos, pres_neg, score_pos, score_neg, held_pres = [], [], [], [], []
    by_phrase: dict[str, tuple[list, list, list, list]] = {}
    tp, fp, fn, htp, hfp, hfn = (np.zeros(len(IOU_THRESHOLDS)) for _ in range(6))
    il = dict(tp=0, fp=0, fn=0, tn=0)
    recall_ious = []
    for row in rows:
        presence = float(_sigmoid(row.presence_logit + presence_shift))
        scores = _sigmoid(row.query_logits + score_shift) * presence
        positive = row.positive
        (pres_pos if positive else pres_neg).append(presence)
        (score_pos if positive else score_neg).append(float(scores.max()))
        g = by_phrase.setdefault(row.text, ([], [], [], []))
        g[0 if positive else 1].append(presence)
        g[2 if positive else 3].append(float(scores.max()))
        keep = (scores > threshold) & row.nonempty
        n_pred = int(keep.sum())
        if row.held:
            held_pres.append(presence)
        key = ("tp" if n_pred else "fn") if positive else ("fp" if n_pred else "tn")
        il[key] += 1
        if not positive:
            continue
        recall_ious += row.iou.max(0).tolist()
        if n_pred:
            iou = row.iou[keep]
            pi, gi = linear_sum_assignment(-iou)
            matched = iou[pi, gi]
        else:
            matched = np.zeros(0)
        n_gt = row.iou.shape[1]
        for k, t in enumerate(IOU_THRESHOLDS):
            n_tp = int((matched >= t).sum())
            tp[k] += n_tp
            fp[k] += n_pred - n_tp
            fn[k] += n_gt - n_tp
            if row.held:
                htp[k] += n_tp
                hfp[k] += n_pred - n_tp
                hfn[k] += n_gt - n_tp
    f1 = lambda a, b, c: float(np.mean(2 * a / np.maximum(2 * a + b + c, 1)))  # noqa: E731
    pm = f1(tp, fp, fn)
    mcc = _mcc(il["tp"], il["fp"], il["fn"], il["tn"])
    res = {
        "images": None, "split": split, "datapoints": len(pres_pos) + len(pres_neg),
        "presence_auc": auc(pres_pos, pres_neg),
        "presence_pos": float(np.mean(pres_pos)) if pres_pos else float("nan"),
        "presence_neg": float(np.mean(pres_neg)) if pres_neg else float("nan"),
        "score_auc": auc(score_pos, score_neg),
        # the same phrase in different images: cannot be won by knowing which phrases are
        # usually present, only by looking at the image
        "phrase_presence_auc": _mean([auc(a, b) for a, b, _, _ in by_phrase.values() if a and b]),
        "phrase_score_auc": _mean([auc(c, d) for _, _, c, d in by_phrase.values() if c and d]),
        "phrases_both": sum(1 for a, b, _, _ in by_phrase.values() if a and b),
        "pmF1": pm, "IL_MCC": mcc, "cgF1": 100 * pm * mcc,
        "mask_recall_iou": float(np.mean(recall_ious)) if recall_ious else float("nan"),
    }
    if split == "test":
        res["heldout_presence_auc"] = auc(held_pres, pres_neg)
        res["heldout_presence_pos"] = float(np.mean(held_pres)) if held_pres else float("nan")
        res["heldout_pmF1"] = f1(htp, hfp, hfn)
    return res


def quick_eval(model, num_images: int = 64, seed: int = QUICK_EVAL_SEED, split: str = "train",
               max_attributes: int = 4, negative_mode: str = "mixed", threshold: float = 0.5,
               batch_images: int = 8, scene: SceneConfig | None = None) -> dict:
    rows = collect(model, num_images, seed, split, max_attributes, negative_mode, batch_images,
                   scene)
    return {**summarize(rows, threshold, split=split), "images": num_images}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m conceptseg.train.quick_eval",
                                description="quick synthetic check of a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--split", choices=["train", "test", "both"], default="both")
    p.add_argument("--max-attributes", type=int, default=4)
    p.add_argument("--negatives", default="mixed", choices=["easy", "hard", "mixed"])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load(args.checkpoint)
    for split in (["train", "test"] if args.split == "both" else [args.split]):
        r = quick_eval(model, args.images, split=split, max_attributes=args.max_attributes,
                       negative_mode=args.negatives)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
