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
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from ..data.phrases import DEFAULT_HELD_OUT_PAIRS, mentions_pair, parse_phrase
from ..data.synthetic import SceneConfig, SyntheticConceptDataset

__all__ = ["quick_eval", "auc"]

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


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return (inter / union.clamp(min=1)).numpy()


def _mean(v) -> float:
    return float(np.mean(v)) if len(v) else float("nan")


def _mcc(tp, fp, fn, tn) -> float:
    d = np.sqrt(float(tp + fp) * float(tp + fn) * float(tn + fp) * float(tn + fn))
    return float((tp * tn - fp * fn) / d) if d > 0 else 0.0


@torch.no_grad()
def quick_eval(model, num_images: int = 64, seed: int = 987_654_321, split: str = "train",
               max_attributes: int = 4, negative_mode: str = "mixed", threshold: float = 0.5,
               batch_images: int = 8, scene: SceneConfig | None = None) -> dict:
    was_training = model.training
    model.eval()
    from ..text.tokenizer import ClipTokenizer

    tok = ClipTokenizer(context_length=model.config.text.context_length)
    S = model.config.vision.image_size
    device = next(model.parameters()).device
    cfg = replace(scene or SceneConfig(), max_attributes=max_attributes, negative_mode=negative_mode,
                  split=split)
    ds = SyntheticConceptDataset(num_images, seed, S, cfg, phrases_per_image=None)
    pres_pos, pres_neg, score_pos, score_neg, held_pres = [], [], [], [], []
    by_phrase: dict[str, tuple[list, list, list, list]] = {}
    tp = np.zeros(len(IOU_THRESHOLDS))
    fp = np.zeros(len(IOU_THRESHOLDS))
    fn = np.zeros(len(IOU_THRESHOLDS))
    htp, hfp, hfn = (np.zeros(len(IOU_THRESHOLDS)) for _ in range(3))
    il = dict(tp=0, fp=0, fn=0, tn=0)
    recall_ious = []
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
        presence = out["presence_logit_dec"][:, 0].float().sigmoid().cpu()
        scores = (out["pred_logits"][..., 0].float().sigmoid().cpu() * presence[:, None])
        masks = F.interpolate(out["pred_masks"].float(), size=(S, S), mode="bilinear",
                              align_corners=False).cpu() > 0
        for r, text in enumerate(texts):
            gt = gts[r]
            positive = gt.shape[0] > 0
            (pres_pos if positive else pres_neg).append(float(presence[r]))
            (score_pos if positive else score_neg).append(float(scores[r].max()))
            g = by_phrase.setdefault(text, ([], [], [], []))
            g[0 if positive else 1].append(float(presence[r]))
            g[2 if positive else 3].append(float(scores[r].max()))
            keep = scores[r] > threshold
            pred = masks[r][keep]
            pred = pred[pred.flatten(1).any(1)] if pred.shape[0] else pred
            held = positive and split == "test" and mentions_pair(parse_phrase(text),
                                                                  cfg.held_out_pairs or DEFAULT_HELD_OUT_PAIRS)
            if held:
                held_pres.append(float(presence[r]))
            any_pred = pred.shape[0] > 0
            key = ("tp" if any_pred else "fn") if positive else ("fp" if any_pred else "tn")
            il[key] += 1
            if not positive:
                continue
            all_iou = _mask_iou(gt, masks[r])
            recall_ious += all_iou.max(1).tolist()
            if any_pred:
                iou = _mask_iou(pred, gt)
                pi, gi = linear_sum_assignment(-iou)
                matched = iou[pi, gi]
            else:
                matched = np.zeros(0)
            for k, t in enumerate(IOU_THRESHOLDS):
                n_tp = int((matched >= t).sum())
                tp[k] += n_tp
                fp[k] += pred.shape[0] - n_tp
                fn[k] += gt.shape[0] - n_tp
                if held:
                    htp[k] += n_tp
                    hfp[k] += pred.shape[0] - n_tp
                    hfn[k] += gt.shape[0] - n_tp
    f1 = lambda a, b, c: float(np.mean(2 * a / np.maximum(2 * a + b + c, 1)))  # noqa: E731
    pm = f1(tp, fp, fn)
    mcc = _mcc(il["tp"], il["fp"], il["fn"], il["tn"])
    res = {
        "images": num_images, "split": split, "datapoints": len(pres_pos) + len(pres_neg),
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
    model.train(was_training)
    return res


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
    from ..build import load

    model = load(args.checkpoint)
    for split in (["train", "test"] if args.split == "both" else [args.split]):
        r = quick_eval(model, args.images, split=split, max_attributes=args.max_attributes,
                       negative_mode=args.negatives)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
