"""Exemplar prompting on the synthetic test split: one positive box on one instance, find the
others of the same kind.

For every group of instances of a held-out test scene that share all four attributes (size,
fill, colour, shape), the largest one is boxed and given as the only prompt (text "visual",
the official placeholder). Ground truth is the whole group, the boxed instance included, so the
SA-Co positive micro F1 (pmF1, IoU 0.5:0.95) applies unchanged; we also report the recall of the
*other* instances (IoU >= 0.5), which is what a labeller wants from the box. For comparison the
same groups are prompted with their full description as text ("large striped red star").

``conceptseg eval --exemplars --model M --data synthetic:N`` runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..data.phrases import format_phrase
from ..data.splits import EXEMPLAR_TEST_SEED
from ..data.synthetic import SceneConfig, derive_seed, make_scene, mask_to_rle
from ..inference.image import ImagePredictor
from ..ops.masks import rle_iou
from ..runtime import progress as progress_bar
from .ground_truth import load_ground_truth
from .predictions import load_predictions
from .saco import evaluate_cgf1

__all__ = ["exemplar_groups", "evaluate_exemplars"]


def exemplar_groups(scene) -> list[tuple[list[int], int]]:
    """[(instance indices of one kind, index of the boxed one = the largest visible)]."""
    groups: dict[tuple, list[int]] = {}
    for i, inst in enumerate(scene.instances):
        groups.setdefault(tuple(sorted(inst.attributes.items())), []).append(i)
    return [(ids, max(ids, key=lambda k: scene.instances[k].area)) for ids in groups.values()]


def _gt_json(scenes, groups_per_scene) -> dict:
    images, anns = [], []
    for s, (scene, groups) in enumerate(zip(scenes, groups_per_scene)):
        H, W = scene.image.shape[:2]
        for ids, boxed in groups:
            dp = len(images) + 1
            x0, y0, x1, y1 = scene.instances[boxed].box
            images.append({"id": dp, "height": H, "width": W, "scene": s, "text_input":
                           format_phrase(scene.instances[boxed].attributes),
                           "exemplar_xyxy": [x0, y0, x1, y1], "boxed_instance": boxed,
                           "instance_ids": ids, "is_instance_exhaustive": 1})
            for k in ids:
                inst = scene.instances[k]
                bx0, by0, bx1, by1 = inst.box
                anns.append({"id": len(anns) + 1, "image_id": dp, "segmentation": mask_to_rle(inst.mask),
                             "bbox": [bx0, by0, bx1 - bx0, by1 - by0], "area": int(inst.area),
                             "iscrowd": 0, "category_id": 1, "instance_index": k})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}


def _other_recall(gt_json: dict, preds: list[dict], threshold: float) -> float:
    """Share of the non-boxed instances matched (IoU >= 0.5, one-to-one greedy by score) by a
    prediction scoring above ``threshold``."""
    by_dp: dict[int, list[dict]] = {}
    for p in preds:
        if p["score"] > threshold:
            by_dp.setdefault(p["image_id"], []).append(p)
    hit = total = 0
    boxed = {im["id"]: im["boxed_instance"] for im in gt_json["images"]}
    gts: dict[int, list[dict]] = {}
    for a in gt_json["annotations"]:
        gts.setdefault(a["image_id"], []).append(a)
    for dp, anns in gts.items():
        others = [a for a in anns if a["instance_index"] != boxed[dp]]
        if not others:
            continue
        total += len(others)
        ps = sorted(by_dp.get(dp, []), key=lambda p: -p["score"])
        if not ps:
            continue
        ious = rle_iou([p["segmentation"] for p in ps], [a["segmentation"] for a in others])
        used = set()
        for row in ious:
            j = int(np.argmax([v if k not in used else -1 for k, v in enumerate(row)]))
            if row[j] >= 0.5 and j not in used:
                used.add(j)
        hit += len(used)
    return hit / max(total, 1)


def evaluate_exemplars(model, num_images: int, out_dir: str | Path, seed: int | None = None,
                       threshold: float = 0.5, progress: bool = True, dump_threshold: float = 0.05) -> dict:
    """Run both prompt kinds on ``num_images`` test scenes; write ``exemplars.json`` in out_dir
    and return {"exemplar": {...}, "text": {...}} with pmF1, other-instance recall, counts.
    Predictions scoring above ``dump_threshold`` (at most ``threshold``) are kept."""
    seed = EXEMPLAR_TEST_SEED if seed is None else seed
    size = model.config.vision.image_size
    scenes = [make_scene(derive_seed(seed, i), size, SceneConfig(split="test"))
              for i in range(num_images)]
    groups = [exemplar_groups(s) for s in scenes]
    gt_json = _gt_json(scenes, groups)
    pred = ImagePredictor(model)
    preds = {"exemplar": [], "text": []}
    by_scene: dict[int, list[dict]] = {}
    for im in gt_json["images"]:
        by_scene.setdefault(im["scene"], []).append(im)
    for s, entries in progress_bar(by_scene.items(), desc="exemplar prompts", unit="img",
                                  disable=not progress):
        pred.set_image(scenes[s].image)
        for e in entries:
            r = pred.predict(exemplars=[(e["exemplar_xyxy"], True)], threshold=dump_threshold)
            preds["exemplar"] += r.to_coco(image_id=e["id"])
        for e, r in zip(entries, pred.predict(text=[e["text_input"] for e in entries],
                                                   threshold=dump_threshold)):
            preds["text"] += r.to_coco(image_id=e["id"])
    gt = load_ground_truth(gt_json)
    out: dict = {"num_groups": len(gt_json["images"]),
                 "num_groups_with_others": sum(len(e["instance_ids"]) > 1 for e in gt_json["images"]),
                 "num_images": num_images}
    for kind, ps in preds.items():
        rep = evaluate_cgf1(gt, load_predictions(ps, gt), "segm", threshold)
        out[kind] = {"pmF1": rep.pmF1, "pmF1_50": rep.pmF1_50,
                     "other_instance_recall_50": _other_recall(gt_json, ps, threshold),
                     "num_predictions_kept": rep.counts["num_predictions_kept"]}
    atomic_write(Path(out_dir) / "exemplars.json",
                 lambda tmp: Path(tmp).write_text(json.dumps(out, indent=1)))
    return out
